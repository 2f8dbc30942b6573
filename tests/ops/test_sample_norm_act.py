"""fastgan.ops.sample_norm_act in every backend against the reference
(leaky_relu(group_norm(x, 1, weight, bias)) in plain PyTorch, float64), at every order a
gradient penalty reaches: forward, backward, the backward's own backward (the fused double
backward), and a third order (differentiable formulas).

Tolerances: the statistics are sums over a sample's C*H*W elements in another order, so
float32 agrees to a few ulps of the normalized value; 16-bit outputs to one or two ulps of
their dtype; the per-channel gradients (sums over N*H*W) are judged against their size.
"""
import importlib

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from fastgan.ops import sample_norm_act, sample_norm_act_reference

# the module (fastgan.ops.sample_norm_act is the function, exported by fastgan.ops)
module = importlib.import_module("fastgan.ops.sample_norm_act")

DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]
TOL = {torch.float64: dict(rtol=1e-10, atol=1e-10), torch.float32: dict(rtol=2e-5, atol=2e-5),
       torch.bfloat16: dict(rtol=2e-2, atol=3e-2), torch.float16: dict(rtol=4e-3, atol=6e-3)}
# (shape, layout): 1 and 3 channels, batch 1, odd spatial sizes, a 1 x 1 plane, 2-D, and a
# channels_last tensor with more channels than a vector width.
CASES = [((4, 1, 5, 7), "nchw"), ((3, 3, 9, 11), "nchw"), ((1, 5, 7, 9), "channels_last"),
         ((2, 40, 3, 5), "channels_last"), ((5, 3, 1, 1), "nchw"), ((33, 5), "2d"),
         ((2, 3, 16, 17), "channels_last")]


def _x(shape, layout, dtype, device="cpu", seed=0, offset=0.0, scale=2.0):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * scale + offset).to(dtype).to(device)
    return x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x


def _params(c, device="cpu", seed=1, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    w = (torch.rand(c, generator=gen, dtype=torch.float64) + 0.5).to(dtype).to(device)
    b = (torch.randn(c, generator=gen, dtype=torch.float64) * 0.3).to(dtype).to(device)
    return w, b


def _leaves(*tensors):
    return [None if t is None else t.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
            for t in tensors]


def _close_sums(got, want, dtype):
    """A per-channel gradient (a sum over N*H*W) against the float64 one, judged by its size."""
    rtol = max(TOL[dtype]["rtol"], TOL[torch.float32]["rtol"])
    torch.testing.assert_close(got.double(), want.double(), rtol=0, atol=rtol * (want.abs().max().item() + 1))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,layout", CASES, ids=lambda v: str(v))
def test_forward_and_backward_match_the_reference(backend_device, dtype, shape, layout):
    backend, device = backend_device
    x0 = _x(shape, layout, dtype, device)
    w0, b0 = _params(shape[1], device)
    slope = 0.0 if len(shape) == 4 else 0.2
    dy = _x(shape, layout, dtype, device, seed=3)
    results = []
    for be, cast in ((backend, lambda t: t), ("reference", lambda t: t.double())):
        x, w, b = _leaves(cast(x0), cast(w0), cast(b0))
        out = sample_norm_act(x, w, b, negative_slope=slope, backend=be)
        results.append((out.detach(), torch.autograd.grad(out, (x, w, b), cast(dy))))
    (out, (gx, gw, gb)), (ref, (rgx, rgw, rgb)) = results
    assert out.dtype == dtype and out.stride() == x0.stride()
    torch.testing.assert_close(out, ref.to(dtype), **TOL[dtype])
    assert gx.dtype == dtype and gx.stride() == x0.stride()
    torch.testing.assert_close(gx, rgx.to(dtype), **TOL[dtype])
    assert gw.dtype == w0.dtype and gb.dtype == b0.dtype
    _close_sums(gw, rgw, dtype)
    _close_sums(gb, rgb, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,layout", [((3, 4, 5, 6), "nchw"), ((2, 6, 5, 3), "channels_last"),
                                          ((7, 6), "2d")], ids=lambda v: str(v))
