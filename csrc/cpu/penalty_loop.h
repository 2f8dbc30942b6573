// The element loops of the C++ gradient-penalty kernels (csrc/cpu/penalty.cpp), compiled
// three times as rmsprop_loop.h is: for the baseline instruction set there, for AVX2+FMA in
// csrc/cpu/penalty_avx2.cpp and for AVX-512 in *_avx512.cpp, one picked at run time
// (csrc/cpu/isa.h). Pure C++, ISA-namespaced; type-erased
// signatures (storage pointers as void*, T values as double, which holds a float
// exactly) so that units of different ISAs can hand them to each other.
#pragma once

#include <cstdint>

#include "../bits.h"
#include "elem.h"

namespace fastgan {

// One dtype's loops over a range of n elements.
struct PenaltyLoops {
  double (*sum_squares)(const void* g, int64_t n);             // sum g^2, in T
  double (*dot)(const void* a, const void* b, int64_t n);      // sum a * b, in T
  void (*scale)(const void* g, void* out, double c, int64_t n);  // out = c * g
  // out = c * gg + q * g (two products and a sum, no fma)
  void (*scale_add)(const void* gg, const void* g, void* out, double c, double q, int64_t n);
};

#ifdef FASTGAN_HAVE_X86_UNITS
template <typename D>
PenaltyLoops penalty_loops_avx2();    // csrc/cpu/penalty_avx2.cpp
template <typename D>
PenaltyLoops penalty_loops_avx512();  // csrc/cpu/penalty_avx512.cpp
#endif

inline namespace FASTGAN_ISA {
namespace penalty_loop {

template <typename D>
double sum_squares(const void* gv, int64_t n) {
  using E = Elem<D>;
  using T = typename E::T;
  const auto* __restrict g = static_cast<const typename E::storage*>(gv);
  T acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const T v = E::load(g[i + l]);
      acc[l] += v * v;
    }
  }
  for (int l = 0; i + l < n; ++l) {
    const T v = E::load(g[i + l]);
    acc[l] += v * v;
  }
  return reduce_lanes(acc);
}

template <typename D>
double dot(const void* av, const void* bv, int64_t n) {
  using E = Elem<D>;
  using T = typename E::T;
  const auto* __restrict a = static_cast<const typename E::storage*>(av);
  const auto* __restrict b = static_cast<const typename E::storage*>(bv);
  T acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] += E::load(a[i + l]) * E::load(b[i + l]);
  }
  for (int l = 0; i + l < n; ++l) acc[l] += E::load(a[i + l]) * E::load(b[i + l]);
  return reduce_lanes(acc);
}

template <typename D>
void scale(const void* gv, void* outv, double c, int64_t n) {
  using E = Elem<D>;
  using T = typename E::T;
  const auto* __restrict g = static_cast<const typename E::storage*>(gv);
  auto* __restrict out = static_cast<typename E::storage*>(outv);
  const T ct = static_cast<T>(c);
  for (int64_t i = 0; i < n; ++i) out[i] = E::store(ct * E::load(g[i]));
}

template <typename D>
void scale_add(const void* ggv, const void* gv, void* outv, double c, double q, int64_t n) {
  using E = Elem<D>;
  using T = typename E::T;
  const auto* __restrict gg = static_cast<const typename E::storage*>(ggv);
  const auto* __restrict g = static_cast<const typename E::storage*>(gv);
  auto* __restrict out = static_cast<typename E::storage*>(outv);
  const T ct = static_cast<T>(c), qt = static_cast<T>(q);
  for (int64_t i = 0; i < n; ++i) out[i] = E::store(ct * E::load(gg[i]) + qt * E::load(g[i]));
}

}  // namespace penalty_loop

template <typename D>
PenaltyLoops penalty_loops() {
  return {&penalty_loop::sum_squares<D>, &penalty_loop::dot<D>, &penalty_loop::scale<D>,
          &penalty_loop::scale_add<D>};
}

}  // namespace FASTGAN_ISA
}  // namespace fastgan
