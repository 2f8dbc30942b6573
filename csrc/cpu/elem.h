// Loads and stores of the four floating dtypes for the C++ kernels' element loops, in
// a form GCC vectorizes. Pure C++ (no torch headers) and ISA-namespaced (bits.h), so a
// unit compiled for another instruction set (csrc/cpu/*_avx2.cpp, *_avx512.cpp) can
// include it.
//
// Why not c10::Half / c10::BFloat16: GCC 12 at -O3 left every fp16/bf16 loop over them
// scalar. half_to_float / float_to_half below are c10's bit-twiddling algorithms
// (fp16_ieee_*) with every choice made by an integer mask: under the default
// -ftrapping-math GCC will not speculate the float multiplies of one arm of a ternary, so
// a ternary of computed floats stays a branch. All four agree with c10's conversions on
// every input, NaNs included (checked exhaustively: all 2^16 half and 2^32 float patterns).
#pragma once

#include <bit>
#include <cstdint>
#include <type_traits>

#include "../bits.h"  // FASTGAN_ISA
#include "isa.h"       // FASTGAN_HAVE_X86_UNITS, cpu_isa

namespace fastgan {

// Tags of the 16-bit dtypes (storage uint16_t; c10::Half and c10::BFloat16 are one
// uint16_t member, accessed here through that type).
struct f16 {};
struct bf16 {};

// The tag of ATen's scalar_t (float and double are their own), for the torch-side units:
// elem_of<scalar_t, c10::Half, c10::BFloat16>.
template <typename scalar_t, typename Half, typename BFloat16>
using elem_of = std::conditional_t<std::is_same_v<scalar_t, Half>, f16,
                                   std::conditional_t<std::is_same_v<scalar_t, BFloat16>, bf16,
                                                      scalar_t>>;

inline namespace FASTGAN_ISA {

// All ones where `c` holds, else zero.
inline uint32_t mask_if(bool c) { return 0u - static_cast<uint32_t>(c); }

inline float half_to_float(uint16_t h) {
  const uint32_t w = static_cast<uint32_t>(h) << 16;
  const uint32_t sign = w & 0x80000000u;
  const uint32_t two_w = w + w;
  // Normal (and inf/NaN): shift into place and rebias by 2^-112 (exact).
  const float normal = std::bit_cast<float>((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
  // Subnormal: the mantissa as the low bits of 0.5's significand, minus 0.5 (exact).
  const float subnormal = std::bit_cast<float>((two_w >> 17) | (126u << 23)) - 0.5f;
  const uint32_t is_sub = mask_if(static_cast<int32_t>(two_w >> 1) < (1 << 26));
  return std::bit_cast<float>(sign | (std::bit_cast<uint32_t>(subnormal) & is_sub) |
                              (std::bit_cast<uint32_t>(normal) & ~is_sub));
}

// Round to nearest even; NaN -> 0x7E00 with the sign (c10's fp16_ieee_from_fp32_value).
inline uint16_t float_to_half(float f) {
  const uint32_t w = std::bit_cast<uint32_t>(f);
  const uint32_t shl1_w = w + w;
  const uint32_t sign = w & 0x80000000u;
  // Scale to the half range so that the addition below rounds at half's precision.
  float base = (std::bit_cast<float>(w & 0x7FFFFFFFu) * 0x1.0p+112f) * 0x1.0p-110f;
  uint32_t bias = shl1_w & 0xFF000000u;
  // bias = max(bias, 0x71000000) as unsigned: flip the sign bit and compare signed.
  const uint32_t small = mask_if(static_cast<int32_t>(bias ^ 0x80000000u) <
                                 static_cast<int32_t>(0x71000000u ^ 0x80000000u));
  bias = (0x71000000u & small) | (bias & ~small);
  base = std::bit_cast<float>((bias >> 1) + 0x07800000u) + base;
  const uint32_t bits = std::bit_cast<uint32_t>(base);
  const uint32_t nonsign = ((bits >> 13) & 0x00007C00u) + (bits & 0x00000FFFu);
  const uint32_t is_nan = mask_if(static_cast<int32_t>(w & 0x7FFFFFFFu) > 0x7F800000);
  return static_cast<uint16_t>((sign >> 16) | (0x7E00u & is_nan) | (nonsign & ~is_nan));
}

inline float bfloat16_to_float(uint16_t h) {
  return std::bit_cast<float>(static_cast<uint32_t>(h) << 16);
}

// Round to nearest even; NaN -> 0x7FC0 (c10's round_to_nearest_even).
inline uint16_t float_to_bfloat16(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint32_t rounded = (u + ((u >> 16) & 1u) + 0x7FFFu) >> 16;
  const uint32_t is_nan = mask_if(static_cast<int32_t>(u & 0x7FFFFFFFu) > 0x7F800000);
  return static_cast<uint16_t>((0x7FC0u & is_nan) | (rounded & ~is_nan));
}

// Elem<D>: storage type, opmath type T (float; double for double), load and store (each
// store rounds once to the storage dtype).
template <typename D>
struct Elem {  // float, double
  using storage = D;
  using T = D;
  static T load(storage v) { return v; }
  static storage store(T v) { return v; }
};

template <>
struct Elem<f16> {
  using storage = uint16_t;
  using T = float;
  static T load(storage v) { return half_to_float(v); }
  static storage store(T v) { return float_to_half(v); }
};

template <>
struct Elem<bf16> {
  using storage = uint16_t;
  using T = float;
  static T load(storage v) { return bfloat16_to_float(v); }
  static storage store(T v) { return float_to_bfloat16(v); }
};

// The C++ loops' sums run in kLanes independent partial sums (lane l takes elements l,
// l + kLanes, ...) combined by a fixed tree: the compiler vectorizes the lanes (4 SSE / 2 AVX
// vectors of float) without reassociating anything, so every ISA build gives the same bits.
// Each loop writes its lanes out rather than passing a lambda to a shared lane-sum helper:
// with the lambda GCC 12 stopped vectorizing the bf16 conversion (penalty_forward on
// 64x3x32x32 bf16, one thread: 12 -> 59 us, measured).
constexpr int kLanes = 16;

template <typename T>
T reduce_lanes(T (&acc)[kLanes]) {
  for (int w = kLanes / 2; w >= 1; w /= 2) {
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  }
  return acc[0];
}

}  // namespace FASTGAN_ISA
}  // namespace fastgan
