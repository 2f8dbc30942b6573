"""The C++ CPU kernels' instruction-set builds (csrc/cpu/isa.h): baseline x86-64, AVX2+FMA
and AVX-512 compile the same loops, written to give the same bits (no implicit fma, sums in
fixed lanes). These tests run every op of the cpp backend under every build this CPU can
run and require bit-identical results, forward and backward, with odd shapes, in every
dtype; and they check the choice itself (fastgan._C.cpu_isa, _set_cpu_isa,
FASTGAN_CPU_ISA).
"""
import os
import subprocess
import sys

import pytest
import torch

import fastgan
from fastgan import _ext
from fastgan.ops import (batch_norm_act, began_loss, bias_leaky_relu, clip_weights_, interpolate,
                         penalty_from_grad, perturb, rmsprop_clip_, sample_norm_act)

ORDER = ["base", "avx2", "avx512"]
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]

pytestmark = pytest.mark.skipif(_ext.module() is None, reason=f"fastgan._C is not loaded: {_ext.error()}")


def _isas():
    best = _ext.module().cpu_isa_best()
    return ORDER[:ORDER.index(best) + 1]


@pytest.fixture
def isas():
    """The builds this CPU runs, lowest first; the build in use is restored afterwards."""
    found = _isas()
    if len(found) < 2:
        pytest.skip(f"this CPU runs only the {found[0]} build: there is nothing to compare")
    before = _ext.module().cpu_isa()
    yield found
    _ext.module()._set_cpu_isa(before)


def _bits(t):
    """t's storage bits, comparable with torch.equal (NaN payloads included)."""
    t = t.detach().contiguous()
    return t.view({8: torch.int64, 4: torch.int32, 2: torch.int16}[t.element_size()])


def _rand(shape, dtype, gen, scale=1.0, layout=None):
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(dtype)
    return x.to(memory_format=layout) if layout is not None else x


def _clip(dtype, gen):
    ts = [_rand(s, dtype, gen, 0.02) for s in [(1,), (17,), (33_333,), (70_001,), (3, 5, 7)]]
    ts[2][:4] = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0], dtype=dtype)
    clip_weights_(ts, 0.01, backend="cpp")
    return ts


def _rmsprop(dtype, gen):
    shapes = [(1,), (3,), (65_537,), (5, 3, 7, 9)]
    out = []
    for flags in [dict(), dict(momentum=0.9, centered=True, weight_decay=0.01, maximize=True)]:
        params = [_rand(s, dtype, gen, 0.02) for s in shapes]
        grads = [_rand(s, dtype, gen) for s in shapes]
        sq = [_rand(s, dtype, gen, 1e-3).abs() + 1e-3 for s in shapes]
        mb = [_rand(s, dtype, gen) for s in shapes] if "momentum" in flags else []
        ga = [_rand(s, dtype, gen, 1e-3) for s in shapes] if "centered" in flags else []
        scale = torch.tensor([1024.0])
        for _ in range(3):
            rmsprop_clip_(params, grads, sq, mb, ga, torch.tensor([5e-4]), clip=0.01,
                          grad_scale=scale, found_inf=torch.zeros(1), backend="cpp", **flags)
        out += params + grads + sq + mb + ga
    return out


def _penalty(dtype, gen):
    out = []
    for shape in [(3, 3, 37, 41), (2, 40_000)]:
        g = _rand(shape, dtype, gen).requires_grad_()
        for center in (1.0, 0.0):
            p = penalty_from_grad(g, weight=10.0, center=center, backend="cpp")
            (dg,) = torch.autograd.grad(p, g, create_graph=True)
            (ddg,) = torch.autograd.grad((dg * dg.detach()).sum(), g)
            out += [p, dg, ddg]
    return out


def _bias_leaky_relu(dtype, gen):
    x = _rand((3, 13, 11, 7), dtype, gen)
    b = _rand((13,), dtype, gen).requires_grad_()
    out = []
    for layout in (torch.contiguous_format, torch.channels_last):
        xl = x.to(memory_format=layout).requires_grad_()
        y = bias_leaky_relu(xl, b, 0.2, backend="cpp")
        gy = _rand(y.shape, dtype, gen).requires_grad_()
        dx, db = torch.autograd.grad(y, (xl, b), gy, create_graph=True)
        # second order: through the upstream gradient (the op is piecewise linear in x)
        (ddy,) = torch.autograd.grad((dx * dx.detach()).sum() + (db * db.detach()).sum(), gy)
        out += [y, dx, db, ddy]
    return out


