"""Per-sample normalization + leaky ReLU (nn.GroupNorm(1, C), then the activation), fused at
every order a gradient penalty needs: forward, backward, double backward.

Formulas: the schema comments of sample_norm_act, sample_norm_act_backward and
sample_norm_act_double_backward in csrc/ops.cpp (element math: csrc/sample_norm_act.h), in
T = float64 for float64 x, float32 otherwise (16-bit values are read as float32), with IEEE
square roots and divisions (kernels/_math.py), rounded once to x's dtype.

x (N, C, ...) is dense with sample n the M = numel / N elements [n*M, (n+1)*M) from its data
pointer (NCHW, channels_last, 2-D); the channel of offset i is (i // inner) % C with
inner = x.stride(1) (NCHW: H*W; channels_last and 2-D: 1), the same within a sample as in
the whole tensor. Every grid is 1-D: program p of a pass over "(sample, part)" pairs is
part p % P of sample p // P, so no element needs a division to find its sample and any N
works.

- Forward. Pass 1: (sample, slice) programs, each walking a chunk of its sample's elements
  in REDUCE_BLOCK steps; a step's (count, mean, M2) is exact two-pass over the registers,
  merged into the program's by Chan's formula (kernels/batch_norm_act.py): no sum of
  squares, so x = 1000 + noise keeps its variance in float32. Pass 2: (sample, block)
  programs; each merges its sample's S partials (a tl.reduce tree of Chan merges: the same
  bits in every program of the sample), takes rstd, and writes its block of outputs; block
  0 writes mean and rstd.
- Backward and double backward, pass 1: a sample is seen as the (C, Mc) matrix of its
  channels (Mc = M / C), element (c, j) at (j // inner) * C * inner + c * inner + j % inner,
  reduced in [BLOCK_C, BLOCK_J] tiles (kernels/batch_norm_act.py's walk within one sample);
  a slice is a group of channel blocks times a chunk of j. A tile row gives a channel's
  sums (G = sum g, GX = sum g * xhat, GG = sum g * (ggx - K)), stored per (sample, chunk of
  j, channel) when a per-channel result needs them; the per-sample sums of the schema come
  from the same rows: SA = sum_c w_c G_c, TA = sum_c w_c GX_c, SU and TU likewise with ggw,
  SAG' = sum_c w_c GG_c, and S1' = sum (ggx - K), S2 = sum (ggx - K) * xhat directly.
  K is ggx's first element in sample n: every sum of ggx is taken about it, and the
  schema's terms are rewritten in those sums (S1 / M = K + S1' / M,
  SAG - SA * S1 / M = SAG' - SA * S1' / M, and S2 as above since sum xhat = 0), so a ggx
  with a large mean (1000 + noise) does not cancel in float32.
- Pass 2 of both: (sample, block) elementwise programs (the sample's partials summed in a
  fixed order, its coefficients computed once a program), preceded in the same grid (so
  they run beside the first wave) by programs of FIN_BLOCK_C channels finishing the
  per-channel results over the stored rows in a fixed order: grad_bias = sum G,
  grad_weight = sum GX, and
  d_weight_c = sum_n rstd_n * (GG_nc - (S1'_n / M) G_nc - (S2_n / M) GX_nc), which is
  sum p * g over channel c. No atomics: the same bits every run (they depend on the slice
  count, so on the GPU model).
- One slice a sample (M <= MIN_WORK, or N past the programs that fill the device): pass 1's
  program finishes its own sample (statistics, then its elements) and pass 2 runs only
  when a per-channel result needs finishing. Launches: forward 1 or 2; backward 1 or 2
  (2 with channel_grads); double backward 1 or 2 (2 with a weight and ggx or ggw; with
  neither ggx nor ggw there is no pass 1, and d_grad_out = m * ggb_c, d_x = 0).
- slope, eps and M travel in a cached T tensor (a float argument would be float32); every
  launch that writes an output or a finished value runs with enable_fp_fusion=False (see
  kernels/penalty.py), the launches that only write partial sums may fuse. Offsets are
  int32 unless x reaches 2^31 elements.
"""
import functools

import torch
import triton
import triton.language as tl

from ._multi_tensor import TL_DTYPES, opmath
from ._math import div_ieee as _div, sqrt_ieee as _sqrt
from ._launch import compute_dtype as _compute, device_constant, target_programs
from .batch_norm_act import _chan, _chan_f32, _chan_f64, _tile_step

REDUCE_BLOCK = 1024  # elements a step of the forward's statistics
TILE = 1024  # elements a step of the backward's reductions: [BLOCK_C, BLOCK_J]
BLOCK = 4096  # elements an elementwise program, as kernels/bias_leaky_relu.py
MIN_WORK = 16384  # fewest elements worth a slice: below, a second pass over the sample in
#                   the same program costs less than a second launch
FIN_BLOCK_C = 64  # channels a finalize program
FIN_TILE = 2048  # stored rows x channels a finalize step
_INT32_LIMIT = 2**31 - 1

# Indices into the hyper tensor (T), each value rounded once from double (tl.constexpr: a
# compiled kernel may read no other global).
_SLOPE, _EPS, _M = (tl.constexpr(i) for i in range(3))
# Per-sample partials of the double backward, in this order: sums about K, then SA .. TU.
_S1, _S2, _SAG, _SA, _TA, _SU, _TU = (tl.constexpr(i) for i in range(7))
_NUM_DOUBLE_SUMS = 7


@triton.jit
def _program(parts, first, WIDE: tl.constexpr):
    """(sample, part) of this program on a 1-D grid of N * parts programs from program first."""
    pid = tl.program_id(0)
    if WIDE:
        pid = pid.to(tl.int64)
    pid -= first
    return pid // parts, pid % parts


