"""The DCGAN generator block, ConvTranspose2d -> BatchNorm2d -> ReLU, forward + backward in
training mode: fastgan's fused block against eager PyTorch and torch.compile.

Shapes are the DCGAN 64x64 generator's (Radford et al. 2015, ngf = 64, nz = 100):
  block 0  100 -> 512,  1x1 -> 4x4        block 2  256 -> 128,  8x8 -> 16x16
  block 1  512 -> 256,  4x4 -> 8x8        block 3  128 -> 64,  16x16 -> 32x32
  eager          nn.Sequential(ConvTranspose2d(bias=False), BatchNorm2d, ReLU)
  torch.compile  the same, mode="max-autotune-no-cudagraphs" on a GPU (default mode on a CPU)
  fastgan-*      fastgan.nn.ConvTransposeBNReLU with that backend (cuDNN convolution, fused
                 statistics + normalize + ReLU, fused two-pass backward)
Batch 64 and 256 on a GPU, 16 on a CPU (blocks 2 and 3).

    pytest benchmarks/bench_conv_bn_act.py
"""
import pytest
import torch
from torch import nn

from fastgan.nn import ConvTransposeBNReLU

BLOCKS = [(100, 512, 1, 0, 1), (512, 256, 2, 1, 4), (256, 128, 2, 1, 8), (128, 64, 2, 1, 16)]
IMPLS = ["eager", "torch.compile", "fastgan-cuda", "fastgan-triton", "fastgan-cpp"]


@pytest.mark.parametrize("batch", [16, 64, 256])
@pytest.mark.parametrize("block", [0, 1, 2, 3])
@pytest.mark.parametrize("impl", IMPLS)
def test_generator_block_forward_backward(measure, device, skip_unavailable, impl, block, batch):
    if (device == "cuda") != (batch != 16) or (device == "cpu" and block < 2):
        pytest.skip(f"block {block} at batch {batch} is not measured on {device}")
    skip_unavailable(impl, device)
    cin, cout, stride, padding, size = BLOCKS[block]
    torch.manual_seed(0)
    if impl.startswith("fastgan-"):
        model = ConvTransposeBNReLU(cin, cout, 4, stride, padding, backend=impl.split("-")[1])
    else:
        model = nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, stride, padding, bias=False),
                              nn.BatchNorm2d(cout), nn.ReLU())
    model = model.to(device)
    if impl == "torch.compile":
        torch._dynamo.reset()  # each block compiled for its own static shapes
        model = torch.compile(model, dynamic=False,
                              mode="max-autotune-no-cudagraphs" if device == "cuda" else None)
    x = torch.randn(batch, cin, size, size, device=device, requires_grad=True)
    params = list(model.parameters())

    def step():
        y = model(x)
        torch.autograd.grad(y, [x] + params, grad_outputs=torch.ones_like(y))

    out_numel = batch * cout * (4 if stride == 1 else 2 * size) ** 2  # 4x4 kernels
    # BatchNorm + ReLU traffic: forward reads y twice (stats, normalize) and writes out;
    # backward reads dy, out, y twice and writes dx: 8 x the conv output's bytes.
    measure(step, nbytes=8 * out_numel * 4, group=f"convT+bn+relu block {block} batch {batch} {device}",
            rounds=30)
