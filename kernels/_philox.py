"""Philox4x32-10 in Triton: the words of csrc/philox.h for the same (seed, counter).

The penalty-sampling kernels (kernels/penalty_sampling.py) draw their random numbers
here, so a seed gives the same samples in Triton, C++, CUDA and the reference, bit
for bit. Key: the two 32-bit halves of an int64 seed (lo, hi); counter (c0, c1, 0, 0)
= the two halves of a 64-bit index. All arithmetic is on uint32 tensors, where
products wrap mod 2^32 on the GPU and in the interpreter alike (numpy uint32), and the
high halves come from tl.umulhi (exported by triton.language in 3.x, the interpreter
included).

philox_words() is a launcher for tests only: the known-answer vectors of Random123
take a full four-word counter, which the sampling kernels never need.
"""
import torch
import triton
import triton.language as tl

# Round multipliers and key-schedule (Weyl) increments of Philox4x32.
MUL0 = tl.constexpr(0xD2511F53)
MUL1 = tl.constexpr(0xCD9E8D57)
WEYL0 = tl.constexpr(0x9E3779B9)
WEYL1 = tl.constexpr(0xBB67AE85)


@triton.jit
def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Ten rounds on counter (c0..c3) with key (k0, k1), all uint32 (scalars or
    tensors of one shape; the key may be scalar). Returns the four words."""
    m0 = tl.full([], MUL0, tl.uint32)  # typed explicitly: a bare literal above 2^31 could
    m1 = tl.full([], MUL1, tl.uint32)  # be typed int64 and widen the products
    for _ in tl.static_range(10):
        hi0 = tl.umulhi(c0, m0)
        lo0 = c0 * m0
        hi1 = tl.umulhi(c2, m1)
        lo1 = c2 * m1
        c0 = hi1 ^ c1 ^ k0
        c1 = lo1
        c2 = hi0 ^ c3 ^ k1
        c3 = lo0
        k0 = k0 + tl.full([], WEYL0, tl.uint32)
        k1 = k1 + tl.full([], WEYL1, tl.uint32)
    return c0, c1, c2, c3


@triton.jit
def philox_key(seed_ptr):
    """(lo, hi) uint32 halves of the int64 seed at seed_ptr, read on the device."""
    s = tl.load(seed_ptr).to(tl.uint64, bitcast=True)
    return (s & 0xFFFFFFFF).to(tl.uint32), (s >> 32).to(tl.uint32)


@triton.jit
def philox_index(index, k0, k1):
    """The four words for counter (index lo, index hi, 0, 0); index: a non-negative
    int32 or int64 scalar or tensor."""
    i = index.to(tl.uint64)
    c0 = (i & 0xFFFFFFFF).to(tl.uint32)
    c1 = (i >> 32).to(tl.uint32)
    zero = c0 * 0  # uint32 zeros of the counter's shape
    return philox4x32_10(c0, c1, zero, zero, k0, k1)


@triton.jit
def uniform(word):
    """A word as a float32 in [0, 1): its top 24 bits times 2^-24, exact in float32."""
    return (word >> 8).to(tl.float32) * 5.9604644775390625e-08


@triton.jit
def _philox_words_kernel(seed_ptr, counter_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    k0, k1 = philox_key(seed_ptr)
    c0 = tl.load(counter_ptr + 4 * offs, mask=mask, other=0).to(tl.uint32)
    c1 = tl.load(counter_ptr + 4 * offs + 1, mask=mask, other=0).to(tl.uint32)
    c2 = tl.load(counter_ptr + 4 * offs + 2, mask=mask, other=0).to(tl.uint32)
    c3 = tl.load(counter_ptr + 4 * offs + 3, mask=mask, other=0).to(tl.uint32)
    w0, w1, w2, w3 = philox4x32_10(c0, c1, c2, c3, k0, k1)
    tl.store(out_ptr + 4 * offs, w0.to(tl.int64), mask=mask)
    tl.store(out_ptr + 4 * offs + 1, w1.to(tl.int64), mask=mask)
    tl.store(out_ptr + 4 * offs + 2, w2.to(tl.int64), mask=mask)
    tl.store(out_ptr + 4 * offs + 3, w3.to(tl.int64), mask=mask)


def philox_words(seed, counters):
    """Philox4x32-10 words as an (n, 4) int64 tensor of values in [0, 2^32), for tests.

    seed: a 1-element int64 tensor (the key's halves: lo, hi).
    counters: (n, 4) int64 words in [0, 2^32), or (n,) int64 indices i >= 0 standing
        for the counter (i lo, i hi, 0, 0) that the sampling kernels use.
    """
    if counters.dim() == 1:
        lo, hi = counters & 0xFFFFFFFF, (counters >> 32) & 0xFFFFFFFF
        counters = torch.stack([lo, hi, torch.zeros_like(lo), torch.zeros_like(lo)], dim=1)
    counters = counters.to(torch.int64).contiguous()
    n = counters.shape[0]
    out = torch.empty((n, 4), dtype=torch.int64, device=counters.device)
    if n:
        block = 128
        _philox_words_kernel[(triton.cdiv(n, block),)](seed, counters, out, n, BLOCK=block)
    return out
