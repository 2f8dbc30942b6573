"""torch.func.vmap through fastgan's differentiable ops: every backend's batching rules.

Each op under vmap equals a Python loop of the op over the vmapped dim, forward and
derivatives, for any in_dims (vmapped dims other than 0, unbatched arguments, batched
per-channel vectors). PyTorch's fallback for an op without a batching rule (a loop, with a
warning) is turned off here, so a missing rule fails instead of passing as that loop.
Elementwise work and the per-slice loops are exact; reductions folded into one launch (batch
statistics, the bias gradient's sum) are compared to a few ulps.
"""
import pytest
import torch

from fastgan.nn import DCGANCritic
from fastgan.ops import batch_norm_act, began_loss, bias_leaky_relu, penalty_from_grad, sample_norm_act

V = 3  # the vmapped size
DTYPES = [torch.float32, torch.float64]
EXACT = dict(rtol=0, atol=0)
SUM_TOL = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-5)}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _no_vmap_fallback():
    """A missing batching rule raises ("hit the vmap fallback which is currently disabled")."""
    saved = torch._C._functorch._is_vmap_fallback_enabled()
    torch._C._functorch._set_vmap_fallback_enabled(False)
    yield
    torch._C._functorch._set_vmap_fallback_enabled(saved)


def _randn(shape, dtype, device, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(
        dtype).to(device)


def _batched(shape, dim, dtype, device, seed):
    """V slices of `shape` stacked along dim (not dim 0: the rules must move it)."""
    return _randn((V,) + shape, dtype, device, seed).movedim(0, dim)


def _slices(t, dim):
    return [t if dim is None else t.select(dim, i) for i in range(V)]


def _loop(f, in_dims, *args):
    """f slice by slice, stacked like vmap's output (a tuple of outputs stacked each)."""
    outs = [f(*a) for a in zip(*(_slices(t, d) for t, d in zip(args, in_dims)))]
    if isinstance(outs[0], torch.Tensor):
        return torch.stack(outs)
    return tuple(torch.stack(o) for o in zip(*outs))


def _assert_close(got, want, **tol):
    if isinstance(want, torch.Tensor):
        got, want = (got,), (want,)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **tol)


# ---- bias_leaky_relu ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("x_dim", [0, 2, -1])
@pytest.mark.parametrize("bias_dim", ["unbatched", 1, "none"])
def test_bias_leaky_relu_equals_a_loop_to_second_order(backend_device, dtype, x_dim, bias_dim):
    backend, device = backend_device
    x = _batched((2, 5, 3, 7), x_dim, dtype, device, seed=0)  # an odd NCHW slice
    bias, b_dim = {"unbatched": (_randn((5,), dtype, device, 1), None),
                   1: (_randn((5, V), dtype, device, 1), 1),
                   "none": (None, None)}[bias_dim]
    dy = _batched((2, 5, 3, 7), 0, dtype, device, seed=2)
    w = _batched((2, 5, 3, 7), 1, dtype, device, seed=3)

    def f(x, b, dy, w):
        """y, its vjp (dx, db) at dy, and the vjp of <dx, w> in dy (the second order)."""
        def grads(dy):
            if b is None:
                y, vjp = torch.func.vjp(lambda x: bias_leaky_relu(x, None, 0.2, backend=backend), x)
                return y, vjp(dy) + (None,)
            y, vjp = torch.func.vjp(lambda x, b: bias_leaky_relu(x, b, 0.2, backend=backend), x, b)
            return y, vjp(dy)
        y, (dx, db) = grads(dy)
        ddy = torch.func.grad(lambda dy: (grads(dy)[1][0] * w).sum())(dy)
        return (y, dx, ddy) + (() if db is None else (db,))

    if bias is None:
        g = lambda x, dy, w: f(x, None, dy, w)  # noqa: E731
        args, in_dims = (x, dy, w), (x_dim, 0, 1)
    else:
        g, args, in_dims = f, (x, bias, dy, w), (x_dim, b_dim, 0, 1)
    got = torch.func.vmap(g, in_dims=in_dims)(*args)
    want = _loop(g, in_dims, *args)
    _assert_close(got[:3], want[:3], **EXACT)
    if bias is not None:  # db: a sum over N, H, W in aten's order under vmap
        _assert_close(got[3], want[3], **SUM_TOL[dtype])


