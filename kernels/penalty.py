"""The gradient penalty on a gradient tensor: forward, backward, double backward.

Formulas: csrc/penalty_math.h, in T = float64 for float64 gradients, float32 otherwise
(16-bit gradients are read as float32), with IEEE square roots and divisions
(kernels/_math.py). grad (B, ...) holds sample b as the M = numel / B
elements [b*M, (b+1)*M) from its data pointer (contiguous or channels_last).

- Reductions (s_b = <g_b, g_b> of the forward, dot_b = <ggrad_b, g_b> of the double
  backward) are split: a (S, B) grid of programs each sums one slice of one sample
  into partial[b, s], then one finalize program sums the S partials of each sample
  (a fixed tree, no atomics: the same bits every run) and the per-sample terms into
  the 0-dim result. S is chosen so the grid has ~4 programs per SM even at B = 1,
  with slices of at least MIN_SLICE elements; the result depends on S, so on the GPU
  model, never on the run.
- Elementwise passes run on a (blocks of a sample, sample) grid: the sample is the
  program's, so its coefficients (a square root, a division) are computed once per
  program from sumsq[b], dot[b] and dout (device scalars, never read by the host),
  and no element needs an integer division to find its sample.
- Samples sit on grid axis 1 (at most 65535 programs); programs loop over samples
  with that stride, so any B works.
- Hyperparameters travel in a cached T tensor: a float kernel argument would be
  float32, which is not weight / B in float64.
- Elementwise kernels launch with enable_fp_fusion=False: Triton lets ptxas fuse a*b + c
  by default, and the C++/CUDA builds never do (-ffp-contract=off, --fmad=false), so
  fused results would differ from them. The partial sums may fuse: their order
  differs from the other backends' anyway, and an fma only makes them more accurate.
"""

import torch
import triton
import triton.language as tl

from ._multi_tensor import TL_DTYPES, opmath
from ._launch import MAX_GRID_Y, MIN_SLICE, REDUCE_BLOCK, device_constant, target_programs
from ._launch import compute_dtype as _compute
from ._math import div_ieee as _div, sqrt_ieee as _sqrt

BLOCK = 2048  # elements an elementwise program: up to 3 streams (g, ggrad, out) in flight

# Indices into the hyper tensor: weight, center, eps, 2 * weight / B (as make_penalty_hyper
# of csrc/penalty.h rounds them) and B.
# constexpr: a @triton.jit function may read a module global only if it is one (the
# interpreter does not check this; the GPU compiler refuses plain ints).
_WEIGHT, _CENTER, _EPS, _TWO_W_OVER_B, _BATCH = (tl.constexpr(i) for i in range(5))


@triton.jit
def _norm(s, hyper_ptr, COMPUTE: tl.constexpr):
    return _sqrt(s + tl.load(hyper_ptr + _EPS), COMPUTE)


@triton.jit
def _term(s, hyper_ptr, CENTERED: tl.constexpr, COMPUTE: tl.constexpr):
    """t_b: penalty_term of penalty_math.h."""
    if CENTERED:
        d = _norm(s, hyper_ptr, COMPUTE) - tl.load(hyper_ptr + _CENTER)
        return d * d
    else:
        return s


@triton.jit
def _ratio(s, hyper_ptr, CENTERED: tl.constexpr, COMPUTE: tl.constexpr):
    """r_b: penalty_ratio."""
    if CENTERED:
        n = _norm(s, hyper_ptr, COMPUTE)
        return _div(n - tl.load(hyper_ptr + _CENTER), n, COMPUTE)
    else:
        return tl.full(s.shape, 1, COMPUTE)  # not s * 0 + 1: that is NaN for s = inf


