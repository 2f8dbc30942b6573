"""BEGAN's losses, k_t update and convergence measure: forward and backward.

Formulas: csrc/ops.cpp and csrc/batch_norm_act_math.h (l1_sign), in T = float64 for float64
inputs, float32 otherwise (16-bit values are read as float32), with IEEE divisions
(kernels/_math.py). Each pair (real, real_recon), (fake, fake_recon) is walked linearly
from its data pointers (dense, the two of a pair with the same strides).

- Forward: one launch of S_r + S_f programs, the first S_r summing |real - real_recon|
  over one slice of the real pair each, the others the fake pair, into partial[S_r + S_f];
  then one finalize program sums each pair's partials (a fixed tree: the same bits every
  run) and computes the six 0-dim results from k (read on the device, converted to T).
  Slices as kernels/penalty.py (kernels/_launch.py): ~4 programs per SM a pair, at least MIN_SLICE elements.
- Backward: one launch over the blocks of both pairs; a program's coefficient
  (c_r / N_r or (d_gloss - k * d_dloss) / N_f) is computed once from device scalars.
  d_x = (c * sign) / N equals sign * (c / N) exactly (sign in {-1, 0, 1}).
- gamma, lambda_k, N_r and N_f travel in a cached T tensor; the finalize and the
  elementwise kernel launch with enable_fp_fusion=False (see kernels/penalty.py).
"""

import torch
import triton
import triton.language as tl

from ._multi_tensor import TL_DTYPES, opmath
from ._math import div_ieee as _div
from ._launch import MIN_SLICE, REDUCE_BLOCK, compute_dtype as _compute, device_constant, target_programs

BLOCK = 4096  # elements an elementwise program: 2 streams in, 2 out
_INT32_LIMIT = 2**31 - 1

# Indices into the hyper tensor (tl.constexpr: a compiled kernel may read no other global).
_GAMMA, _LAMBDA_K, _N_REAL, _N_FAKE = (tl.constexpr(i) for i in range(4))


