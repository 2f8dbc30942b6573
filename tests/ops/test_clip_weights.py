"""fastgan.ops.clip_weights_ in every backend against the reference (one clamp_ per tensor).

Tolerance is zero in every dtype: the op only selects (each output is the input or a
bound rounded to the dtype, as torch.clamp_ rounds it), so any difference is a bug.
"""
import math
import zlib

import pytest
import torch

import fastgan
from fastgan.ops import clip_weights_, clip_weights_reference

DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]
C = 0.01  # WGAN's clip (Arjovsky et al. 2017)


def _values(shape, dtype, device, gen):
    # Spread so about a third is inside [-C, C]; never all zeros.
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * 0.02
    return x.to(dtype).to(device)


def _with_specials(t):
    flat = t.view(-1) if t.is_contiguous() else None
    if flat is not None and flat.numel() >= 6:
        flat[:6] = torch.tensor([math.nan, math.inf, -math.inf, 0.0, -0.0, C], dtype=t.dtype)
    return t


def _case(name, dtype, device):
    gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))  # hash() differs per process
    if name == "one_element":
        shapes = [(1,)]
    elif name == "odd_65537":
        shapes = [(65537,)]
    elif name == "300_tensors":
        sizes = torch.randint(1, 3000, (300,), generator=gen).tolist()
        shapes = [(n,) for n in sizes]
    elif name == "conv_shapes":  # DCGAN-like weights, biases, BatchNorm affines, odd sizes
        shapes = [(64, 3, 4, 4), (64,), (128, 64, 4, 4), (128,), (128,), (1, 5, 3, 3), (3,), (7, 113)]
    else:
        raise AssertionError(name)
    return [_with_specials(_values(s, dtype, device, gen)) for s in shapes]


def _assert_same(actual, expected):
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert a.dtype == e.dtype and a.shape == e.shape, i
        torch.testing.assert_close(a, e, rtol=0, atol=0, equal_nan=True, msg=lambda m: f"tensors[{i}]: {m}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", ["one_element", "odd_65537", "300_tensors", "conv_shapes"])
def test_matches_reference(fused_backend_device, case, dtype):
    backend, device = fused_backend_device
    tensors = _case(case, dtype, device)
    before = [t.clone() for t in tensors]
    expected = [t.clone() for t in tensors]
    clip_weights_reference(expected, C)
    clip_weights_(tensors, C, backend=backend)
    _assert_same(tensors, expected)
    # The clip did something: finite values outside the bound existed, and each is now at it
    outside = [(b.abs() > C) & b.isfinite() for b in before]
    assert sum(int(o.sum()) for o in outside) > 0
    assert all((t[o].abs() == C).all() for t, o in zip(tensors, outside))


def test_mixed_dtypes_and_layouts_in_one_call(backend_device):
    backend, device = backend_device
    gen = torch.Generator().manual_seed(0)
    base = [
        _values((33, 17), torch.float32, device, gen),
        _values((5, 3, 7, 9), torch.bfloat16, device, gen).to(memory_format=torch.channels_last),
        _values((9, 11), torch.float16, device, gen)[:, ::2],          # strided view
        _values((13, 6), torch.float64, device, gen).t(),               # transposed, dense
        _values((0, 4), torch.float32, device, gen),                    # empty
        _values((4097,), torch.bfloat16, device, gen),
        _values((2, 3, 4), torch.float32, device, gen).permute(2, 0, 1),
    ]
    expected = [t.clone(memory_format=torch.preserve_format) for t in base]
    clip_weights_reference(expected, C)
    views = list(base)
    clip_weights_(views, C, backend=backend)
    _assert_same(views, expected)


def test_strided_view_clips_only_its_elements(backend_device):
    backend, device = backend_device
    storage = torch.full((6, 8), 5.0, device=device)
    view = storage[:, 1::3]
    clip_weights_([view], 1.0, backend=backend)
    assert (view == 1.0).all()
    untouched = torch.ones_like(storage, dtype=torch.bool)
    untouched[:, 1::3] = False
    assert (storage[untouched] == 5.0).all()