@triton.jit
def _partial_kernel(g_ptr, gg_ptr, partial_ptr, B, M, chunk, S, DOT: tl.constexpr,
                    COMPUTE: tl.constexpr, BLOCK: tl.constexpr):
    """partial[b, s] = sum over slice s of sample b of g*g (or ggrad*g when DOT)."""
    s = tl.program_id(0)
    lo = s.to(tl.int64) * chunk
    hi = tl.minimum(lo + chunk, M)
    for b in range(tl.program_id(1), B, tl.num_programs(1)):
        base = tl.cast(b, tl.int64) * M  # tl.cast: the interpreter's loop index is a Python int
        acc = tl.zeros([BLOCK], COMPUTE)  # BLOCK lanes, summed once at the end
        for start in range(lo, hi, BLOCK):
            offs = base + start + tl.arange(0, BLOCK)
            mask = start + tl.arange(0, BLOCK) < hi
            g = tl.load(g_ptr + offs, mask=mask, other=0).to(COMPUTE)
            if DOT:
                acc += tl.load(gg_ptr + offs, mask=mask, other=0).to(COMPUTE) * g
            else:
                acc += g * g
        tl.store(partial_ptr + b * S + s, tl.sum(acc, axis=0))


@triton.jit
def _finalize_kernel(partial_ptr, sumsq_ptr, hyper_ptr, per_sample_ptr, total_ptr, B, S,
                     CENTERED: tl.constexpr, DOT: tl.constexpr, COMPUTE: tl.constexpr,
                     BLOCK_B: tl.constexpr, S_POW2: tl.constexpr):
    """One program. Forward (not DOT): per_sample = sumsq, total = penalty =
    weight * sum_b t_b / B. Double backward (DOT): per_sample = dot, total = d_dout =
    2*weight/B * sum_b r_b * dot_b (reading sumsq)."""
    total = tl.zeros([], COMPUTE)
    cols = tl.arange(0, S_POW2)
    for b0 in range(0, B, BLOCK_B):
        rows = b0 + tl.arange(0, BLOCK_B)
        in_b = rows < B
        p = tl.load(partial_ptr + rows[:, None] * S + cols[None, :],
                    mask=in_b[:, None] & (cols < S)[None, :], other=0)
        v = tl.sum(p, axis=1)
        tl.store(per_sample_ptr + rows, v, mask=in_b)
        if DOT:
            s = tl.load(sumsq_ptr + rows, mask=in_b, other=0)
            term = _ratio(s, hyper_ptr, CENTERED, COMPUTE) * v
        else:
            term = _term(v, hyper_ptr, CENTERED, COMPUTE)
        total += tl.sum(tl.where(in_b, term, 0), axis=0)
    if DOT:
        tl.store(total_ptr, tl.load(hyper_ptr + _TWO_W_OVER_B) * total)
    else:
        # weight * sum / B in that order, as the C++/CUDA kernels and the reference
        tl.store(total_ptr, _div(tl.load(hyper_ptr + _WEIGHT) * total, tl.load(hyper_ptr + _BATCH),
                                 COMPUTE))


@triton.jit
def _backward_kernel(g_ptr, gg_ptr, sumsq_ptr, dot_ptr, dout_ptr, hyper_ptr, out_ptr, B, M,
                     CENTERED: tl.constexpr, DOUBLE: tl.constexpr, DTYPE: tl.constexpr,
                     COMPUTE: tl.constexpr, BLOCK: tl.constexpr):
    """dgrad = coef_b * g, or when DOUBLE d_grad = coef_b * ggrad + q_b * g."""
    inner = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = inner < M
    dout_scaled = tl.load(dout_ptr) * tl.load(hyper_ptr + _TWO_W_OVER_B)  # dout * 2w/B
    for b in range(tl.program_id(1), B, tl.num_programs(1)):
        s = tl.load(sumsq_ptr + b)
        coef = dout_scaled * _ratio(s, hyper_ptr, CENTERED, COMPUTE)
        offs = tl.cast(b, tl.int64) * M + inner
        if DOUBLE:
            d = coef * tl.load(gg_ptr + offs, mask=mask).to(COMPUTE)
            if CENTERED:
                n = _norm(s, hyper_ptr, COMPUTE)
                curvature = _div(dout_scaled * tl.load(hyper_ptr + _CENTER), n * n * n, COMPUTE)
                q = curvature * tl.load(dot_ptr + b)
                d = d + q * tl.load(g_ptr + offs, mask=mask).to(COMPUTE)
            # else q_b = 0 and g is not read, as in the CUDA kernel: one stream fewer,
            # different from coef * ggrad + 0 * g only for an inf/NaN g or a zero's sign
        else:
            d = coef * tl.load(g_ptr + offs, mask=mask).to(COMPUTE)
        tl.store(out_ptr + offs, d.to(DTYPE), mask=mask)


