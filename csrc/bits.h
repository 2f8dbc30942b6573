// Bit-level helpers shared by every kernel: pure C++, no torch headers, so that a
// translation unit compiled for another instruction set (csrc/cpu/*_avx*.cpp) can include
// them. Everything sits in an inline namespace named by FASTGAN_ISA, so each such unit
// gets its own copies and none is shared across units compiled for different ISAs.
#pragma once

#include <c10/macros/Macros.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#ifndef FASTGAN_ISA
#define FASTGAN_ISA base
#endif

namespace fastgan {
inline namespace FASTGAN_ISA {

template <size_t N> struct UInt;
template <> struct UInt<2> { using type = uint16_t; };
template <> struct UInt<4> { using type = uint32_t; };
template <> struct UInt<8> { using type = uint64_t; };

template <typename scalar_t>
using bits_t = typename UInt<sizeof(scalar_t)>::type;

// The clip of clip_weights_ on bit patterns (see csrc/clip_weights.h). Magnitudes, hi
// and inf have no sign bit, so they compare as signed integers: x86 has signed vector
// compares only (an unsigned one costs two more instructions).
template <typename bits>
C10_HOST_DEVICE inline bits clip_bits(bits x, bits hi, bits inf) {
  using sbits = std::make_signed_t<bits>;
  constexpr bits kSign = static_cast<bits>(bits(1) << (8 * sizeof(bits) - 1));
  const auto mag = static_cast<sbits>(x & static_cast<bits>(~kSign));
  return (mag > static_cast<sbits>(hi) && mag <= static_cast<sbits>(inf))
             ? static_cast<bits>((x & kSign) | hi) : x;
}

}  // namespace FASTGAN_ISA
}  // namespace fastgan
