"""The WGAN-GP ResNet critic's SampleNorm + ReLU (per-sample normalization, GroupNorm(1, C)),
at every order its gradient penalty runs it: fastgan.ops.sample_norm_act against eager
PyTorch and torch.compile.

Shapes: the residual branches of the 64x64 critic (Gulrajani et al. 2017, app. C, width 64):
  layer 0  64 ch, 64x64      layer 2  256 ch, 16x16
  layer 1  128 ch, 32x32     layer 3  512 ch, 8x8
On a GPU at batch 64 and 192 (a one-pass critic step's real, fake and penalty points), in
bfloat16 (the trainer's autocast gives the convolutions' bf16 outputs), channels_last; on a
CPU layers 2 and 3 at batch 8, float32, NCHW.

Two groups per shape:
  fwd+bwd   the forward and the gradients of x, weight and bias (a loss's backward)
  penalty   the forward, the input gradient built with create_graph=True, and that
            gradient's backward into x and weight (a gradient penalty's double backward)
Implementations:
  eager          fastgan.nn.resnet.sample_norm (layer_norm on the NHWC view for
                 channels_last, group_norm otherwise; what fused=False runs) + F.relu
  torch.compile  the same function compiled (fwd+bwd only: AOTAutograd does not take a
                 double backward, the reason a WGAN-GP critic step cannot be compiled)
  fastgan-*      fastgan.ops.sample_norm_act with that backend

    pytest benchmarks/bench_sample_norm_act.py
"""
import pytest
import torch
import torch.nn.functional as F

from fastgan.nn.resnet import sample_norm
from fastgan.ops import sample_norm_act

LAYERS = [(64, 64), (128, 32), (256, 16), (512, 8)]
IMPLS = ["eager", "torch.compile", "fastgan-cuda", "fastgan-triton", "fastgan-cpp"]


def _eager(x, w, b):
    return F.relu(sample_norm(x, w, b))


@pytest.mark.parametrize("group", ["fwd+bwd", "penalty"])
@pytest.mark.parametrize("batch", [8, 64, 192])
@pytest.mark.parametrize("layer", [0, 1, 2, 3])
@pytest.mark.parametrize("impl", IMPLS)
def test_sample_norm_relu(measure, device, skip_unavailable, impl, layer, batch, group):
    if (device == "cuda") != (batch != 8) or (device == "cpu" and layer < 2):
        pytest.skip(f"layer {layer} at batch {batch} is not measured on {device}")
    if impl == "torch.compile" and group == "penalty":
        pytest.skip("torch.compile (AOTAutograd) does not support a double backward")
    skip_unavailable(impl, device)
    channels, size = LAYERS[layer]
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    x = torch.randn(batch, channels, size, size, device=device, dtype=dtype)
    if device == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    w = (torch.rand(channels, device=device) + 0.5).requires_grad_(True)
    b = (torch.randn(channels, device=device) * 0.1).requires_grad_(True)
    if impl.startswith("fastgan-"):
        backend = impl.split("-")[1]
        fn = lambda x, w, b: sample_norm_act(x, w, b, backend=backend)  # noqa: E731
    elif impl == "torch.compile":
        torch._dynamo.reset()
        fn = torch.compile(_eager, dynamic=False)
    else:
        fn = _eager
    v = torch.randn_like(x)  # the next layer, a fixed projection

    if group == "fwd+bwd":
        def step():
            y = fn(x, w, b)
            torch.autograd.grad(y, (x, w, b), grad_outputs=v)
        passes = 6  # forward reads x twice, writes y; backward reads dy, y, x twice, writes dx
    else:
        def step():
            y = fn(x, w, b)
            (gx,) = torch.autograd.grad(y, x, grad_outputs=v, create_graph=True)
            torch.autograd.grad(gx.float().square().sum(), (x, w))
        passes = 14  # + the double backward: reads gg, dy, y, x (twice for its sums), writes two
    measure(step, nbytes=passes * x.numel() * x.element_size(),
            group=f"sample_norm+relu {group} layer {layer} batch {batch} {device}", rounds=30)
