// The statistics loops of the normalizations' C++ kernels (batch_norm_act_loop.h per
// channel run, sample_norm_act_loop.h per sample range): sums over a contiguous range of
// one dtype's storage, shifted by a value close to the mean (so float32 sums of a large
// mean do not cancel), in the lanes of elem.h. Pure C++ and ISA-namespaced, compiled into
// each ISA unit that includes it.
#pragma once

#include <cstdint>
#include <type_traits>

#include "../bits.h"
#include "elem.h"

namespace fastgan {
inline namespace FASTGAN_ISA {
namespace stats_loop {

// sum over [0, n) of x - shift.
template <typename D>
double sum(const void* xv, double shift, int64_t n) {
  using E = Elem<D>;
  using T = typename E::T;
  const auto* __restrict x = static_cast<const typename E::storage*>(xv);
  const T k = static_cast<T>(shift);
  T acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] += E::load(x[i + l]) - k;
  }
  for (int l = 0; i + l < n; ++l) acc[l] += E::load(x[i + l]) - k;
  return reduce_lanes(acc);
}

// s[0] = sum of d, s[1] = sum of d^2 over [0, n), d = (x - shift) - mean.
template <typename D>
void sum_dev(const void* xv, double shift, double mean, int64_t n, double* s) {
  using E = Elem<D>;
  using T = typename E::T;
  const auto* __restrict x = static_cast<const typename E::storage*>(xv);
  const T k = static_cast<T>(shift), m = static_cast<T>(mean);
  T a1[kLanes] = {}, a2[kLanes] = {};
  int64_t i = 0;
  if constexpr (std::is_same_v<typename E::storage, T>) {
    // float, double: two loops over the (cached) range, each lane adding the same terms in
    // the same order as one loop would. With both sums in one loop GCC 12 vectorizes the
    // loop over i instead of the lanes, a permute per load (float32, AVX2: 18 -> 2 us per
    // 16K elements). The 16-bit loads are the cost there: one loop.
    for (; i + kLanes <= n; i += kLanes) {
      for (int l = 0; l < kLanes; ++l) a1[l] += (E::load(x[i + l]) - k) - m;
    }
    for (int l = 0; i + l < n; ++l) a1[l] += (E::load(x[i + l]) - k) - m;
    for (i = 0; i + kLanes <= n; i += kLanes) {
      for (int l = 0; l < kLanes; ++l) {
        const T d = (E::load(x[i + l]) - k) - m;
        a2[l] += d * d;
      }
    }
    for (int l = 0; i + l < n; ++l) {
      const T d = (E::load(x[i + l]) - k) - m;
      a2[l] += d * d;
    }
  } else {
    for (; i + kLanes <= n; i += kLanes) {
      for (int l = 0; l < kLanes; ++l) {
        const T d = (E::load(x[i + l]) - k) - m;
        a1[l] += d;
        a2[l] += d * d;
      }
    }
    for (int l = 0; i + l < n; ++l) {
      const T d = (E::load(x[i + l]) - k) - m;
      a1[l] += d;
      a2[l] += d * d;
    }
  }
  s[0] = reduce_lanes(a1);
  s[1] = reduce_lanes(a2);
}

}  // namespace stats_loop
}  // namespace FASTGAN_ISA
}  // namespace fastgan
