"""fastgan._autograd.Function: torch's autograd.Function without the per-call signature
binding, and still torch's under torch.func transforms and for keyword arguments."""
import inspect

import pytest
import torch

import fastgan  # noqa: F401  (imports every op and module that defines a Function)
from fastgan import _autograd
from fastgan.ops import bias_leaky_relu, gradient_penalty
from fastgan.ops.bias_leaky_relu import _BiasLeakyReLU


def _functions():
    out, todo = [], [_autograd.Function]
    while todo:
        for sub in todo.pop().__subclasses__():
            out.append(sub)
            todo.append(sub)
    return out


def test_every_function_fits_the_fast_apply():
    """The fast path passes the arguments as given: right only for a forward without
    defaults (the binding would fill them in), with setup_context apart."""
    functions = _functions()
    names = {f.__name__ for f in functions}
    assert {"_Penalty", "_PenaltyGrad", "_BiasLeakyReLU", "_LeakyReLUGrad", "_BatchNormAct", "_BEGANLoss",
            "_Conv2d"} <= names
    for f in functions:
        params = inspect.signature(f.forward).parameters.values()
        assert all(p.default is inspect.Parameter.empty and p.kind is p.POSITIONAL_OR_KEYWORD for p in params), f
        assert "setup_context" in vars(f), f


@pytest.fixture
def no_signature(monkeypatch):
    """inspect.signature raises: what still runs took no binding."""
    def refuse(*args, **kwargs):
        raise AssertionError("inspect.signature called")
    monkeypatch.setattr(inspect, "signature", refuse)


def test_no_binding_per_call(no_signature):
    class Plain(torch.autograd.Function):  # torch's own, to show the patch would catch it
        @staticmethod
        def forward(x):
            return x * 2

        @staticmethod
        def setup_context(ctx, inputs, output):
            pass

        @staticmethod
        def backward(ctx, g):
            return g * 2

    x = torch.randn(3, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    with pytest.raises(AssertionError, match="inspect.signature called"):
        Plain.apply(x)
    bias = torch.randn(4, dtype=torch.float64, requires_grad=True)
    y = bias_leaky_relu(x, bias, 0.2)
    dx, db = torch.autograd.grad(y.square().sum(), (x, bias), create_graph=True)
    dx.sum().backward()  # the double backward's Function too
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(100, 1)).double()
    penalty = gradient_penalty(critic, x.detach(), x.detach().flip(0), weight=10.0)
    penalty.backward()
    assert torch.isfinite(penalty)


def test_same_results_as_torch_apply():
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4, dtype=torch.float64, requires_grad=True)
    fast = _BiasLeakyReLU.apply(x, bias, 0.2, "reference")
    slow = torch.autograd.Function.apply.__func__(_BiasLeakyReLU, x, bias, 0.2, "reference")
    keyword = _BiasLeakyReLU.apply(x, bias, negative_slope=0.2, backend="reference")  # torch's path
    assert torch.equal(fast, slow) and torch.equal(fast, keyword)
    for y in (fast, slow, keyword):
        assert y.grad_fn is not None and type(y.grad_fn).__name__ == "_BiasLeakyReLUBackward"
    g = torch.randn_like(fast)
    assert all(torch.equal(a, b) for a, b in zip(torch.autograd.grad(fast, (x, bias), g),
                                                 torch.autograd.grad(slow, (x, bias), g)))


def test_torch_func_transforms_take_torch_path():
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    bias = torch.randn(3, dtype=torch.float64)

    def f(x):
        return bias_leaky_relu(x, bias, 0.2).sin().sum()

    xr = x.clone().requires_grad_()
    want, = torch.autograd.grad(f(xr), xr)
    torch.testing.assert_close(torch.func.grad(f)(x), want, rtol=0, atol=0)
    per_sample = torch.func.vmap(lambda s: bias_leaky_relu(s[None], bias, 0.2)[0])(x)
    torch.testing.assert_close(per_sample, bias_leaky_relu(x, bias, 0.2), rtol=0, atol=0)
