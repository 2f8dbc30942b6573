// The element loop of the C++ rmsprop_clip_ kernel, compiled three times: in
// csrc/cpu/rmsprop_clip.cpp for the baseline instruction set (every dtype), in
// csrc/cpu/rmsprop_clip_avx2.cpp for AVX2+FMA and in *_avx512.cpp for AVX-512 (float32,
// float64), one picked at run time (csrc/cpu/isa.h). Why units and not GCC's target_clones: GCC does not inline the shared
// element math (csrc/rmsprop_math.h) into a target-attributed clone, and the calls left
// there kept the loop scalar. Pure C++ (no torch headers) and ISA-namespaced (bits.h),
// so each unit keeps its own copy.
#pragma once

#include <bit>
#include <cstdint>
#include <type_traits>

#include "../bits.h"
#include "../rmsprop_math.h"
#include "elem.h"  // FASTGAN_HAVE_X86_UNITS

namespace fastgan {

// One range of one parameter and everything the loop needs, type-erased so that units
// compiled for different instruction sets can pass it to each other.
struct RMSpropLoopArgs {
  void* p;
  void* g;   // written only when unscale
  void* v;
  void* b;   // momentum buffer, or null
  void* ga;  // grad average, or null
  int64_t n;
  float lr;
  float grad_scale;  // read when unscale
  double alpha, eps, weight_decay, momentum;
  uint64_t clip_hi, clip_inf;  // clip_bits' bounds in the dtype's bit width
  bool centered, use_momentum, maximize, use_weight_decay, use_clip, unscale;
};

#ifdef FASTGAN_HAVE_X86_UNITS
void rmsprop_loop_avx2_f32(const RMSpropLoopArgs& a);  // csrc/cpu/rmsprop_clip_avx2.cpp
void rmsprop_loop_avx2_f64(const RMSpropLoopArgs& a);
void rmsprop_loop_avx512_f32(const RMSpropLoopArgs& a);  // csrc/cpu/rmsprop_clip_avx512.cpp
void rmsprop_loop_avx512_f64(const RMSpropLoopArgs& a);
#endif

inline namespace FASTGAN_ISA {

template <typename scalar_t, bool kCentered, bool kMomentum, bool kMaximize, bool kWeightDecay,
          bool kClip>
void rmsprop_range(const RMSpropLoopArgs& a) {
  using T = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;  // opmath
  using bits = bits_t<scalar_t>;
  auto* __restrict p = static_cast<scalar_t*>(a.p);
  const auto* __restrict g = static_cast<const scalar_t*>(a.g);
  auto* __restrict v = static_cast<scalar_t*>(a.v);
  auto* __restrict b = static_cast<scalar_t*>(a.b);
  auto* __restrict ga = static_cast<scalar_t*>(a.ga);
  const RMSpropHyper<T> h{static_cast<T>(a.alpha), static_cast<T>(1.0 - a.alpha),
                          static_cast<T>(a.eps), static_cast<T>(a.weight_decay),
                          static_cast<T>(a.momentum)};
  const T lr = static_cast<T>(a.lr);
  const bits hi = static_cast<bits>(a.clip_hi), inf = static_cast<bits>(a.clip_inf);
  for (int64_t j = 0; j < a.n; ++j) {
    T pj = static_cast<T>(p[j]), vj = static_cast<T>(v[j]), bj = 0, gaj = 0;
    if constexpr (kMomentum) bj = static_cast<T>(b[j]);
    if constexpr (kCentered) gaj = static_cast<T>(ga[j]);
    rmsprop_element<T, kCentered, kMomentum, kMaximize, kWeightDecay>(
        pj, static_cast<T>(g[j]), vj, bj, gaj, lr, h);
    v[j] = static_cast<scalar_t>(vj);
    if constexpr (kMomentum) b[j] = static_cast<scalar_t>(bj);
    if constexpr (kCentered) ga[j] = static_cast<scalar_t>(gaj);
    scalar_t out = static_cast<scalar_t>(pj);
    if constexpr (kClip) {  // the clip of clip_weights_, on the stored value's bits
      out = std::bit_cast<scalar_t>(clip_bits(std::bit_cast<bits>(out), hi, inf));
    }
    p[j] = out;
  }
}

// Loss scaling: g = g / scale in opmath, stored in the gradient's dtype; the step then
// reads the stored value (a pass of its own over the range, still in cache).
template <typename scalar_t>
void unscale_range(const RMSpropLoopArgs& a) {
  using T = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
  auto* __restrict g = static_cast<scalar_t*>(a.g);
  const T scale = static_cast<T>(a.grad_scale);
  for (int64_t j = 0; j < a.n; ++j) g[j] = static_cast<scalar_t>(static_cast<T>(g[j]) / scale);
}

template <typename scalar_t>
void rmsprop_loop(const RMSpropLoopArgs& a) {
  if (a.unscale) unscale_range<scalar_t>(a);
  dispatch_flags([&](auto kCentered, auto kMomentum, auto kMaximize, auto kWeightDecay,
                     auto kClip) {
    rmsprop_range<scalar_t, kCentered, kMomentum, kMaximize, kWeightDecay, kClip>(a);
  }, a.centered, a.use_momentum, a.maximize, a.use_weight_decay, a.use_clip);
}

}  // namespace FASTGAN_ISA
}  // namespace fastgan