@pytest.mark.parametrize("c", [0.0, 0.5, 3.0, 1e30])
def test_bound_values(backend_device, c):
    backend, device = backend_device
    t = torch.linspace(-4, 4, 1001, device=device)
    expected = t.clone().clamp_(-c, c)
    clip_weights_(t, c, backend=backend)  # a lone tensor is accepted
    _assert_same([t], [expected])


def test_a_bound_of_minus_zero_is_zero(backend_device):
    # -0.0 passes "c >= 0"; the kernels' bound must carry no sign bit (every weight became -0.0)
    backend, device = backend_device
    t = torch.tensor([-0.5, 0.25, 0.0, -0.0, 3.0], device=device)
    clip_weights_([t], -0.0, backend=backend)
    assert torch.equal(t.signbit(), torch.tensor([True, False, False, True, False], device=device))


def test_bound_rounded_to_dtype_like_clamp(backend_device):
    backend, device = backend_device
    t = torch.tensor([1.0, -1.0, 0.005], dtype=torch.bfloat16, device=device)
    clip_weights_([t], 0.01, backend=backend)
    bf = torch.tensor(0.01, dtype=torch.bfloat16).item()  # 0.010009765625, not 0.01
    assert t.tolist() == [bf, -bf, torch.tensor(0.005, dtype=torch.bfloat16).item()]


def test_module_parameters_in_place_without_autograd(backend_device):
    backend, device = backend_device
    torch.manual_seed(0)
    critic = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8),
                                 torch.nn.LeakyReLU(0.2)).to(device)
    critic(torch.randn(4, 3, 9, 9, device=device)).sum().backward()
    with torch.no_grad():
        for p in critic.parameters():
            p.mul_(100)
    running = critic[1].running_mean.clone()
    grads = [p.grad.clone() for p in critic.parameters()]
    params = list(critic.parameters())
    clip_weights_(critic.parameters(), C, backend=backend)  # a generator of leaves needing grad
    assert all(p.abs().max() <= C + 1e-12 for p in params)
    assert all(p.requires_grad and p.is_leaf for p in params)
    assert all(torch.equal(p.grad, g) for p, g in zip(params, grads))
    assert torch.equal(critic[1].running_mean, running)  # buffers are not parameters


def test_empty_list_is_a_no_op(backend_device):
    backend, _ = backend_device
    clip_weights_([], C, backend=backend)
    clip_weights_(iter(()), C, backend=backend)


@pytest.mark.parametrize(("tensors", "c", "error", "words"), [
    (lambda: [torch.ones(3), torch.ones(3, dtype=torch.int64)], C, TypeError, ["tensors[1]", "torch.int64"]),
    (lambda: [torch.ones(3, dtype=torch.float8_e4m3fn)], C, TypeError, ["tensors[0]", "float8_e4m3fn"]),
    (lambda: [torch.ones(3), torch.ones(3, dtype=torch.float16)], 7e4, ValueError,
     ["tensors[1]", "torch.float16", "65504"]),
    (lambda: [torch.ones(3), [1.0]], C, TypeError, ["tensors[1]", "list"]),
    (lambda: torch.nn.Linear(2, 2), C, TypeError, ["module", "parameters()"]),
    (lambda: [torch.ones(3), torch.ones(3, device="meta")], C, ValueError, ["tensors[1]", "meta", "one device"]),
    (lambda: [torch.ones(3)], -0.01, ValueError, ["c", "-0.01"]),
    (lambda: [torch.ones(3)], math.nan, ValueError, ["c", "nan"]),
    (lambda: [torch.ones(3)], math.inf, ValueError, ["c", "inf"]),
    (lambda: [torch.ones(3)], True, TypeError, ["c", "bool"]),
    (lambda: [torch.ones(3)], "0.01", TypeError, ["c", "str"]),
], ids=["int-dtype", "float8", "c-beyond-fp16", "not-a-tensor", "module", "mixed-devices", "negative-c", "nan-c", "inf-c", "bool-c", "str-c"])
def test_bad_input_names_the_problem(tensors, c, error, words):
    inputs = tensors()
    cpu = [t for t in inputs if isinstance(t, torch.Tensor) and t.device.type == "cpu"] \
        if isinstance(inputs, list) else []
    before = [t.clone() for t in cpu]
    with pytest.raises(error) as info:
        clip_weights_(inputs, c)
    for word in words:
        assert word in str(info.value)
    assert all(torch.equal(a, b) for a, b in zip(cpu, before))  # nothing touched