def test_a_penalty_through_the_op_matches_the_reference(backend_device, dtype, shape, layout):
    """A gradient penalty's path: the input gradient built with create_graph=True (the fused
    backward, without per-channel sums), then its backward (the fused double backward) into
    x, the output gradient's source and the weight, against float64 autograd through
    F.group_norm and F.leaky_relu."""
    backend, device = backend_device
    x0 = _x(shape, layout, dtype, device)
    w0, b0 = _params(shape[1], device)
    v0 = _x(shape, layout, dtype, device, seed=4)  # the critic's next layer, a fixed projection
    gg0 = _x(shape, layout, torch.float64, device, seed=5)
    results = []
    for be, cast in ((backend, lambda t: t), ("reference", lambda t: t.double())):
        x, w, b = _leaves(cast(x0), cast(w0), cast(b0))
        v = cast(v0).requires_grad_(True)
        out = sample_norm_act(x, w, b, negative_slope=0.2, backend=be)
        (gx,) = torch.autograd.grad((out * v).sum(), x, create_graph=True)
        penalty = (gx * gg0.to(gx.dtype)).sum()
        results.append(torch.autograd.grad(penalty, (x, v, w, b), allow_unused=True, materialize_grads=True))
    (dx, dv, dw, db), (rdx, rdv, rdw, rdb) = results
    # second derivatives carry the first's rounding: two ulps of the dtype's budget more
    tol = {k: 4 * t for k, t in TOL[dtype].items()}
    scale = rdx.abs().max().item() + 1
    torch.testing.assert_close(dx.double(), rdx, rtol=0, atol=tol["atol"] * scale)
    torch.testing.assert_close(dv.double(), rdv, rtol=0, atol=tol["atol"] * (rdv.abs().max().item() + 1))
    _close_sums(dw, rdw, dtype)
    assert rdw.abs().max() > 0
    assert (db == 0).all() and (rdb == 0).all()  # the bias reaches the penalty only through the mask


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("with_ggx,with_ggw,with_ggb", [(True, False, False), (True, True, True),
                                                        (False, True, False), (False, False, True)],
                         ids=["ggx", "all", "ggw", "ggb"])
def test_the_ops_match_their_formulas(backend_device, layout, with_ggx, with_ggw, with_ggb):
    """The three ops of a backend against the *_math references in float64: the backward
    with and without the per-channel sums, the double backward for each combination of
    incoming gradients (None: zero), weight and bias present or None."""
    backend, device = backend_device
    if backend == "reference":
        pytest.skip("the reference backend has no ops of its own (autograd through the reference)")
    ops = module._ops(backend)
    shape = (3, 5, 4, 3)
    x = _x(shape, layout, torch.float64, device)
    dy = _x(shape, layout, torch.float64, device, seed=2)
    for w, b in (_params(5, device, dtype=torch.float64), (None, None)):
        out, mean, rstd = ops[0](x, w, b, 1e-5, 0.2)
        want = sample_norm_act_reference(x, w, b, 1e-5, 0.2)
        for got, ref in zip((out, mean, rstd), want):
            torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
        for channel_grads in (True, False):
            got = ops[1](dy, out, x, w, mean, rstd, 0.2, channel_grads)
            ref = module.sample_norm_act_backward_math(dy, out, x, w, mean, rstd, 0.2, channel_grads)
            assert got[0].stride() == x.stride()
            assert got[1].shape == got[2].shape == ((5,) if channel_grads else (0,))
            for g, r in zip(got, ref):
                torch.testing.assert_close(g, r, rtol=1e-11, atol=1e-11)
        ggx = _x(shape, layout, torch.float64, device, seed=6) if with_ggx else None
        ggw = torch.randn(5, dtype=torch.float64, device=device) if with_ggw else None
        ggb = torch.randn(5, dtype=torch.float64, device=device) if with_ggb else None
        got = ops[2](ggx, ggw, ggb, dy, out, x, w, mean, rstd, 0.2)
        ref = module.sample_norm_act_double_backward_math(ggx, ggw, ggb, dy, out, x, w, mean, rstd, 0.2)
        assert got[0].stride() == got[1].stride() == x.stride()
        assert got[2].shape == ((5,) if w is not None else (0,))
        for g, r in zip(got, ref):
            torch.testing.assert_close(g, r, rtol=1e-11, atol=1e-11)


