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
def test_one_step_matches_reference(backend_device, dtype, flags, clip):
    backend, device = backend_device
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


@pytest.mark.parametrize(("change", "error", "words"), [
    (dict(grads="short"), ValueError, ["grads has 1 tensors; expected 2"]),
    (dict(momentum_bufs="extra"), ValueError, ["momentum_bufs", "unused"]),
    (dict(grads="dtype"), ValueError, ["grads[1] must match params[1]"]),
    (dict(lr="float64"), TypeError, ["lr must be a 1-element float32 tensor"]),
    (dict(alpha=1.5), ValueError, ["alpha = 1.5"]),
    (dict(eps=-1.0), ValueError, ["eps = -1.0"]),
    (dict(clip=7e4, half=True), ValueError, ["clip = 70000.0", "params[0]"]),
    (dict(clip=float("nan")), ValueError, ["clip is NaN"]),
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
                      clip=change.get("clip", 0.01))
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
    with pytest.raises(RuntimeError, match=r"dense and identically strided"):
        op([torch.zeros(4, 4)[:, ::2]], [torch.ones(4, 2)], [torch.zeros(4, 2)], [], [], lr,
           0.99, 1e-8, 0.0, 0.0, False, False, 0.01)


@pytest.mark.parametrize("op_name", ["rmsprop_clip_", "rmsprop_clip_triton_"])
def test_opcheck(require_backend, op_name):
    require_backend("cpp" if op_name == "rmsprop_clip_" else "triton", "cpu")
    gen = torch.Generator().manual_seed(1)
    state = _state([(3,), (65,)], torch.float32, "cpu", dict(momentum=0.9), gen)
    args = (*state, torch.tensor([1e-3]), 0.99, 1e-8, 0.0, 0.9, False, False, 0.01)
    torch.library.opcheck(getattr(torch.ops.fastgan, op_name).default, args)
