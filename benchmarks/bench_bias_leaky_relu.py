"""The critic activation, bias + leaky ReLU: fastgan fused against torch.

At the DCGAN 64x64 critic's second layer (B x 128 x 16 x 16, float32):
  fwd+bwd   y = leaky_relu(x + b) and its backward (dx, db): eager ops + autograd,
            torch.compile, and fastgan's fused forward + backward
  2nd order the gradient-penalty case: dx is differentiated again with respect to dy
            (what the double backward through the critic asks of each activation);
            eager autograd also materializes d/dx = 0 and sends it on, fastgan does not
GB/s: fwd+bwd reads x, writes y, reads y and dy, writes dx: 5 x x's bytes; 2nd order
reads y and the incoming gradient and writes one: 3 x.

    pytest benchmarks/bench_bias_leaky_relu.py
"""
import pytest
import torch

from fastgan.ops import bias_leaky_relu

IMPLS = ["eager", "torch.compile", "fastgan-cuda", "fastgan-triton", "fastgan-cpp"]


def _eager(x, b):
    return torch.nn.functional.leaky_relu(x + b.view(1, -1, 1, 1), 0.2)


def _fn(impl):
    if impl == "eager":
        return _eager
    if impl == "torch.compile":
        return torch.compile(_eager)
    backend = impl.split("-")[1]
    return lambda x, b: bias_leaky_relu(x, b, 0.2, backend=backend)


def _inputs(device):
    batch = 256 if device == "cuda" else 64
    x = torch.randn(batch, 128, 16, 16, device=device, requires_grad=True)
    b = torch.zeros(128, device=device, requires_grad=True)
    return x, b


@pytest.mark.parametrize("impl", IMPLS)
def test_forward_backward(measure, device, skip_unavailable, impl):
    skip_unavailable(impl, device)
    x, b = _inputs(device)
    fn = _fn(impl)
    dy = torch.randn_like(x)

    def step():
        torch.autograd.grad(fn(x, b), (x, b), grad_outputs=dy)

    measure(step, nbytes=5 * x.numel() * 4, group=f"bias_leaky_relu fwd+bwd {tuple(x.shape)} {device}")


@pytest.mark.parametrize("impl", ["eager", "fastgan-cuda", "fastgan-triton", "fastgan-cpp"])
def test_second_order(measure, device, skip_unavailable, impl):
    skip_unavailable(impl, device)
    x, b = _inputs(device)
    fn = _fn(impl)
    y = fn(x, b)
    dy = torch.randn_like(x, requires_grad=True)
    (dx,) = torch.autograd.grad(y, x, grad_outputs=dy, create_graph=True)
    v = torch.randn_like(x)

    def step():
        torch.autograd.grad(dx, (dy, x), grad_outputs=v, retain_graph=True, allow_unused=True)

    measure(step, nbytes=3 * x.numel() * 4, group=f"bias_leaky_relu 2nd order {tuple(x.shape)} {device}")