def _arg(shape, dim, seed):
    """A float32 argument: V slices of `shape` along dim, or one slice (dim None)."""
    if dim is None:
        return _randn(shape, torch.float32, "cpu", seed)
    return _batched(shape, dim, torch.float32, "cpu", seed)


@pytest.mark.parametrize("backend", ["cpp", "triton"])
@pytest.mark.parametrize("in_dims", [(0, None), (None, 1), (2, 0)], ids=str)
def test_raw_ops_of_the_fused_backends(require_backend, backend, in_dims):
    # the ops the autograd Functions call, vmapped directly: one argument unbatched (a vmap
    # over grad outputs: the other is expanded), a bias batched along its last dim, dims
    # other than 0
    require_backend(backend, "cpu")
    suffix = "_triton" if backend == "triton" else ""
    forward = getattr(torch.ops.fastgan, "bias_leaky_relu" + suffix)
    backward = getattr(torch.ops.fastgan, "leaky_relu_backward" + suffix)
    grad, x = _arg((3, 5, 2), in_dims[0], 0), _arg((3, 5, 2), in_dims[1], 1)

    def f(grad, x):
        return backward(grad, forward(x, None, 0.2), 0.2)
    _assert_close(torch.func.vmap(f, in_dims=in_dims)(grad, x), _loop(f, in_dims, grad, x), **EXACT)
    x, bias = _arg((3, 4, 2, 6), in_dims[0], 2), _arg((4,), None if in_dims[1] is None else 1, 3)
    bias_dims = (in_dims[0], None if in_dims[1] is None else 1)

    def g(x, bias):
        return forward(x, bias, 0.2)
    _assert_close(torch.func.vmap(g, in_dims=bias_dims)(x, bias), _loop(g, bias_dims, x, bias), **EXACT)


# ---- batch_norm_act -----------------------------------------------------------------------

BN_CASES = {  # (weight/bias batched, running statistics: None / "batched" / "unbatched", batch stats)
    "train": (False, None, True),
    "train_batched_params": (True, None, True),
    "train_batched_running": (False, "batched", True),
    "eval_unbatched_running": (True, "unbatched", False),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("x_dim", [0, 2])
@pytest.mark.parametrize("case", list(BN_CASES))
def test_batch_norm_act_equals_a_loop(backend_device, dtype, x_dim, case):
    # each vmapped slice normalizes with its own batch statistics and updates its own running
    # statistics; gradients of x, weight and bias per slice
    backend, device = backend_device
    params_batched, running, use_batch_stats = BN_CASES[case]
    x = _batched((4, 3, 5, 2), x_dim, dtype, device, seed=0)
    dy = _batched((4, 3, 5, 2), 0, dtype, device, seed=1)
    if params_batched:
        w, b, wb_dim = _randn((3, V), dtype, device, 2) + 1, _randn((3, V), dtype, device, 3), 1
    else:
        w, b, wb_dim = _randn((3,), dtype, device, 2) + 1, _randn((3,), dtype, device, 3), None
    stats = {"vmap": (None, None), "loop": (None, None)}
    r_dim = None
    if running == "batched":  # along dim 1: the rule writes its contiguous copy back
        r_dim = 1
        stats = {k: (_randn((3, V), torch.float32, device, 4), _randn((3, V), torch.float32, device, 5).abs())
                 for k in stats}
    elif running == "unbatched":
        stats = {k: (_randn((3,), torch.float32, device, 4), _randn((3,), torch.float32, device, 5).abs())
                 for k in stats}

    def f(x, w, b, dy, rm, rv):
        def bn(x, w, b, rm, rv):
            return batch_norm_act(x, w, b, rm, rv, use_batch_stats=use_batch_stats, negative_slope=0.2,
                                  backend=backend)
        y = bn(x, w, b, rm, rv)  # updates the running statistics with batch statistics
        if use_batch_stats:  # grad may not mutate what it captures; the gradients need no running stats
            rm = rv = None
        grads = torch.func.grad(lambda x, w, b: (bn(x, w, b, rm, rv) * dy).sum(), argnums=(0, 1, 2))(x, w, b)
        return (y,) + grads
    in_dims = (x_dim, wb_dim, wb_dim, 0, r_dim, r_dim)
    got = torch.func.vmap(f, in_dims=in_dims)(x, w, b, dy, *stats["vmap"])
    want = _loop(f, in_dims, x, w, b, dy, *stats["loop"])
    _assert_close(got, want, **SUM_TOL[dtype])
    for a, r in zip(stats["vmap"], stats["loop"]):
        if a is not None:
            torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-6)
    if running == "unbatched":  # read only: untouched
        torch.testing.assert_close(stats["vmap"][0], _randn((3,), torch.float32, device, 4), **EXACT)


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_batch_norm_act_refuses_unbatched_running_statistics(require_backend, backend):
    # with batch statistics every slice would update the one pair in place: a clear error,
    # not the last slice's update
    require_backend(backend, "cpu")
    x = torch.randn(V, 4, 3, 2)
    rm, rv = torch.zeros(3), torch.ones(3)
    with pytest.raises(RuntimeError, match="batch_norm_act under torch.func.vmap.*must be batched"):
        torch.func.vmap(lambda x: batch_norm_act(x, None, None, rm, rv, backend=backend))(x)
    assert torch.equal(rm, torch.zeros(3)) and torch.equal(rv, torch.ones(3))


