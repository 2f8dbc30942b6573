"""fastgan.ops.penalty_from_grad in every backend against the reference formula.

The reference is the formula in plain PyTorch, differentiated by autograd; the fused
backends are compared with it at first and second order. Tolerances per dtype: the sums
run in a different order (split reductions), so float32 agrees to a few ulps of the sum,
and 16-bit gradients, stored after one rounding, to one ulp of their dtype.
"""
import pytest
import torch

from fastgan.ops import penalty_from_grad, penalty_reference

DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]
# Batch 1 and 3; C*H*W of 1, a prime, and sizes around powers of two and block sizes.
SHAPES = [(1, 1), (3, 3, 7, 11), (1, 3, 17, 19), (4, 4097), (2, 1, 64, 65)]
# (weight, center): WGAN-GP/DRAGAN, an odd center, R1 (center 0, weight gamma / 2).
HYPER = [(10.0, 1.0), (2.5, 0.5), (5.0, 0.0)]
# Forward/backward tolerances of the value and of the gradient (an output stored in the
# gradient's dtype) per dtype.
TOL = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-6),
       torch.bfloat16: dict(rtol=1e-2, atol=1e-5), torch.float16: dict(rtol=2e-3, atol=1e-6)}


def _grad(shape, dtype, device, seed, scale=0.05):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(dtype).to(device)


def _value_tol(dtype):
    # The penalty is computed in float32 for 16-bit gradients: float32 tolerance.
    return TOL[torch.float64] if dtype == torch.float64 else TOL[torch.float32]


def _first_and_second_order(backend, g, weight, center, v=None, dout_scale=1.7):
    """(penalty, dgrad, d/dg <dgrad, v>, d/d dout <dgrad, v>) through the op's autograd.
    v: the incoming gradient of dgrad (default: drawn in g's dtype)."""
    g = g.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
    p = penalty_from_grad(g, weight=weight, center=center, backend=backend)
    dout = torch.tensor(dout_scale, dtype=p.dtype, device=g.device, requires_grad=True)
    (dg,) = torch.autograd.grad(p, g, grad_outputs=dout, create_graph=True)
    if v is None:
        v = _grad(g.shape, g.dtype, g.device, 1, scale=1.0)
    ddg, ddout = torch.autograd.grad((dg.to(torch.float64) * v.to(torch.float64)).sum(), (g, dout))
    return p.detach(), dg.detach(), ddg, ddout


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("weight,center", HYPER)
def test_matches_reference_to_second_order(backend_device, dtype, shape, weight, center):
    backend, device = backend_device
    g = _grad(shape, dtype, device, seed=sum(shape) + DTYPES.index(dtype))
    v = _grad(shape, dtype, device, seed=1, scale=1.0)
    got = _first_and_second_order(backend, g, weight, center, v)
    # The oracle runs in float64 on the same (already rounded) values.
    ref = _first_and_second_order("reference", g.to(torch.float64), weight, center, v.to(torch.float64))
    torch.testing.assert_close(got[0].to(torch.float64), ref[0], **_value_tol(dtype))
    torch.testing.assert_close(got[1], ref[1].to(dtype), **TOL[dtype])
    assert got[0].dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert got[1].dtype == dtype and got[1].shape == g.shape
    if backend == "reference" and dtype in (torch.bfloat16, torch.float16):
        # Eager autograd's second order runs through the 16-bit gradient (rounded
        # intermediates, terms that nearly cancel): only the fused backends, which compute
        # it in float32, are held to the float64 oracle there.
        return
    torch.testing.assert_close(got[2], ref[2].to(dtype), **TOL[dtype])
    torch.testing.assert_close(got[3].to(torch.float64), ref[3], **_value_tol(dtype))


@pytest.mark.parametrize("backend", ["cpp", "reference"])
def test_a_large_batch_sums_without_drift(require_backend, backend):
    # 2^18 samples: the C++ kernel's float32 running sum over the batch drifted to 7e-5
    # relative (CPU backends only: Triton's interpreter takes minutes at this size)
    require_backend(backend, "cpu")
    grad = torch.randn(1 << 18, 2, generator=torch.Generator().manual_seed(3))
    got = penalty_from_grad(grad, weight=10.0, backend=backend)
    want = 10.0 * ((grad.double().norm(dim=1) - 1) ** 2).mean()
    assert abs(float(got) - float(want)) <= 1e-6 * float(want)


