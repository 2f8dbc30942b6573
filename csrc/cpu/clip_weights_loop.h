// The element loop of the C++ clip_weights_ kernel (csrc/cpu/clip_weights.cpp), compiled
// for the baseline instruction set there, for AVX2 in csrc/cpu/clip_weights_avx2.cpp and
// for AVX-512 in csrc/cpu/clip_weights_avx512.cpp (csrc/cpu/isa.h picks one). It works on
// bit patterns (clip_bits, bits.h), one loop per bit width.
#pragma once

#include <cstdint>

#include "../bits.h"
#include "elem.h"  // FASTGAN_HAVE_X86_UNITS

namespace fastgan {

// Clips x[0..n) in place; hi and inf as in csrc/clip_weights.h.
template <typename bits>
using ClipRange = void (*)(bits* x, int64_t n, bits hi, bits inf);

#ifdef FASTGAN_HAVE_X86_UNITS
template <typename bits>
ClipRange<bits> clip_range_avx2();    // csrc/cpu/clip_weights_avx2.cpp
template <typename bits>
ClipRange<bits> clip_range_avx512();  // csrc/cpu/clip_weights_avx512.cpp
#endif

inline namespace FASTGAN_ISA {

template <typename bits>
void clip_range(bits* __restrict x, int64_t n, bits hi, bits inf) {
  for (int64_t i = 0; i < n; ++i) x[i] = clip_bits<bits>(x[i], hi, inf);  // vectorized
}

}  // namespace FASTGAN_ISA
}  // namespace fastgan