def _batch_norm_act(dtype, gen):
    out = []
    for layout in (torch.contiguous_format, torch.channels_last):
        x = _rand((5, 19, 9, 7), dtype, gen, layout=layout).requires_grad_()
        w = (_rand((19,), dtype, gen) + 1).requires_grad_()
        b = _rand((19,), dtype, gen).requires_grad_()
        rm, rv = torch.zeros(19, dtype=dtype), torch.ones(19, dtype=dtype)
        y = batch_norm_act(x, w, b, rm, rv, negative_slope=0.2, backend="cpp")
        out += [y, rm, rv, *torch.autograd.grad(y, (x, w, b), _rand(y.shape, dtype, gen))]
    return out


def _sample_norm_act(dtype, gen):
    out = []
    for layout in (torch.contiguous_format, torch.channels_last):
        x = _rand((5, 19, 9, 7), dtype, gen, layout=layout).requires_grad_()
        w = (_rand((19,), dtype, gen) + 1).requires_grad_()
        b = _rand((19,), dtype, gen).requires_grad_()
        y = sample_norm_act(x, w, b, negative_slope=0.2, backend="cpp")
        gx, gw, gb = torch.autograd.grad(y, (x, w, b), _rand(y.shape, dtype, gen), create_graph=True)
        gg = _rand(y.shape, dtype, gen)  # the double backward, a penalty's
        out += [y, gx, gw, gb, *torch.autograd.grad((gx * gg).sum() + gw.sum(), (x, w))]
    return out


def _began(dtype, gen):
    shape = (5, 3, 19, 23)
    real, real_recon, fake = (_rand(shape, dtype, gen) for _ in range(3))
    fake_recon = _rand(shape, dtype, gen).requires_grad_()
    real_recon.requires_grad_()
    d, g, k, m = began_loss(real, real_recon, fake, fake_recon, torch.tensor([0.3]), backend="cpp")
    return [d, g, k, m, *torch.autograd.grad(d + 2 * g, (real_recon, fake_recon))]


def _sampling(dtype, gen):
    real, fake = _rand((7, 3, 19, 23), dtype, gen), _rand((7, 3, 19, 23), dtype, gen)
    seed = torch.tensor([12345], dtype=torch.int64)
    return [interpolate(real, fake, seed=seed, backend="cpp"),
            perturb(real, seed=seed, backend="cpp")]


CASES = {"clip_weights_": _clip, "rmsprop_clip_": _rmsprop, "penalty_from_grad": _penalty,
         "bias_leaky_relu": _bias_leaky_relu, "batch_norm_act": _batch_norm_act,
         "began_loss": _began, "interpolate-perturb": _sampling, "sample_norm_act": _sample_norm_act}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", list(CASES))
def test_every_build_gives_the_same_bits(isas, case, dtype):
    results = {}
    for isa in isas:
        assert _ext.module()._set_cpu_isa(isa) == isa
        results[isa] = CASES[case](dtype, torch.Generator().manual_seed(0))
    best = isas[-1]
    for isa in isas[:-1]:
        for i, (a, b) in enumerate(zip(results[isa], results[best], strict=True)):
            assert a.dtype == b.dtype and a.shape == b.shape, f"{case} output {i}"
            assert torch.equal(_bits(a), _bits(b)), (
                f"{case} output {i} ({a.dtype}, {tuple(a.shape)}): the {isa} build differs from the "
                f"{best} build in {(_bits(a) != _bits(b)).sum().item()} elements")


def test_the_cpu_runs_the_best_build_by_default():
    mod = _ext.module()
    assert mod.cpu_isa() in ORDER
    if "FASTGAN_CPU_ISA" not in os.environ:
        assert mod.cpu_isa() == mod.cpu_isa_best()
    assert fastgan.info()["extension"]["cpu_isa"] == mod.cpu_isa()


def test_set_cpu_isa_caps_at_the_best_and_names_a_bad_name():
    mod = _ext.module()
    before = mod.cpu_isa()
    try:
        assert mod._set_cpu_isa("base") == "base" and mod.cpu_isa() == "base"
        assert mod._set_cpu_isa("avx512") == mod.cpu_isa_best()
        with pytest.raises(ValueError, match="unknown CPU instruction set 'sse9'"):
            mod._set_cpu_isa("sse9")
    finally:
        mod._set_cpu_isa(before)


def _child(env_value):
    env = {**os.environ, "FASTGAN_CPU_ISA": env_value}
    code = "import fastgan._ext as e; print(e.module().cpu_isa())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.abspath(__file__)))


def test_fastgan_cpu_isa_env_chooses_the_build():
    r = _child("base")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == "base"


def test_fastgan_cpu_isa_env_ignores_a_bad_name_with_a_warning():
    # a warning, not an import error (which would turn every fastgan command into a traceback):
    # every build gives the same bits, so the best one runs
    r = _child("avx9000")
    assert r.returncode == 0, r.stderr
    assert "FASTGAN_CPU_ISA='avx9000' is ignored" in r.stderr and "'avx2'" in r.stderr
    assert r.stdout.split()[-1] == _ext.module().cpu_isa_best()
