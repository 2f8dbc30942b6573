// The element loops of the C++ interpolate and perturb kernels (csrc/cpu/penalty_sampling.cpp),
// compiled three times as rmsprop_loop.h is: for the baseline instruction set there, for
// AVX2+FMA in csrc/cpu/penalty_sampling_avx2.cpp and for AVX-512 in *_avx512.cpp, one
// picked at run time (csrc/cpu/isa.h). Pure C++,
// ISA-namespaced, type-erased (storage pointers as void*, T values as double, which holds
// a float exactly).
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

#include "../bits.h"
#include "../philox.h"
#include "elem.h"

namespace fastgan {

// One dtype's loops.
struct SamplingLoops {
  // out = fma(eps, real - fake, fake) over n elements of one sample.
  void (*interpolate)(const void* real, const void* fake, void* out, double eps, int64_t n);
  // Philox counters [c0, c1) of a tensor of n elements (real and out point at element 0):
  // out_i = clamp(fma(u_i, scale, real_i), lo, hi), u_i = word i % 4 of counter i / 4.
  void (*perturb)(const void* real, void* out, int64_t c0, int64_t c1, int64_t n, int64_t seed,
                  double scale, double lo, double hi);
};

#ifdef FASTGAN_HAVE_X86_UNITS
template <typename D>
SamplingLoops sampling_loops_avx2();    // csrc/cpu/penalty_sampling_avx2.cpp
template <typename D>
SamplingLoops sampling_loops_avx512();  // csrc/cpu/penalty_sampling_avx512.cpp
#endif

inline namespace FASTGAN_ISA {
namespace sampling_loop {

template <typename D>
void interpolate(const void* realv, const void* fakev, void* outv, double eps, int64_t n) {
  using E = Elem<D>;
  using T = typename E::T;
  const auto* __restrict real = static_cast<const typename E::storage*>(realv);
  const auto* __restrict fake = static_cast<const typename E::storage*>(fakev);
  auto* __restrict out = static_cast<typename E::storage*>(outv);
  const T e = static_cast<T>(eps);
  for (int64_t i = 0; i < n; ++i) {
    const T f = E::load(fake[i]);
    out[i] = E::store(std::fma(e, E::load(real[i]) - f, f));
  }
}

// v < lo ? lo : (v > hi ? hi : v) (NaN passes), picked by bit masks: as a ternary the
// fp16 loop stayed scalar (GCC threads the constant arms into the conversion that
// follows); with masks it vectorizes (4.0 -> 1.5 ms for 786K elements, one AVX2 thread).
template <typename T>
T clamp_nan_passing(T v, T lo, T hi) {
  using B = bits_t<T>;
  const B below = B(0) - static_cast<B>(v < lo), above = B(0) - static_cast<B>(v > hi);
  return std::bit_cast<T>((std::bit_cast<B>(lo) & below) | (std::bit_cast<B>(hi) & above) |
                          (std::bit_cast<B>(v) & ~(below | above)));
}

template <typename D>
void perturb(const void* realv, void* outv, int64_t c0, int64_t c1, int64_t n, int64_t seed,
             double scale, double lo, double hi) {
  using E = Elem<D>;
  using T = typename E::T;
  const auto* __restrict real = static_cast<const typename E::storage*>(realv);
  auto* __restrict out = static_cast<typename E::storage*>(outv);
  const T sc = static_cast<T>(scale), l = static_cast<T>(lo), h = static_cast<T>(hi);
  const int64_t whole = std::min(c1, n / 4);  // counters with all four elements present
  for (int64_t j = c0; j < whole; ++j) {  // vectorized across counters (AVX2: 8 at a time)
    const Philox4 w = philox_words(seed, static_cast<uint64_t>(j));
    for (int k = 0; k < 4; ++k) {
      const T u = static_cast<T>(uniform_from_word(w.w[k]));
      out[4 * j + k] = E::store(clamp_nan_passing(std::fma(u, sc, E::load(real[4 * j + k])), l, h));
    }
  }
  if (whole < c1) {  // the last counter, short of elements
    const Philox4 w = philox_words(seed, static_cast<uint64_t>(whole));
    for (int64_t i = 4 * whole; i < n; ++i) {
      const T u = static_cast<T>(uniform_from_word(w.w[i - 4 * whole]));
      out[i] = E::store(clamp_nan_passing(std::fma(u, sc, E::load(real[i])), l, h));
    }
  }
}

}  // namespace sampling_loop

template <typename D>
SamplingLoops sampling_loops() {
  return {&sampling_loop::interpolate<D>, &sampling_loop::perturb<D>};
}

}  // namespace FASTGAN_ISA
}  // namespace fastgan
