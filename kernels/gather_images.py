"""gather_images: a training batch [B, C, H, W] in [-1, 1] from uint8 images data[index].

Formula: csrc/gather_images.h, (float(u) - 127.5) / 127.5 with an IEEE division (div_rn),
rounded once to the output dtype (to nearest even on a GPU; Triton's interpreter truncates
float32 -> bfloat16). One lane per output pixel (b, h, w), as the CUDA kernel: it reads the
C bytes of its source pixel (mirrored along W under flip[b]) and writes C values, NCHW
(coalesced per channel plane) or channels_last.
Pixel offsets are int32 unless the batch reaches 2^31 elements; source offsets are int64
(index is). An index outside [0, N) reads nothing and writes NaN: no host sync to report it.
Launched with enable_fp_fusion=False as every fastgan kernel (kernels/penalty.py says why).
"""
import torch
import triton
import triton.language as tl

from ._math import div_ieee
from ._multi_tensor import TL_DTYPES

BLOCK = 1024  # pixels a program: 12 KiB of float32 stores at C = 3, 4 warps
_INT32_LIMIT = 2**31 - 1


@triton.jit
def _gather_images_kernel(data_ptr, index_ptr, flip_ptr, out_ptr, N, H, W, pixels,
                          C: tl.constexpr, HAS_FLIP: tl.constexpr, CHANNELS_LAST: tl.constexpr,
                          WIDE: tl.constexpr, DTYPE: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    if WIDE:
        pid = pid.to(tl.int64)
    p = pid * BLOCK + tl.arange(0, BLOCK)
    mask = p < pixels
    hw_size = H * W
    b = p // hw_size
    hw = p - b * hw_size
    h = hw // W
    w = hw - h * W
    i = tl.load(index_ptr + b, mask=mask, other=0)
    valid = (i >= 0) & (i < N)
    if HAS_FLIP:
        mirror = tl.load(flip_ptr + b, mask=mask, other=0) != 0
        w = tl.where(mirror, W - 1 - w, w)
    src = ((i * H + h) * W + w) * C
    for c in tl.static_range(C):
        u = tl.load(data_ptr + src + c, mask=mask & valid, other=0)
        v = div_ieee(u.to(tl.float32) - 127.5, 127.5, tl.float32)
        v = tl.where(valid, v, float("nan"))
        if CHANNELS_LAST:
            dst = p * C + c
        else:
            dst = (b * C + c) * hw_size + hw
        tl.store(out_ptr + dst, v.to(DTYPE), mask=mask)


def gather_images(data, index, flip, dtype, channels_last):
    """[B, C, H, W] of dtype (channels_last memory when asked) from uint8 data [N, H, W, C],
    int64 index [B] and flip None or uint8/bool [B]; all on one device, data contiguous."""
    n, h, w, c = data.shape
    b = index.shape[0]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = torch.empty((b, c, h, w), dtype=dtype, device=data.device, memory_format=fmt)
    pixels = b * h * w
    if pixels == 0:
        return out
    index = index.contiguous()
    if flip is not None:
        flip = flip.contiguous().view(torch.uint8)
    _gather_images_kernel[(triton.cdiv(pixels, BLOCK),)](
        data, index, flip if flip is not None else index, out, n, h, w, pixels, C=c,
        HAS_FLIP=flip is not None, CHANNELS_LAST=channels_last,
        WIDE=out.numel() + BLOCK * c > _INT32_LIMIT, DTYPE=TL_DTYPES[dtype], BLOCK=BLOCK,
        enable_fp_fusion=False)
    return out
