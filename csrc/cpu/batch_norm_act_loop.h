// The element loops of the C++ batch_norm_act kernels (csrc/cpu/batch_norm_act.cpp),
// compiled three times as penalty_loop.h is: for the baseline instruction set there, for
// AVX2+FMA in csrc/cpu/batch_norm_act_avx2.cpp and for AVX-512 in *_avx512.cpp, one
// picked at run time (csrc/cpu/isa.h). Pure C++,
// ISA-namespaced, type-erased (storage pointers as void*, T values as double, which holds
// a float exactly; T arrays as void*) so that units of different ISAs can hand them over.
//
// Two shapes of loop: over a run of one channel (NCHW planes, per-channel values as
// scalars) and over rows of a strided block or a periodic walk (channels_last, 2-D, small
// NCHW planes: per-channel values laid out as a pattern of T, one value per offset).
#pragma once

#include <algorithm>
#include <cstdint>

#include "../batch_norm_act_math.h"
#include "../bits.h"
#include "../leaky_relu_math.h"
#include "elem.h"
#include "stats_loop.h"

namespace fastgan {

// Per-channel values of the element loops, in this order (scalars as double in the run
// loops, T patterns in the periodic ones).
enum BnFwdParam { kFwdMean, kFwdScale, kFwdShift, kFwdParams };
enum BnBwdParam { kBwdMean, kBwdInvstd, kBwdScale, kBwdMeanG, kBwdMeanGx, kBwdParams };

struct BnActLoops {
  // ---- statistics (sums in T, returned as double)
  // All on data shifted by a value of the channel, y = x - shift (exact near the mean).
  // sum y over n elements.
  double (*sum)(const void* x, double shift, int64_t n);
  // s[0] = sum d, s[1] = sum d * d with d = y - mean, over n elements.
  void (*sum_dev)(const void* x, double shift, double mean, int64_t n, double* s);
  // Column sums of a block of rows (row r at x + r * stride): acc[j] += y[r, j], j < width,
  // y[r, j] = x[r, j] - shift[j]; shift, mean: T[width].
  void (*col_sum)(const void* x, int64_t stride, int64_t rows, int64_t width, const void* shift,
                  void* acc);
  // acc_d[j] += d, acc_d2[j] += d * d with d = y[r, j] - mean[j].
  void (*col_sum_dev)(const void* x, int64_t stride, int64_t rows, int64_t width,
                      const void* shift, const void* mean, void* acc_d, void* acc_d2);
  // ---- forward elements: y = bn_act_value(x, mean, scale, shift, slope)
  // n elements of one channel; p: the kFwdParams values.
  void (*channel)(const void* x, void* y, const double* p, double slope, int64_t n);
  // n elements; pat[k]: kFwdParams patterns of period T values, element i at
  // (phase + i) % period.
  void (*periodic)(const void* x, void* y, const void* const* pat, int64_t period,
                   int64_t phase, double slope, int64_t n);
  // ---- backward sums: g = leaky_relu_grad(dy, y, slope), xhat = (x - mean) * invstd
  // s[0] = sum g, s[1] = sum g * xhat over n elements of one channel.
  void (*grad_sum)(const void* dy, const void* y, const void* x, double mean, double invstd,
                   double slope, int64_t n, double* s);
  // acc_g[j] += g, acc_gx[j] += g * xhat over a block of rows; mean, invstd: T[width].
  void (*grad_col_sum)(const void* dy, const void* y, const void* x, int64_t stride,
                       int64_t rows, int64_t width, const void* mean, const void* invstd,
                       double slope, void* acc_g, void* acc_gx);
  // ---- backward elements: dx = bn_act_grad_x(g, xhat, scale, mean_g, mean_gx) with batch
  // statistics, else scale * g. p / pat: the kBwdParams values (as the forward ones).
  void (*grad_channel)(const void* dy, const void* y, const void* x, void* dx, const double* p,
                       double slope, bool batch_stats, int64_t n);
  void (*grad_periodic)(const void* dy, const void* y, const void* x, void* dx,
                        const void* const* pat, int64_t period, int64_t phase, double slope,
                        bool batch_stats, int64_t n);
};

#ifdef FASTGAN_HAVE_X86_UNITS
template <typename D>
BnActLoops bn_act_loops_avx2();    // csrc/cpu/batch_norm_act_avx2.cpp
template <typename D>
BnActLoops bn_act_loops_avx512();  // csrc/cpu/batch_norm_act_avx512.cpp
#endif

inline namespace FASTGAN_ISA {
namespace bn_act_loop {

template <typename D>
using S = typename Elem<D>::storage;
template <typename D>
using T_of = typename Elem<D>::T;

// Rows of col_sum / col_sum_dev, restrict-qualified as grad_row_sum.
template <typename D>
inline void row_sum(const S<D>* __restrict x, int64_t width, const T_of<D>* __restrict k,
                    T_of<D>* __restrict acc) {
  for (int64_t j = 0; j < width; ++j) acc[j] += Elem<D>::load(x[j]) - k[j];
}

template <typename D>
inline void row_sum_dev(const S<D>* __restrict x, int64_t width, const T_of<D>* __restrict k,
                        const T_of<D>* __restrict mean, T_of<D>* __restrict ad,
                        T_of<D>* __restrict ad2) {
  using T = T_of<D>;
  for (int64_t j = 0; j < width; ++j) {
    const T d = (Elem<D>::load(x[j]) - k[j]) - mean[j];
    ad[j] += d;
    ad2[j] += d * d;
  }
}

template <typename D>
void col_sum(const void* xv, int64_t stride, int64_t rows, int64_t width, const void* shiftv,
             void* accv) {
  using T = T_of<D>;
  for (int64_t r = 0; r < rows; ++r) {
    row_sum<D>(static_cast<const S<D>*>(xv) + r * stride, width, static_cast<const T*>(shiftv),
               static_cast<T*>(accv));
  }
}

template <typename D>
void col_sum_dev(const void* xv, int64_t stride, int64_t rows, int64_t width, const void* shiftv,
                 const void* meanv, void* adv, void* ad2v) {
  using T = T_of<D>;
  for (int64_t r = 0; r < rows; ++r) {
    row_sum_dev<D>(static_cast<const S<D>*>(xv) + r * stride, width, static_cast<const T*>(shiftv),
                   static_cast<const T*>(meanv), static_cast<T*>(adv), static_cast<T*>(ad2v));
  }
}

template <typename D>
void channel(const void* xv, void* yv, const double* p, double slope, int64_t n) {
  using E = Elem<D>;
  using T = T_of<D>;
  const auto* __restrict x = static_cast<const S<D>*>(xv);
  auto* __restrict y = static_cast<S<D>*>(yv);
  const T mean = static_cast<T>(p[kFwdMean]), scale = static_cast<T>(p[kFwdScale]),
          shift = static_cast<T>(p[kFwdShift]), s = static_cast<T>(slope);
  for (int64_t i = 0; i < n; ++i) y[i] = E::store(bn_act_value(E::load(x[i]), mean, scale, shift, s));
}

// One stretch of periodic (pattern offsets 0 .. len), restrict-qualified.
template <typename D>
inline void stretch(const S<D>* __restrict x, S<D>* __restrict y, int64_t len,
                    const T_of<D>* __restrict mean, const T_of<D>* __restrict scale,
                    const T_of<D>* __restrict shift, T_of<D> s) {
  using E = Elem<D>;
  for (int64_t j = 0; j < len; ++j) y[j] = E::store(bn_act_value(E::load(x[j]), mean[j], scale[j], shift[j], s));
}

template <typename D>
void periodic(const void* xv, void* yv, const void* const* pat, int64_t period, int64_t phase,
              double slope, int64_t n) {
  using T = T_of<D>;
  const auto* mean = static_cast<const T*>(pat[kFwdMean]);
  const auto* scale = static_cast<const T*>(pat[kFwdScale]);
  const auto* shift = static_cast<const T*>(pat[kFwdShift]);
  const T s = static_cast<T>(slope);
  for (int64_t i = 0; i < n;) {  // one stretch up to the end of the current period at a time
    const int64_t len = std::min(n - i, period - phase);
    stretch<D>(static_cast<const S<D>*>(xv) + i, static_cast<S<D>*>(yv) + i, len, mean + phase,
               scale + phase, shift + phase, s);
    i += len;
    phase = 0;
  }
}

template <typename D>
void grad_sum(const void* dyv, const void* yv, const void* xv, double mean, double invstd,
              double slope, int64_t n, double* out) {
  using E = Elem<D>;
  using T = T_of<D>;
  const auto* __restrict dy = static_cast<const S<D>*>(dyv);
  const auto* __restrict y = static_cast<const S<D>*>(yv);
  const auto* __restrict x = static_cast<const S<D>*>(xv);
  const T m = static_cast<T>(mean), inv = static_cast<T>(invstd), s = static_cast<T>(slope);
  T ag[kLanes] = {}, agx[kLanes] = {};
  auto step = [&](int64_t i, int l) {
    const T g = leaky_relu_grad(E::load(dy[i]), E::load(y[i]), s);
    const T xhat = (E::load(x[i]) - m) * inv;
    ag[l] += g;
    agx[l] += g * xhat;
  };
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) step(i + l, l);
  }
  for (int l = 0; i + l < n; ++l) step(i + l, l);
  out[0] = reduce_lanes(ag);
  out[1] = reduce_lanes(agx);
}

// One row of grad_col_sum. Restrict-qualified parameters: GCC gives up on vectorizing this
// loop when it has to check seven float pointers for overlap (float32 channels_last
// backward: 12 ms -> 1.5 ms for 64x128x16x16 on one thread of the dev host).
template <typename D>
inline void grad_row_sum(const S<D>* __restrict dy, const S<D>* __restrict y,
                         const S<D>* __restrict x, int64_t width, const T_of<D>* __restrict mean,
                         const T_of<D>* __restrict invstd, T_of<D> s, T_of<D>* __restrict ag,
                         T_of<D>* __restrict agx) {
  using E = Elem<D>;
  using T = T_of<D>;
  for (int64_t j = 0; j < width; ++j) {
    const T g = leaky_relu_grad(E::load(dy[j]), E::load(y[j]), s);
    const T xhat = (E::load(x[j]) - mean[j]) * invstd[j];
    ag[j] += g;
    agx[j] += g * xhat;
  }
}

template <typename D>
void grad_col_sum(const void* dyv, const void* yv, const void* xv, int64_t stride, int64_t rows,
                  int64_t width, const void* meanv, const void* invstdv, double slope, void* agv,
                  void* agxv) {
  using T = T_of<D>;
  for (int64_t r = 0; r < rows; ++r) {
    grad_row_sum<D>(static_cast<const S<D>*>(dyv) + r * stride, static_cast<const S<D>*>(yv) + r * stride,
                    static_cast<const S<D>*>(xv) + r * stride, width, static_cast<const T*>(meanv),
                    static_cast<const T*>(invstdv), static_cast<T>(slope), static_cast<T*>(agv),
                    static_cast<T*>(agxv));
  }
}

template <typename D>
void grad_channel(const void* dyv, const void* yv, const void* xv, void* dxv, const double* p,
                  double slope, bool batch_stats, int64_t n) {
  using E = Elem<D>;
  using T = T_of<D>;
  const auto* __restrict dy = static_cast<const S<D>*>(dyv);
  const auto* __restrict y = static_cast<const S<D>*>(yv);
  const auto* __restrict x = static_cast<const S<D>*>(xv);
  auto* __restrict dx = static_cast<S<D>*>(dxv);
  const T mean = static_cast<T>(p[kBwdMean]), invstd = static_cast<T>(p[kBwdInvstd]),
          scale = static_cast<T>(p[kBwdScale]), mg = static_cast<T>(p[kBwdMeanG]),
          mgx = static_cast<T>(p[kBwdMeanGx]), s = static_cast<T>(slope);
  if (batch_stats) {
    for (int64_t i = 0; i < n; ++i) {
      const T g = leaky_relu_grad(E::load(dy[i]), E::load(y[i]), s);
      const T xhat = (E::load(x[i]) - mean) * invstd;
      dx[i] = E::store(bn_act_grad_x(g, xhat, scale, mg, mgx));
    }
  } else {
    for (int64_t i = 0; i < n; ++i) dx[i] = E::store(scale * leaky_relu_grad(E::load(dy[i]), E::load(y[i]), s));
  }
}

// One stretch of grad_periodic (pattern offsets 0 .. len), restrict-qualified.
template <typename D, bool kBatchStats>
inline void grad_stretch(const S<D>* __restrict dy, const S<D>* __restrict y,
                         const S<D>* __restrict x, S<D>* __restrict dx, int64_t len,
                         const T_of<D>* __restrict mean, const T_of<D>* __restrict invstd,
                         const T_of<D>* __restrict scale, const T_of<D>* __restrict mg,
                         const T_of<D>* __restrict mgx, T_of<D> s) {
  using E = Elem<D>;
  using T = T_of<D>;
  for (int64_t j = 0; j < len; ++j) {
    const T g = leaky_relu_grad(E::load(dy[j]), E::load(y[j]), s);
    if constexpr (kBatchStats) {
      const T xhat = (E::load(x[j]) - mean[j]) * invstd[j];
      dx[j] = E::store(bn_act_grad_x(g, xhat, scale[j], mg[j], mgx[j]));
    } else {
      dx[j] = E::store(scale[j] * g);
    }
  }
}

template <typename D>
void grad_periodic(const void* dyv, const void* yv, const void* xv, void* dxv,
                   const void* const* pat, int64_t period, int64_t phase, double slope,
                   bool batch_stats, int64_t n) {
  using T = T_of<D>;
  const T* p[kBwdParams];
  for (int q = 0; q < kBwdParams; ++q) p[q] = static_cast<const T*>(pat[q]);
  const T s = static_cast<T>(slope);
  for (int64_t i = 0; i < n;) {
    const int64_t len = std::min(n - i, period - phase);
    const S<D>* dy = static_cast<const S<D>*>(dyv) + i;
    const S<D>* y = static_cast<const S<D>*>(yv) + i;
    const S<D>* x = static_cast<const S<D>*>(xv) + i;
    S<D>* dx = static_cast<S<D>*>(dxv) + i;
    auto* stretch = batch_stats ? &grad_stretch<D, true> : &grad_stretch<D, false>;
    stretch(dy, y, x, dx, len, p[kBwdMean] + phase, p[kBwdInvstd] + phase, p[kBwdScale] + phase,
            p[kBwdMeanG] + phase, p[kBwdMeanGx] + phase, s);
    i += len;
    phase = 0;
  }
}

}  // namespace bn_act_loop

template <typename D>
BnActLoops bn_act_loops() {
  namespace l = bn_act_loop;
  return {&stats_loop::sum<D>, &stats_loop::sum_dev<D>, &l::col_sum<D>,      &l::col_sum_dev<D>,
          &l::channel<D>,      &l::periodic<D>,         &l::grad_sum<D>,     &l::grad_col_sum<D>,
          &l::grad_channel<D>, &l::grad_periodic<D>};
}

}  // namespace FASTGAN_ISA
}  // namespace fastgan
