"""fastgan.ops.sample_norm_act in every backend against the reference
(leaky_relu(group_norm(x, 1, weight, bias)) in plain PyTorch, float64), at every order a
gradient penalty reaches: forward, backward, the backward's own backward (the fused double
backward), and a third order (differentiable formulas).

Tolerances: the statistics are sums over a sample's C*H*W elements in another order, so
float32 agrees to a few ulps of the normalized value; 16-bit outputs to one or two ulps of
their dtype; the per-channel gradients (sums over N*H*W) are judged against their size.
"""
import importlib
import itertools

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
# (shape, layout): 1 and 3 channels, batch 1, odd spatial sizes, a 1 x 1 plane, 2-D, a
# channels_last tensor with more channels than a vector width, and dense tensors whose batch
# dim is not the outermost (samples interleaved in memory: copied for the kernels).
CASES = [((4, 1, 5, 7), "nchw"), ((3, 3, 9, 11), "nchw"), ((1, 5, 7, 9), "channels_last"),
         ((2, 40, 3, 5), "channels_last"), ((5, 3, 1, 1), "nchw"), ((33, 5), "2d"),
         ((2, 3, 16, 17), "channels_last"), ((3, 4, 5, 6), "batch_inner"), ((6, 4), "batch_inner")]


def _x(shape, layout, dtype, device="cpu", seed=0, offset=0.0, scale=2.0):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * scale + offset).to(dtype).to(device)
    if layout == "batch_inner":
        return x.transpose(0, 1).contiguous().transpose(0, 1)
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
    assert out.dtype == gx.dtype == dtype
    if layout != "batch_inner":  # x's strides where x is not copied
        assert out.stride() == gx.stride() == x0.stride()
    torch.testing.assert_close(out, ref.to(dtype), **TOL[dtype])
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


# -- the CUDA kernels on a GPU (csrc/cuda/sample_norm_act.cu) ------------------------------
# The three ops called directly (the CUDA dispatch key) against the *_math oracles on the
# same tensors in the same compute dtype, over shapes that exercise every grid of the
# kernels (planes with several channels a block or several blocks a channel, rows with
# several row slices, 16-byte and scalar units), the critic's own shapes, a misaligned view,
# bitwise repetition, a large mean, a CUDA-graph replay and the autograd wrapper.

sample_norm_act_backward_math = module.sample_norm_act_backward_math
sample_norm_act_double_backward_math = module.sample_norm_act_double_backward_math

CUDA_DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
CUDA_TOL = {torch.float64: 1e-10, torch.float32: 2e-5, torch.bfloat16: 2e-2, torch.float16: 4e-3}
# (shape, layout). nhcw: an (N, H, C, W) tensor permuted to (N, C, H, W): dense, samples
# contiguous, channel stride W (the kernels' general [A][C][B] walk with A = H > 1).
CUDA_CASES = [((4, 1, 5, 7), "nchw"), ((3, 3, 9, 11), "nchw"), ((1, 5, 7, 9), "cl"),
              ((2, 8, 4, 4), "nchw"), ((2, 1024, 2, 3), "nchw"), ((2, 1024, 2, 3), "cl"),
              ((33, 5), "2d"), ((2, 3, 64, 65), "cl"), ((3, 64, 4, 4), "cl"),
              ((2, 16, 8, 8), "nchw"), ((2, 3, 128, 128), "nchw"), ((1, 8, 64, 64), "cl"),
              ((5, 1), "2d"), ((1, 1, 1, 1), "nchw"), ((3, 6, 5, 8), "nhcw"),
              ((2, 3, 64, 40), "nhcw"), ((2, 5, 50, 7), "nhcw"), ((4, 24, 2, 2), "cl"),
              ((2, 12, 16, 16), "nchw"), ((1, 3, 512, 512), "nchw")]
# The WGAN-GP ResNet critic's layers (bf16 under autocast, channels_last) and a few around them.
CUDA_CRITIC = [((64, 128, 32, 32), "cl"), ((64, 128, 16, 16), "cl"), ((64, 256, 8, 8), "cl"),
               ((192, 512, 4, 4), "cl"), ((64, 64, 64, 64), "cl"), ((64, 128, 16, 16), "nchw"),
               ((64, 128, 32, 32), "nchw"), ((64, 512, 4, 4), "nchw"), ((1, 64, 64, 64), "cl")]