@device_constant
def _hyper(weight, center, eps, batch, compute, device):
    """[weight, center, eps, 2*weight/B, B] in T on the device (cached), each computed in
    double and rounded once, as make_penalty_hyper does."""
    values = [weight, center, eps, 2.0 * weight / batch, float(batch)]
    return torch.tensor(values, dtype=compute).to(device)


def _walk(grad):
    """(B, M, grid axis 1) of grad's samples."""
    batch = grad.shape[0]
    return batch, grad.numel() // batch, min(batch, MAX_GRID_Y)


def _reduce(grad, ggrad, hyper, sumsq, center, dot):
    """Split reduction + finalize. Without dot: returns (penalty, sumsq) of the forward.
    With dot: returns d_dout and fills dot[b] = <ggrad_b, grad_b>."""
    batch, m, grid_y = _walk(grad)
    compute = _compute(grad.dtype)
    block = min(REDUCE_BLOCK, triton.next_power_of_2(m))
    target = target_programs(grad.device)
    slices = max(1, min(triton.cdiv(target, batch), triton.cdiv(m, MIN_SLICE)))
    chunk = triton.cdiv(triton.cdiv(m, slices), block) * block  # whole blocks a slice
    slices = triton.cdiv(m, chunk)
    partial = torch.empty((batch, slices), dtype=compute, device=grad.device)
    is_dot = dot is not None
    _partial_kernel[(slices, grid_y)](grad, ggrad if is_dot else grad, partial, batch, m, chunk,
                                      slices, DOT=is_dot, COMPUTE=opmath(grad.dtype), BLOCK=block)
    s_pow2 = triton.next_power_of_2(slices)
    block_b = min(triton.next_power_of_2(batch), max(1, 4096 // s_pow2))  # <= 4096-element tiles
    total = torch.empty((), dtype=compute, device=grad.device)
    per_sample = dot if is_dot else torch.empty(batch, dtype=compute, device=grad.device)
    _finalize_kernel[(1,)](partial, sumsq if is_dot else partial, hyper, per_sample, total, batch,
                           slices, CENTERED=center != 0.0, DOT=is_dot,
                           COMPUTE=opmath(grad.dtype), BLOCK_B=block_b, S_POW2=s_pow2,
                           enable_fp_fusion=False)
    return total if is_dot else (total, per_sample)


def _elementwise(grad, ggrad, sumsq, dot, dout, hyper, center):
    batch, m, grid_y = _walk(grad)
    out = torch.empty_like(grad)
    block = min(BLOCK, triton.next_power_of_2(m))
    is_double = ggrad is not None
    _backward_kernel[(triton.cdiv(m, block), grid_y)](
        grad, ggrad if is_double else grad, sumsq, dot if is_double else sumsq, dout, hyper, out,
        batch, m, CENTERED=center != 0.0, DOUBLE=is_double, DTYPE=TL_DTYPES[grad.dtype],
        COMPUTE=opmath(grad.dtype), BLOCK=block, enable_fp_fusion=False)
    return out


def penalty_forward(grad, weight, center, eps):
    """(penalty, sumsq): a 0-dim T tensor and the (B,) per-sample sums of squares."""
    hyper = _hyper(weight, center, eps, grad.shape[0], _compute(grad.dtype), grad.device)
    return _reduce(grad, None, hyper, None, center, None)


def penalty_backward(grad, sumsq, dout, weight, center, eps):
    """dgrad = coef_b * grad, like grad; dout a 0-dim T device tensor."""
    hyper = _hyper(weight, center, eps, grad.shape[0], _compute(grad.dtype), grad.device)
    return _elementwise(grad, None, sumsq, None, dout, hyper, center)


def penalty_double_backward(grad, sumsq, dout, ggrad, weight, center, eps):
    """(d_grad like grad, d_dout 0-dim T): the backward of penalty_backward."""
    hyper = _hyper(weight, center, eps, grad.shape[0], _compute(grad.dtype), grad.device)
    dot = torch.empty(grad.shape[0], dtype=_compute(grad.dtype), device=grad.device)
    d_dout = _reduce(grad, ggrad, hyper, sumsq, center, dot)
    return _elementwise(grad, ggrad, sumsq, dot, dout, hyper, center), d_dout
