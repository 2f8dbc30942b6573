"""fastgan.ops.batch_norm_act in every backend against the reference (BatchNorm's
arithmetic in plain PyTorch + leaky_relu), forward, running statistics and backward.

Tolerances: the statistics are sums over N*H*W in another order, so float32 agrees to a
few ulps of the normalized value; 16-bit outputs to one or two ulps of their dtype.
"""
import pytest
import torch

from fastgan.ops import batch_norm_act, batch_norm_act_reference

DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]
TOL = {torch.float64: dict(rtol=1e-10, atol=1e-10), torch.float32: dict(rtol=1e-5, atol=1e-5),
       torch.bfloat16: dict(rtol=2e-2, atol=2e-2), torch.float16: dict(rtol=4e-3, atol=4e-3)}
# (shape, layout): channel counts 1, 3, 5, 1024; batch 1; odd spatial sizes; 2-D.
CASES = [((4, 1, 5, 7), "nchw"), ((3, 3, 9, 11), "nchw"), ((1, 5, 7, 9), "channels_last"),
         ((2, 1024, 2, 3), "nchw"), ((2, 1024, 2, 3), "channels_last"), ((33, 5), "2d"),
         ((2, 3, 64, 65), "channels_last")]


def _x(shape, layout, dtype, device, seed=0, offset=0.0):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * 2 + offset).to(dtype).to(device)
    return x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x


def _params(c, device, seed=1):
    gen = torch.Generator().manual_seed(seed)
    w = (torch.rand(c, generator=gen) + 0.5).to(device)
    b = (torch.randn(c, generator=gen) * 0.3).to(device)
    rm = (torch.randn(c, generator=gen) * 0.1).to(device)
    rv = (torch.rand(c, generator=gen) + 0.5).to(device)
    return w, b, rm, rv


def _run(backend, x, w, b, rm, rv, use_batch_stats, slope, dy):
    x = x.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
    w = w.detach().clone().requires_grad_(True) if w is not None else None
    b = b.detach().clone().requires_grad_(True) if b is not None else None
    rm = rm.clone() if rm is not None else None
    rv = rv.clone() if rv is not None else None
    out = batch_norm_act(x, w, b, rm, rv, use_batch_stats=use_batch_stats, momentum=0.1, eps=1e-5,
                         negative_slope=slope, backend=backend)
    inputs = [x] + [t for t in (w, b) if t is not None]
    grads = torch.autograd.grad(out, inputs, grad_outputs=dy)
    return out.detach(), grads, rm, rv


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,layout", CASES, ids=lambda v: str(v))
@pytest.mark.parametrize("use_batch_stats", [True, False], ids=["train", "eval"])
def test_matches_reference(backend_device, dtype, shape, layout, use_batch_stats):
    backend, device = backend_device
    x = _x(shape, layout, dtype, device)
    w, b, rm, rv = _params(shape[1], device)
    slope = 0.0 if len(shape) == 4 else 0.2
    dy = _x(shape, layout, dtype, device, seed=3)
    got = _run(backend, x, w, b, rm, rv, use_batch_stats, slope, dy)
    ref = _run("reference", x.double(), w.double(), b.double(), rm.double(), rv.double(),
               use_batch_stats, slope, dy.double())
    torch.testing.assert_close(got[0], ref[0].to(dtype), **TOL[dtype])
    assert got[0].dtype == dtype and got[0].stride() == x.stride()
    torch.testing.assert_close(got[2], ref[2].float(), rtol=1e-5, atol=1e-6)  # running stats
    torch.testing.assert_close(got[3], ref[3].float(), rtol=1e-5, atol=1e-6)
    # Gradients: x in its dtype; weight and bias (float32 parameters) are sums over N*H*W,
    # judged against their size.
    torch.testing.assert_close(got[1][0], ref[1][0].to(dtype), **TOL[dtype])
    rtol = max(TOL[dtype]["rtol"], TOL[torch.float32]["rtol"])
    for g, r in zip(got[1][1:], ref[1][1:]):
        torch.testing.assert_close(g.double(), r, rtol=0, atol=rtol * (r.abs().max().item() + 1))


def test_without_affine_or_running_stats(backend_device):
    backend, device = backend_device
    x = _x((3, 4, 5, 5), "nchw", torch.float32, device)
    dy = _x((3, 4, 5, 5), "nchw", torch.float32, device, seed=4)
    got = _run(backend, x, None, None, None, None, True, 0.2, dy)
    ref = _run("reference", x.double(), None, None, None, None, True, 0.2, dy.double())
    torch.testing.assert_close(got[0], ref[0].float(), **TOL[torch.float32])
    torch.testing.assert_close(got[1][0], ref[1][0].float(), **TOL[torch.float32])


