"""BatchNorm + leaky ReLU after a convolution, fused: forward and backward.

Formulas: csrc/batch_norm_act_math.h and csrc/ops.cpp, in T = float64 for float64 x, float32
otherwise (16-bit values are read as float32), with IEEE square roots and divisions
(kernels/_math.py), rounded once to x's dtype.

x (N, C, ...) is dense; the channel of memory offset i is (i // inner) % C with
inner = x.stride(1) (NCHW: H*W; channels_last and 2-D: 1). For the reductions x is seen
as (outer, C, inner), outer = numel / (C * inner): element j (0 <= j < n = outer * inner)
of channel c sits at (j // inner) * C * inner + c * inner + j % inner, and Triton's
specialization of an integer argument equal to 1 folds the division away for
channels_last.

- Per-channel reductions are split: a (channel blocks, slices) grid of programs, each
  reducing a [BLOCK_C channels, chunk of j] tile, [BLOCK_C, BLOCK_J] elements a step
  (channels_last: up to 64 channels side by side, so a step reads whole rows; NCHW:
  runs of inner consecutive elements). The number of slices gives ~4 programs per SM
  even at C = 1. Statistics: each step's (count, mean, M2) is exact two-pass over the
  registers (mean of the block, then the squared deviations from it), merged into the
  program's by Chan's formula; the finalize merges the slices' partials by Chan's formula
  too (a tl.reduce tree over a block of slices, then in order over the blocks): no
  sum of squares, so x = 1000 + noise keeps its variance in float32. Fixed trees, no
  atomics: the same bits every run (they depend on the slice count, so on the GPU model).
- The finalize (one program per 64 channels) writes mean, invstd (and the per-channel
  coefficients of the elementwise pass) and updates the running statistics in place:
  r = (1 - momentum) * r + momentum * s in T, rounded once to r's dtype.
- Elementwise passes walk the numel elements linearly (as kernels/bias_leaky_relu.py),
  loading three per-channel T values per element from a (C,) workspace.
- momentum, 1 - momentum, eps, slope, n and n / (n - 1) travel in a cached T tensor (a float
  argument would be float32); elementwise and finalize kernels launch with
  enable_fp_fusion=False (see kernels/penalty.py).
"""
import functools

import torch
import triton
import triton.language as tl

from ._multi_tensor import TL_DTYPES, opmath
from ._math import div_ieee as _div, sqrt_ieee as _sqrt
from ._launch import MAX_GRID_Y, compute_dtype as _compute, device_constant, target_programs

TILE = 1024  # elements a reduction step: [BLOCK_C, BLOCK_J]
MIN_WORK = 4096  # fewest elements worth a reduction program
BLOCK = 4096  # elements an elementwise program, as kernels/bias_leaky_relu.py
FIN_BLOCK_C = 64  # channels a finalize program
FIN_TILE = 2048  # partials a finalize step: [BLOCK_S, FIN_BLOCK_C]
_INT32_LIMIT = 2**31 - 1

# Indices into the hyper tensor (T), each value computed in double and rounded once
# (tl.constexpr: a compiled kernel may read no other global).
_SLOPE, _MOMENTUM, _ONE_MINUS_MOMENTUM, _EPS, _N, _UNBIAS = (tl.constexpr(i) for i in range(6))


@triton.jit
def _chan(n_a, mean_a, m2_a, n_b, mean_b, m2_b, COMPUTE: tl.constexpr):
    """Chan et al.'s merge of two (count, mean, M2); a count may be 0 (then exact)."""
    n = n_a + n_b
    w = _div(n_b, tl.maximum(n, 1), COMPUTE)  # n_b / n, 0 when both are empty
    delta = mean_b - mean_a
    merged = m2_a + m2_b + delta * delta * n_a * w
    # an empty side leaves the other as it is (CUDA's Welford::merge): delta * delta may be
    # inf (a mean past sqrt(FLT_MAX)) and inf * 0 is NaN
    mean = tl.where(n_a == 0, mean_b, tl.where(n_b == 0, mean_a, mean_a + delta * w))
    return n, mean, tl.where(n_a == 0, m2_b, tl.where(n_b == 0, m2_a, merged))


