// The element loops of the C++ bias_leaky_relu and leaky_relu_backward kernels
// (csrc/cpu/bias_leaky_relu.cpp), compiled three times as rmsprop_loop.h is: for the
// baseline instruction set there, for AVX2+FMA in csrc/cpu/bias_leaky_relu_avx2.cpp and for
// AVX-512 in *_avx512.cpp, one picked at run time (csrc/cpu/isa.h). Pure C++, ISA-namespaced, type-erased (storage pointers as void*, T values
// as double, which holds a float exactly).
#pragma once

#include <algorithm>
#include <cstdint>

#include "../bits.h"
#include "../leaky_relu_math.h"
#include "elem.h"

namespace fastgan {

// One dtype's loops. slope and bias values arrive as double and are rounded to T once.
struct LeakyReluLoops {
  // y = leaky(x) over n elements, no bias.
  void (*plain)(const void* x, void* y, double slope, int64_t n);
  // y = leaky(x + bias) over n elements of one channel.
  void (*channel)(const void* x, void* y, double bias, double slope, int64_t n);
  // y = leaky(x + pattern[(phase + i) % period]) over n elements; pattern: period values
  // of T (the bias of every offset of one period of the channel walk).
  void (*periodic)(const void* x, void* y, const void* pattern, int64_t period, int64_t phase,
                   double slope, int64_t n);
  // dx = out > 0 ? grad : grad * slope over n elements.
  void (*backward)(const void* grad, const void* out, void* dx, double slope, int64_t n);
};

#ifdef FASTGAN_HAVE_X86_UNITS
template <typename D>
LeakyReluLoops leaky_relu_loops_avx2();    // csrc/cpu/bias_leaky_relu_avx2.cpp
template <typename D>
LeakyReluLoops leaky_relu_loops_avx512();  // csrc/cpu/bias_leaky_relu_avx512.cpp
#endif

inline namespace FASTGAN_ISA {
namespace leaky_relu_loop {

template <typename D, bool kBias>
void forward(const void* xv, void* yv, double bias, double slope, int64_t n) {
  using E = Elem<D>;
  using T = typename E::T;
  const auto* __restrict x = static_cast<const typename E::storage*>(xv);
  auto* __restrict y = static_cast<typename E::storage*>(yv);
  const T b = static_cast<T>(bias), s = static_cast<T>(slope);
  for (int64_t i = 0; i < n; ++i) {
    T v = E::load(x[i]);
    if constexpr (kBias) v = v + b;  // none without a bias: -0 + 0 would lose the sign
    y[i] = E::store(leaky_relu_value(v, s));
  }
}

template <typename D>
void plain(const void* x, void* y, double slope, int64_t n) {
  forward<D, false>(x, y, 0.0, slope, n);
}

template <typename D>
void periodic(const void* xv, void* yv, const void* patternv, int64_t period, int64_t phase,
              double slope, int64_t n) {
  using E = Elem<D>;
  using T = typename E::T;
  const auto* __restrict x = static_cast<const typename E::storage*>(xv);
  auto* __restrict y = static_cast<typename E::storage*>(yv);
  const T* __restrict pattern = static_cast<const T*>(patternv);
  const T s = static_cast<T>(slope);
  for (int64_t i = 0; i < n;) {  // one stretch up to the end of the current period at a time
    const int64_t len = std::min(n - i, period - phase);
    for (int64_t j = 0; j < len; ++j) {
      y[i + j] = E::store(leaky_relu_value(E::load(x[i + j]) + pattern[phase + j], s));
    }
    i += len;
    phase = 0;
  }
}

template <typename D>
void backward(const void* gv, const void* ov, void* dxv, double slope, int64_t n) {
  using E = Elem<D>;
  using T = typename E::T;
  const auto* __restrict g = static_cast<const typename E::storage*>(gv);
  const auto* __restrict o = static_cast<const typename E::storage*>(ov);
  auto* __restrict dx = static_cast<typename E::storage*>(dxv);
  const T s = static_cast<T>(slope);
  for (int64_t i = 0; i < n; ++i) dx[i] = E::store(leaky_relu_grad(E::load(g[i]), E::load(o[i]), s));
}

}  // namespace leaky_relu_loop

template <typename D>
LeakyReluLoops leaky_relu_loops() {
  return {&leaky_relu_loop::plain<D>, &leaky_relu_loop::forward<D, true>,
          &leaky_relu_loop::periodic<D>, &leaky_relu_loop::backward<D>};
}

}  // namespace FASTGAN_ISA
}  // namespace fastgan
