"""Metadata for Triton multi-tensor kernels: any number of tensors in one launch.

One int64 tensor carries, for L lists of n tensors each,
    [addresses of list 0 (n) | ... | addresses of list L-1 (n) | numels (n) |
     first block of each tensor (n) | tensor of each block (n_blocks)]
so a kernel finds its block's tensor, element range and per-list addresses with
a few scalar loads (see tensor_of_block / address below). The metadata is cached
per (device, addresses, sizes): repeating a step over the same parameters copies
nothing to the device after the first time. An entry can never be stale: its key
is exactly its content.
"""
import functools

import torch
import triton
import triton.language as tl

from ._layout import is_dense  # noqa: F401  (re-exported for the kernels)

def metadata(lists, block):
    """(meta, n_blocks) for L lists of n same-sized dense tensors on one device."""
    first = lists[0]
    return _metadata(first[0].device, block, tuple(t.data_ptr() for tensors in lists for t in tensors),
                     tuple(t.numel() for t in first))


@functools.lru_cache(maxsize=64)  # keyed by addresses: gradients set to None move every step
def _metadata(device, block, addresses, numels):
    # Not for a captured CUDA graph: the gradients a capture allocates are new addresses, and
    # a miss copies to the device with a synchronization, which capture refuses, so the
    # trainer runs such a step (WGAN's RMSprop + clip on the Triton backend) eagerly, saying
    # why. The CUDA backend passes the addresses as kernel arguments.
    first, block_tensor = [], []
    for i, n in enumerate(numels):
        first.append(len(block_tensor))
        block_tensor.extend([i] * triton.cdiv(n, block))
    meta = torch.tensor(list(addresses) + list(numels) + first + block_tensor, dtype=torch.int64)
    return meta.to(device), len(block_tensor)


@triton.jit
def tensor_of_block(meta_ptr, n_tensors, n_lists: tl.constexpr, BLOCK: tl.constexpr):
    """(tensor index, element offsets, mask) of this program's block."""
    pid = tl.program_id(0)
    t = tl.load(meta_ptr + (n_lists + 2) * n_tensors + pid)
    numel = tl.load(meta_ptr + n_lists * n_tensors + t)
    first = tl.load(meta_ptr + (n_lists + 1) * n_tensors + t)
    offs = (pid - first) * BLOCK + tl.arange(0, BLOCK)  # int64: tensors may pass 2**31
    return t, offs, offs < numel


@triton.jit
def address(meta_ptr, n_tensors, t, list_index: tl.constexpr, DTYPE: tl.constexpr):
    """Pointer to tensor t of list list_index, typed DTYPE."""
    return tl.load(meta_ptr + list_index * n_tensors + t).to(tl.pointer_type(DTYPE))


TL_DTYPES = {
    torch.float32: tl.float32,
    torch.float16: tl.float16,
    torch.bfloat16: tl.bfloat16,
    torch.float64: tl.float64,
}


def opmath(dtype):
    """The arithmetic type of a storage dtype: float64 stays, the rest compute in float32."""
    return tl.float64 if dtype == torch.float64 else tl.float32