# ---- the penalty and BEGAN's loss: one launch per slice -----------------------------------

@pytest.mark.parametrize("center", [1.0, 0.0])
def test_penalty_equals_a_loop_to_second_order(backend_device, center):
    backend, device = backend_device
    g = _batched((4, 2, 3, 5), 1, torch.float64, device, seed=0)
    v = _batched((4, 2, 3, 5), 0, torch.float64, device, seed=1)

    def f(g, v):
        p = lambda g: penalty_from_grad(g, weight=10.0, center=center, backend=backend)  # noqa: E731
        return p(g), torch.func.grad(p)(g), torch.func.grad(lambda g: (torch.func.grad(p)(g) * v).sum())(g)
    _assert_close(torch.func.vmap(f, in_dims=(1, 0))(g, v), _loop(f, (1, 0), g, v), **EXACT)


@pytest.mark.parametrize("k_dim", [None, 0])
def test_began_loss_equals_a_loop(backend_device, k_dim):
    backend, device = backend_device
    real, real_recon = (_batched((2, 3, 4), 0, torch.float64, device, seed=s) for s in (0, 1))
    fake = _batched((2, 3, 4), 1, torch.float64, device, seed=2)  # another dim than its recon's
    fake_recon = _batched((2, 3, 4), 0, torch.float64, device, seed=3)
    k = torch.rand((V, 1) if k_dim == 0 else (1,), dtype=torch.float64,
                   generator=torch.Generator().manual_seed(4)).to(device)

    def f(real, real_recon, fake, fake_recon, k):
        def losses(rr, fr):
            d_loss, g_loss, k_next, convergence = began_loss(real, rr, fake, fr, k, backend=backend)
            return 2 * d_loss + g_loss, (d_loss, g_loss, k_next, convergence)
        grads, outs = torch.func.grad(losses, argnums=(0, 1), has_aux=True)(real_recon, fake_recon)
        return outs + grads
    in_dims = (0, 0, 1, 0, k_dim)
    args = (real, real_recon, fake, fake_recon, k)
    _assert_close(torch.func.vmap(f, in_dims=in_dims)(*args), _loop(f, in_dims, *args), **EXACT)


# ---- the functorch per-sample gradient penalty through the fused critic -------------------

