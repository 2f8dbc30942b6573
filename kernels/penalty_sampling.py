"""Where the gradient penalty is taken: interpolates (WGAN-GP: of real and fake; DRAGAN: of
real and the perturbed reals) and the perturbed reals (DRAGAN's perturbation step).

Random numbers: Philox4x32-10 keyed by a device int64 seed (kernels/_philox.py), so
these kernels, the C++ and CUDA ones and the reference draw the same numbers, and a
CUDA graph replays with fresh ones when the caller refills the seed. Arithmetic in T
(float64 for float64, float32 otherwise) with the explicit fma of the op's formula,
stores rounded once; launched with enable_fp_fusion=False (see kernels/penalty.py).

- interpolate: eps_b = u(word 0 of counter b), one per sample. The grid is (blocks of
  a sample, sample), as penalty.py's elementwise passes: each program draws its
  sample's eps once (ten scalar rounds) and no element needs a division to find its
  sample; programs loop over samples beyond grid axis 1's 65535.
- perturb: element i takes word i % 4 of counter i // 4, so one Philox evaluation
  serves four consecutive elements: a program computes the words of BLOCK/4 counters
  and interleaves them into BLOCK consecutive values with two levels of tl.join and a
  reshape (the loads and stores stay contiguous; the interpreter supports both).
"""

import torch
import triton
import triton.language as tl

from ._launch import MAX_GRID_Y, device_constant
from ._multi_tensor import TL_DTYPES, opmath
from ._philox import philox_index, philox_key, uniform

BLOCK = 2048  # elements a program; perturb evaluates Philox on BLOCK // 4 = 512 counters
_INT32_LIMIT = 2**31 - 1


@triton.jit
def _interpolate_kernel(real_ptr, fake_ptr, seed_ptr, out_ptr, B, M, DTYPE: tl.constexpr,
                        COMPUTE: tl.constexpr, BLOCK: tl.constexpr):
    inner = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = inner < M
    k0, k1 = philox_key(seed_ptr)
    for b in range(tl.program_id(1), B, tl.num_programs(1)):
        w0, _, _, _ = philox_index(tl.cast(b, tl.int64), k0, k1)  # tl.cast: the interpreter's
        eps = uniform(w0).to(COMPUTE)  # loop index is a Python int
        offs = tl.cast(b, tl.int64) * M + inner
        r = tl.load(real_ptr + offs, mask=mask).to(COMPUTE)
        f = tl.load(fake_ptr + offs, mask=mask).to(COMPUTE)
        x = tl.fma(r - f, eps, f)  # = fma(eps, r - f, f): the product commutes exactly
        tl.store(out_ptr + offs, x.to(DTYPE), mask=mask)


@triton.jit
def _perturb_kernel(real_ptr, scale_ptr, seed_ptr, bounds_ptr, out_ptr, numel, WIDE: tl.constexpr,
                    DTYPE: tl.constexpr, COMPUTE: tl.constexpr, BLOCK: tl.constexpr):
    QUADS: tl.constexpr = BLOCK // 4
    pid = tl.program_id(0)
    if WIDE:
        pid = pid.to(tl.int64)
    k0, k1 = philox_key(seed_ptr)
    w0, w1, w2, w3 = philox_index(pid * QUADS + tl.arange(0, QUADS), k0, k1)
    # join(join(a, c), join(b, d)) has shape (QUADS, 2, 2) with [q, i, j] = word 2i + j,
    # so the row-major reshape lists q's words 0, 1, 2, 3 in order.
    u = tl.join(tl.join(uniform(w0), uniform(w2)), tl.join(uniform(w1), uniform(w3)))
    u = tl.reshape(u, [BLOCK]).to(COMPUTE)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    real = tl.load(real_ptr + offs, mask=mask).to(COMPUTE)
    x = tl.fma(u, tl.load(scale_ptr).to(COMPUTE), real)
    lo = tl.load(bounds_ptr)
    hi = tl.load(bounds_ptr + 1)
    x = tl.where(x < lo, lo, tl.where(x > hi, hi, x))  # selects: a NaN passes through
    tl.store(out_ptr + offs, x.to(DTYPE), mask=mask)


@device_constant
def _bounds(lo, hi, dtype, device):
    """[lo, hi] rounded to dtype's opmath, on the device (cached)."""
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    return torch.tensor([lo, hi], dtype=compute).to(device)


def interpolate(real, fake, seed):
    """x = fma(eps_b, real - fake, fake) per sample b, with real's dtype and strides."""
    out = torch.empty_like(real)
    if real.numel() == 0:
        return out
    batch = real.shape[0]
    m = real.numel() // batch
    block = min(BLOCK, triton.next_power_of_2(m))
    _interpolate_kernel[(triton.cdiv(m, block), min(batch, MAX_GRID_Y))](
        real, fake, seed, out, batch, m, DTYPE=TL_DTYPES[real.dtype], COMPUTE=opmath(real.dtype),
        BLOCK=block, enable_fp_fusion=False)
    return out


def perturb(real, scale, seed, lo, hi):
    """x = clamp(fma(u_i, scale, real_i), lo, hi) per element, with real's dtype and strides."""
    out = torch.empty_like(real)
    numel = real.numel()
    if numel == 0:
        return out
    _perturb_kernel[(triton.cdiv(numel, BLOCK),)](
        real, scale, seed, _bounds(lo, hi, real.dtype, real.device), out, numel,
        WIDE=numel + BLOCK > _INT32_LIMIT, DTYPE=TL_DTYPES[real.dtype],
        COMPUTE=opmath(real.dtype), BLOCK=BLOCK, enable_fp_fusion=False)
    return out