def test_large_mean_keeps_the_variance(backend_device):
    # x = 1000 + N(0, 4): a naive float32 sum of squares loses the variance entirely.
    backend, device = backend_device
    x = _x((8, 3, 16, 16), "nchw", torch.float32, device, offset=1000.0)
    rm, rv = torch.zeros(3, device=device), torch.ones(3, device=device)
    batch_norm_act(x, None, None, rm, rv, momentum=1.0, backend=backend)
    n = x.numel() // 3
    want = x.double().transpose(0, 1).reshape(3, -1).var(dim=1) * 1.0  # unbiased
    torch.testing.assert_close(rv.double(), want, rtol=1e-4, atol=0)
    assert n > 1


# Triton's interpreter (numpy) warns of the inf and inf * 0 in the branch tl.where leaves unused
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_a_channel_past_the_square_root_of_float32s_max(backend_device):
    # a constant channel of 2e19: (mean difference)^2 overflows float32 when partial
    # statistics merge, and Triton's merge multiplied that inf by an empty side's count of 0
    backend, device = backend_device
    x = _x((2, 3, 4, 4), "nchw", torch.float32, device)
    x[:, 0] = 2e19
    out = {}
    for be in (backend, "reference"):
        rm, rv = torch.zeros(3, device=device), torch.ones(3, device=device)
        y = batch_norm_act(x, None, None, rm, rv, backend=be)
        out[be] = (y, rm, rv)
    y, rm, rv = out[backend]
    assert not y.isnan().any() and not rv.isnan().any()
    torch.testing.assert_close(rv, out["reference"][2], rtol=1e-6, atol=0)


def test_the_unbiased_running_variance_rounds_as_torchs(backend_device):
    # integers: the batch variance is exact; the running update is var * round(n / (n - 1)),
    # the factor rounded once, in every backend (Triton divided var * n by n - 1: 1 ulp off)
    backend, device = backend_device
    x = torch.randint(-8, 9, (2, 6, 2, 2), generator=torch.Generator().manual_seed(5)).float().to(device)
    rm, rv = torch.zeros(6, device=device), torch.zeros(6, device=device)
    batch_norm_act(x, None, None, rm, rv, momentum=1.0, backend=backend)
    var = x.transpose(0, 1).reshape(6, -1).var(dim=1, correction=0)
    assert torch.equal(rv, var * torch.tensor(8 / 7, dtype=torch.float32))


def test_a_nan_in_a_channel_reaches_its_statistics(backend_device):
    # NaN propagates into the channel's mean, invstd and running statistics as the
    # reference's torch.var_mean does (a clamp of the variance at 0 made it 0 on the CPU:
    # invstd 1/sqrt(eps), running_var decaying towards 0, silently)
    backend, device = backend_device
    x = _x((4, 3, 5, 5), "nchw", torch.float32, device)
    x[1, 0, 2, 3] = float("nan")
    got, want = [], []
    for be, out in ((backend, got), ("reference", want)):
        rm, rv = torch.zeros(3, device=device), torch.ones(3, device=device)
        y = batch_norm_act(x, None, None, rm, rv, momentum=0.5, backend=be)
        out += [y[:, 0].isnan().all(), rm.isnan(), rv.isnan()]
    assert got[0] and want[0]
    assert torch.equal(got[1], want[1]) and torch.equal(got[2], want[2])
    assert got[2].tolist() == [True, False, False]


@pytest.mark.parametrize("use_batch_stats", [True, False], ids=["train", "eval"])
def test_gradcheck_float64(backend_device, use_batch_stats):
    backend, device = backend_device
    x = _x((3, 2, 3, 2), "nchw", torch.float64, device).requires_grad_(True)
    w, b, rm, rv = (t.double() for t in _params(2, device))
    w.requires_grad_(True)
    b.requires_grad_(True)

    def f(x, w, b):  # no running-stat update inside gradcheck's repeated calls
        return batch_norm_act(x, w, b, None if use_batch_stats else rm, None if use_batch_stats else rv,
                              use_batch_stats=use_batch_stats, negative_slope=0.2, backend=backend)

    assert torch.autograd.gradcheck(f, (x, w, b))


