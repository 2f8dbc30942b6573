"""The gradient penalty on a gradient tensor, forward + backward: fastgan fused against torch.

One call computes the WGAN-GP penalty of a gradient g (B x 3 x 64 x 64, float32) and its
gradient dL/dg, which is what a critic step asks of it:
  eager          the formula in PyTorch ops, differentiated by autograd
  torch.compile  the same formula compiled (forward and backward; first order only)
  fastgan-*      fastgan.ops.penalty_from_grad on a backend: one split reduction, one
                 elementwise pass
GB/s counts g read twice (forward, backward) and dL/dg written once: 3 x g's bytes.

    pytest benchmarks/bench_penalty.py
"""
import pytest
import torch

from fastgan.ops import penalty_from_grad, penalty_reference

IMPLS = ["eager", "torch.compile", "fastgan-cuda", "fastgan-triton", "fastgan-cpp"]


# Batch 1 shows the split reduction filling the GPU with one sample.
BATCHES = {"cuda": (1, 64, 256), "cpu": (64,)}


def _penalty_fn(impl):
    if impl == "eager":
        return lambda g: penalty_reference(g, 10.0, 1.0)
    if impl == "torch.compile":
        return torch.compile(lambda g: penalty_reference(g, 10.0, 1.0))
    backend = impl.split("-")[1]
    return lambda g: penalty_from_grad(g, weight=10.0, center=1.0, backend=backend)


@pytest.mark.parametrize("batch", [1, 64, 256])
@pytest.mark.parametrize("impl", IMPLS)
def test_penalty_forward_backward(measure, device, skip_unavailable, impl, batch):
    if batch not in BATCHES[device]:
        pytest.skip(f"batch {batch} is measured on a GPU only")
    skip_unavailable(impl, device)
    g = (torch.randn(batch, 3, 64, 64, device=device) * 0.05).requires_grad_(True)
    fn = _penalty_fn(impl)

    def step():
        p = fn(g)
        torch.autograd.grad(p, g)

    measure(step, nbytes=3 * g.numel() * g.element_size(),
            group=f"penalty fwd+bwd {batch}x3x64x64 float32 {device}")
