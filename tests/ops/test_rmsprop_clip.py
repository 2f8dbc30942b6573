"""fastgan.ops.rmsprop_clip_ in every backend against the reference, one step at a time.

Tolerances, in ulps of each tensor's largest magnitude (the scale at which RMSprop's
additions round): float64 2 and float32 4, for the fused kernels' fmas against the
reference's separately rounded torch ops and for torch's CPU sqrt, which is not
correctly rounded (the kernels' is); float16/bfloat16 1 ulp of storage more (one
rounding of the same float32 value can land on either neighbour, and Triton's
interpreter truncates).
"""
import pytest
import torch

from fastgan.ops import rmsprop_clip_, rmsprop_clip_reference

ULPS = {torch.float64: 2, torch.float32: 4, torch.bfloat16: 2, torch.float16: 2}
FLAGS = [
    dict(),
    dict(momentum=0.9),
    dict(centered=True),
    dict(centered=True, momentum=0.5, weight_decay=0.01, maximize=True),
]


def assert_ulps(actual, expected, ulps, what):
    scale = expected.abs().max().to(torch.float64)
    inf = torch.tensor(float("inf"), dtype=expected.dtype, device=expected.device)
    spacing = (torch.nextafter(scale.to(expected.dtype), inf)
               .to(torch.float64) - scale)
    err = (actual.to(torch.float64) - expected.to(torch.float64)).abs().max()
    assert err <= ulps * spacing, f"{what}: {err / spacing:.1f} ulps of {scale:.3g} (allowed {ulps})"


def _state(shapes, dtype, device, flags, gen):
    def rnd(s, scale):
        return (torch.randn(s, generator=gen, dtype=torch.float64) * scale).to(dtype).to(device)
    params = [rnd(s, 0.02) for s in shapes]
    grads = [rnd(s, 1.0) for s in shapes]
    sq = [(rnd(s, 1e-3).abs() + 1e-3) for s in shapes]
    mb = [rnd(s, 1.0) for s in shapes] if flags.get("momentum") else []
    ga = [rnd(s, 1e-3) for s in shapes] if flags.get("centered") else []  # ga**2 < square_avg
    return params, grads, sq, mb, ga


SHAPES = {"odd": [(1,), (3,), (65537,), (5, 3, 7, 9), (113,)], "one": [(1,)]}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("flags", FLAGS, ids=["plain", "momentum", "centered", "all"])
@pytest.mark.parametrize("clip", [0.01, None], ids=["clip", "noclip"])
def test_one_step_matches_reference(fused_backend_device, dtype, flags, clip):
    backend, device = fused_backend_device
    gen = torch.Generator().manual_seed(0)
    state = _state(SHAPES["odd"], dtype, device, flags, gen)
    expected = [[t.clone() for t in lst] for lst in state]
    lr = torch.tensor([5e-4], device=device)
    kw = dict(alpha=0.99, eps=1e-8, weight_decay=flags.get("weight_decay", 0.0),
              momentum=flags.get("momentum", 0.0), centered=flags.get("centered", False),
              maximize=flags.get("maximize", False))
    rmsprop_clip_(*state, lr, clip=clip, backend=backend, **kw)
    rmsprop_clip_reference(*expected, lr, clip=-1.0 if clip is None else clip, **kw)
    names = ["params", "grads", "square_avgs", "momentum_bufs", "grad_avgs"]
    for name, got, want in zip(names, state, expected):
        for i, (a, e) in enumerate(zip(got, want)):
            assert_ulps(a, e, ULPS[dtype], f"{name}[{i}]")
    if clip is not None:
        assert max(p.abs().max().item() for p in state[0]) <= torch.tensor(clip, dtype=dtype).item()
    assert not torch.equal(state[0][2], _state(SHAPES["odd"], dtype, device, flags,
                                               torch.Generator().manual_seed(0))[0][2])  # it moved


