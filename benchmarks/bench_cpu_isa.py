"""The C++ CPU kernels' instruction-set builds against each other (csrc/cpu/isa.h): each op of
the cpp backend under the baseline x86-64, AVX2 and AVX-512 builds this CPU can run, one
group per op and dtype, switched in the same process with fastgan._C._set_cpu_isa (the
builds give the same bits: tests/test_cpu_isa.py). The shapes are the other CPU benchmarks'.

    pytest benchmarks/bench_cpu_isa.py

On the 2-core AVX-512 dev host (2026-11-23; this file and an in-process script before it)
AVX-512 ran 17-42% below AVX2 on the DCGAN critic's fp32 RMSprop + clip, 6-25% on its fp32
clip, 1-49% on the bf16 ops (the 16-bit conversions) and 37-44% on DRAGAN's perturb in both
dtypes (Philox's 32-bit multiplies); fp32 ops bound by memory are unchanged.
"""
import pytest
import torch

from fastgan import _ext
from fastgan.ops import (batch_norm_act, began_loss, bias_leaky_relu, clip_weights_, interpolate,
                         penalty_from_grad, perturb)
from fastgan.optim import RMSpropClip, flatten_parameters

ORDER = ["base", "avx2", "avx512"]


def _rand(gen, dtype, *shape, scale=1.0):
    return (torch.randn(*shape, generator=gen) * scale).to(dtype)


def _clip(dtype, gen, dcgan_critic):
    params = [p.detach().to(dtype) * 3 for p in dcgan_critic().parameters()]
    return lambda: clip_weights_(params, 0.01, backend="cpp")


def _rmsprop(dtype, gen, dcgan_critic):
    model = dcgan_critic().to(dtype)
    flatten_parameters(model)
    with torch.no_grad():
        for p in model.parameters():
            p.grad.copy_(torch.randn(p.shape, generator=gen) * 0.01)
    return RMSpropClip(model.parameters(), lr=5e-5, clip=0.01, backend="cpp").step


def _penalty(dtype, gen, _):
    g = _rand(gen, dtype, 64, 3, 64, 64).requires_grad_()
    return lambda: penalty_from_grad(g, weight=10.0, backend="cpp").backward()


def _bias_leaky_relu(dtype, gen, _):
    x = _rand(gen, dtype, 64, 128, 16, 16).requires_grad_()
    b, gy = _rand(gen, dtype, 128).requires_grad_(), _rand(gen, dtype, 64, 128, 16, 16)
    return lambda: bias_leaky_relu(x, b, 0.2, backend="cpp").backward(gy)


def _batch_norm_act(dtype, gen, _):
    x = _rand(gen, dtype, 16, 256, 16, 16).requires_grad_()
    w, b = (_rand(gen, dtype, 256) + 1).requires_grad_(), _rand(gen, dtype, 256).requires_grad_()
    gy = _rand(gen, dtype, 16, 256, 16, 16)
    return lambda: batch_norm_act(x, w, b, backend="cpp").backward(gy)


def _began(dtype, gen, _):
    real, fake = _rand(gen, dtype, 16, 3, 64, 64), _rand(gen, dtype, 16, 3, 64, 64)
    real_recon = _rand(gen, dtype, 16, 3, 64, 64).requires_grad_()
    fake_recon = _rand(gen, dtype, 16, 3, 64, 64).requires_grad_()
    k = torch.tensor([0.3])

    def step():
        d, g, _, _ = began_loss(real, real_recon, fake, fake_recon, k, backend="cpp")
        (d + g).backward()
    return step


def _interpolate(dtype, gen, _):
    real, fake = _rand(gen, dtype, 64, 3, 64, 64), _rand(gen, dtype, 64, 3, 64, 64)
    seed = torch.tensor([1], dtype=torch.int64)
    return lambda: interpolate(real, fake, seed=seed, backend="cpp")


def _perturb(dtype, gen, _):
    real, seed = _rand(gen, dtype, 64, 3, 64, 64), torch.tensor([1], dtype=torch.int64)
    return lambda: perturb(real, seed=seed, backend="cpp")


OPS = {"clip_weights_ dcgan-critic": _clip, "rmsprop_clip_ dcgan-critic": _rmsprop,
       "penalty fwd+bwd 64x3x64x64": _penalty, "bias_leaky_relu fwd+bwd 64x128x16x16": _bias_leaky_relu,
       "batch_norm_act fwd+bwd 16x256x16x16": _batch_norm_act, "began_loss fwd+bwd 16x3x64x64": _began,
       "interpolate 64x3x64x64": _interpolate, "perturb 64x3x64x64": _perturb}


@pytest.fixture
def cpu_isa():
    """use(name): runs the C++ CPU loops from that build (skips when this CPU lacks it); the
    build in use before is restored afterwards."""
    ext = _ext.module()
    if ext is None or not hasattr(ext, "cpu_isa"):
        pytest.skip(f"fastgan._C is not loaded: {_ext.error()}")
    before = ext.cpu_isa()

    def use(name):
        if ORDER.index(name) > ORDER.index(ext.cpu_isa_best()):
            pytest.skip(f"this CPU runs the {ext.cpu_isa_best()} build at most")
        ext._set_cpu_isa(name)
    yield use
    ext._set_cpu_isa(before)


@pytest.mark.parametrize("isa", ORDER)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("op", list(OPS))
def test_cpu_isa_build(measure, cpu_isa, dcgan_critic, op, dtype, isa):
    if op.startswith("rmsprop") and dtype != torch.float32:
        pytest.skip("rmsprop_clip_'s 16-bit dtypes run the baseline build in every case")
    cpu_isa(isa)
    fn = OPS[op](dtype, torch.Generator().manual_seed(0), dcgan_critic)
    measure(fn, nbytes=None, group=f"cpu isa: {op} {str(dtype).replace('torch.', '')}", rounds=20,
            iterations=2)