@triton.jit
def _rstd(m2, hyper_ptr, COMPUTE: tl.constexpr):
    """1 / sqrt(M2 / M + eps)."""
    var = _div(m2, tl.load(hyper_ptr + _M), COMPUTE)
    return _div(tl.full([], 1, COMPUTE), _sqrt(var + tl.load(hyper_ptr + _EPS), COMPUTE), COMPUTE)


@triton.jit
def _sample_sum(p_ptr, n, slices, S_POW2: tl.constexpr):
    """Sum of the `slices` partials of sample n (p_ptr[n * slices + s]), a fixed tree."""
    s = tl.arange(0, S_POW2)
    return tl.sum(tl.load(p_ptr + n * slices + s, mask=s < slices, other=0), axis=0)


# ---- forward -------------------------------------------------------------------------------

@triton.jit
def _apply_block(x_ptr, w_ptr, b_ptr, out_ptr, base, j0, m, mean, rstd, slope, channels, inner,
                 HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, DTYPE: tl.constexpr,
                 COMPUTE: tl.constexpr, BLOCK: tl.constexpr):
    """out = leaky_relu((x - mean) * rstd * w_c + b_c) for elements [j0, j0 + BLOCK) of a sample."""
    j = j0 + tl.arange(0, BLOCK)
    mask = j < m
    c = (j // inner) % channels
    v = (tl.load(x_ptr + base + j, mask=mask).to(COMPUTE) - mean) * rstd
    if HAS_WEIGHT:
        v = v * tl.load(w_ptr + c, mask=mask).to(COMPUTE)  # any float weight dtype
    if HAS_BIAS:
        v = v + tl.load(b_ptr + c, mask=mask).to(COMPUTE)
    y = tl.where(v > 0, v, v * slope)
    tl.store(out_ptr + base + j, y.to(DTYPE), mask=mask)


@triton.jit
def _forward_stats_kernel(x_ptr, w_ptr, b_ptr, hyper_ptr, out_ptr, mean_ptr, rstd_ptr, mean_p_ptr,
                          m2_p_ptr, m, chunk, slices, channels, inner, FUSED: tl.constexpr,
                          HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, WIDE: tl.constexpr,
                          DTYPE: tl.constexpr, COMPUTE: tl.constexpr, RBLOCK: tl.constexpr,
                          BLOCK: tl.constexpr):
    """(mean, M2) of a chunk of a sample -> partials[n * slices + s]; FUSED (one slice): the
    sample's mean and rstd, then its outputs."""
    n, s = _program(slices, 0, WIDE)
    base = n * m
    lo = s * chunk
    hi = tl.minimum(lo + chunk, m)
    count = tl.zeros([], COMPUTE)
    mean = tl.zeros([], COMPUTE)
    m2 = tl.zeros([], COMPUTE)
    for start in range(lo, hi, RBLOCK):
        j = start + tl.arange(0, RBLOCK)
        mask = j < hi
        v = tl.load(x_ptr + base + j, mask=mask, other=0).to(COMPUTE)
        count_b = tl.cast(tl.minimum(hi - start, RBLOCK), COMPUTE)
        mean_b = _div(tl.sum(v, axis=0), count_b, COMPUTE)
        d = tl.where(mask, v - mean_b, 0)
        count, mean, m2 = _chan(count, mean, m2, count_b, mean_b, tl.sum(d * d, axis=0), COMPUTE)
    if FUSED:
        rstd = _rstd(m2, hyper_ptr, COMPUTE)
        tl.store(mean_ptr + n, mean)
        tl.store(rstd_ptr + n, rstd)
        slope = tl.load(hyper_ptr + _SLOPE)
        for j0 in range(0, m, BLOCK):
            _apply_block(x_ptr, w_ptr, b_ptr, out_ptr, base, j0, m, mean, rstd, slope, channels,
                         inner, HAS_WEIGHT, HAS_BIAS, DTYPE, COMPUTE, BLOCK)
    else:
        tl.store(mean_p_ptr + n * slices + s, mean)
        tl.store(m2_p_ptr + n * slices + s, m2)


@triton.jit
def _forward_apply_kernel(x_ptr, w_ptr, b_ptr, hyper_ptr, mean_p_ptr, m2_p_ptr, out_ptr, mean_ptr,
                          rstd_ptr, m, chunk, slices, blocks, channels, inner,
                          HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, WIDE: tl.constexpr,
                          DTYPE: tl.constexpr, COMPUTE: tl.constexpr, S_POW2: tl.constexpr,
                          BLOCK: tl.constexpr):
    """The sample's statistics from its partials (Chan merges, a fixed tree), then a block of
    outputs; block 0 writes mean and rstd."""
    n, blk = _program(blocks, 0, WIDE)
    s = tl.arange(0, S_POW2).to(tl.int64)
    s_mask = s < slices
    p_mean = tl.load(mean_p_ptr + n * slices + s, mask=s_mask, other=0)
    p_m2 = tl.load(m2_p_ptr + n * slices + s, mask=s_mask, other=0)
    p_count = tl.where(s_mask, tl.minimum(tl.maximum(m - s * chunk, 0), chunk), 0).to(COMPUTE)
    if COMPUTE == tl.float32:
        count, mean, m2 = tl.reduce((p_count, p_mean, p_m2), 0, _chan_f32)
    else:
        count, mean, m2 = tl.reduce((p_count, p_mean, p_m2), 0, _chan_f64)
    rstd = _rstd(m2, hyper_ptr, COMPUTE)
    if blk == 0:
        tl.store(mean_ptr + n, mean)
        tl.store(rstd_ptr + n, rstd)
    _apply_block(x_ptr, w_ptr, b_ptr, out_ptr, n * m, blk * BLOCK, m, mean, rstd,
                 tl.load(hyper_ptr + _SLOPE), channels, inner, HAS_WEIGHT, HAS_BIAS, DTYPE, COMPUTE,
                 BLOCK)


# ---- the backward's and double backward's reductions ----------------------------------------

@triton.jit
def _slice(slices, k_slices, width, channels, mc, chunk, WIDE: tl.constexpr):
    """(n, s, k, first channel, end channel, first j, end j) of this pass-1 program: slice
    s = (channel group s // k_slices) x (chunk of j s % k_slices) of sample n."""
    n, s = _program(slices, 0, WIDE)
    k = s % k_slices
    c_lo = (s // k_slices) * width
    lo = k * chunk
    return n, s, k, c_lo, tl.minimum(c_lo + width, channels), lo, tl.minimum(lo + chunk, mc)


@triton.jit
def _channel_total(cp_ptr, q, rows, channels, c, c_mask, COMPUTE: tl.constexpr,
                   FIN_BLOCK_C: tl.constexpr, FIN_BLOCK_R: tl.constexpr):
    """Sum over the stored rows of quantity q's per-channel partials, in row order."""
    acc = tl.zeros([FIN_BLOCK_C], COMPUTE)
    for r0 in range(0, rows, FIN_BLOCK_R):
        r = tl.arange(0, FIN_BLOCK_R).to(tl.int64) + r0
        mask = (r < rows)[:, None] & c_mask[None, :]
        at = (q * tl.cast(rows, tl.int64) + r)[:, None] * channels + c[None, :]  # q * rows may pass 2^31
        acc += tl.sum(tl.load(cp_ptr + at, mask=mask, other=0), axis=0)
    return acc


@triton.jit
def _grad_x_block(go_ptr, out_ptr, x_ptr, w_ptr, gx_ptr, base, j0, m, mean, rstd, mean_s, mean_sx,
                  slope, channels, inner, HAS_WEIGHT: tl.constexpr, DTYPE: tl.constexpr,
                  COMPUTE: tl.constexpr, BLOCK: tl.constexpr):
    """grad_x = rstd * (a - SA / M - xhat * TA / M) for elements [j0, j0 + BLOCK) of a sample."""
    j = j0 + tl.arange(0, BLOCK)
    mask = j < m
    c = (j // inner) % channels
    go = tl.load(go_ptr + base + j, mask=mask).to(COMPUTE)
    y = tl.load(out_ptr + base + j, mask=mask).to(COMPUTE)
    a = tl.where(y > 0, go, go * slope)
    if HAS_WEIGHT:
        a = a * tl.load(w_ptr + c, mask=mask).to(COMPUTE)
    xhat = (tl.load(x_ptr + base + j, mask=mask).to(COMPUTE) - mean) * rstd
    d = rstd * (a - mean_s - xhat * mean_sx)
    tl.store(gx_ptr + base + j, d.to(DTYPE), mask=mask)


@triton.jit
def _backward_sums_kernel(go_ptr, out_ptr, x_ptr, w_ptr, mean_ptr, rstd_ptr, hyper_ptr, sp_ptr,
                          cp_ptr, gx_ptr, m, mc, chunk, slices, k_slices, width, total, rows,
                          channels, inner, FUSED: tl.constexpr, CHANNEL: tl.constexpr,
                          HAS_WEIGHT: tl.constexpr, WIDE: tl.constexpr, DTYPE: tl.constexpr,
                          COMPUTE: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_J: tl.constexpr,
                          BLOCK: tl.constexpr):
    """Partials SA, TA of the slice -> sp[q * total + n * slices + s]; with CHANNEL, G and GX of
    its channels -> cp[(q * rows + n * k_slices + k) * C + c]. FUSED (one slice): then the
    sample's grad_x."""
    n, s, k, c_lo, c_hi, lo, hi = _slice(slices, k_slices, width, channels, mc, chunk, WIDE)
    base = n * m
    mean = tl.load(mean_ptr + n)
    rstd = tl.load(rstd_ptr + n)
    slope = tl.load(hyper_ptr + _SLOPE)
    row = (n * k_slices + k).to(tl.int64)
    sa = tl.zeros([], COMPUTE)
    ta = tl.zeros([], COMPUTE)
    for c0 in range(c_lo, c_hi, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        c_mask = c < c_hi
        acc_g = tl.zeros([BLOCK_C, BLOCK_J], COMPUTE)
        acc_gx = tl.zeros([BLOCK_C, BLOCK_J], COMPUTE)
        for start in range(lo, hi, BLOCK_J):
            offs, mask = _tile_step(start, c, c_mask, hi, channels, inner, BLOCK_J)
            go = tl.load(go_ptr + base + offs, mask=mask, other=0).to(COMPUTE)
            y = tl.load(out_ptr + base + offs, mask=mask, other=0).to(COMPUTE)
            x = tl.load(x_ptr + base + offs, mask=mask, other=0).to(COMPUTE)
            g = tl.where(y > 0, go, go * slope)  # 0 off the tile
            acc_g += g
            acc_gx += tl.where(mask, g * ((x - mean) * rstd), 0)  # 0 * inf rstd off the tile
        sum_g = tl.sum(acc_g, axis=1)
        sum_gx = tl.sum(acc_gx, axis=1)
        if CHANNEL:
            tl.store(cp_ptr + row * channels + c, sum_g, mask=c_mask)
            tl.store(cp_ptr + (rows + row) * channels + c, sum_gx, mask=c_mask)
        if HAS_WEIGHT:
            w = tl.load(w_ptr + c, mask=c_mask, other=0).to(COMPUTE)
            sum_g = w * sum_g
            sum_gx = w * sum_gx
        sa += tl.sum(sum_g, axis=0)
        ta += tl.sum(sum_gx, axis=0)
    tl.store(sp_ptr + n * slices + s, sa)
    tl.store(sp_ptr + total + n * slices + s, ta)
    if FUSED:
        m_t = tl.load(hyper_ptr + _M)
        mean_s = _div(sa, m_t, COMPUTE)
        mean_sx = _div(ta, m_t, COMPUTE)
        for j0 in range(0, m, BLOCK):
            _grad_x_block(go_ptr, out_ptr, x_ptr, w_ptr, gx_ptr, base, j0, m, mean, rstd, mean_s,
                          mean_sx, slope, channels, inner, HAS_WEIGHT, DTYPE, COMPUTE, BLOCK)


@triton.jit
def _backward_apply_kernel(go_ptr, out_ptr, x_ptr, w_ptr, mean_ptr, rstd_ptr, hyper_ptr, sp_ptr,
                           cp_ptr, gx_ptr, gw_ptr, gb_ptr, m, slices, total, blocks, fin_programs,
                           rows, channels, inner, CHANNEL: tl.constexpr, HAS_WEIGHT: tl.constexpr,
                           WIDE: tl.constexpr, DTYPE: tl.constexpr, COMPUTE: tl.constexpr,
                           S_POW2: tl.constexpr, BLOCK: tl.constexpr, FIN_BLOCK_C: tl.constexpr,
                           FIN_BLOCK_R: tl.constexpr):
    """Programs [0, fin_programs) (CHANNEL): FIN_BLOCK_C channels of grad_bias = sum G and
    grad_weight = sum GX over the stored rows; the rest: a block of grad_x each."""
    pid = tl.program_id(0)
    if pid >= fin_programs:
        n, blk = _program(blocks, fin_programs, WIDE)
        m_t = tl.load(hyper_ptr + _M)
        mean_s = _div(_sample_sum(sp_ptr, n, slices, S_POW2), m_t, COMPUTE)
        mean_sx = _div(_sample_sum(sp_ptr + total, n, slices, S_POW2), m_t, COMPUTE)
        _grad_x_block(go_ptr, out_ptr, x_ptr, w_ptr, gx_ptr, n * m, blk * BLOCK, m,
                      tl.load(mean_ptr + n), tl.load(rstd_ptr + n), mean_s, mean_sx,
                      tl.load(hyper_ptr + _SLOPE), channels, inner, HAS_WEIGHT, DTYPE, COMPUTE,
                      BLOCK)
    else:
        if CHANNEL:
            c = pid * FIN_BLOCK_C + tl.arange(0, FIN_BLOCK_C)
            c_mask = c < channels
            tl.store(gb_ptr + c, _channel_total(cp_ptr, 0, rows, channels, c, c_mask, COMPUTE,
                                                FIN_BLOCK_C, FIN_BLOCK_R), mask=c_mask)
            tl.store(gw_ptr + c, _channel_total(cp_ptr, 1, rows, channels, c, c_mask, COMPUTE,
                                                FIN_BLOCK_C, FIN_BLOCK_R), mask=c_mask)


# ---- the double backward ---------------------------------------------------------------------

@triton.jit
def _double_block(ggx_ptr, ggw_ptr, ggb_ptr, go_ptr, out_ptr, x_ptr, w_ptr, hyper_ptr, dgo_ptr,
                  dx_ptr, base, j0, m, mean, rstd, shift, s1, s2, sag, sa, ta, su, tu, slope,
                  channels, inner, HAS_GGX: tl.constexpr, HAS_GGW: tl.constexpr,
                  HAS_GGB: tl.constexpr, HAS_WEIGHT: tl.constexpr, DTYPE: tl.constexpr,
                  COMPUTE: tl.constexpr, BLOCK: tl.constexpr):
    """d_grad_out and d_x (csrc/ops.cpp) for elements [j0, j0 + BLOCK) of a sample, given its
    sums (those of ggx about K)."""
    m_t = tl.load(hyper_ptr + _M)
    j = j0 + tl.arange(0, BLOCK)
    mask = j < m
    c = (j // inner) % channels
    y = tl.load(out_ptr + base + j, mask=mask).to(COMPUTE)
    positive = y > 0
    d_go = tl.zeros([BLOCK], COMPUTE)
    d_x = tl.zeros([BLOCK], COMPUTE)
    if HAS_GGX or HAS_GGW:
        go = tl.load(go_ptr + base + j, mask=mask).to(COMPUTE)
        g = tl.where(positive, go, go * slope)
        xhat = (tl.load(x_ptr + base + j, mask=mask).to(COMPUTE) - mean) * rstd
        if HAS_GGX:
            p = rstd * ((tl.load(ggx_ptr + base + j, mask=mask).to(COMPUTE) - shift)
                        - _div(s1, m_t, COMPUTE) - xhat * _div(s2, m_t, COMPUTE))
            a = g
            pw = p
            if HAS_WEIGHT:
                w = tl.load(w_ptr + c, mask=mask).to(COMPUTE)
                a = g * w
                pw = p * w
            la = rstd * (a - _div(sa, m_t, COMPUTE) - xhat * _div(ta, m_t, COMPUTE))
            # SAG - SA * S1 / M - TA * S2 / M, with the sums of ggx about K
            inner_sum = sag - _div(sa * s1, m_t, COMPUTE) - _div(ta * s2, m_t, COMPUTE)
            r_m = _div(rstd, m_t, COMPUTE)
            c_xhat = -(_div(rstd * rstd, m_t, COMPUTE) * inner_sum)
            d_go = d_go + pw
            d_x = d_x + (c_xhat * xhat + (-(r_m * s2)) * la + (-(r_m * ta)) * p)
        if HAS_GGW:
            v = tl.load(ggw_ptr + c, mask=mask).to(COMPUTE)
            lu = rstd * (g * v - _div(su, m_t, COMPUTE) - xhat * _div(tu, m_t, COMPUTE))
            d_go = d_go + v * xhat
            d_x = d_x + lu
    if HAS_GGB:
        d_go = d_go + tl.load(ggb_ptr + c, mask=mask).to(COMPUTE)
    d_go = tl.where(positive, d_go, d_go * slope)
    tl.store(dgo_ptr + base + j, d_go.to(DTYPE), mask=mask)
    tl.store(dx_ptr + base + j, d_x.to(DTYPE), mask=mask)


@triton.jit
def _double_sums_kernel(ggx_ptr, ggw_ptr, go_ptr, out_ptr, x_ptr, w_ptr, mean_ptr, rstd_ptr,
                        hyper_ptr, sp_ptr, cp_ptr, ggb_ptr, dgo_ptr, dx_ptr, m, mc, chunk, slices,
                        k_slices, width, total, rows, channels, inner, FUSED: tl.constexpr,
                        CHANNEL: tl.constexpr, HAS_GGX: tl.constexpr, HAS_GGW: tl.constexpr,
                        HAS_GGB: tl.constexpr, HAS_WEIGHT: tl.constexpr, WIDE: tl.constexpr,
                        DTYPE: tl.constexpr, COMPUTE: tl.constexpr, BLOCK_C: tl.constexpr,
                        BLOCK_J: tl.constexpr, BLOCK: tl.constexpr):
    """The seven partials of the slice -> sp[q * total + n * slices + s] (order _S1 .. _TU);
    with CHANNEL, G, GX and GG of its channels -> cp[(q * rows + n * k_slices + k) * C + c].
    FUSED (one slice): then the sample's d_grad_out and d_x."""
    n, s, k, c_lo, c_hi, lo, hi = _slice(slices, k_slices, width, channels, mc, chunk, WIDE)
    base = n * m
    mean = tl.load(mean_ptr + n)
    rstd = tl.load(rstd_ptr + n)
    slope = tl.load(hyper_ptr + _SLOPE)
    row = (n * k_slices + k).to(tl.int64)
    shift = tl.zeros([], COMPUTE)
    if HAS_GGX:
        shift = tl.load(ggx_ptr + base).to(COMPUTE)  # K: ggx's first element in the sample
    s1 = tl.zeros([], COMPUTE)
    s2 = tl.zeros([], COMPUTE)
    sag = tl.zeros([], COMPUTE)
    sa = tl.zeros([], COMPUTE)
    ta = tl.zeros([], COMPUTE)
    su = tl.zeros([], COMPUTE)
    tu = tl.zeros([], COMPUTE)
    for c0 in range(c_lo, c_hi, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        c_mask = c < c_hi
        acc_g = tl.zeros([BLOCK_C, BLOCK_J], COMPUTE)
        acc_gx = tl.zeros([BLOCK_C, BLOCK_J], COMPUTE)
        acc_gg = tl.zeros([BLOCK_C, BLOCK_J], COMPUTE)
        acc_s1 = tl.zeros([BLOCK_C, BLOCK_J], COMPUTE)
        acc_s2 = tl.zeros([BLOCK_C, BLOCK_J], COMPUTE)
        for start in range(lo, hi, BLOCK_J):
            offs, mask = _tile_step(start, c, c_mask, hi, channels, inner, BLOCK_J)
            go = tl.load(go_ptr + base + offs, mask=mask, other=0).to(COMPUTE)
            y = tl.load(out_ptr + base + offs, mask=mask, other=0).to(COMPUTE)
            x = tl.load(x_ptr + base + offs, mask=mask, other=0).to(COMPUTE)
            g = tl.where(y > 0, go, go * slope)  # 0 off the tile
            xhat = tl.where(mask, (x - mean) * rstd, 0)
            acc_g += g
            acc_gx += g * xhat
            if HAS_GGX:
                ggx = tl.load(ggx_ptr + base + offs, mask=mask, other=0).to(COMPUTE)
                d = tl.where(mask, ggx - shift, 0)
                acc_gg += g * d
                acc_s1 += d
                acc_s2 += d * xhat
        sum_g = tl.sum(acc_g, axis=1)
        sum_gx = tl.sum(acc_gx, axis=1)
        if HAS_GGX:
            sum_gg = tl.sum(acc_gg, axis=1)
            if CHANNEL:
                tl.store(cp_ptr + row * channels + c, sum_g, mask=c_mask)
                tl.store(cp_ptr + (rows + row) * channels + c, sum_gx, mask=c_mask)
                tl.store(cp_ptr + (2 * tl.cast(rows, tl.int64) + row) * channels + c, sum_gg, mask=c_mask)
            s1 += tl.sum(tl.sum(acc_s1, axis=1), axis=0)
            s2 += tl.sum(tl.sum(acc_s2, axis=1), axis=0)
            if HAS_WEIGHT:
                w = tl.load(w_ptr + c, mask=c_mask, other=0).to(COMPUTE)
                sa += tl.sum(w * sum_g, axis=0)
                ta += tl.sum(w * sum_gx, axis=0)
                sag += tl.sum(w * sum_gg, axis=0)
            else:
                sa += tl.sum(sum_g, axis=0)
                ta += tl.sum(sum_gx, axis=0)
                sag += tl.sum(sum_gg, axis=0)
        if HAS_GGW:
            v = tl.load(ggw_ptr + c, mask=c_mask, other=0).to(COMPUTE)
            su += tl.sum(v * sum_g, axis=0)
            tu += tl.sum(v * sum_gx, axis=0)
    at = n * slices + s
    tl.store(sp_ptr + _S1 * total + at, s1)
    tl.store(sp_ptr + _S2 * total + at, s2)
    tl.store(sp_ptr + _SAG * total + at, sag)
    tl.store(sp_ptr + _SA * total + at, sa)
    tl.store(sp_ptr + _TA * total + at, ta)
    tl.store(sp_ptr + _SU * total + at, su)
    tl.store(sp_ptr + _TU * total + at, tu)
    if FUSED:
        for j0 in range(0, m, BLOCK):
            _double_block(ggx_ptr, ggw_ptr, ggb_ptr, go_ptr, out_ptr, x_ptr, w_ptr, hyper_ptr,
                          dgo_ptr, dx_ptr, base, j0, m, mean, rstd, shift, s1, s2, sag, sa, ta, su,
                          tu, slope, channels, inner, HAS_GGX, HAS_GGW, HAS_GGB, HAS_WEIGHT, DTYPE,
                          COMPUTE, BLOCK)


@triton.jit
def _double_apply_kernel(ggx_ptr, ggw_ptr, ggb_ptr, go_ptr, out_ptr, x_ptr, w_ptr, mean_ptr,
                         rstd_ptr, hyper_ptr, sp_ptr, cp_ptr, dgo_ptr, dx_ptr, dw_ptr, m, slices,
                         k_slices, total, blocks, fin_programs, rows, channels, inner,
                         HAS_GGX: tl.constexpr, HAS_GGW: tl.constexpr, HAS_GGB: tl.constexpr,
                         HAS_WEIGHT: tl.constexpr, WIDE: tl.constexpr, DTYPE: tl.constexpr,
                         COMPUTE: tl.constexpr, S_POW2: tl.constexpr, BLOCK: tl.constexpr,
                         FIN_BLOCK_C: tl.constexpr, FIN_BLOCK_R: tl.constexpr):
    """Programs [0, fin_programs) (HAS_WEIGHT): FIN_BLOCK_C channels of
    d_weight = sum_n rstd_n (GG - (S1' / M) G - (S2 / M) GX); the rest: a block of d_grad_out
    and d_x each."""
    pid = tl.program_id(0)
    if pid >= fin_programs:
        n, blk = _program(blocks, fin_programs, WIDE)
        base = n * m
        shift = tl.zeros([], COMPUTE)
        s1 = tl.zeros([], COMPUTE)
        s2 = tl.zeros([], COMPUTE)
        sag = tl.zeros([], COMPUTE)
        sa = tl.zeros([], COMPUTE)
        ta = tl.zeros([], COMPUTE)
        su = tl.zeros([], COMPUTE)
        tu = tl.zeros([], COMPUTE)
        if HAS_GGX:
            shift = tl.load(ggx_ptr + base).to(COMPUTE)
            s1 = _sample_sum(sp_ptr + _S1 * total, n, slices, S_POW2)
            s2 = _sample_sum(sp_ptr + _S2 * total, n, slices, S_POW2)
            sag = _sample_sum(sp_ptr + _SAG * total, n, slices, S_POW2)
            sa = _sample_sum(sp_ptr + _SA * total, n, slices, S_POW2)
            ta = _sample_sum(sp_ptr + _TA * total, n, slices, S_POW2)
        if HAS_GGW:
            su = _sample_sum(sp_ptr + _SU * total, n, slices, S_POW2)
            tu = _sample_sum(sp_ptr + _TU * total, n, slices, S_POW2)
        _double_block(ggx_ptr, ggw_ptr, ggb_ptr, go_ptr, out_ptr, x_ptr, w_ptr, hyper_ptr, dgo_ptr,
                      dx_ptr, base, blk * BLOCK, m, tl.load(mean_ptr + n), tl.load(rstd_ptr + n),
                      shift, s1, s2, sag, sa, ta, su, tu, tl.load(hyper_ptr + _SLOPE), channels,
                      inner, HAS_GGX, HAS_GGW, HAS_GGB, HAS_WEIGHT, DTYPE, COMPUTE, BLOCK)
    else:
        if HAS_WEIGHT:
            c = pid * FIN_BLOCK_C + tl.arange(0, FIN_BLOCK_C)
            c_mask = c < channels
            acc = tl.zeros([FIN_BLOCK_C], COMPUTE)
            if HAS_GGX:
                m_t = tl.load(hyper_ptr + _M)
                s = tl.arange(0, S_POW2)
                for r0 in range(0, rows, FIN_BLOCK_R):
                    r = tl.arange(0, FIN_BLOCK_R).to(tl.int64) + r0
                    r_mask = r < rows
                    sample = r // k_slices
                    at = (sample * slices)[:, None] + s[None, :]
                    p_mask = r_mask[:, None] & (s < slices)[None, :]
                    sums1 = tl.sum(tl.load(sp_ptr + _S1 * total + at, mask=p_mask, other=0), axis=1)
                    sums2 = tl.sum(tl.load(sp_ptr + _S2 * total + at, mask=p_mask, other=0), axis=1)
                    q1 = _div(sums1, m_t, COMPUTE)
                    q2 = _div(sums2, m_t, COMPUTE)
                    rstd = tl.load(rstd_ptr + sample, mask=r_mask, other=0)
                    mask = r_mask[:, None] & c_mask[None, :]
                    cat = r[:, None] * channels + c[None, :]
                    sum_g = tl.load(cp_ptr + cat, mask=mask, other=0)
                    plane = tl.cast(rows, tl.int64) * channels  # i32 arguments: their product in int64
                    sum_gx = tl.load(cp_ptr + plane + cat, mask=mask, other=0)
                    sum_gg = tl.load(cp_ptr + 2 * plane + cat, mask=mask, other=0)
                    term = rstd[:, None] * (sum_gg - q1[:, None] * sum_g - q2[:, None] * sum_gx)
                    acc += tl.sum(tl.where(mask, term, 0), axis=0)
            tl.store(dw_ptr + c, acc, mask=c_mask)


# ---- launchers -------------------------------------------------------------------------------

@device_constant
def _hyper(slope, eps, m, compute, device):
    """[slope, eps, M] in T on the device (cached), each rounded once from double."""
    return torch.tensor([slope, eps, float(m)], dtype=compute).to(device)


def _walk(x):
    """(N, C, inner = channel stride, M = elements a sample) of x."""
    n, channels = x.shape[0], x.shape[1]
    m = x.numel() // n
    if n > 1 and x.stride(0) != m:
        raise ValueError(f"sample_norm_act: every sample must be one range of memory, got strides "
                         f"{tuple(x.stride())} for shape {tuple(x.shape)}")
    return n, channels, (x.stride(1) if channels > 1 else 1), m


@functools.lru_cache(maxsize=256)
def _flat_plan(n, m, device):
    """(step, chunk, slices) of the forward's statistics: slices of whole steps."""
    step = min(REDUCE_BLOCK, triton.next_power_of_2(m))
    slices = max(1, min(triton.cdiv(target_programs(device), n), triton.cdiv(m, MIN_WORK)))
    chunk = triton.cdiv(triton.cdiv(m, slices), step) * step
    return step, chunk, triton.cdiv(m, chunk)


@functools.lru_cache(maxsize=256)
def _tile_plan(n, channels, inner, m, device):
    """(BLOCK_C, BLOCK_J, chunk of j, chunks, channels a group, slices) of the backward's
    reductions; slices = groups * chunks."""
    mc = m // channels
    if inner == 1:  # channels side by side in memory: rows of up to 64 (more when Mc is short)
        block_c = min(triton.next_power_of_2(channels), max(64, TILE // triton.next_power_of_2(mc)))
    else:  # runs of `inner` elements: group channels only when the runs are short
        block_c = min(triton.next_power_of_2(channels), max(1, TILE // triton.next_power_of_2(mc)))
    block_j = max(1, min(TILE // block_c, triton.next_power_of_2(mc)))
    steps = triton.cdiv(mc, block_j)
    channel_blocks = triton.cdiv(channels, block_c)
    target = max(1, min(triton.cdiv(target_programs(device), n), triton.cdiv(m, MIN_WORK)))
    chunks = min(steps, target)
    chunk = triton.cdiv(steps, chunks) * block_j
    chunks = triton.cdiv(mc, chunk)
    groups = min(channel_blocks, triton.cdiv(target, chunks))
    width = triton.cdiv(channel_blocks, groups) * block_c
    return block_c, block_j, chunk, chunks, width, triton.cdiv(channels, width) * chunks


def _finalize_blocks(channels, rows):
    """(FIN_BLOCK_C, FIN_BLOCK_R, programs) of the per-channel finalize."""
    block_c = min(triton.next_power_of_2(channels), FIN_BLOCK_C)
    block_r = min(triton.next_power_of_2(rows), max(1, FIN_TILE // block_c))
    return block_c, block_r, triton.cdiv(channels, block_c)


def _elementwise(m):
    """(BLOCK, blocks a sample) of an elementwise pass."""
    block = min(BLOCK, triton.next_power_of_2(m))
    return block, triton.cdiv(m, block)


def sample_norm_act(x, weight, bias, eps, negative_slope):
    """(out like x, mean (N,) T, rstd (N,) T)."""
    n, channels, inner, m = _walk(x)
    compute = _compute(x.dtype)
    hyper = _hyper(negative_slope, eps, m, compute, x.device)
    out = torch.empty_like(x)
    mean = torch.empty(n, dtype=compute, device=x.device)
    rstd = torch.empty(n, dtype=compute, device=x.device)
    step, chunk, slices = _flat_plan(n, m, x.device)
    block, blocks = _elementwise(m)
    args = dict(HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None,
                WIDE=x.numel() + BLOCK > _INT32_LIMIT, DTYPE=TL_DTYPES[x.dtype],
                COMPUTE=opmath(x.dtype))
    w = x if weight is None else weight
    b = x if bias is None else bias
    if slices == 1:
        _forward_stats_kernel[(n,)](
            x, w, b, hyper, out, mean, rstd, mean, rstd, m, chunk, 1, channels, inner, FUSED=True,
            RBLOCK=step, BLOCK=block, enable_fp_fusion=False, **args)
        return out, mean, rstd
    partial = torch.empty((2, n * slices), dtype=compute, device=x.device)
    _forward_stats_kernel[(n * slices,)](
        x, w, b, hyper, out, mean, rstd, partial[0], partial[1], m, chunk, slices, channels, inner,
        FUSED=False, RBLOCK=step, BLOCK=block, enable_fp_fusion=True, **args)
    _forward_apply_kernel[(n * blocks,)](
        x, w, b, hyper, partial[0], partial[1], out, mean, rstd, m, chunk, slices, blocks, channels,
        inner, S_POW2=triton.next_power_of_2(slices), BLOCK=block, enable_fp_fusion=False, **args)
    return out, mean, rstd


def sample_norm_act_backward(grad_out, out, x, weight, mean, rstd, negative_slope, channel_grads):
    """(grad_x like x, grad_weight, grad_bias): the last two (C,) T with channel_grads, else
    empty (0,) T tensors."""
    n, channels, inner, m = _walk(x)
    compute = _compute(x.dtype)
    device = x.device
    hyper = _hyper(negative_slope, 0.0, m, compute, device)
    grad_x = torch.empty_like(x)
    block_c, block_j, chunk, chunks, width, slices = _tile_plan(n, channels, inner, m, device)
    total, rows = n * slices, n * chunks
    sp = torch.empty(2 * total, dtype=compute, device=device)
    size = channels if channel_grads else 0
    grad_weight = torch.empty(size, dtype=compute, device=device)
    grad_bias = torch.empty(size, dtype=compute, device=device)
    cp = torch.empty(2 * rows * channels, dtype=compute, device=device) if channel_grads else sp
    block, blocks = _elementwise(m)
    fused = slices == 1
    w = x if weight is None else weight
    args = dict(HAS_WEIGHT=weight is not None, WIDE=x.numel() + BLOCK > _INT32_LIMIT,
                DTYPE=TL_DTYPES[x.dtype], COMPUTE=opmath(x.dtype))
    _backward_sums_kernel[(total,)](
        grad_out, out, x, w, mean, rstd, hyper, sp, cp, grad_x, m, m // channels, chunk, slices,
        chunks, width, total, rows, channels, inner, FUSED=fused, CHANNEL=bool(channel_grads),
        BLOCK_C=block_c, BLOCK_J=block_j, BLOCK=block, enable_fp_fusion=not fused, **args)
    elem_programs = 0 if fused else n * blocks
    fin_c, fin_r, fin_programs = _finalize_blocks(channels, rows)
    fin_programs = fin_programs if channel_grads else 0
    if elem_programs + fin_programs:
        _backward_apply_kernel[(elem_programs + fin_programs,)](
            grad_out, out, x, w, mean, rstd, hyper, sp, cp, grad_x, grad_weight, grad_bias, m,
            slices, total, blocks, fin_programs, rows, channels, inner, CHANNEL=bool(channel_grads),
            S_POW2=triton.next_power_of_2(slices), BLOCK=block, FIN_BLOCK_C=fin_c,
            FIN_BLOCK_R=fin_r, enable_fp_fusion=False, **args)
    return grad_x, grad_weight, grad_bias


def sample_norm_act_double_backward(ggx, ggw, ggb, grad_out, out, x, weight, mean, rstd,
                                    negative_slope):
    """(d_grad_out like x, d_x like x, d_weight (C,) T, or empty (0,) T when weight is None).
    ggx like x, ggw and ggb (C,) T; each None for zero."""
    n, channels, inner, m = _walk(x)
    compute = _compute(x.dtype)
    device = x.device
    hyper = _hyper(negative_slope, 0.0, m, compute, device)
    d_grad_out = torch.empty_like(x)
    d_x = torch.empty_like(x)
    d_weight = torch.empty(0 if weight is None else channels, dtype=compute, device=device)
    has_ggx, has_ggw = ggx is not None, ggw is not None
    block_c, block_j, chunk, chunks, width, slices = _tile_plan(n, channels, inner, m, device)
    total, rows = n * slices, n * chunks
    block, blocks = _elementwise(m)
    channel = has_ggx and weight is not None
    sums = has_ggx or has_ggw
    sp = torch.empty(_NUM_DOUBLE_SUMS * total if sums else 1, dtype=compute, device=device)
    cp = torch.empty(3 * rows * channels, dtype=compute, device=device) if channel else sp
    fused = sums and slices == 1
    ptrs = (x if ggx is None else ggx, x if ggw is None else ggw, x if ggb is None else ggb)
    w = x if weight is None else weight
    args = dict(HAS_GGX=has_ggx, HAS_GGW=has_ggw, HAS_GGB=ggb is not None,
                HAS_WEIGHT=weight is not None, WIDE=x.numel() + BLOCK > _INT32_LIMIT,
                DTYPE=TL_DTYPES[x.dtype], COMPUTE=opmath(x.dtype))
    if sums:
        _double_sums_kernel[(total,)](
            ptrs[0], ptrs[1], grad_out, out, x, w, mean, rstd, hyper, sp, cp, ptrs[2], d_grad_out,
            d_x, m, m // channels, chunk, slices, chunks, width, total, rows, channels, inner,
            FUSED=fused, CHANNEL=channel, BLOCK_C=block_c, BLOCK_J=block_j, BLOCK=block,
            enable_fp_fusion=not fused, **args)
    elem_programs = 0 if fused else n * blocks
    fin_c, fin_r, fin_programs = _finalize_blocks(channels, rows)
    fin_programs = 0 if weight is None else fin_programs
    if elem_programs + fin_programs:
        _double_apply_kernel[(elem_programs + fin_programs,)](
            ptrs[0], ptrs[1], ptrs[2], grad_out, out, x, w, mean, rstd, hyper, sp, cp, d_grad_out,
            d_x, d_weight, m, slices, chunks, total, blocks, fin_programs, rows, channels, inner,
            S_POW2=triton.next_power_of_2(slices), BLOCK=block, FIN_BLOCK_C=fin_c,
            FIN_BLOCK_R=fin_r, enable_fp_fusion=False, **args)
    return d_grad_out, d_x, d_weight