# -- loss scaling (grad_scale, found_inf: what torch.amp.GradScaler hands the optimizer) -----

def _kw(flags):
    return dict(alpha=0.99, eps=1e-8, weight_decay=flags.get("weight_decay", 0.0),
                momentum=flags.get("momentum", 0.0), centered=flags.get("centered", False),
                maximize=flags.get("maximize", False))


def test_reference_loss_scaling_is_unscale_then_step():
    """The oracle's meaning, to the bit: grad_scale = divide and store the gradients, then
    the plain step; found_inf != 0 = no change anywhere."""
    flags = dict(momentum=0.9, centered=True)
    for dtype in (torch.float32, torch.bfloat16):
        state = _state(SHAPES["odd"], dtype, "cpu", flags, torch.Generator().manual_seed(3))
        scale = torch.tensor([3.0])  # not a power of two: the quotient rounds
        manual = [[t.clone() for t in lst] for lst in state]
        for g in manual[1]:
            g.copy_(g.float() / 3.0)
        lr = torch.tensor([5e-4])
        rmsprop_clip_reference(*state, lr, clip=0.01, grad_scale=scale, found_inf=torch.zeros(()), **_kw(flags))
        rmsprop_clip_reference(*manual, lr, clip=0.01, **_kw(flags))
        for got, want in zip(state, manual):
            assert all(torch.equal(a, b) for a, b in zip(got, want))
        before = [[t.clone() for t in lst] for lst in state]
        rmsprop_clip_reference(*state, lr, clip=0.01, grad_scale=scale, found_inf=torch.ones(()), **_kw(flags))
        for got, want in zip(state, before):
            assert all(torch.equal(a, b) for a, b in zip(got, want))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("flags", [FLAGS[0], FLAGS[3]], ids=["plain", "all"])
@pytest.mark.parametrize("scale", [65536.0, 3.0], ids=["pow2", "odd"])
def test_loss_scaled_step_matches_reference(fused_backend_device, dtype, flags, scale):
    backend, device = fused_backend_device
    state = _state(SHAPES["odd"], dtype, device, flags, torch.Generator().manual_seed(2))
    for g in state[1]:  # the gradients as a GradScaler leaves them: scaled (finite in fp16)
        g.copy_((g.double() * min(scale, 1024.0)).to(dtype))
    expected = [[t.clone() for t in lst] for lst in state]
    lr = torch.tensor([5e-4], device=device)
    grad_scale = torch.tensor([scale], device=device)
    rmsprop_clip_(*state, lr, clip=0.01, grad_scale=grad_scale, found_inf=torch.zeros(1, device=device),
                  backend=backend, **_kw(flags))
    rmsprop_clip_reference(*expected, lr, clip=0.01, grad_scale=grad_scale, **_kw(flags))
    names = ["params", "grads", "square_avgs", "momentum_bufs", "grad_avgs"]
    for name, got, want in zip(names, state, expected):
        for i, (a, e) in enumerate(zip(got, want)):
            if name == "grads" and dtype in (torch.float32, torch.float64):
                assert torch.equal(a, e), f"grads[{i}]"  # one correctly rounded division
            elif name == "grads":  # 16-bit: the rounding to storage may land on either side
                assert_ulps(a, e, 1, f"grads[{i}]")
            else:
                assert_ulps(a, e, ULPS[dtype], f"{name}[{i}]")


@pytest.mark.parametrize("found", [1.0, 2.0, float("inf")], ids=["one", "two-devices", "inf"])
@pytest.mark.parametrize("scaled", [True, False], ids=["scaled", "unscaled"])
def test_found_inf_skips_the_whole_step(backend_device, found, scaled):
    backend, device = backend_device
    flags = FLAGS[3]
    state = _state(SHAPES["odd"], torch.float32, device, flags, torch.Generator().manual_seed(4))
    state[1][2][7] = float("inf")  # the overflow the flag reports
    state[0][0].fill_(0.5)          # outside the clip: a skipped step must not clip either
    before = [[t.clone() for t in lst] for lst in state]
    rmsprop_clip_(*state, torch.tensor([5e-4], device=device), clip=0.01,
                  grad_scale=torch.tensor([1024.0], device=device) if scaled else None,
                  found_inf=torch.tensor([found], device=device), backend=backend, **_kw(flags))
    for got, want in zip(state, before):
        assert all(torch.equal(a, b) for a, b in zip(got, want))


