"""The critic activation: y = leaky_relu(x + bias[c]) and its backward from the output.

Element math: csrc/leaky_relu_math.h, in opmath (float32; float64 for float64),
rounded once to the storage dtype. Both kernels walk the numel elements of a dense
tensor linearly from its data pointer, whatever the layout; the channel of memory
offset i is (i // channel_stride) % channels (NCHW: channel_stride = H*W; channels_last
and 2-D: 1, and Triton's specialization of integer arguments equal to 1 then folds
the division away). Offsets are int32 unless the tensor reaches 2^31 elements: a
64-bit integer division per element costs several times a 32-bit one.

negative_slope travels in a cached opmath tensor (a float kernel argument is float32,
not the float64 slope a float64 tensor needs). Launched with enable_fp_fusion=False
for the reason given in kernels/penalty.py (not that either kernel has an a*b + c).
"""

import torch
import triton
import triton.language as tl

from ._launch import device_constant
from ._multi_tensor import TL_DTYPES, opmath

BLOCK = 4096  # as clip_weights: 16 KiB of float32 in flight per program at 4 warps
_INT32_LIMIT = 2**31 - 1


@triton.jit
def _offsets(numel, WIDE: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    if WIDE:
        pid = pid.to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    return offs, offs < numel


@triton.jit
def _bias_leaky_relu_kernel(x_ptr, bias_ptr, slope_ptr, y_ptr, numel, channel_stride, channels,
                            HAS_BIAS: tl.constexpr, WIDE: tl.constexpr, DTYPE: tl.constexpr,
                            COMPUTE: tl.constexpr, BLOCK: tl.constexpr):
    offs, mask = _offsets(numel, WIDE, BLOCK)
    v = tl.load(x_ptr + offs, mask=mask).to(COMPUTE)
    if HAS_BIAS:
        channel = (offs // channel_stride) % channels
        v = v + tl.load(bias_ptr + channel, mask=mask).to(COMPUTE)  # any float bias dtype
    y = tl.where(v > 0, v, v * tl.load(slope_ptr))
    tl.store(y_ptr + offs, y.to(DTYPE), mask=mask)


@triton.jit
def _leaky_relu_backward_kernel(dy_ptr, y_ptr, slope_ptr, dx_ptr, numel, WIDE: tl.constexpr,
                                DTYPE: tl.constexpr, COMPUTE: tl.constexpr, BLOCK: tl.constexpr):
    offs, mask = _offsets(numel, WIDE, BLOCK)
    dy = tl.load(dy_ptr + offs, mask=mask).to(COMPUTE)
    y = tl.load(y_ptr + offs, mask=mask).to(COMPUTE)
    dx = tl.where(y > 0, dy, dy * tl.load(slope_ptr))
    tl.store(dx_ptr + offs, dx.to(DTYPE), mask=mask)


@device_constant
def _slope(negative_slope, dtype, device):
    """negative_slope rounded to dtype's opmath, a 1-element device tensor (cached)."""
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    return torch.tensor([negative_slope], dtype=compute).to(device)


def _channel_walk(x):
    """(channel_stride, channels) of x's dim 1, as channel_walk in csrc/penalty.h."""
    if x.dim() < 2 or x.shape[1] <= 1:
        return 1, 1
    return x.stride(1), x.shape[1]


def bias_leaky_relu(x, bias, negative_slope):
    """y = leaky_relu(x + bias[c], negative_slope) with x's dtype and strides; bias
    None or 1-D with x.size(1) elements (any floating dtype)."""
    y = torch.empty_like(x)
    numel = x.numel()
    if numel == 0:
        return y
    channel_stride, channels = _channel_walk(x)
    has_bias = bias is not None
    _bias_leaky_relu_kernel[(triton.cdiv(numel, BLOCK),)](
        x, bias if has_bias else x, _slope(negative_slope, x.dtype, x.device), y, numel,
        channel_stride, channels, HAS_BIAS=has_bias, WIDE=numel + BLOCK > _INT32_LIMIT,
        DTYPE=TL_DTYPES[x.dtype], COMPUTE=opmath(x.dtype), BLOCK=BLOCK, enable_fp_fusion=False)
    return y


def leaky_relu_backward(grad, out, negative_slope):
    """dx = out > 0 ? grad : grad * negative_slope, with grad's dtype and strides."""
    dx = torch.empty_like(grad)
    numel = grad.numel()
    if numel == 0:
        return dx
    _leaky_relu_backward_kernel[(triton.cdiv(numel, BLOCK),)](
        grad, out, _slope(negative_slope, grad.dtype, grad.device), dx, numel,
        WIDE=numel + BLOCK > _INT32_LIMIT, DTYPE=TL_DTYPES[grad.dtype], COMPUTE=opmath(grad.dtype),
        BLOCK=BLOCK, enable_fp_fusion=False)
    return dx