def _cuda_need_kernels(require_backend):
    require_backend("cuda", "cuda")
    for name in ("sample_norm_act", "sample_norm_act_backward", "sample_norm_act_double_backward"):
        if not torch._C._dispatch_has_kernel_for_dispatch_key(f"fastgan::{name}", "CUDA"):
            pytest.skip(f"the extension has no CUDA kernel for fastgan::{name}")
    return torch.ops.fastgan


def _cuda_x(shape, layout, dtype, seed, offset=0.0):
    g = torch.Generator().manual_seed(seed)
    if layout == "nhcw":
        n, c, h, w = shape
        x = torch.randn((n, h, c, w), generator=g, dtype=torch.float64) * 2 + offset
        return x.to(dtype).to("cuda").permute(0, 2, 1, 3)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 2 + offset).to(dtype).to("cuda")
    return x.contiguous(memory_format=torch.channels_last) if layout == "cl" else x


def _cuda_like(t, x):
    return torch.empty_like(x).copy_(t)


def _cuda_params(c, dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    w = (torch.rand(c, generator=g, dtype=torch.float64) + 0.5).to(dtype).to("cuda")
    b = (torch.randn(c, generator=g, dtype=torch.float64) * 0.3).to(dtype).to("cuda")
    return w, b


def _cuda_t(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _cuda_close(got, want, dtype, what):
    """got within the dtype's tolerance of want, relative to want's largest magnitude."""
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    g, w = got.double(), want.double()
    assert torch.isfinite(g).all() or not torch.isfinite(w).all(), f"{what}: non-finite values"
    scale = w.abs().max().item() + 1.0
    err = (g - w).abs().max().item()
    assert err <= CUDA_TOL[dtype] * scale, f"{what}: max error {err} (scale {scale})"


def _cuda_close_sums(got, want, dtype, what):
    """A per-channel sum (over N*H*W terms, in another order than the oracle's) judged by its
    size: 4 x the dtype's tolerance of the largest sum (or of the mean |sum| x C / 50)."""
    assert got.shape == want.shape and got.dtype == want.dtype, what
    if not want.numel():
        return
    w = want.double()
    scale = max(w.abs().max().item(), w.abs().sum().item() / 50) + 1.0
    err = (got.double() - w).abs().max().item()
    assert err <= 4 * CUDA_TOL[dtype] * scale, f"{what}: max error {err} (scale {scale})"


def _cuda_check_all_orders(ops, x, weights, slope, seed=3):
    """The three ops on x against the oracles, for each (weight, bias) pair of weights and
    every combination of the optional arguments."""
    dtype, t = x.dtype, _cuda_t(x.dtype)
    c = x.shape[1]
    for ww, bb in weights:
        out, mean, rstd = ops.sample_norm_act(x, ww, bb, 1e-5, slope)
        r_out, r_mean, r_rstd = sample_norm_act_reference(x, ww, bb, 1e-5, slope)
        assert out.dtype == dtype and out.stride() == x.stride()
        assert mean.dtype == t and rstd.dtype == t and mean.shape == (x.shape[0],)
        _cuda_close(out, r_out, dtype, "out")
        _cuda_close(mean, r_mean, t, "mean")
        _cuda_close(rstd, r_rstd, t, "rstd")
        go = _cuda_like(_cuda_x(tuple(x.shape), "nchw", dtype, seed), x)
        for cg in (True, False):
            gx, gw, gb = ops.sample_norm_act_backward(go, out, x, ww, mean, rstd, slope, cg)
            rx, rw, rb = sample_norm_act_backward_math(go, out, x, ww, mean, rstd, slope, cg)
            assert gx.dtype == dtype and gx.stride() == x.stride()
            assert gw.dtype == t and gb.dtype == t and gw.shape == ((c,) if cg else (0,)) == gb.shape
            _cuda_close(gx, rx, dtype, f"grad_x channel_grads={cg}")
            if cg:
                _cuda_close_sums(gw, rw, t, "grad_weight")
                _cuda_close_sums(gb, rb, t, "grad_bias")
        ggx_full = _cuda_like(_cuda_x(tuple(x.shape), "nchw", dtype, seed + 2), x)
        ggw_full, ggb_full = _cuda_params(c, t, seed=seed + 4)
        for has_x, has_w, has_b in itertools.product((True, False), repeat=3):
            ggx = ggx_full if has_x else None
            ggw = ggw_full if has_w else None
            ggb = ggb_full if has_b else None
            d_go, d_x, d_w = ops.sample_norm_act_double_backward(ggx, ggw, ggb, go, out, x, ww, mean,
                                                                 rstd, slope)
            r_go, r_x, r_w = sample_norm_act_double_backward_math(ggx, ggw, ggb, go, out, x, ww, mean,
                                                                  rstd, slope)
            tag = f"ggx={has_x} ggw={has_w} ggb={has_b} weight={ww is not None}"
            assert d_go.stride() == x.stride() and d_x.stride() == x.stride()
            assert d_go.dtype == dtype and d_x.dtype == dtype
            _cuda_close(d_go, r_go, dtype, "d_grad_out " + tag)
            _cuda_close(d_x, r_x, dtype, "d_x " + tag)
            assert d_w.dtype == t and d_w.shape == r_w.shape, tag
            _cuda_close_sums(d_w, r_w, t, "d_weight " + tag)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", CUDA_DTYPES, ids=str)
@pytest.mark.parametrize("shape,layout", CUDA_CASES, ids=str)
def test_cuda_kernels_match_the_oracles(require_backend, shape, layout, dtype):
    ops = _cuda_need_kernels(require_backend)
    x = _cuda_x(shape, layout, dtype, 0)
    w, b = _cuda_params(shape[1], _cuda_t(dtype))
    slope = 0.2 if len(shape) == 2 or shape[1] % 2 else 0.0
    # T parameters, none, and a bf16 weight without bias (any floating dtype is read as T)
    _cuda_check_all_orders(ops, x, [(w, b), (None, None), (w.to(torch.bfloat16), None)], slope)


@pytest.mark.gpu
@pytest.mark.parametrize("shape,layout", CUDA_CRITIC, ids=str)
def test_cuda_kernels_at_the_critic_shapes(require_backend, shape, layout):
    ops = _cuda_need_kernels(require_backend)
    x = _cuda_x(shape, layout, torch.bfloat16, 0)
    _cuda_check_all_orders(ops, x, [_cuda_params(shape[1], torch.float32)], 0.0)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("layout", ["nchw", "cl"])
def test_cuda_kernels_on_a_misaligned_view(require_backend, dtype, layout):
    # x starts one element into its storage: every walk takes single elements
    ops = _cuda_need_kernels(require_backend)
    shape = (3, 16, 8, 8)
    n = torch.Size(shape).numel()
    base = torch.randn(n + 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    base = base.to(dtype).to("cuda")
    if layout == "nchw":
        x = base[1:].view(shape)
    else:
        x = base[1:].view(3, 8, 8, 16).permute(0, 3, 1, 2)
        assert x.is_contiguous(memory_format=torch.channels_last)
    assert x.data_ptr() % 16 != 0
    _cuda_check_all_orders(ops, x, [_cuda_params(16, torch.float32)], 0.2)


@pytest.mark.gpu
@pytest.mark.parametrize("shape,layout", [((8, 32, 16, 16), "cl"), ((8, 32, 16, 16), "nchw"),
                                          ((1, 3, 256, 256), "nchw"), ((4, 8, 64, 64), "cl")],
                         ids=str)
def test_cuda_kernels_repeat_bit_for_bit(require_backend, shape, layout):
    ops = _cuda_need_kernels(require_backend)
    x = _cuda_x(shape, layout, torch.float32, 0)
    w, b = _cuda_params(shape[1], torch.float32)
    go = _cuda_like(_cuda_x(shape, "nchw", torch.float32, 3), x)
    ggx = _cuda_like(_cuda_x(shape, "nchw", torch.float32, 5), x)
    ggw, ggb = _cuda_params(shape[1], torch.float32, seed=9)

    def run():
        out, mean, rstd = ops.sample_norm_act(x, w, b, 1e-5, 0.0)
        bw = ops.sample_norm_act_backward(go, out, x, w, mean, rstd, 0.0, True)
        dbw = ops.sample_norm_act_double_backward(ggx, ggw, ggb, go, out, x, w, mean, rstd, 0.0)
        return (out, mean, rstd) + tuple(bw) + tuple(dbw)

    first = run()
    for _ in range(3):
        for a, b_ in zip(first, run()):
            assert torch.equal(a, b_)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_cuda_kernels_keep_the_variance_of_a_large_mean(require_backend, dtype):
    ops = _cuda_need_kernels(require_backend)
    x = _cuda_x((4, 3, 32, 32), "nchw", dtype, 0, offset=1000.0)
    _, mean, rstd = ops.sample_norm_act(x, None, None, 1e-5, 0.0)
    _, r_mean, r_rstd = sample_norm_act_reference(x.double(), None, None, 1e-5, 0.0)
    torch.testing.assert_close(rstd.double(), r_rstd, rtol=1e-4, atol=0)
    torch.testing.assert_close(mean.double(), r_mean, rtol=1e-6, atol=0)


@pytest.mark.gpu
def test_cuda_kernels_replay_in_a_cuda_graph(require_backend):
    ops = _cuda_need_kernels(require_backend)
    shape = (16, 64, 8, 8)
    x = _cuda_x(shape, "cl", torch.bfloat16, 0)
    w, b = _cuda_params(64, torch.float32)
    go = _cuda_like(_cuda_x(shape, "nchw", torch.bfloat16, 3), x)
    ggx = _cuda_like(_cuda_x(shape, "nchw", torch.bfloat16, 5), x)
    ggw, ggb = _cuda_params(64, torch.float32, seed=9)

    def run():
        out, mean, rstd = ops.sample_norm_act(x, w, b, 1e-5, 0.0)
        gx, gw, gb = ops.sample_norm_act_backward(go, out, x, w, mean, rstd, 0.0, True)
        gx2, _, _ = ops.sample_norm_act_backward(go, out, x, w, mean, rstd, 0.0, False)
        dbw = ops.sample_norm_act_double_backward(ggx, ggw, ggb, go, out, x, w, mean, rstd, 0.0)
        dbw2 = ops.sample_norm_act_double_backward(ggx, None, None, go, out, x, None, mean, rstd, 0.0)
        return (out, mean, rstd, gx, gw, gb, gx2) + tuple(dbw) + tuple(dbw2)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        eager = run()  # warm-up off the default stream, as torch.cuda.graphs asks
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = run()
    x.copy_(_cuda_x(shape, "cl", torch.bfloat16, 11))  # new data, then a replay
    graph.replay()
    torch.cuda.synchronize()
    fresh = run()
    for a, b_ in zip(captured, fresh):
        assert torch.equal(a, b_)
    assert not torch.equal(captured[0], eager[0])


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,layout", [(torch.float64, "nchw"), (torch.float64, "cl"),
                                          (torch.float32, "cl"), (torch.bfloat16, "cl")], ids=str)
def test_cuda_kernels_through_autograd_match_the_reference_backend(require_backend, dtype, layout):
    # a gradient penalty's pattern: the input gradient with create_graph (backward without
    # channel grads), then the backward of a loss on it and on the output (double backward,
    # and the backward with channel grads)
    _cuda_need_kernels(require_backend)
    shape = (4, 16, 8, 8)
    t = _cuda_t(dtype)
    grads = {}
    for backend in ("cuda", "reference"):
        x = _cuda_x(shape, layout, dtype, 0).requires_grad_(True)
        w, b = (p.detach().clone().requires_grad_(True) for p in _cuda_params(16, t))
        dy = _cuda_like(_cuda_x(shape, "nchw", dtype, 3), x)
        out = sample_norm_act(x, w, b, negative_slope=0.2, backend=backend)
        (gx,) = torch.autograd.grad(out, x, dy, create_graph=True)
        loss = (gx.to(t) ** 2).sum() + (out.to(t) * dy.to(t)).sum()
        grads[backend] = [out.detach(), gx.detach()] + list(torch.autograd.grad(loss, (x, w, b)))
    for name, got, want in zip(("out", "grad_x", "d_x", "d_weight", "d_bias"), grads["cuda"],
                               grads["reference"]):
        scale = want.double().abs().max().item() + 1.0
        tol = CUDA_TOL[dtype]
        if name in ("d_weight", "d_bias"):  # sums over N*H*W
            scale = max(scale, want.double().abs().sum().item() / 50)
            tol = 4 * max(tol, CUDA_TOL[t])
        err = (got.double() - want.double()).abs().max().item()
        assert err <= tol * scale, f"{name}: max error {err} (scale {scale})"