def test_layouts_the_kernels_cannot_walk_fall_back_to_the_reference(backend_device):
    backend, device = backend_device
    base = torch.randn(6, 8, device=device) * 0.02
    p = base[:, ::2]  # strided: not dense
    g, v = torch.randn_like(p), torch.zeros_like(p)
    want_p, want_v = p.clone(), v.clone()
    lr = torch.tensor([1e-3], device=device)
    rmsprop_clip_([p], [g], [v], [], [], lr, backend=backend)
    rmsprop_clip_reference([want_p], [g], [want_v], [], [], lr, 0.99, 1e-8, 0.0, 0.0, False, False, 0.01)
    assert_ulps(p, want_p, 4, "strided param")


def test_a_gradient_strided_otherwise_only_on_a_size1_dim_takes_the_fused_kernel(backend_device):
    """autograd may hand a channels_last (1, C, kh, kw) weight a gradient whose stride on
    the size-1 dim differs (its layout contract ignores it): the same walk in memory, so the
    fused kernel takes it (before, the whole group went to the reference, or the C++ entry
    point refused it) and gives the reference's step."""
    from fastgan.ops.rmsprop_clip import fusable
    backend, device = backend_device
    gen = torch.Generator().manual_seed(0)
    p = (torch.randn(1, 4, 3, 3, generator=gen) * 0.02).to(device).contiguous(memory_format=torch.channels_last)
    g = torch.empty_strided(p.shape, (999, *p.stride()[1:]), device=device)
    g.copy_(torch.randn(1, 4, 3, 3, generator=gen))
    assert g.stride() != p.stride() and fusable([p], [g], [torch.zeros_like(p)])
    v = torch.zeros_like(p)
    want_p, want_v = p.clone(), v.clone()
    lr = torch.tensor([1e-3], device=device)
    if backend == "cpp":  # the C++ entry point's own check accepts it too
        torch.ops.fastgan.rmsprop_clip_([p], [g], [v], [], [], lr, 0.99, 1e-8, 0.0, 0.0, False, False, 0.01)
    else:
        rmsprop_clip_([p], [g], [v], [], [], lr, backend=backend)
    rmsprop_clip_reference([want_p], [g], [want_v], [], [], lr, 0.99, 1e-8, 0.0, 0.0, False, False, 0.01)
    assert_ulps(p, want_p, 4, "param")
    assert_ulps(v, want_v, 4, "square_avg")