def test_large_mean_keeps_the_variance(backend_device):
    # x = 1000 + N(0, 1e-2): a float32 sum of squares (E[x^2] - E[x]^2) loses the variance
    backend, device = backend_device
    x = _x((3, 4, 8, 8), "nchw", torch.float32, device, offset=1000.0, scale=0.1)
    got = sample_norm_act(x, negative_slope=0.2, backend=backend)
    want = sample_norm_act_reference(x.double(), None, None, 1e-5, 0.2)[0]
    torch.testing.assert_close(got.double(), want, rtol=0, atol=2e-2)
    assert want.abs().max() > 1  # normalized: the variance was found


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
def test_gradcheck_and_gradgradcheck_float64(backend_device, layout, affine):
    backend, device = backend_device
    if (backend, device) == ("triton", "cpu") and (layout, affine) != ("channels_last", True):
        # each case is some 50 s of interpreted launches; the Triton ops' exact agreement with
        # the formulas (test_the_ops_match_their_formulas) covers the rest
        pytest.skip("Triton's interpreter: one case of four (channels_last, affine)")
    x = _x((2, 3, 2, 2), layout, torch.float64, device).requires_grad_(True)
    params = tuple(t.requires_grad_(True) for t in _params(3, device, dtype=torch.float64)) if affine else ()

    def f(x, *wb):
        w, b = wb or (None, None)
        return sample_norm_act(x, w, b, negative_slope=0.2, backend=backend)

    assert torch.autograd.gradcheck(f, (x, *params))
    assert torch.autograd.gradgradcheck(f, (x, *params))


def test_a_third_order_is_exact(backend_device):
    """create_graph=True through the fused double backward takes the differentiable
    formulas: a third derivative equals the reference's."""
    backend, device = backend_device
    x0 = _x((2, 3, 3, 2), "nchw", torch.float64, device)
    w0, b0 = _params(3, device, dtype=torch.float64)
    u = _x((2, 3, 3, 2), "nchw", torch.float64, device, seed=7)

    def third(be):
        x, w, b = _leaves(x0, w0, b0)
        out = sample_norm_act(x, w, b, negative_slope=0.2, backend=be)
        (gx,) = torch.autograd.grad((out * u).sum(), x, create_graph=True)
        (ggx,) = torch.autograd.grad((gx * gx).sum(), x, create_graph=True)
        return torch.autograd.grad((ggx * u).sum(), (x, w))

    for got, want in zip(third(backend), third("reference")):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


