// The element loops of the C++ began_loss kernels (csrc/cpu/began_loss.cpp), compiled
// three times as penalty_loop.h is: for the baseline instruction set there, for AVX2+FMA in
// csrc/cpu/began_loss_avx2.cpp and for AVX-512 in *_avx512.cpp, one picked at run time
// (csrc/cpu/isa.h). Pure C++, ISA-namespaced, type-erased
// (storage pointers as void*, T values as double, which holds a float exactly).
#pragma once

#include <cmath>
#include <cstdint>

#include "../batch_norm_act_math.h"  // l1_sign
#include "../bits.h"
#include "elem.h"

namespace fastgan {

struct BeganLoops {
  // sum |a - b| over n elements, in T.
  double (*abs_diff_sum)(const void* a, const void* b, int64_t n);
  // da = l1_sign(a, b) * q, db = -da over n elements (q = c / N, rounded once in T).
  void (*sign_scale)(const void* a, const void* b, void* da, void* db, double q, int64_t n);
};

#ifdef FASTGAN_HAVE_X86_UNITS
template <typename D>
BeganLoops began_loops_avx2();    // csrc/cpu/began_loss_avx2.cpp
template <typename D>
BeganLoops began_loops_avx512();  // csrc/cpu/began_loss_avx512.cpp
#endif

inline namespace FASTGAN_ISA {
namespace began_loop {

template <typename D>
double abs_diff_sum(const void* av, const void* bv, int64_t n) {
  using E = Elem<D>;
  using T = typename E::T;
  const auto* __restrict a = static_cast<const typename E::storage*>(av);
  const auto* __restrict b = static_cast<const typename E::storage*>(bv);
  T acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const T d = E::load(a[i + l]) - E::load(b[i + l]);
      acc[l] += std::abs(d);
    }
  }
  for (int l = 0; i + l < n; ++l) {
    const T d = E::load(a[i + l]) - E::load(b[i + l]);
    acc[l] += std::abs(d);
  }
  for (int w = kLanes / 2; w >= 1; w /= 2) {
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  }
  return acc[0];
}

template <typename D>
void sign_scale(const void* av, const void* bv, void* dav, void* dbv, double q, int64_t n) {
  using E = Elem<D>;
  using T = typename E::T;
  const auto* __restrict a = static_cast<const typename E::storage*>(av);
  const auto* __restrict b = static_cast<const typename E::storage*>(bv);
  auto* __restrict da = static_cast<typename E::storage*>(dav);
  auto* __restrict db = static_cast<typename E::storage*>(dbv);
  const T qt = static_cast<T>(q);
  for (int64_t i = 0; i < n; ++i) {
    const T v = l1_sign(E::load(a[i]), E::load(b[i])) * qt;
    da[i] = E::store(v);
    db[i] = E::store(-v);
  }
}

}  // namespace began_loop

template <typename D>
BeganLoops began_loops() {
  return {&began_loop::abs_diff_sum<D>, &began_loop::sign_scale<D>};
}

}  // namespace FASTGAN_ISA
}  // namespace fastgan
