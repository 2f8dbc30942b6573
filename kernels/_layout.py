"""Tensor-layout facts the kernels rely on (pure Python: no Triton needed)."""
import torch


def is_dense(t):
    """True when t's elements fill numel() consecutive slots from data_ptr() (contiguous,
    channels_last, any permutation), so a kernel may walk them linearly."""
    if t.is_contiguous():
        return True
    try:
        if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
            return True
        strides = t.stride()
    except RuntimeError:  # torch.func.vmap's batched tensors answer no other layout query:
        return False      # the caller makes it contiguous
    # the dims by increasing stride, picked one at a time: torch.compile traces comparisons
    # of symbolic strides (a batch size it made dynamic) but not sorted() of them
    dims = [(st, n) for st, n in zip(strides, t.shape) if n != 1]
    expected = 1
    while dims:
        k = 0
        for j in range(1, len(dims)):
            if dims[j][0] < dims[k][0]:
                k = j
        stride, size = dims.pop(k)
        if stride != expected:
            return False
        expected *= size
    return True


def same_walk(t, like):
    """True when t and like have the same shape and the same strides on every dim of more
    than one element: walked in memory order they visit the same elements together (a size-1
    dim's stride is arbitrary). The Python side of csrc/penalty.h's same_walk."""
    return t.shape == like.shape and all(n == 1 or a == b
                                         for n, a, b in zip(t.shape, t.stride(), like.stride()))