class _Calls(TorchDispatchMode):
    """The fastgan ops dispatched, with their arguments."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "fastgan":
            self.calls.append((func.__name__.split(".")[0], args))
        return func(*args, **(kwargs or {}))


def test_an_input_gradient_skips_the_per_channel_sums(require_backend):
    """autograd.grad with respect to x alone (a penalty's input gradient) runs the backward
    without grad_weight and grad_bias; a parameter gradient asks for them."""
    require_backend("cpp", "cpu")
    x = _x((3, 4, 5, 5), "nchw", torch.float32).requires_grad_(True)
    w, b = (t.requires_grad_(True) for t in _params(4))
    out = sample_norm_act(x, w, b, backend="cpp")
    with _Calls() as mode:
        torch.autograd.grad(out.sum(), x, retain_graph=True)
    (name, args), = [c for c in mode.calls if c[0] == "sample_norm_act_backward"]
    assert args[-1] is False
    with _Calls() as mode:
        torch.autograd.grad(out.sum(), (x, w))
    (name, args), = [c for c in mode.calls if c[0] == "sample_norm_act_backward"]
    assert args[-1] is True


@pytest.mark.parametrize("kwargs,error,words", [
    (dict(x=torch.ones(4, 3, dtype=torch.int64)), TypeError, "x has dtype torch.int64"),
    (dict(x=torch.ones(4)), ValueError, r"x must be \(N, C, ...\) with elements"),
    (dict(weight=torch.ones(4)), ValueError, r"weight must be a floating \(3,\) tensor.*shape \(4,\)"),
    (dict(bias=[0.0, 0.0, 0.0]), ValueError, r"bias must be a floating \(3,\) tensor.*list"),
    (dict(eps=-1.0), ValueError, "eps must be a finite number >= 0"),
    (dict(negative_slope=float("nan")), ValueError, "negative_slope must be a finite number >= 0"),
])
def test_bad_input_names_the_problem(kwargs, error, words):
    args = dict(x=torch.randn(4, 3)) | kwargs
    x = args.pop("x")
    with pytest.raises(error, match=words):
        sample_norm_act(x, **args)


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_opcheck(require_backend, backend):
    require_backend(backend, "cpu")
    ops = module._ops(backend)
    x = _x((3, 4, 5, 5), "channels_last", torch.float32)
    w, b = _params(4)
    torch.library.opcheck(ops[0], (x, w, b, 1e-5, 0.0))
    out, mean, rstd = ops[0](x, w, b, 1e-5, 0.0)
    dy = torch.ones_like(x)
    torch.library.opcheck(ops[1], (dy, out, x, w, mean, rstd, 0.0, True))
    torch.library.opcheck(ops[2], (torch.ones_like(x), None, w.clone(), dy, out, x, w, mean, rstd, 0.0))


def test_cpp_entry_points_check_their_arguments(require_backend):
    require_backend("cpp", "cpu")
    ops = torch.ops.fastgan
    with pytest.raises(RuntimeError, match="x must be dense"):
        ops.sample_norm_act(torch.ones(4, 6, 3)[:, ::2], None, None, 1e-5, 0.0)
    with pytest.raises(RuntimeError, match="weight must be a contiguous 1-D tensor of 3"):
        ops.sample_norm_act(torch.ones(4, 3), torch.ones(4), None, 1e-5, 0.0)
    x = torch.randn(4, 3, 2, 2)
    out, mean, rstd = ops.sample_norm_act(x, None, None, 1e-5, 0.0)
    with pytest.raises(RuntimeError, match="grad_out must match x"):
        ops.sample_norm_act_backward(torch.ones(4, 3, 2, 2).to(memory_format=torch.channels_last),
                                     out, x, None, mean, rstd, 0.0, True)
    with pytest.raises(RuntimeError, match=r"rstd must be a contiguous \(4,\) Float tensor"):
        ops.sample_norm_act_backward(torch.ones_like(x), out, x, None, mean, rstd.double(), 0.0, True)


def test_torch_func_grad_and_vmap(require_backend):
    """The Functions take torch.func's form: grad through the op, and vmap over a stack of
    batches (each slice its own samples) equals a loop."""
    require_backend("cpp", "cpu")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 3, 5, 5, generator=g, dtype=torch.float64)
    w, b = torch.rand(3, generator=g, dtype=torch.float64) + 0.5, torch.randn(3, generator=g, dtype=torch.float64)

    def loss(be):
        return lambda x, w, b: (sample_norm_act(x, w, b, negative_slope=0.2, backend=be) ** 2).sum()

    for got, want in zip(torch.func.grad(loss("cpp"), argnums=(0, 1, 2))(x[0], w, b),
                         torch.func.grad(loss("reference"), argnums=(0, 1, 2))(x[0], w, b)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    batched = torch.func.vmap(lambda x: sample_norm_act(x, w, b, negative_slope=0.2, backend="cpp"))(x)
    looped = torch.stack([sample_norm_act(s, w, b, negative_slope=0.2, backend="cpp") for s in x])
    torch.testing.assert_close(batched, looped, rtol=0, atol=0)


def test_module_form_equals_group_norm_then_leaky_relu(backend_device):
    """The op is nn.GroupNorm(1, C) + LeakyReLU: the stock modules' output, float32."""
    backend, device = backend_device
    norm = torch.nn.GroupNorm(1, 6).to(device)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.3, 0.3)
    x = _x((4, 6, 5, 7), "nchw", torch.float32, device)
    want = F.leaky_relu(norm(x), 0.1)
    got = sample_norm_act(x, norm.weight, norm.bias, eps=norm.eps, negative_slope=0.1, backend=backend)
    torch.testing.assert_close(got, want, **TOL[torch.float32])
