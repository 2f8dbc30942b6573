"""fastgan.ops.bias_leaky_relu in every backend against the reference, to second order.

The forward and both derivatives are one rounding from exact, like the reference: float32
and float64 results agree to the bit, 16-bit ones to one ulp (Triton's interpreter
truncates its float32 -> 16-bit stores). The bias gradient is a sum over N*H*W,
accumulated in a different order: a few float32 ulps.
"""
import pytest
import torch

import fastgan
from fastgan.ops import bias_leaky_relu, bias_leaky_relu_reference

DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]
EXACT = dict(rtol=0, atol=0)
ULP = {torch.float32: EXACT, torch.float64: EXACT,
       torch.bfloat16: dict(rtol=2 ** -7, atol=1e-30), torch.float16: dict(rtol=2 ** -10, atol=6e-8)}
SUM_TOL = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-5),
           torch.bfloat16: dict(rtol=2e-2, atol=1e-2), torch.float16: dict(rtol=2e-3, atol=1e-3)}


def _tensor(shape, dtype, device, seed, away_from_zero=0.0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    if away_from_zero:  # keep x + bias off the kink, for finite differences
        x = x + away_from_zero * torch.sign(x)
    return x.to(dtype).to(device)


def _case(layout, dtype, device, seed=0):
    """(x, bias) for one layout; bias None where the layout has no channels."""
    if layout == "nchw":
        x = _tensor((3, 5, 7, 9), dtype, device, seed)
    elif layout == "channels_last":
        x = _tensor((3, 5, 7, 9), dtype, device, seed).contiguous(memory_format=torch.channels_last)
    elif layout == "2d":
        x = _tensor((4, 33), dtype, device, seed)
    elif layout == "one_channel":
        x = _tensor((1, 1, 13, 3), dtype, device, seed)
    elif layout == "sliced":  # not dense: copied first
        x = _tensor((3, 10, 4, 5), dtype, device, seed)[:, ::2]
    else:
        raise AssertionError(layout)
    bias = _tensor((x.shape[1],), dtype, device, seed + 1) * 0.5
    return x, bias


def _orders(backend, x, bias, slope, seed=0):
    """y, (dx, db), (d dy of <dx, v>) through the op's autograd."""
    x = x.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
    b = None if bias is None else bias.detach().clone().requires_grad_(True)
    y = bias_leaky_relu(x, b, slope, backend=backend)
    dy = _tensor(y.shape, y.dtype, y.device, seed + 2).requires_grad_(True)
    grads = torch.autograd.grad(y, [x] + ([b] if b is not None else []), grad_outputs=dy,
                                create_graph=True)
    v = _tensor(y.shape, y.dtype, y.device, seed + 3)
    (ddy,) = torch.autograd.grad((grads[0] * v).sum(), dy)
    return y.detach(), [g.detach() for g in grads], ddy


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "2d", "one_channel", "sliced"])
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no_bias"])
def test_matches_reference_to_second_order(fused_backend_device, dtype, layout, with_bias):
    backend, device = fused_backend_device
    x, bias = _case(layout, dtype, device, seed=DTYPES.index(dtype))
    bias = bias if with_bias else None
    y, grads, ddy = _orders(backend, x, bias, 0.2)
    y_ref, grads_ref, ddy_ref = _orders("reference", x, bias, 0.2)
    tol = EXACT if backend != "triton" or dtype in (torch.float32, torch.float64) else ULP[dtype]
    torch.testing.assert_close(y, y_ref, **tol)
    torch.testing.assert_close(grads[0], grads_ref[0], **tol)
    torch.testing.assert_close(ddy, ddy_ref, **tol)
    if with_bias:
        torch.testing.assert_close(grads[1], grads_ref[1], **SUM_TOL[dtype])
    if layout == "channels_last":
        assert y.is_contiguous(memory_format=torch.channels_last)
    assert y.dtype == dtype and y.shape == x.shape


def test_float32_equals_stock_leaky_relu_to_the_bit(backend_device):
    backend, device = backend_device
    x, bias = _case("nchw", torch.float32, device, seed=4)
    expected = torch.nn.functional.leaky_relu(x + bias.view(1, -1, 1, 1), 0.2)
    assert torch.equal(bias_leaky_relu(x, bias, 0.2, backend=backend), expected)


@pytest.mark.filterwarnings("ignore:invalid value encountered in multiply")  # -inf * 0 = NaN
@pytest.mark.parametrize("slope", [0.0, 0.01, 1.5])
def test_slopes_and_specials(backend_device, slope):
    backend, device = backend_device
    x = torch.tensor([[-2.0, -0.0, 0.0, 3.0, float("inf"), -float("inf"), float("nan")]], device=device)
    y = bias_leaky_relu(x, None, slope, backend=backend)
    torch.testing.assert_close(y, bias_leaky_relu_reference(x, None, slope), **EXACT, equal_nan=True)