@pytest.mark.parametrize("use_batch_stats", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
def test_gradgradcheck_float64(backend_device, use_batch_stats, affine):
    """A backward that builds a graph (a gradient penalty's) is differentiable: exact second
    derivatives in x, weight, bias and the output gradient."""
    backend, device = backend_device
    x = _x((3, 2, 3, 2), "nchw", torch.float64, device).requires_grad_(True)
    w, b, rm, rv = (t.double() for t in _params(2, device))
    params = (w.requires_grad_(True), b.requires_grad_(True)) if affine else ()

    def f(x, *wb):
        w, b = wb or (None, None)
        return batch_norm_act(x, w, b, None if use_batch_stats else rm, None if use_batch_stats else rv,
                              use_batch_stats=use_batch_stats, negative_slope=0.2, backend=backend)

    assert torch.autograd.gradgradcheck(f, (x, *params))


@pytest.mark.parametrize("use_batch_stats", [True, False], ids=["train", "eval"])
def test_a_backward_that_builds_a_graph_gives_the_same_gradients(backend_device, use_batch_stats):
    """create_graph=True takes the differentiable backward: its gradients equal the fused
    backward's to float64 rounding (slope 0.2 is no float32 number)."""
    backend, device = backend_device
    x0 = _x((4, 3, 5, 6), "nchw", torch.float64, device)
    w0, b0, rm, rv = (t.double() for t in _params(3, device))
    dy = _x((4, 3, 5, 6), "nchw", torch.float64, device, seed=5)

    def grads(create_graph):
        x, w, b = (t.clone().requires_grad_(True) for t in (x0, w0, b0))
        out = batch_norm_act(x, w, b, rm.clone(), rv.clone(), use_batch_stats=use_batch_stats,
                             negative_slope=0.2, backend=backend)
        return torch.autograd.grad(out, (x, w, b), dy, create_graph=create_graph)

    for got, want in zip(grads(True), grads(False)):
        torch.testing.assert_close(got.detach(), want, rtol=1e-13, atol=1e-13)


def test_a_penalty_through_the_fused_op_matches_the_reference(backend_device):
    """An R1-style penalty whose critic ends in the op and a mean: the output gradient needs
    no grad, and the fused backward alone would drop the penalty's path through the op."""
    backend, device = backend_device
    x0 = _x((4, 3, 5, 6), "nchw", torch.float64, device)
    w0, b0, _, _ = (t.double() for t in _params(3, device))

    def grads(be):
        x = x0.clone().requires_grad_(True)
        w, b = w0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
        out = batch_norm_act(x, w, b, negative_slope=0.2, backend=be).mean((1, 2, 3))
        (gx,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        penalty = gx.pow(2).flatten(1).sum(1).mean()
        return torch.autograd.grad(penalty, (w, b), allow_unused=True, materialize_grads=True)

    (gw, gb), (want_w, want_b) = grads(backend), grads("reference")
    assert gw.abs().max() > 0  # (the bias reaches the penalty only through the mask: 0)
    torch.testing.assert_close(gw, want_w, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(gb, want_b, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("kwargs,error,words", [
    (dict(x=torch.ones(4, 3, dtype=torch.int64)), TypeError, "x has dtype torch.int64"),
    (dict(x=torch.ones(1, 3)), ValueError, "more than one value per channel"),
    (dict(weight=torch.ones(4)), ValueError, r"weight must be a floating \(3,\) tensor"),
    (dict(running_mean=torch.zeros(3)), ValueError, "come together"),
    (dict(use_batch_stats=False), ValueError, "running statistics are needed"),
    (dict(momentum=1.5), ValueError, r"momentum must be in \[0, 1\]"),
    (dict(negative_slope=-1.0), ValueError, "negative_slope must be a finite number >= 0"),
])
def test_bad_input_names_the_problem(kwargs, error, words):
    args = dict(x=torch.randn(4, 3)) | kwargs
    x = args.pop("x")
    with pytest.raises(error, match=words):
        batch_norm_act(x, **args)


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_opcheck(require_backend, backend):
    require_backend(backend, "cpu")
    suffix = "_triton" if backend == "triton" else ""
    ops = torch.ops.fastgan
    x = _x((3, 4, 5, 5), "channels_last", torch.float32, "cpu")
    w, b, rm, rv = _params(4, "cpu")
    torch.library.opcheck(getattr(ops, "batch_norm_act" + suffix).default,
                          (x, w, b, rm, rv, True, 0.1, 1e-5, 0.0))
    out, mean, invstd = getattr(ops, "batch_norm_act" + suffix)(x, w, b, None, None, True, 0.1, 1e-5, 0.0)
    torch.library.opcheck(getattr(ops, "batch_norm_act_backward" + suffix).default,
                          (torch.ones_like(x), out, x, w, mean, invstd, True, 0.0))


def test_cpp_entry_points_check_their_arguments(require_backend):
    require_backend("cpp", "cpu")
    ops = torch.ops.fastgan
    with pytest.raises(RuntimeError, match="x must be dense"):
        ops.batch_norm_act(torch.ones(4, 6, 3)[:, ::2], None, None, None, None, True, 0.1, 1e-5, 0.0)
    with pytest.raises(RuntimeError, match="running_mean and running_var come together"):
        ops.batch_norm_act(torch.ones(4, 3), None, None, torch.zeros(3), None, True, 0.1, 1e-5, 0.0)


def test_strided_parameters_and_running_stats(backend_device):
    # weight/bias as columns of one (C, 2) tensor, running stats as every other element: the
    # fused backends get contiguous copies; gradients reach the originals and the caller's
    # running stats are updated, as with the reference.
    backend, device = backend_device
    x = _x((4, 3, 5, 5), "nchw", torch.float32, device)
    w, b, rm, rv = _params(3, device)
    dy = _x((4, 3, 5, 5), "nchw", torch.float32, device, seed=3)
    results = []
    for be in (backend, "reference"):
        packed = torch.stack([w, b], dim=1).requires_grad_(True)
        stats = torch.stack([rm, torch.zeros_like(rm), rv, torch.zeros_like(rv)], dim=1).reshape(-1)
        srm, srv = stats[0::4], stats[2::4]
        assert not srm.is_contiguous() and not packed[:, 0].is_contiguous()
        out = batch_norm_act(x, packed[:, 0], packed[:, 1], srm, srv, momentum=0.1,
                             negative_slope=0.2, backend=be)
        grad, = torch.autograd.grad(out, packed, grad_outputs=dy)
        results.append((out, grad, stats))
    (out, grad, stats), (ref_out, ref_grad, ref_stats) = results
    torch.testing.assert_close(out, ref_out, **TOL[torch.float32])
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(stats, ref_stats, rtol=1e-5, atol=1e-6)
    assert not torch.equal(stats[0::4], rm) and not torch.equal(stats[2::4], rv)  # updated
    assert (stats[1::2] == 0).all()  # the elements between untouched


@pytest.mark.parametrize("momentum", [None, "0.1"])
def test_momentum_must_be_a_number(momentum):
    x, rm, rv = torch.randn(4, 3), torch.zeros(3), torch.ones(3)
    with pytest.raises(TypeError, match="momentum must be a number in \\[0, 1\\].*num_batches_tracked"):
        batch_norm_act(x, None, None, rm, rv, momentum=momentum)
    assert torch.equal(rm, torch.zeros(3)) and torch.equal(rv, torch.ones(3))


def test_mask_from_output_where_a_positive_value_rounds_to_zero(backend_device):
    # The documented exception of the fused backward: with weight 0 the normalized value
    # is the float32 bias, 2**-30 > 0, which rounds to 0 in float16. The reference's mask
    # is v > 0 (gradient dy); the fused backends' is y > 0 (gradient slope * dy).
    backend, device = backend_device
    x = torch.tensor([1.0, -1.0, 0.5], dtype=torch.float16, device=device).reshape(3, 1)
    w = torch.zeros(1, device=device, requires_grad=True)
    b = torch.full((1,), 2.0 ** -30, device=device, requires_grad=True)
    y = batch_norm_act(x, w, b, negative_slope=0.2, backend=backend)
    gb, = torch.autograd.grad(y.sum(), b)
    assert (y == 0).all()
    want = 3.0 if backend == "reference" else 3 * 0.2
    torch.testing.assert_close(gb, torch.full((1,), want, device=device))


def test_torch_func_grad_through_the_fused_op(require_backend):
    # the autograd Function is written with setup_context, the form torch.func transforms take
    require_backend("cpp", "cpu")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64)
    w, b = torch.rand(3, generator=g, dtype=torch.float64) + 0.5, torch.randn(3, generator=g, dtype=torch.float64)

    def grads(be):
        f = lambda x, w, b: (batch_norm_act(x, w, b, use_batch_stats=True, backend=be) ** 2).sum()  # noqa: E731
        return torch.func.grad(f, argnums=(0, 1, 2))(x, w, b)
    for a, r in zip(grads("cpp"), grads("reference")):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12)