@triton.jit
def _abs_diff_sum(a_ptr, b_ptr, s, chunk, numel, WIDE: tl.constexpr, COMPUTE: tl.constexpr,
                  BLOCK: tl.constexpr):
    lo = s * chunk
    if WIDE:
        lo = s.to(tl.int64) * chunk
    hi = tl.minimum(lo + chunk, numel)
    acc = tl.zeros([BLOCK], COMPUTE)
    for start in range(lo, hi, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < hi
        a = tl.load(a_ptr + offs, mask=mask, other=0).to(COMPUTE)
        b = tl.load(b_ptr + offs, mask=mask, other=0).to(COMPUTE)
        acc += tl.abs(a - b)
    return tl.sum(acc, axis=0)


@triton.jit
def _partial_kernel(r_ptr, rr_ptr, f_ptr, fr_ptr, partial_ptr, n_real, n_fake, chunk_real,
                    chunk_fake, slices_real, WIDE: tl.constexpr, COMPUTE: tl.constexpr,
                    BLOCK: tl.constexpr):
    """partial[s] = sum over slice s of |a - b| (the real pair's slices first)."""
    pid = tl.program_id(0)
    if pid < slices_real:
        total = _abs_diff_sum(r_ptr, rr_ptr, pid, chunk_real, n_real, WIDE, COMPUTE, BLOCK)
    else:
        total = _abs_diff_sum(f_ptr, fr_ptr, pid - slices_real, chunk_fake, n_fake, WIDE, COMPUTE,
                              BLOCK)
    tl.store(partial_ptr + pid, total)


@triton.jit
def _finalize_kernel(partial_ptr, k_ptr, hyper_ptr, d_loss_ptr, g_loss_ptr, k_next_ptr,
                     convergence_ptr, l_real_ptr, l_fake_ptr, slices_real, slices,
                     COMPUTE: tl.constexpr, S_POW2: tl.constexpr):
    i = tl.arange(0, S_POW2)
    p = tl.load(partial_ptr + i, mask=i < slices, other=0)
    l_real = _div(tl.sum(tl.where(i < slices_real, p, 0), axis=0), tl.load(hyper_ptr + _N_REAL),
                  COMPUTE)
    l_fake = _div(tl.sum(tl.where(i >= slices_real, p, 0), axis=0), tl.load(hyper_ptr + _N_FAKE),
                  COMPUTE)
    k = tl.load(k_ptr).to(COMPUTE)
    balance = tl.load(hyper_ptr + _GAMMA) * l_real - l_fake
    k_next = k + tl.load(hyper_ptr + _LAMBDA_K) * balance
    k_next = tl.where(k_next < 0, 0, k_next)  # clamp(., 0, 1), NaN kept
    k_next = tl.where(k_next > 1, 1, k_next)
    tl.store(d_loss_ptr, l_real - k * l_fake)
    tl.store(g_loss_ptr, l_fake)
    tl.store(k_next_ptr, k_next.to(COMPUTE))
    tl.store(convergence_ptr, l_real + tl.abs(balance))
    tl.store(l_real_ptr, l_real)
    tl.store(l_fake_ptr, l_fake)


@triton.jit
def _sign_pass(a_ptr, b_ptr, da_ptr, db_ptr, block, numel, coef, WIDE: tl.constexpr,
               DTYPE: tl.constexpr, COMPUTE: tl.constexpr, BLOCK: tl.constexpr):
    if WIDE:
        block = block.to(tl.int64)
    offs = block * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    a = tl.load(a_ptr + offs, mask=mask).to(COMPUTE)
    b = tl.load(b_ptr + offs, mask=mask).to(COMPUTE)
    sign = tl.where(a > b, 1, tl.where(a < b, -1, 0)).to(COMPUTE)  # l1_sign: 0 for NaN
    d = sign * coef
    tl.store(da_ptr + offs, d.to(DTYPE), mask=mask)
    tl.store(db_ptr + offs, (-d).to(DTYPE), mask=mask)  # rounding is odd: -(d rounded)


@triton.jit
def _backward_kernel(r_ptr, rr_ptr, f_ptr, fr_ptr, dr_ptr, drr_ptr, df_ptr, dfr_ptr, k_ptr,
                     d_dloss_ptr, d_gloss_ptr, hyper_ptr, n_real, n_fake, blocks_real,
                     WIDE: tl.constexpr, DTYPE: tl.constexpr, COMPUTE: tl.constexpr,
                     BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    d_dloss = tl.load(d_dloss_ptr)
    if pid < blocks_real:
        coef = _div(d_dloss, tl.load(hyper_ptr + _N_REAL), COMPUTE)
        _sign_pass(r_ptr, rr_ptr, dr_ptr, drr_ptr, pid, n_real, coef, WIDE, DTYPE, COMPUTE, BLOCK)
    else:
        c_fake = tl.load(d_gloss_ptr) - tl.load(k_ptr).to(COMPUTE) * d_dloss
        coef = _div(c_fake, tl.load(hyper_ptr + _N_FAKE), COMPUTE)
        _sign_pass(f_ptr, fr_ptr, df_ptr, dfr_ptr, pid - blocks_real, n_fake, coef, WIDE, DTYPE,
                   COMPUTE, BLOCK)


@device_constant
def _hyper(gamma, lambda_k, n_real, n_fake, compute, device):
    """[gamma, lambda_k, N_r, N_f] in T on the device (cached), each rounded once."""
    return torch.tensor([gamma, lambda_k, float(n_real), float(n_fake)], dtype=compute).to(device)


def _slicing(numel, target):
    """(chunk, slices) of one pair: whole REDUCE_BLOCK steps a slice."""
    slices = max(1, min(target, triton.cdiv(numel, MIN_SLICE)))
    chunk = triton.cdiv(triton.cdiv(numel, slices), REDUCE_BLOCK) * REDUCE_BLOCK
    return chunk, triton.cdiv(numel, chunk)


def began_loss(real, real_recon, fake, fake_recon, k, gamma, lambda_k):
    """(d_loss, g_loss, k_next, convergence, l_real, l_fake), 0-dim T tensors."""
    compute = _compute(real.dtype)
    n_real, n_fake = real.numel(), fake.numel()
    hyper = _hyper(gamma, lambda_k, n_real, n_fake, compute, real.device)
    target = target_programs(real.device)
    chunk_real, slices_real = _slicing(n_real, target)
    chunk_fake, slices_fake = _slicing(n_fake, target)
    slices = slices_real + slices_fake
    partial = torch.empty(slices, dtype=compute, device=real.device)
    _partial_kernel[(slices,)](
        real, real_recon, fake, fake_recon, partial, n_real, n_fake, chunk_real, chunk_fake,
        slices_real, WIDE=max(n_real, n_fake) + chunk_real + chunk_fake > _INT32_LIMIT,
        COMPUTE=opmath(real.dtype), BLOCK=REDUCE_BLOCK)
    results = [torch.empty((), dtype=compute, device=real.device) for _ in range(6)]
    _finalize_kernel[(1,)](partial, k, hyper, *results, slices_real, slices,
                           COMPUTE=opmath(real.dtype), S_POW2=triton.next_power_of_2(slices),
                           enable_fp_fusion=False)
    return tuple(results)


def began_loss_backward(real, real_recon, fake, fake_recon, k, d_dloss, d_gloss):
    """(d_real, d_real_recon, d_fake, d_fake_recon), each like its input."""
    compute = _compute(real.dtype)
    n_real, n_fake = real.numel(), fake.numel()
    hyper = _hyper(0.0, 0.0, n_real, n_fake, compute, real.device)
    grads = [torch.empty_like(t) for t in (real, real_recon, fake, fake_recon)]
    blocks_real = triton.cdiv(n_real, BLOCK)
    _backward_kernel[(blocks_real + triton.cdiv(n_fake, BLOCK),)](
        real, real_recon, fake, fake_recon, *grads, k, d_dloss, d_gloss, hyper, n_real, n_fake,
        blocks_real, WIDE=max(n_real, n_fake) + BLOCK > _INT32_LIMIT, DTYPE=TL_DTYPES[real.dtype],
        COMPUTE=opmath(real.dtype), BLOCK=BLOCK, enable_fp_fusion=False)
    return tuple(grads)