@triton.jit
def _chan_f32(n_a, mean_a, m2_a, n_b, mean_b, m2_b):
    return _chan(n_a, mean_a, m2_a, n_b, mean_b, m2_b, tl.float32)


@triton.jit
def _chan_f64(n_a, mean_a, m2_a, n_b, mean_b, m2_b):
    return _chan(n_a, mean_a, m2_a, n_b, mean_b, m2_b, tl.float64)


@triton.jit
def _tile(channels, inner, n, chunk, WIDE: tl.constexpr, BLOCK_C: tl.constexpr):
    """(channel indices, channel mask, first j, end j) of this program's tile."""
    c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    lo = tl.program_id(1) * chunk
    if WIDE:
        c = c.to(tl.int64)
        lo = tl.program_id(1).to(tl.int64) * chunk
    return c, c < channels, lo, tl.minimum(lo + chunk, n)


@triton.jit
def _tile_step(start, c, c_mask, hi, channels, inner, BLOCK_J: tl.constexpr):
    """(memory offsets, mask) of the [BLOCK_C, BLOCK_J] step starting at j = start."""
    j = start + tl.arange(0, BLOCK_J)
    offs = (j // inner)[None, :] * (channels * inner) + (c * inner)[:, None] + (j % inner)[None, :]
    return offs, c_mask[:, None] & (j < hi)[None, :]


@triton.jit
def _stats_partial_kernel(x_ptr, mean_p_ptr, m2_p_ptr, channels, inner, n, chunk,
                          WIDE: tl.constexpr, COMPUTE: tl.constexpr, BLOCK_C: tl.constexpr,
                          BLOCK_J: tl.constexpr):
    """(mean, M2) of the chunk of j of slice s for each channel -> partials[s, c]."""
    c, c_mask, lo, hi = _tile(channels, inner, n, chunk, WIDE, BLOCK_C)
    count = tl.zeros([], COMPUTE)
    mean = tl.zeros([BLOCK_C], COMPUTE)
    m2 = tl.zeros([BLOCK_C], COMPUTE)
    for start in range(lo, hi, BLOCK_J):
        offs, mask = _tile_step(start, c, c_mask, hi, channels, inner, BLOCK_J)
        v = tl.load(x_ptr + offs, mask=mask, other=0).to(COMPUTE)
        count_b = tl.cast(tl.minimum(hi - start, BLOCK_J), COMPUTE)
        mean_b = _div(tl.sum(v, axis=1), count_b, COMPUTE)
        d = tl.where(mask, v - mean_b[:, None], 0)
        count, mean, m2 = _chan(count, mean, m2, count_b, mean_b, tl.sum(d * d, axis=1), COMPUTE)
    out = tl.program_id(1) * channels + c
    tl.store(mean_p_ptr + out, mean, mask=c_mask)
    tl.store(m2_p_ptr + out, m2, mask=c_mask)


@triton.jit
def _stats_finalize_kernel(mean_p_ptr, m2_p_ptr, rm_ptr, rv_ptr, w_ptr, b_ptr, hyper_ptr,
                           mean_ptr, invstd_ptr, coef_ptr, channels, n, chunk, slices,
                           USE_BATCH: tl.constexpr, HAS_RUNNING: tl.constexpr,
                           HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr,
                           COMPUTE: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    """mean, invstd (C,) T; coef = [scale = w * invstd (C) | shift = b (C)] T; the running
    statistics updated when USE_BATCH and HAS_RUNNING."""
    c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = c < channels
    if USE_BATCH:
        count = tl.zeros([BLOCK_C], COMPUTE)
        mean = tl.zeros([BLOCK_C], COMPUTE)
        m2 = tl.zeros([BLOCK_C], COMPUTE)
        for s0 in range(0, slices, BLOCK_S):
            s = tl.cast(s0, tl.int64) + tl.arange(0, BLOCK_S)
            mask = (s < slices)[:, None] & c_mask[None, :]
            at = s[:, None] * channels + c[None, :]
            p_mean = tl.load(mean_p_ptr + at, mask=mask, other=0)
            p_m2 = tl.load(m2_p_ptr + at, mask=mask, other=0)
            p_count = tl.minimum(tl.maximum(n - s * chunk, 0), chunk).to(COMPUTE)  # 0 past the end
            p_count = tl.where(mask, p_count[:, None], 0)
            if COMPUTE == tl.float32:
                t_count, t_mean, t_m2 = tl.reduce((p_count, p_mean, p_m2), 0, _chan_f32)
            else:
                t_count, t_mean, t_m2 = tl.reduce((p_count, p_mean, p_m2), 0, _chan_f64)
            count, mean, m2 = _chan(count, mean, m2, t_count, t_mean, t_m2, COMPUTE)
        n_t = tl.load(hyper_ptr + _N)
        var = _div(m2, n_t, COMPUTE)
        if HAS_RUNNING:
            unbiased = var * tl.load(hyper_ptr + _UNBIAS)  # var * round(n / (n - 1)), as CUDA, C++, torch
            keep = tl.load(hyper_ptr + _ONE_MINUS_MOMENTUM)
            momentum = tl.load(hyper_ptr + _MOMENTUM)
            rm = tl.load(rm_ptr + c, mask=c_mask).to(COMPUTE)
            rv = tl.load(rv_ptr + c, mask=c_mask).to(COMPUTE)
            tl.store(rm_ptr + c, (keep * rm + momentum * mean).to(rm_ptr.dtype.element_ty),
                     mask=c_mask)
            tl.store(rv_ptr + c, (keep * rv + momentum * unbiased).to(rv_ptr.dtype.element_ty),
                     mask=c_mask)
    else:
        mean = tl.load(rm_ptr + c, mask=c_mask).to(COMPUTE)
        var = tl.load(rv_ptr + c, mask=c_mask).to(COMPUTE)
    invstd = _div(tl.full([BLOCK_C], 1, COMPUTE), _sqrt(var + tl.load(hyper_ptr + _EPS), COMPUTE),
                  COMPUTE)
    tl.store(mean_ptr + c, mean, mask=c_mask)
    tl.store(invstd_ptr + c, invstd, mask=c_mask)
    scale = invstd
    if HAS_WEIGHT:
        scale = tl.load(w_ptr + c, mask=c_mask).to(COMPUTE) * invstd
    tl.store(coef_ptr + c, scale, mask=c_mask)
    if HAS_BIAS:
        tl.store(coef_ptr + channels + c, tl.load(b_ptr + c, mask=c_mask).to(COMPUTE), mask=c_mask)
    else:
        tl.store(coef_ptr + channels + c, tl.zeros([BLOCK_C], COMPUTE), mask=c_mask)


@triton.jit
def _offsets(numel, channel_stride, channels, WIDE: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    if WIDE:
        pid = pid.to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    return offs, offs < numel, (offs // channel_stride) % channels


@triton.jit
def _apply_kernel(x_ptr, mean_ptr, coef_ptr, hyper_ptr, out_ptr, numel, channel_stride, channels,
                  WIDE: tl.constexpr, DTYPE: tl.constexpr, COMPUTE: tl.constexpr,
                  BLOCK: tl.constexpr):
    """out = leaky_relu((x - mean_c) * scale_c + shift_c): bn_act_value."""
    offs, mask, c = _offsets(numel, channel_stride, channels, WIDE, BLOCK)
    x = tl.load(x_ptr + offs, mask=mask).to(COMPUTE)
    v = (x - tl.load(mean_ptr + c, mask=mask)) * tl.load(coef_ptr + c, mask=mask) \
        + tl.load(coef_ptr + channels + c, mask=mask)
    y = tl.where(v > 0, v, v * tl.load(hyper_ptr + _SLOPE))
    tl.store(out_ptr + offs, y.to(DTYPE), mask=mask)


@triton.jit
def _grad_partial_kernel(go_ptr, out_ptr, x_ptr, mean_ptr, invstd_ptr, hyper_ptr, sum_g_p_ptr,
                         sum_gx_p_ptr, channels, inner, n, chunk, WIDE: tl.constexpr,
                         COMPUTE: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_J: tl.constexpr):
    """partials[s, c] of sum g and sum g * xhat over the chunk of slice s."""
    c, c_mask, lo, hi = _tile(channels, inner, n, chunk, WIDE, BLOCK_C)
    slope = tl.load(hyper_ptr + _SLOPE)
    mean = tl.load(mean_ptr + c, mask=c_mask, other=0)[:, None]
    invstd = tl.load(invstd_ptr + c, mask=c_mask, other=0)[:, None]
    acc_g = tl.zeros([BLOCK_C, BLOCK_J], COMPUTE)
    acc_gx = tl.zeros([BLOCK_C, BLOCK_J], COMPUTE)
    for start in range(lo, hi, BLOCK_J):
        offs, mask = _tile_step(start, c, c_mask, hi, channels, inner, BLOCK_J)
        go = tl.load(go_ptr + offs, mask=mask, other=0).to(COMPUTE)
        y = tl.load(out_ptr + offs, mask=mask, other=0).to(COMPUTE)
        x = tl.load(x_ptr + offs, mask=mask, other=0).to(COMPUTE)
        g = tl.where(y > 0, go, go * slope)
        acc_g += g
        acc_gx += tl.where(mask, g * ((x - mean) * invstd), 0)  # 0 * inf invstd off the tile
    out = tl.program_id(1) * channels + c
    tl.store(sum_g_p_ptr + out, tl.sum(acc_g, axis=1), mask=c_mask)
    tl.store(sum_gx_p_ptr + out, tl.sum(acc_gx, axis=1), mask=c_mask)


@triton.jit
def _grad_finalize_kernel(sum_g_p_ptr, sum_gx_p_ptr, w_ptr, invstd_ptr, hyper_ptr, grad_w_ptr,
                          grad_b_ptr, coef_ptr, channels, slices, HAS_WEIGHT: tl.constexpr,
                          COMPUTE: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    """grad_bias = sum g, grad_weight = sum g * xhat (C,) T; coef = [scale = w * invstd |
    sum g / n | sum g * xhat / n], each (C,) T."""
    c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = c < channels
    sum_g = tl.zeros([BLOCK_C], COMPUTE)
    sum_gx = tl.zeros([BLOCK_C], COMPUTE)
    for s0 in range(0, slices, BLOCK_S):
        s = tl.cast(s0, tl.int64) + tl.arange(0, BLOCK_S)
        mask = (s < slices)[:, None] & c_mask[None, :]
        at = s[:, None] * channels + c[None, :]
        sum_g += tl.sum(tl.load(sum_g_p_ptr + at, mask=mask, other=0), axis=0)
        sum_gx += tl.sum(tl.load(sum_gx_p_ptr + at, mask=mask, other=0), axis=0)
    tl.store(grad_b_ptr + c, sum_g, mask=c_mask)
    tl.store(grad_w_ptr + c, sum_gx, mask=c_mask)
    scale = tl.load(invstd_ptr + c, mask=c_mask)
    if HAS_WEIGHT:
        scale = tl.load(w_ptr + c, mask=c_mask).to(COMPUTE) * scale
    n_t = tl.load(hyper_ptr + _N)
    tl.store(coef_ptr + c, scale, mask=c_mask)
    tl.store(coef_ptr + channels + c, _div(sum_g, n_t, COMPUTE), mask=c_mask)
    tl.store(coef_ptr + 2 * channels + c, _div(sum_gx, n_t, COMPUTE), mask=c_mask)


@triton.jit
def _grad_x_kernel(go_ptr, out_ptr, x_ptr, mean_ptr, invstd_ptr, coef_ptr, hyper_ptr, gx_ptr,
                   numel, channel_stride, channels, USE_BATCH: tl.constexpr, WIDE: tl.constexpr,
                   DTYPE: tl.constexpr, COMPUTE: tl.constexpr, BLOCK: tl.constexpr):
    """grad_x = bn_act_grad_x(g, xhat, scale, mean_g, mean_gx), or scale * g (eval)."""
    offs, mask, c = _offsets(numel, channel_stride, channels, WIDE, BLOCK)
    go = tl.load(go_ptr + offs, mask=mask).to(COMPUTE)
    y = tl.load(out_ptr + offs, mask=mask).to(COMPUTE)
    g = tl.where(y > 0, go, go * tl.load(hyper_ptr + _SLOPE))
    scale = tl.load(coef_ptr + c, mask=mask)
    if USE_BATCH:
        x = tl.load(x_ptr + offs, mask=mask).to(COMPUTE)
        xhat = (x - tl.load(mean_ptr + c, mask=mask)) * tl.load(invstd_ptr + c, mask=mask)
        mean_g = tl.load(coef_ptr + channels + c, mask=mask)
        mean_gx = tl.load(coef_ptr + 2 * channels + c, mask=mask)
        d = scale * (g - mean_g - xhat * mean_gx)
    else:
        d = scale * g
    tl.store(gx_ptr + offs, d.to(DTYPE), mask=mask)


@device_constant
def _hyper(slope, momentum, eps, n, compute, device):
    """[slope, momentum, 1 - momentum, eps, n, n / (n - 1)] in T on the device (cached), each
    computed in double and rounded once."""
    values = [slope, momentum, 1.0 - momentum, eps, float(n), n / (n - 1) if n > 1 else float("inf")]
    return torch.tensor(values, dtype=compute).to(device)


def _walk(x):
    """(channels, inner = channel_stride, n per channel) of x, as channel_walk."""
    channels = x.shape[1]
    inner = x.stride(1) if channels > 1 else 1
    return channels, inner, x.numel() // channels


@functools.lru_cache(maxsize=256)
def _plan(channels, inner, n, device):
    """(BLOCK_C, BLOCK_J, chunk, slices) of a per-channel split reduction."""
    if inner == 1:  # channels_last / 2-D / C = 1: channels side by side in memory
        block_c = min(triton.next_power_of_2(channels), 64)
    else:  # runs of `inner` elements: group channels only when the runs are short
        block_c = min(triton.next_power_of_2(channels), max(1, 32 // triton.next_power_of_2(inner)))
    block_j = min(TILE // block_c, triton.next_power_of_2(n))
    channel_blocks = triton.cdiv(channels, block_c)
    target = target_programs(device)
    slices = max(1, min(triton.cdiv(target, channel_blocks), triton.cdiv(n * block_c, MIN_WORK),
                        MAX_GRID_Y))
    chunk = triton.cdiv(triton.cdiv(n, slices), block_j) * block_j  # whole steps a slice
    return block_c, block_j, chunk, triton.cdiv(n, chunk)


def _finalize_blocks(channels, slices):
    block_c = min(triton.next_power_of_2(channels), FIN_BLOCK_C)
    block_s = min(triton.next_power_of_2(slices), max(1, FIN_TILE // block_c))
    return block_c, block_s, triton.cdiv(channels, block_c)


def batch_norm_act(x, weight, bias, running_mean, running_var, use_batch_stats, momentum, eps,
                   slope):
    """(out like x, mean (C,) T, invstd (C,) T); running_mean/running_var updated in place
    when given and use_batch_stats."""
    channels, inner, n = _walk(x)
    compute = _compute(x.dtype)
    hyper = _hyper(slope, momentum, eps, n, compute, x.device)
    numel = x.numel()
    wide = numel + BLOCK > _INT32_LIMIT
    mean = torch.empty(channels, dtype=compute, device=x.device)
    invstd = torch.empty(channels, dtype=compute, device=x.device)
    coef = torch.empty(2 * channels, dtype=compute, device=x.device)
    has_running = running_mean is not None
    chunk = slices = 1
    partial_mean = partial_m2 = mean
    if use_batch_stats:
        block_c, block_j, chunk, slices = _plan(channels, inner, n, x.device)
        partial_mean = torch.empty((slices, channels), dtype=compute, device=x.device)
        partial_m2 = torch.empty((slices, channels), dtype=compute, device=x.device)
        _stats_partial_kernel[(triton.cdiv(channels, block_c), slices)](
            x, partial_mean, partial_m2, channels, inner, n, chunk, WIDE=wide,
            COMPUTE=opmath(x.dtype), BLOCK_C=block_c, BLOCK_J=block_j)
    fin_c, fin_s, fin_grid = _finalize_blocks(channels, slices)
    _stats_finalize_kernel[(fin_grid,)](
        partial_mean, partial_m2, running_mean if has_running else mean,
        running_var if has_running else mean, x if weight is None else weight,
        x if bias is None else bias, hyper, mean, invstd, coef, channels, n, chunk, slices,
        USE_BATCH=bool(use_batch_stats), HAS_RUNNING=has_running, HAS_WEIGHT=weight is not None,
        HAS_BIAS=bias is not None, COMPUTE=opmath(x.dtype), BLOCK_C=fin_c, BLOCK_S=fin_s,
        enable_fp_fusion=False)
    out = torch.empty_like(x)
    _apply_kernel[(triton.cdiv(numel, BLOCK),)](
        x, mean, coef, hyper, out, numel, inner, channels, WIDE=wide, DTYPE=TL_DTYPES[x.dtype],
        COMPUTE=opmath(x.dtype), BLOCK=BLOCK, enable_fp_fusion=False)
    return out, mean, invstd


def batch_norm_act_backward(grad_out, out, x, weight, mean, invstd, use_batch_stats, slope):
    """(grad_x like x, grad_weight (C,) T, grad_bias (C,) T): two passes over the data."""
    channels, inner, n = _walk(x)
    compute = _compute(x.dtype)
    hyper = _hyper(slope, 0.0, 0.0, n, compute, x.device)
    numel = x.numel()
    wide = numel + BLOCK > _INT32_LIMIT
    block_c, block_j, chunk, slices = _plan(channels, inner, n, x.device)
    sum_g_p = torch.empty((slices, channels), dtype=compute, device=x.device)
    sum_gx_p = torch.empty((slices, channels), dtype=compute, device=x.device)
    _grad_partial_kernel[(triton.cdiv(channels, block_c), slices)](
        grad_out, out, x, mean, invstd, hyper, sum_g_p, sum_gx_p, channels, inner, n, chunk,
        WIDE=wide, COMPUTE=opmath(x.dtype), BLOCK_C=block_c, BLOCK_J=block_j)
    grad_weight = torch.empty(channels, dtype=compute, device=x.device)
    grad_bias = torch.empty(channels, dtype=compute, device=x.device)
    coef = torch.empty(3 * channels, dtype=compute, device=x.device)
    fin_c, fin_s, fin_grid = _finalize_blocks(channels, slices)
    _grad_finalize_kernel[(fin_grid,)](
        sum_g_p, sum_gx_p, invstd if weight is None else weight, invstd, hyper, grad_weight,
        grad_bias, coef, channels, slices, HAS_WEIGHT=weight is not None,
        COMPUTE=opmath(x.dtype), BLOCK_C=fin_c, BLOCK_S=fin_s, enable_fp_fusion=False)
    grad_x = torch.empty_like(x)
    _grad_x_kernel[(triton.cdiv(numel, BLOCK),)](
        grad_out, out, x, mean, invstd, coef, hyper, grad_x, numel, inner, channels,
        USE_BATCH=bool(use_batch_stats), WIDE=wide, DTYPE=TL_DTYPES[x.dtype],
        COMPUTE=opmath(x.dtype), BLOCK=BLOCK, enable_fp_fusion=False)
    return grad_x, grad_weight, grad_bias
