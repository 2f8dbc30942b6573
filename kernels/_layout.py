"""Tensor-layout facts the kernels rely on (pure Python: no Triton needed)."""


def is_dense(t):
    """True when t's elements fill numel() consecutive slots from data_ptr() (contiguous,
    channels_last, any permutation), so a kernel may walk them linearly."""
    expected = 1
    for stride, size in sorted((st, n) for st, n in zip(t.stride(), t.shape) if n != 1):
        if stride != expected:
            return False
        expected *= size
    return True