def test_bias_of_another_dtype_under_autocast_style_use(backend_device):
    # A float32 bias with a bf16 activation (a conv's output under autocast).
    backend, device = backend_device
    x = _tensor((2, 6, 5, 5), torch.bfloat16, device, 5)
    bias = _tensor((6,), torch.float32, device, 6).requires_grad_(True)
    y = bias_leaky_relu(x, bias, 0.2, backend=backend)
    ref = bias_leaky_relu_reference(x, bias, 0.2)
    tol = EXACT if backend != "triton" else ULP[torch.bfloat16]
    torch.testing.assert_close(y, ref, **tol)
    assert y.dtype == torch.bfloat16
    (db,) = torch.autograd.grad(y.float().sum(), bias)
    (db_ref,) = torch.autograd.grad(ref.float().sum(), bias)
    assert db.dtype == torch.float32
    torch.testing.assert_close(db, db_ref, **SUM_TOL[torch.bfloat16])


@pytest.mark.parametrize("dtype, x0, v", [(torch.float16, 2.0 ** -10, 2.0 ** -30),
                                           (torch.float16, 2.0 ** -10, 2.0 ** -25),
                                           (torch.bfloat16, 2.0 ** -120, 2.0 ** -140)], ids=str)
def test_mask_from_output_where_a_positive_sum_rounds_to_zero(backend_device, dtype, x0, v):
    # The documented exception: x + bias = v > 0 in float32 rounds to 0 in x's dtype, so
    # y is 0 in every backend; the reference's mask is v > 0 (dx = dy), the fused
    # backends' y > 0 (dx = slope * dy).
    backend, device = backend_device
    x = torch.tensor([[x0]], dtype=dtype, device=device, requires_grad=True)
    bias = torch.tensor([v - x0], device=device)
    assert (x.detach().float() + bias).item() == v
    y = bias_leaky_relu(x, bias, 0.2, backend=backend)
    (dx,) = torch.autograd.grad(y, x, torch.ones_like(y))
    assert y.item() == 0
    want = 1.0 if backend == "reference" else 0.2
    assert dx.item() == pytest.approx(want, rel=2 ** -7)  # Triton's interpreter truncates bf16


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no_bias"])
def test_gradcheck_and_gradgradcheck_float64(backend_device, with_bias):
    backend, device = backend_device
    x = _tensor((2, 3, 2, 3), torch.float64, device, 7, away_from_zero=0.6).requires_grad_(True)
    bias = (_tensor((3,), torch.float64, device, 8) * 0.1).requires_grad_(True) if with_bias else None

    def f(*args):
        return bias_leaky_relu(args[0], args[1] if len(args) > 1 else None, 0.2, backend=backend)

    inputs = (x, bias) if with_bias else (x,)
    assert torch.autograd.gradcheck(f, inputs)
    assert torch.autograd.gradgradcheck(f, inputs)


def test_second_order_sends_nothing_back_through_the_input(backend_device):
    # The derivative of the mask is zero almost everywhere: the fused op does not
    # materialize it (eager leaky_relu_backward does, and backpropagates the zeros).
    backend, device = backend_device
    if backend == "reference":
        pytest.skip("the reference is eager PyTorch, which does materialize the zeros")
    x = _tensor((2, 3, 4, 4), torch.float32, device, 9).requires_grad_(True)
    y = bias_leaky_relu(x, None, 0.2, backend=backend)
    dy = torch.ones_like(y, requires_grad=True)
    (dx,) = torch.autograd.grad(y, x, grad_outputs=dy, create_graph=True)
    (gx,) = torch.autograd.grad(dx.sum(), x, allow_unused=True)
    assert gx is None


