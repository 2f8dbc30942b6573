// Philox4x32-10 (Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2, 3"),
// the counter-based generator behind the random numbers of fastgan's penalty sampling
// (interpolate, perturb). Every backend computes the same words from the same (key,
// counter): the C++ and CUDA kernels with this header, the Triton kernels with
// kernels/_philox.py, the reference with int64 tensor arithmetic (fastgan/ops/_philox.py).
// So a seed gives the same samples on every backend, bit for bit.
//
// Key: the two 32-bit halves of an int64 seed (lo, hi). Counter: (c0, c1, 0, 0).
// A uniform float in [0, 1): the word's top 24 bits times 2^-24 (exact in float32).
#pragma once

#include <c10/macros/Macros.h>

#include <cstdint>

#include "bits.h"  // FASTGAN_ISA

namespace fastgan {
inline namespace FASTGAN_ISA {

struct Philox4 {
  uint32_t w[4];
};

C10_HOST_DEVICE inline uint32_t mulhi32(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __umulhi(a, b);
#else
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
#endif
}

// Ten rounds of Philox4x32 on counter (c0, c1, c2, c3) with key (k0, k1).
C10_HOST_DEVICE inline Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                             uint32_t k0, uint32_t k1) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;  // round multipliers
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;  // key schedule
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int r = 0; r < 10; ++r) {
    const uint32_t hi0 = mulhi32(kMul0, c0), lo0 = kMul0 * c0;
    const uint32_t hi1 = mulhi32(kMul1, c2), lo1 = kMul1 * c2;
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// The four words for counter `index` (a 64-bit element or sample index) under `seed`.
C10_HOST_DEVICE inline Philox4 philox_words(int64_t seed, uint64_t index) {
  const auto s = static_cast<uint64_t>(seed);
  return philox4x32_10(static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32), 0u, 0u,
                       static_cast<uint32_t>(s), static_cast<uint32_t>(s >> 32));
}

// A word as a float in [0, 1): top 24 bits * 2^-24, exact in float32.
C10_HOST_DEVICE inline float uniform_from_word(uint32_t w) {
  return static_cast<float>(w >> 8) * 5.9604644775390625e-08f;  // 2^-24
}

}  // namespace FASTGAN_ISA
}  // namespace fastgan
