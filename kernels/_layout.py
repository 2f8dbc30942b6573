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


def copy_like(t, ref, dtype=None):
    """t (ref's shape) copied into ref's memory order (ref dense), in `dtype` (default ref's):
    what torch.empty_like(ref, dtype=dtype).copy_(t) gives, but out of place, which
    torch.func's batched tensors need (jacrev's cotangents: an in-place copy of a batched t
    into an unbatched tensor is refused)."""
    n = ref.dim()
    order, strides = [], list(ref.stride())  # ref's dims outermost first (largest stride)
    rest = list(range(n))
    while rest:
        k = 0
        for j in range(1, len(rest)):
            if strides[rest[j]] > strides[rest[k]]:
                k = j
        order.append(rest.pop(k))
    inverse = [0] * n
    for i, d in enumerate(order):
        inverse[d] = i
    # .contiguous(): .to(memory_format=) keeps a tensor whose suggested format matches,
    # an expanded one (stride 0) included
    return t.permute(order).to(ref.dtype if dtype is None else dtype).contiguous().permute(inverse)