def test_norm_is_over_every_axis_of_a_sample(backend_device):
    # A gradient with norm exactly 1 per sample has penalty 0; taken over one axis it would not be.
    backend, device = backend_device
    g = torch.zeros(3, 2, 4, 4, dtype=torch.float64)
    g[:, 0, 0, 0] = 0.6
    g[:, 1, 3, 2] = 0.8
    p = penalty_from_grad(g.to(device), weight=10.0, center=1.0, eps=1e-30, backend=backend)
    assert abs(p.item()) < 1e-20
    p2 = penalty_from_grad((2 * g).to(device), weight=10.0, center=1.0, backend=backend)
    assert p2.item() == pytest.approx(10.0, rel=1e-9)  # (2 - 1)^2 per sample, times 10


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")  # fp16 second order (below)
@pytest.mark.parametrize("center", [1.0, 0.0])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_zero_gradient_is_finite_never_nan(backend_device, dtype, center):
    backend, device = backend_device
    g = torch.zeros(3, 5, 3, 3, dtype=dtype, device=device)
    p, dg, ddg, ddout = _first_and_second_order(backend, g, 10.0, center)
    assert p.item() == pytest.approx(10.0 * center ** 2, rel=1e-5)
    assert torch.isfinite(dg).all()
    # The second order at g = 0 is the curvature of the regularized cusp, ~1/sqrt(eps) =
    # 1e6 (times 2 * weight / B): finite in float32/bfloat16/float64, beyond float16's range.
    # Training never takes it (it differentiates the penalty's first order only).
    if dtype != torch.float16:
        assert torch.isfinite(ddg).all() and torch.isfinite(ddout).all()
    assert not dg.any()


@pytest.mark.parametrize("layout", ["channels_last", "transposed", "sliced"])
def test_layouts(backend_device, layout):
    backend, device = backend_device
    base = _grad((3, 4, 6, 5), torch.float32, device, seed=7)
    g = {"channels_last": base.contiguous(memory_format=torch.channels_last),
         "transposed": base.transpose(2, 3),
         "sliced": _grad((3, 8, 6, 5), torch.float32, device, seed=8)[:, ::2]}[layout]
    v = _grad(g.shape, torch.float32, device, seed=1, scale=1.0)
    got = _first_and_second_order(backend, g, 10.0, 1.0, v)
    ref = _first_and_second_order("reference", g.to(torch.float64), 10.0, 1.0, v.double())
    torch.testing.assert_close(got[0].double(), ref[0], **TOL[torch.float32])
    torch.testing.assert_close(got[1], ref[1].float(), **TOL[torch.float32])
    torch.testing.assert_close(got[2], ref[2].float(), **TOL[torch.float32])


@pytest.mark.parametrize("center", [1.0, 0.0])
def test_gradcheck_and_gradgradcheck_float64(backend_device, center):
    backend, device = backend_device
    g = _grad((2, 3, 2, 3), torch.float64, device, seed=3, scale=0.3).requires_grad_(True)

    def f(x):
        return penalty_from_grad(x, weight=3.0, center=center, backend=backend)

    assert torch.autograd.gradcheck(f, (g,))
    assert torch.autograd.gradgradcheck(f, (g,))


def test_fused_backends_are_deterministic(backend_device):
    backend, device = backend_device
    g = _grad((3, 3, 33, 31), torch.float32, device, seed=5)
    a = _first_and_second_order(backend, g, 10.0, 1.0)
    b = _first_and_second_order(backend, g, 10.0, 1.0)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


@pytest.mark.parametrize("kwargs,error,words", [
    (dict(grad=torch.ones(3, 4, dtype=torch.int32)), TypeError, "grad has dtype torch.int32"),
    (dict(grad=torch.ones(0, 4)), ValueError, "at least one element"),
    (dict(grad=torch.tensor(1.0)), ValueError, "batch dimension"),
    (dict(weight=-1.0), ValueError, "weight must be a finite number >= 0"),
    (dict(weight=torch.tensor(10.0)), TypeError, "weight must be a Python number, got a tensor; pass float(weight)"),
    (dict(center="1"), TypeError, "center must be a real number, got str"),
    (dict(center=float("nan")), ValueError, "center must be a finite number >= 0"),
    (dict(eps=0.0), ValueError, "eps must be > 0 when center != 0"),
    (dict(backend="nope"), ValueError, "unknown backend 'nope'"),
])
def test_bad_input_names_the_problem(kwargs, error, words):
    args = dict(grad=torch.ones(3, 4), weight=10.0, center=1.0) | kwargs
    grad = args.pop("grad")
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        penalty_from_grad(grad, **args)


