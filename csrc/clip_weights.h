// The clip of fastgan::clip_weights_ on bit patterns, shared by the CPU and CUDA
// kernels so that both compute exactly one definition.
//
// For an IEEE value x and a bound h >= 0 (c rounded to x's dtype, as torch.clamp_
// rounds its scalars): |x| > h exactly when x's magnitude bits exceed h's, and x is
// NaN exactly when they exceed inf's; a clipped value takes h with x's own sign.
// That is t.clamp_(-c, c) to the bit: NaN bits kept, -0.0 kept, ±inf -> ±h.
// Why integers: on CPU, GCC vectorizes this for every dtype without -ffast-math
// (the float form `x < lo ? lo : x` stayed scalar: 39 GB/s against ATen's 266 GB/s
// on the DCGAN critic, fp32, 2-core EPYC); on CUDA there is no half/bf16 conversion
// and no flush-to-zero compare to get wrong.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/macros/Macros.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "bits.h"

namespace fastgan {

// The bound's and infinity's bit patterns for one dtype (host side).
template <typename scalar_t>
struct ClipBits {
  bits_t<scalar_t> hi;   // c rounded to scalar_t; no sign bit since c >= 0
  bits_t<scalar_t> inf;  // magnitudes above this are NaN
};

template <typename scalar_t>
ClipBits<scalar_t> make_clip_bits(double c) {
  const scalar_t hi = static_cast<scalar_t>(c);
  const scalar_t inf = std::numeric_limits<scalar_t>::infinity();
  ClipBits<scalar_t> b;
  std::memcpy(&b.hi, &hi, sizeof b.hi);
  std::memcpy(&b.inf, &inf, sizeof b.inf);
  return b;
}

// torch.clamp_ refuses a bound its dtype cannot hold (fp16: c > 65504); so do we,
// before any tensor is touched, so that every backend agrees with it.
inline void check_clip_range(const char* op, at::TensorList tensors, double c) {
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto dtype = tensors[i].scalar_type();
    double max = std::numeric_limits<double>::max();
    if (dtype == at::kFloat) max = std::numeric_limits<float>::max();
    if (dtype == at::kHalf) max = static_cast<float>(std::numeric_limits<c10::Half>::max());
    if (dtype == at::kBFloat16) max = static_cast<float>(std::numeric_limits<c10::BFloat16>::max());
    TORCH_CHECK(c <= max, op, ": c = ", c, " exceeds the largest finite ", dtype,
                " (", max, ") of tensors[", i, "]");
  }
}

}  // namespace fastgan
