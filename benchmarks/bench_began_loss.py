"""BEGAN's loss (Berthelot et al. 2017), forward + backward: fastgan fused against torch.

Two reconstruction pairs of B x 3 x 64 x 64 float32 (the real batch and D's
reconstruction, the generated batch and its reconstruction):
  eager          L(v) = (v - D(v)).abs().mean() twice, then L_D, L_G, k_{t+1}, M in torch
                 ops, autograd for the gradients
  torch.compile  the same compiled
  fastgan-*      fastgan.ops.began_loss: one fused reduction per pair and one finalize,
                 one fused pass per pair backward
GB/s: forward reads the four tensors, backward reads them again and writes four: 12 x
one tensor's bytes.

    pytest benchmarks/bench_began_loss.py
"""
import pytest
import torch

from fastgan.ops import began_loss, began_loss_reference

IMPLS = ["eager", "torch.compile", "fastgan-cuda", "fastgan-triton", "fastgan-cpp"]


@pytest.mark.parametrize("batch", [16, 64, 256])
@pytest.mark.parametrize("impl", IMPLS)
def test_began_loss_forward_backward(measure, device, skip_unavailable, impl, batch):
    if (device == "cuda") != (batch != 16):
        pytest.skip(f"batch {batch} is not measured on {device}")
    skip_unavailable(impl, device)
    shape = (batch, 3, 64, 64)
    tensors = [torch.rand(shape, device=device, requires_grad=True) for _ in range(4)]
    k = torch.zeros(1, device=device)
    if impl.startswith("fastgan-"):
        backend = impl.split("-")[1]
        fn = lambda *t: began_loss(*t, k, backend=backend)  # noqa: E731
    else:
        fn = lambda *t: began_loss_reference(*t, k)  # noqa: E731
        if impl == "torch.compile":
            fn = torch.compile(fn)

    def step():
        d_loss, g_loss, k_next, m = fn(*tensors)
        torch.autograd.grad(d_loss + g_loss, tensors)

    measure(step, nbytes=12 * tensors[0].numel() * 4, group=f"began_loss fwd+bwd {batch}x3x64x64 {device}")