def test_cpp_entry_points_check_their_arguments(require_backend):
    require_backend("cpp", "cpu")
    ops = torch.ops.fastgan
    with pytest.raises(RuntimeError, match="every sample of grad must be one dense range"):
        ops.penalty_forward(torch.ones(3, 4).t(), 10.0, 1.0, 1e-12)
    with pytest.raises(RuntimeError, match="eps must be > 0 when center != 0"):
        ops.penalty_forward(torch.ones(3, 4), 10.0, 1.0, 0.0)
    g = torch.ones(3, 4)
    with pytest.raises(RuntimeError, match="sumsq has dtype Double; expected Float"):
        ops.penalty_backward(g, torch.ones(3, dtype=torch.float64), torch.ones(()), 1.0, 1.0, 1e-12)
    with pytest.raises(RuntimeError, match="ggrad must match grad"):
        ops.penalty_double_backward(g, torch.ones(3), torch.ones(()), torch.ones(4, 3).t(), 1.0, 1.0, 1e-12)


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_opcheck(require_backend, backend):
    require_backend(backend, "cpu")
    suffix = "_triton" if backend == "triton" else ""
    ops = torch.ops.fastgan
    g = _grad((3, 2, 5), torch.float32, "cpu", seed=11)
    p, s = getattr(ops, "penalty_forward" + suffix)(g, 10.0, 1.0, 1e-12)
    dout = torch.tensor(1.5)
    torch.library.opcheck(getattr(ops, "penalty_forward" + suffix).default, (g, 10.0, 1.0, 1e-12))
    torch.library.opcheck(getattr(ops, "penalty_backward" + suffix).default, (g, s, dout, 10.0, 1.0, 1e-12))
    torch.library.opcheck(getattr(ops, "penalty_double_backward" + suffix).default,
                          (g, s, dout, torch.ones_like(g), 10.0, 1.0, 1e-12))


@pytest.mark.parametrize("backend", ["cpp", "triton", "reference"])
def test_torch_compile_traces_the_first_order(require_backend, backend):
    require_backend(backend, "cpu")

    def loss(g):
        return penalty_from_grad(g, weight=10.0, center=1.0, backend=backend)

    g = _grad((3, 2, 5, 5), torch.float32, "cpu", seed=12).requires_grad_(True)
    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
    p = compiled(g)
    (dg,) = torch.autograd.grad(p, g)
    ref = penalty_reference(g.detach().double().requires_grad_(True), 10.0, 1.0)
    torch.testing.assert_close(p.double(), ref.detach(), **TOL[torch.float32])
    assert torch.isfinite(dg).all()


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_large_batch_and_single_sample_on_gpu(backend):
    for shape in [(256, 3, 64, 64), (1, 3, 64, 64), (1, 2**24 + 3)]:
        g = _grad(shape, torch.float32, "cuda", seed=13)
        v = _grad(shape, torch.float32, "cuda", seed=1, scale=1.0)
        got = _first_and_second_order(backend, g, 10.0, 1.0, v)
        ref = _first_and_second_order("reference", g.double(), 10.0, 1.0, v.double())
        torch.testing.assert_close(got[0].double(), ref[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got[1], ref[1].float(), **TOL[torch.float32])


def test_torch_func_grad_of_grad_through_the_fused_penalty(require_backend):
    # setup_context-style autograd Functions: torch.func takes the penalty's first and second order
    require_backend("cpp", "cpu")
    g = torch.randn(4, 75, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def orders(be):
        p = lambda g: penalty_from_grad(g, weight=10.0, center=1.0, backend=be)  # noqa: E731
        return torch.func.grad(p)(g), torch.func.grad(lambda g: torch.func.grad(p)(g).pow(2).sum())(g)
    for a, r in zip(orders("cpp"), orders("reference")):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12)
