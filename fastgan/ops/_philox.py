"""Philox4x32-10 in plain PyTorch: the reference of the penalty's random numbers.

The same generator as csrc/philox.h (C++, CUDA) and kernels/_philox.py (Triton): key =
the two 32-bit halves of an int64 seed, counter = (index lo, index hi, 0, 0), ten rounds
(Salmon et al. 2011). Words are held in int64 tensors as values in [0, 2^32); every
32x32-bit product is formed from 16-bit halves, so no int64 arithmetic overflows.
"""
import torch

_MASK = 0xFFFFFFFF
_MUL0, _MUL1 = 0xD2511F53, 0xCD9E8D57
_WEYL0, _WEYL1 = 0x9E3779B9, 0xBB67AE85


def _mulhilo(m, c):
    """(hi, lo) 32-bit halves of m * c for a constant m < 2^32 and words c."""
    a = c & 0xFFFF
    b = c >> 16
    low = m * a + ((m * b) & 0xFFFF) * 65536   # < 2^48 + 2^48: no overflow
    hi = (m * b >> 16) + (low >> 32)
    return hi & _MASK, low & _MASK


def philox_words(seed, index):
    """The four Philox words (int64 tensor, shape index.shape + (4,)) of each counter in
    `index` (int64) under `seed` (a 1-element int64 tensor or an int)."""
    seed = torch.as_tensor(seed, dtype=torch.int64, device=index.device).reshape(())
    k0, k1 = seed & _MASK, (seed >> 32) & _MASK
    c0, c1 = index & _MASK, (index >> 32) & _MASK
    c2 = torch.zeros_like(index)
    c3 = torch.zeros_like(index)
    for _ in range(10):
        hi0, lo0 = _mulhilo(_MUL0, c0)
        hi1, lo1 = _mulhilo(_MUL1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + _WEYL0) & _MASK
        k1 = (k1 + _WEYL1) & _MASK
    return torch.stack([c0, c1, c2, c3], dim=-1)


def uniform(words):
    """Words as float32 in [0, 1): the top 24 bits times 2^-24 (exact)."""
    return (words >> 8).to(torch.float32) * 2.0 ** -24