class _CountSums(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the aten.sum calls under it."""

    def __init__(self):
        super().__init__()
        self.sums = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.sums += func.overloadpacket is torch.ops.aten.sum
        return func(*args, **(kwargs or {}))


def test_bias_gradient_only_when_the_backward_uses_it(backend_device):
    # A gradient penalty asks for the input gradient alone: the bias's sum over N*H*W is
    # skipped there, and computed (to the same value) in a backward that reaches the bias.
    backend, device = backend_device
    if backend == "reference":
        pytest.skip("the reference is differentiated by autograd, which decides this itself")
    x, bias = _case("channels_last", torch.float32, device)
    x.requires_grad_(True)
    b = bias.clone().requires_grad_(True)
    y = bias_leaky_relu(x, b, 0.2, backend=backend)
    dy = torch.ones_like(y)
    with _CountSums() as counted:
        (dx_only,) = torch.autograd.grad(y, x, grad_outputs=dy, create_graph=True)
    assert counted.sums == 0
    with _CountSums() as counted:
        dx, db = torch.autograd.grad(y, [x, b], grad_outputs=dy, retain_graph=True)
    assert counted.sums == 1
    torch.testing.assert_close(dx_only.detach(), dx, **EXACT)
    y.backward(dy)
    torch.testing.assert_close(b.grad, db, **EXACT)
    x_ref = x.detach().clone().requires_grad_(True)
    b_ref = bias.clone().requires_grad_(True)
    bias_leaky_relu_reference(x_ref, b_ref, 0.2).backward(dy)
    torch.testing.assert_close(b.grad, b_ref.grad, **SUM_TOL[torch.float32])


def test_module(backend_device):
    backend, device = backend_device
    m = fastgan.nn.BiasLeakyReLU(5, 0.2, backend=backend).to(device)
    assert [n for n, _ in m.named_parameters()] == ["bias"]
    x, _ = _case("nchw", torch.float32, device)
    with torch.no_grad():
        m.bias.copy_(torch.arange(5.0) / 10)
    torch.testing.assert_close(m(x), bias_leaky_relu_reference(x, m.bias.detach(), 0.2), **EXACT)
    plain = fastgan.nn.BiasLeakyReLU(None, backend=backend)
    assert list(plain.parameters()) == []
    torch.testing.assert_close(plain(x), torch.nn.functional.leaky_relu(x, 0.2), **EXACT)


@pytest.mark.parametrize("args,error,words", [
    ((torch.ones(2, 3, dtype=torch.int64), None, 0.2), TypeError, "x has dtype torch.int64"),
    ((torch.ones(2, 3), None, -0.1), ValueError, "negative_slope must be a finite number >= 0"),
    ((torch.ones(2, 3), torch.ones(4), 0.2), ValueError, r"bias must be 1-D with 3 elements"),
    ((torch.ones(3), torch.ones(3), 0.2), ValueError, "a bias needs x with a channel dimension"),
    ((torch.ones(2, 3), torch.ones(3, dtype=torch.int32), 0.2), TypeError, "bias has dtype"),
])
def test_bad_input_names_the_problem(args, error, words):
    with pytest.raises(error, match=words):
        bias_leaky_relu(*args)


def test_module_rejects_bad_arguments():
    with pytest.raises(ValueError, match="channels must be a positive int"):
        fastgan.nn.BiasLeakyReLU(0)
    with pytest.raises(ValueError, match="negative_slope must be >= 0"):
        fastgan.nn.BiasLeakyReLU(3, -0.2)


def test_cpp_entry_points_check_their_arguments(require_backend):
    require_backend("cpp", "cpu")
    ops = torch.ops.fastgan
    with pytest.raises(RuntimeError, match="x must be dense"):
        ops.bias_leaky_relu(torch.ones(4, 6)[:, ::2], None, 0.2)
    with pytest.raises(RuntimeError, match="negative_slope must be a finite number >= 0"):
        ops.bias_leaky_relu(torch.ones(4, 6), None, -1.0)
    with pytest.raises(RuntimeError, match="grad must match out"):
        ops.leaky_relu_backward(torch.ones(6, 4).t(), torch.ones(4, 6), 0.2)


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_opcheck(require_backend, backend):
    require_backend(backend, "cpu")
    suffix = "_triton" if backend == "triton" else ""
    ops = torch.ops.fastgan
    x, bias = _case("channels_last", torch.float32, "cpu")
    torch.library.opcheck(getattr(ops, "bias_leaky_relu" + suffix).default, (x, bias, 0.2))
    torch.library.opcheck(getattr(ops, "bias_leaky_relu" + suffix).default, (x, None, 0.2))
    torch.library.opcheck(getattr(ops, "leaky_relu_backward" + suffix).default, (torch.ones_like(x), x, 0.2))


@pytest.mark.parametrize("backend", ["cpp", "triton", "reference"])
def test_torch_compile_traces_first_order(require_backend, backend):
    require_backend(backend, "cpu")
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, bias=False), fastgan.nn.BiasLeakyReLU(4, backend=backend))
    x = _tensor((2, 3, 6, 6), torch.float32, "cpu", 10)
    compiled = torch.compile(m, backend="aot_eager", fullgraph=True)
    y = compiled(x)
    y.sum().backward()
    assert torch.equal(y, m(x))
    assert m[1].bias.grad is not None and torch.isfinite(m[1].bias.grad).all()