@pytest.mark.parametrize("backend", ["cpp", "reference", "triton"])
def test_per_sample_gradient_penalty_through_the_fused_critic(require_backend, backend):
    # vmap(grad(critic)) per sample, then grad of the penalty in the parameters: fastgan's
    # DCGANCritic (Conv2d and BiasLeakyReLU under vmap) equals the stock critic
    require_backend(backend, "cpu")
    torch.manual_seed(0)
    fused = DCGANCritic(16, 1, 4, backend=backend).double()
    with torch.no_grad():
        for p in fused.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # biases non-zero, so a lost one shows
    stock = DCGANCritic(16, 1, 4, fused=False).double()
    stock.load_state_dict(fused.state_dict())
    x = torch.randn(3, 1, 16, 16, dtype=torch.float64)

    def per_sample(model, params):
        return torch.func.vmap(torch.func.grad(
            lambda xi: torch.func.functional_call(model, params, (xi[None],)).sum()))(x)

    def penalty(model, params):
        return ((per_sample(model, params).flatten(1).norm(dim=1) - 1) ** 2).mean()

    def mapped(grads):  # fused i+1.bias is stock i.bias (the state_dict hook)
        grads = dict(grads)
        for i in (0, 2):
            grads[f"{i}.bias"] = grads.pop(f"{i + 1}.bias")
        return grads
    pf = {k: v.detach() for k, v in fused.named_parameters()}
    ps = {k: v.detach() for k, v in stock.named_parameters()}
    tol = dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(per_sample(fused, pf), per_sample(stock, ps), **tol)
    torch.testing.assert_close(per_sample(fused, pf),
                               torch.func.grad(lambda x: fused(x).sum())(x), **tol)
    a = mapped(torch.func.grad(lambda p: penalty(fused, p))(pf))
    b = torch.func.grad(lambda p: penalty(stock, p))(ps)
    assert set(a) == set(b)
    for k in b:
        torch.testing.assert_close(a[k], b[k], **tol)
    # per-sample parameter gradients: the bias gradients the backward must not skip under vmap
    a = mapped(torch.func.vmap(torch.func.grad(
        lambda p, xi: torch.func.functional_call(fused, p, (xi[None],)).sum()), in_dims=(None, 0))(pf, x))
    b = torch.func.vmap(torch.func.grad(
        lambda p, xi: torch.func.functional_call(stock, p, (xi[None],)).sum()), in_dims=(None, 0))(ps, x)
    for k in b:
        assert a[k].shape == (3,) + ps[k].shape
        torch.testing.assert_close(a[k], b[k], **tol)


@pytest.mark.parametrize("name", ["bias_leaky_relu", "batch_norm_act", "sample_norm_act"])
def test_a_vmapped_dim_inside_a_contiguous_tensor(backend_device, name):
    # vmap over dim 1 of a contiguous tensor: each slice is strided, and a batched tensor
    # answers no layout query but is_contiguous() (the ops then copy it)
    backend, device = backend_device
    op = {"bias_leaky_relu": lambda x: bias_leaky_relu(x, None, 0.2, backend=backend),
          "batch_norm_act": lambda x: batch_norm_act(x, negative_slope=0.2, backend=backend),
          "sample_norm_act": lambda x: sample_norm_act(x, negative_slope=0.2, backend=backend)}[name]
    x = _randn((4, V, 3, 5, 5), torch.float64, device, seed=8)
    _assert_close(torch.func.vmap(op, in_dims=1)(x), _loop(op, (1,), x), **SUM_TOL[torch.float64])


@pytest.mark.parametrize("name", ["bias_leaky_relu", "batch_norm_act", "batch_norm_act_eval", "sample_norm_act",
                                  "penalty_from_grad", "began_loss"])
def test_jacrev_equals_the_references(backend_device, name):
    # jacrev is vmap over vjp: the cotangents are batched (expanded, stride 0, for a scalar),
    # the saved tensors not; the backward must neither copy a batched tensor in place into
    # an unbatched one nor differentiate through an unbatched saved tensor
    backend, device = backend_device
    x = _randn((3, 4, 2, 3), torch.float64, device, seed=9)
    w, b = _randn((4,), torch.float64, device, 10), _randn((4,), torch.float64, device, 11)
    rm, rv = _randn((4,), torch.float64, device, 12), _randn((4,), torch.float64, device, 13).abs() + 0.5
    k = torch.tensor([0.3], dtype=torch.float64, device=device)
    ops = {
        "bias_leaky_relu": lambda x, be: bias_leaky_relu(x, b, 0.2, backend=be),
        "batch_norm_act": lambda x, be: batch_norm_act(x, w, b, negative_slope=0.2, backend=be),
        "batch_norm_act_eval": lambda x, be: batch_norm_act(x, w, b, rm, rv, use_batch_stats=False,
                                                            negative_slope=0.2, backend=be),
        "sample_norm_act": lambda x, be: sample_norm_act(x, w, b, negative_slope=0.2, backend=be),
        "penalty_from_grad": lambda x, be: penalty_from_grad(x, weight=10.0, backend=be),
        "began_loss": lambda x, be: began_loss(x, x.sin(), x.flip(0), x.cos(), k, backend=be)[0],
    }
    op = ops[name]
    for f in (lambda x, be: op(x, be), lambda x, be: op(x, be).sum()):  # a tensor, a scalar
        got = torch.func.jacrev(lambda x: f(x, backend))(x)
        want = torch.func.jacrev(lambda x: f(x, "reference"))(x)
        torch.testing.assert_close(got, want, **SUM_TOL[torch.float64])
