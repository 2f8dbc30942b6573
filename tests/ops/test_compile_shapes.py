"""torch.compile(fullgraph=True) over every op, through a change of batch size (which makes
torch.compile retrace with a symbolic batch dimension) and with dynamic=True, on every CPU
backend: the op's Python checks and layout tests must trace with symbolic sizes and strides,
and the compiled results must equal the eager ones."""
import pytest
import torch

from fastgan import ops


def _x(n, seed, permuted=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 4, 5, generator=g)
    # a dense layout that is neither contiguous nor channels_last: the generic stride walk
    return x.permute(0, 2, 1, 3).contiguous().permute(0, 2, 1, 3) if permuted else x


def _k():
    return torch.tensor([0.3])


OPS = {
    "bias_leaky_relu": lambda x, b: ops.bias_leaky_relu(x, torch.linspace(-1, 1, 3), 0.2, backend=b),
    "batch_norm_act": lambda x, b: ops.batch_norm_act(x, negative_slope=0.2, backend=b),
    "sample_norm_act": lambda x, b: ops.sample_norm_act(x, negative_slope=0.2, backend=b),
    "penalty_from_grad": lambda x, b: ops.penalty_from_grad(x, weight=10.0, backend=b),
    "began_loss": lambda x, b: torch.stack(ops.began_loss(x, x * 0.9, x.flip(0), x * 0.8, _k(), backend=b)),
    "interpolate": lambda x, b: ops.interpolate(x, x * 0.5, seed=torch.tensor([1]), backend=b),
    "clip_weights_": lambda x, b: (ops.clip_weights_([x], 0.5, backend=b), x)[1],
}


@pytest.mark.parametrize("dynamic", [None, True], ids=["retraced", "dynamic"])
@pytest.mark.parametrize("backend", ["cpp", "triton"])
@pytest.mark.parametrize("name", sorted(OPS))
def test_compiled_over_two_batch_sizes_equals_eager(require_backend, name, backend, dynamic):
    require_backend(backend, "cpu")
    torch._dynamo.reset()
    op = OPS[name]
    compiled = torch.compile(lambda x: op(x, backend), backend="aot_eager", fullgraph=True, dynamic=dynamic)
    for n, permuted in ((2, False), (3, False), (5, True)):
        want = op(_x(n, n, permuted), backend)
        got = compiled(_x(n, n, permuted))
        torch.testing.assert_close(got, want, rtol=0, atol=0, msg=f"{name}, batch {n}")