def test_cpp_entry_point_checks_its_arguments(require_backend):
    require_backend("cpp", "cpu")
    op = torch.ops.fastgan.clip_weights_
    with pytest.raises(RuntimeError, match=r"tensors\[1\] has dtype Long; expected float32"):
        op([torch.ones(3), torch.ones(3, dtype=torch.int64)], C)
    with pytest.raises(RuntimeError, match=r"c must be a finite number >= 0, got -1"):
        op([torch.ones(3)], -1.0)
    with pytest.raises(RuntimeError, match=r"c = 70000 exceeds the largest finite Half .* tensors\[1\]"):
        op([torch.ones(3), torch.ones(3, dtype=torch.float16)], 7e4)


@pytest.mark.parametrize("op_name", ["clip_weights_", "clip_weights_triton_"])
def test_opcheck(require_backend, op_name):
    require_backend("cpp" if op_name == "clip_weights_" else "triton", "cpu")
    gen = torch.Generator().manual_seed(1)
    tensors = [_values(s, torch.float32, "cpu", gen) for s in [(3,), (65,), (4, 5)]]
    torch.library.opcheck(getattr(torch.ops.fastgan, op_name).default, (tensors, C))


@pytest.mark.parametrize("backend", ["cpp", "triton", "reference"])
def test_torch_compile_traces_through_the_op(require_backend, backend):
    require_backend(backend, "cpu")

    def step(params, x):
        y = (params[0] * x).sum()
        clip_weights_(params, C, backend=backend)
        return y

    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    gen = torch.Generator().manual_seed(2)
    params = [_values((17,), torch.float32, "cpu", gen), _values((3, 3), torch.float32, "cpu", gen)]
    expected = [p.clone() for p in params]
    x = torch.randn(17, generator=gen)
    y = compiled(params, x)
    clip_weights_reference(expected, C)
    _assert_same(params, expected)
    assert torch.isfinite(y)


def test_auto_uses_the_fused_backend_on_cpu(require_backend):
    require_backend("cpp", "cpu")
    assert fastgan.ops.clip_weights.OP.resolve(torch.device("cpu"), "auto") == "cpp"


@pytest.mark.gpu
def test_many_tensors_span_several_launches():
    # More tensors and blocks than one launch's metadata holds.
    gen = torch.Generator().manual_seed(3)
    sizes = torch.randint(1, 70000, (1500,), generator=gen).tolist()
    for backend in ("cuda", "triton"):
        tensors = [_values((n,), torch.float32, "cuda", gen) for n in sizes]
        expected = [t.clone() for t in tensors]
        clip_weights_reference(expected, C)
        clip_weights_(tensors, C, backend=backend)
        _assert_same(tensors, expected)


@pytest.mark.gpu
def test_tensor_past_int32_indexing():
    n = 2**31 + 4099  # 4 GiB of bfloat16: offsets must be 64-bit
    for backend in ("cuda", "triton"):
        t = torch.full((n,), 3.0, dtype=torch.bfloat16, device="cuda")
        t[-5:] = -3.0
        clip_weights_([t], 1.0, backend=backend)
        assert t[:8].tolist() == [1.0] * 8 and t[-5:].tolist() == [-1.0] * 5
        assert bool((t[: n - 5] == 1.0).all())
        del t
        torch.cuda.empty_cache()
