"""Multi-tensor WGAN weight clip: every tensor of a list clamped to [-c, c].

One launch per dtype present in the list; the tensors travel in the metadata of
kernels/_multi_tensor.py, cached, so clipping the same parameters every step
copies nothing to the device after the first.
"""

import torch
import triton
import triton.language as tl

from ._launch import device_constant
from ._multi_tensor import TL_DTYPES, address, is_dense, metadata, opmath, tensor_of_block

# 4096 elements a program: 16 KiB of float32 in flight per program, enough to
# keep HBM busy with 4 warps; the DCGAN 64x64 critic (2.77M parameters) needs ~680.
BLOCK = 4096

@triton.jit
def clip_value(x, hi):
    """x clamped to [-hi, hi] with selects, not min/max, so a NaN stays NaN. With hi
    already rounded to the storage dtype every result is x or +-hi, exactly
    representable, so the store is exact whatever its rounding mode (the interpreter
    truncates fp32 -> bf16; the GPU rounds to nearest)."""
    return tl.where(x < -hi, -hi, tl.where(x > hi, hi, x))


@triton.jit
def clip_weights_kernel(meta_ptr, c_ptr, n_tensors, DTYPE: tl.constexpr, COMPUTE: tl.constexpr,
                        BLOCK: tl.constexpr):
    t, offs, mask = tensor_of_block(meta_ptr, n_tensors, 1, BLOCK)
    base = address(meta_ptr, n_tensors, t, 0, DTYPE)
    hi = tl.load(c_ptr).to(COMPUTE)  # c rounded to DTYPE, as torch.clamp_ rounds it
    x = tl.load(base + offs, mask=mask).to(COMPUTE)
    tl.store(base + offs, clip_value(x, hi).to(DTYPE), mask=mask)


@device_constant
def bound(c, dtype, device):
    """c rounded to dtype, as a 1-element device tensor (cached)."""
    return torch.tensor([c], dtype=dtype).to(device)


def clip_weights_(tensors, c):
    """Clamps every tensor in place to [-c, c]; c >= 0, tensors floating point on one device."""
    groups = {}
    for t in tensors:
        if t.numel() == 0:
            continue
        if not is_dense(t):  # a strided view: ATen walks its strides
            t.clamp_(-c, c)
            continue
        groups.setdefault(t.dtype, []).append(t)
    for dtype, group in groups.items():
        meta, n_blocks = metadata([group], BLOCK)
        clip_weights_kernel[(n_blocks,)](meta, bound(c, dtype, group[0].device), len(group),
                                         DTYPE=TL_DTYPES[dtype], COMPUTE=opmath(dtype), BLOCK=BLOCK)