@pytest.mark.parametrize(("change", "error", "words"), [
    (dict(grads="short"), ValueError, ["grads has 1 tensors; expected 2"]),
    (dict(momentum_bufs="extra"), ValueError, ["momentum_bufs", "unused"]),
    (dict(grads="dtype"), ValueError, ["grads[1] must match params[1]"]),
    (dict(lr="float64"), TypeError, ["lr must be a 1-element float32 tensor"]),
    (dict(alpha=1.5), ValueError, ["alpha = 1.5"]),
    (dict(eps=-1.0), ValueError, ["eps = -1.0"]),
    (dict(clip=7e4, half=True), ValueError, ["clip = 70000.0", "params[0]"]),
    (dict(clip=float("nan")), ValueError, ["clip is NaN"]),
    (dict(grad_scale="float64"), TypeError, ["grad_scale must be None or a 1-element float32 tensor"]),
    (dict(found_inf="two"), TypeError, ["found_inf must be None or a 1-element float32 tensor"]),
])
def test_bad_input_names_the_problem(change, error, words):
    dtype = torch.float16 if change.get("half") else torch.float32
    params = [torch.zeros(3, dtype=dtype), torch.zeros(2, dtype=dtype)]
    grads = [torch.ones(3, dtype=dtype), torch.ones(2, dtype=dtype)]
    if change.get("grads") == "short":
        grads = grads[:1]
    if change.get("grads") == "dtype":
        grads[1] = grads[1].double()
    mb = [torch.zeros(3)] if change.get("momentum_bufs") == "extra" else []
    lr = torch.tensor([1e-3], dtype=torch.float64 if change.get("lr") == "float64" else torch.float32)
    before = [p.clone() for p in params]
    with pytest.raises(error) as info:
        rmsprop_clip_(params, grads, [torch.zeros_like(p) for p in params], mb, [], lr,
                      alpha=change.get("alpha", 0.99), eps=change.get("eps", 1e-8),
                      clip=change.get("clip", 0.01),
                      grad_scale=torch.ones((), dtype=torch.float64) if change.get("grad_scale") else None,
                      found_inf=torch.zeros(2) if change.get("found_inf") else None)
    for w in words:
        assert w in str(info.value)
    assert all(torch.equal(a, b) for a, b in zip(params, before))


def test_cpp_entry_point_checks_its_arguments(require_backend):
    require_backend("cpp", "cpu")
    op = torch.ops.fastgan.rmsprop_clip_
    p, g, v = [torch.zeros(3)], [torch.ones(3)], [torch.zeros(3)]
    lr = torch.tensor([1e-3])
    with pytest.raises(RuntimeError, match=r"momentum_bufs has 0 tensors; expected 1"):
        op(p, g, v, [], [], lr, 0.99, 1e-8, 0.0, 0.9, False, False, 0.01)
    with pytest.raises(RuntimeError, match=r"clip is NaN"):
        op(p, g, v, [], [], lr, 0.99, 1e-8, 0.0, 0.0, False, False, float("nan"))
    with pytest.raises(RuntimeError, match=r"lr must be a 1-element float32 tensor"):
        op(p, g, v, [], [], lr.double(), 0.99, 1e-8, 0.0, 0.0, False, False, 0.01)
    with pytest.raises(RuntimeError, match=r"grad_scale must be None or a 1-element float32 tensor"):
        op(p, g, v, [], [], lr, 0.99, 1e-8, 0.0, 0.0, False, False, 0.01, torch.ones(1, dtype=torch.float64))
    with pytest.raises(RuntimeError, match=r"found_inf must be None or a 1-element float32 tensor"):
        op(p, g, v, [], [], lr, 0.99, 1e-8, 0.0, 0.0, False, False, 0.01, None, torch.zeros(3))
    with pytest.raises(RuntimeError, match=r"dense and identically strided"):
        op([torch.zeros(4, 4)[:, ::2]], [torch.ones(4, 2)], [torch.zeros(4, 2)], [], [], lr,
           0.99, 1e-8, 0.0, 0.0, False, False, 0.01)


@pytest.mark.parametrize("op_name", ["rmsprop_clip_", "rmsprop_clip_triton_"])
@pytest.mark.parametrize("scaling", [False, True], ids=["plain", "loss-scaled"])
def test_opcheck(require_backend, op_name, scaling):
    require_backend("cpp" if op_name == "rmsprop_clip_" else "triton", "cpu")
    gen = torch.Generator().manual_seed(1)
    state = _state([(3,), (65,)], torch.float32, "cpu", dict(momentum=0.9), gen)
    args = (*state, torch.tensor([1e-3]), 0.99, 1e-8, 0.0, 0.9, False, False, 0.01)
    if scaling:
        args += (torch.tensor([8.0]), torch.zeros(1))
    torch.library.opcheck(getattr(torch.ops.fastgan, op_name).default, args)
