// The element loops of sample_norm_act on CPU (csrc/cpu/sample_norm_act.cpp), compiled for
// the baseline x86-64 in that unit, for AVX2+FMA in sample_norm_act_avx2.cpp and for
// AVX-512 in sample_norm_act_avx512.cpp, one picked at run time (csrc/cpu/isa.h). Pure C++,
// ISA-namespaced, type-erased (storage pointers as void*, T values as double, which holds
// a float exactly; T arrays as void*) so that units of different ISAs can hand them over.
//
// Every loop works on a range of one sample (per-sample values: scalars) in one of two
// shapes: over a run of one channel (NCHW planes: per-channel values scalars too) or over a
// periodic range (channels_last, 2-D, small planes: per-channel values laid out as patterns
// of T, one value per offset of the walk, element i at pattern offset (phase + i) % period,
// walked in stretches up to the end of the pattern). Per-sample sums run in the lanes of
// elem.h; per-channel sums of a periodic range go into one accumulator per pattern offset
// (*_slot_sum, dd_periodic), which the caller folds per channel.
//
// The element math is csrc/sample_norm_act.h's (sample_norm_value, sample_norm_l,
// sample_norm_dx), restated below with the same operations in the same order: that header
// includes ATen, which must not be compiled under another ISA's target pragma.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <type_traits>

#include "../bits.h"
#include "../leaky_relu_math.h"
#include "../sample_norm_act_math.h"
#include "elem.h"
#include "stats_loop.h"

namespace fastgan {

// Per-sample values of the element loops (double in the interface), in this order.
enum SnFwdSample { kSnMean, kSnRstd, kSnFwdSample };
enum SnFwdChannel { kSnW, kSnB, kSnFwdChannel };
// The backward's: mean_s = s1 / M, mean_sx = s2 / M (csrc/ops.cpp); per channel: w alone.
enum SnBwdSample { kSnBMean, kSnBRstd, kSnBMeanS, kSnBMeanSx, kSnBwdSample };
// The double backward's: S1 / M, S2 / M, SA / M, TA / M, SU / M, TU / M and the
// coefficients of d_x (sample_norm_dx).
enum SnDdSample {
  kSnDMean, kSnDRstd, kSnDMeanS1, kSnDMeanS2, kSnDMeanSA, kSnDMeanTA, kSnDMeanSU, kSnDMeanTU,
  kSnDCXhat, kSnDCLa, kSnDCP, kSnDdSample
};
enum SnDdChannel { kSnDW, kSnDGgw, kSnDGgb, kSnDdChannel };
// The double backward's sums: ggx, ggx * xhat, g, g * xhat, g * ggx.
enum SnDdSum { kSnSumGgx, kSnSumGgxXhat, kSnSumG, kSnSumGXhat, kSnSumGGgx, kSnDdSums };
// The double backward's per-sample sums: S1, S2, SA, TA, SAG, SU, TU (csrc/ops.cpp).
enum SnDdWSum { kSnS1, kSnS2, kSnSA, kSnTA, kSnSAG, kSnSU, kSnTU, kSnDdWSums };

struct SnActLoops {
  // ---- statistics, on data shifted by a value of the sample, y = x - shift
  // sum y over n elements.
  double (*sum)(const void* x, double shift, int64_t n);
  // s[0] = sum d, s[1] = sum d * d with d = y - mean.
  void (*sum_dev)(const void* x, double shift, double mean, int64_t n, double* s);
  // ---- forward elements: y = act(sample_norm_value(x, mean, rstd, w, b))
  // sp: kSnFwdSample values; cp: kSnFwdChannel values (a run) or patterns (periodic).
  void (*fwd_run)(const void* x, void* y, const double* sp, const double* cp, double slope,
                  int64_t n);
  void (*fwd_periodic)(const void* x, void* y, const double* sp, const void* const* pat,
                       int64_t period, int64_t phase, double slope, int64_t n);
  // ---- backward sums: g = leaky_relu_grad(dy, y, slope), xhat = (x - mean) * rstd
  // s[0] = sum g, s[1] = sum g * xhat over a run.
  void (*grad_sum)(const void* dy, const void* y, const void* x, double mean, double rstd,
                   double slope, int64_t n, double* s);
  // acc_g[k] += g, acc_gx[k] += g * xhat, k the pattern offset of each element.
  void (*grad_slot_sum)(const void* dy, const void* y, const void* x, double mean, double rstd,
                        double slope, int64_t period, int64_t phase, int64_t n, void* acc_g,
                        void* acc_gx);
  // s[0] = sum a, s[1] = sum a * xhat with a = g * w[k], k the pattern offset of each
  // element (w null: a = g).
  void (*grad_wsum)(const void* dy, const void* y, const void* x, double mean, double rstd,
                    double slope, const void* w_pat, int64_t period, int64_t phase, int64_t n,
                    double* s);
  // ---- backward elements: dx = sample_norm_l(g * w, xhat, rstd, mean_s, mean_sx)
  void (*grad_run)(const void* dy, const void* y, const void* x, void* dx, const double* sp,
                   double w, double slope, int64_t n);
  void (*grad_periodic)(const void* dy, const void* y, const void* x, void* dx, const double* sp,
                        const void* w_pat, int64_t period, int64_t phase, double slope, int64_t n);
  // ---- double backward sums: s[kSnDdSums] over a run (ggx non-null).
  void (*dd_sum)(const void* ggx, const void* dy, const void* y, const void* x, double mean,
                 double rstd, double slope, int64_t n, double* s);
  // The seven per-sample sums of a periodic range, s[kSnDdWSums] (csrc/ops.cpp; pat: the
  // kSnDdChannel patterns, of which w and ggw are read; ggx null: zero, S1 = S2 = SAG = 0).
  void (*dd_wsum)(const void* ggx, const void* dy, const void* y, const void* x, double mean,
                  double rstd, double slope, const void* const* pat, int64_t period, int64_t phase,
                  int64_t n, double* s);
  // ---- double backward elements: d_grad_out, d_x (csrc/ops.cpp); ggx may be null (zero).
  // The run form returns sum p * g; the periodic one adds p * g into acc_pg per pattern
  // offset (acc_pg unused without ggx: p = 0).
  double (*dd_run)(const void* ggx, const void* dy, const void* y, const void* x, void* dgo,
                   void* dx, const double* sp, const double* cp, double slope, int64_t n);
  void (*dd_periodic)(const void* ggx, const void* dy, const void* y, const void* x, void* dgo,
                      void* dx, const double* sp, const void* const* pat, int64_t period,
                      int64_t phase, double slope, int64_t n, void* acc_pg);
};

#ifdef FASTGAN_HAVE_X86_UNITS
template <typename D>
SnActLoops sn_act_loops_avx2();    // csrc/cpu/sample_norm_act_avx2.cpp
template <typename D>
SnActLoops sn_act_loops_avx512();  // csrc/cpu/sample_norm_act_avx512.cpp
#endif

inline namespace FASTGAN_ISA {
namespace sn_act_loop {

template <typename D>
using S = typename Elem<D>::storage;
template <typename D>
using T_of = typename Elem<D>::T;

// ---- element math: csrc/sample_norm_act_math.h's ----------------------------------------

// (x - mean) * rstd * w + b, then the activation.
template <typename T>
inline T value(T x, T mean, T rstd, T w, T b, T slope) {
  return leaky_relu_value(sample_norm_value(x, mean, rstd, w, b), slope);
}

template <typename T>
inline T l_op(T v, T xhat, T rstd, T mean_s, T mean_sx) {
  return sample_norm_l(v, xhat, rstd, mean_s, mean_sx);
}

template <typename T>
inline T d_x(T xhat, T p, T la, T lu, T c_xhat, T c_la, T c_p) {
  return sample_norm_dx(xhat, p, la, lu, c_xhat, c_la, c_p);
}

// A per-channel value constant over a run: indexes like a pattern, so one loop body
// serves both shapes.
template <typename T>
struct Same {
  T v;
  T operator[](int64_t) const { return v; }
};

template <typename T>
using Pat = const T* __restrict;

// f(offset in the range, pattern offset, length) over the stretches of a periodic range.
template <typename F>
inline void for_each_stretch(int64_t period, int64_t phase, int64_t n, const F& f) {
  for (int64_t i = 0; i < n;) {
    const int64_t len = std::min(n - i, period - phase);
    f(i, phase, len);
    i += len;
    phase = 0;
  }
}

// ---- statistics: stats_loop.h

// ---- forward -------------------------------------------------------------------------------

template <typename D, typename V>
inline void fwd_stretch(const S<D>* __restrict x, S<D>* __restrict y, int64_t n, T_of<D> mean,
                        T_of<D> rstd, V w, V b, T_of<D> s) {
  using E = Elem<D>;
  for (int64_t j = 0; j < n; ++j) y[j] = E::store(value(E::load(x[j]), mean, rstd, w[j], b[j], s));
}

template <typename D>
void fwd_run(const void* xv, void* yv, const double* sp, const double* cp, double slope, int64_t n) {
  using T = T_of<D>;
  fwd_stretch<D, Same<T>>(static_cast<const S<D>*>(xv), static_cast<S<D>*>(yv), n,
                          static_cast<T>(sp[kSnMean]), static_cast<T>(sp[kSnRstd]),
                          {static_cast<T>(cp[kSnW])}, {static_cast<T>(cp[kSnB])}, static_cast<T>(slope));
}

template <typename D>
void fwd_periodic(const void* xv, void* yv, const double* sp, const void* const* pat, int64_t period,
                  int64_t phase, double slope, int64_t n) {
  using T = T_of<D>;
  const auto* w = static_cast<const T*>(pat[kSnW]);
  const auto* b = static_cast<const T*>(pat[kSnB]);
  const T mean = static_cast<T>(sp[kSnMean]), rstd = static_cast<T>(sp[kSnRstd]),
          s = static_cast<T>(slope);
  for_each_stretch(period, phase, n, [&](int64_t i, int64_t k, int64_t len) {
    fwd_stretch<D, Pat<T>>(static_cast<const S<D>*>(xv) + i, static_cast<S<D>*>(yv) + i, len, mean,
                           rstd, w + k, b + k, s);
  });
}

// ---- backward ------------------------------------------------------------------------------

template <typename D>
void grad_sum(const void* dyv, const void* yv, const void* xv, double mean, double rstd,
              double slope, int64_t n, double* out) {
  using E = Elem<D>;
  using T = T_of<D>;
  const auto* __restrict dy = static_cast<const S<D>*>(dyv);
  const auto* __restrict y = static_cast<const S<D>*>(yv);
  const auto* __restrict x = static_cast<const S<D>*>(xv);
  const T m = static_cast<T>(mean), r = static_cast<T>(rstd), s = static_cast<T>(slope);
  T ag[kLanes] = {}, agx[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const T g = leaky_relu_grad(E::load(dy[i + l]), E::load(y[i + l]), s);
      const T xhat = (E::load(x[i + l]) - m) * r;
      ag[l] += g;
      agx[l] += g * xhat;
    }
  }
  for (int l = 0; i + l < n; ++l) {
    const T g = leaky_relu_grad(E::load(dy[i + l]), E::load(y[i + l]), s);
    const T xhat = (E::load(x[i + l]) - m) * r;
    ag[l] += g;
    agx[l] += g * xhat;
  }
  out[0] = reduce_lanes(ag);
  out[1] = reduce_lanes(agx);
}

// One stretch of grad_slot_sum, restrict-qualified (GCC will not vectorize with five
// pointers it must check for overlap).
template <typename D>
inline void grad_slot_stretch(const S<D>* __restrict dy, const S<D>* __restrict y,
                              const S<D>* __restrict x, int64_t n, T_of<D> m, T_of<D> r, T_of<D> s,
                              T_of<D>* __restrict ag, T_of<D>* __restrict agx) {
  using E = Elem<D>;
  using T = T_of<D>;
  for (int64_t j = 0; j < n; ++j) {
    const T g = leaky_relu_grad(E::load(dy[j]), E::load(y[j]), s);
    const T xhat = (E::load(x[j]) - m) * r;
    ag[j] += g;
    agx[j] += g * xhat;
  }
}

template <typename D>
void grad_slot_sum(const void* dyv, const void* yv, const void* xv, double mean, double rstd,
                   double slope, int64_t period, int64_t phase, int64_t n, void* agv, void* agxv) {
  using T = T_of<D>;
  const T m = static_cast<T>(mean), r = static_cast<T>(rstd), s = static_cast<T>(slope);
  for_each_stretch(period, phase, n, [&](int64_t i, int64_t k, int64_t len) {
    grad_slot_stretch<D>(static_cast<const S<D>*>(dyv) + i, static_cast<const S<D>*>(yv) + i,
                         static_cast<const S<D>*>(xv) + i, len, m, r, s, static_cast<T*>(agv) + k,
                         static_cast<T*>(agxv) + k);
  });
}

// One stretch of grad_wsum: the lane sums added to s.
template <typename D, bool kW>
inline void grad_wsum_stretch(const S<D>* __restrict dy, const S<D>* __restrict y,
                              const S<D>* __restrict x, const T_of<D>* __restrict w, int64_t n,
                              T_of<D> m, T_of<D> r, T_of<D> s, T_of<D>* out) {
  using E = Elem<D>;
  using T = T_of<D>;
  T a1[kLanes] = {}, a2[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      T a = leaky_relu_grad(E::load(dy[i + l]), E::load(y[i + l]), s);
      if constexpr (kW) a *= w[i + l];
      a1[l] += a;
      a2[l] += a * ((E::load(x[i + l]) - m) * r);
    }
  }
  for (int l = 0; i + l < n; ++l) {
    T a = leaky_relu_grad(E::load(dy[i + l]), E::load(y[i + l]), s);
    if constexpr (kW) a *= w[i + l];
    a1[l] += a;
    a2[l] += a * ((E::load(x[i + l]) - m) * r);
  }
  out[0] += reduce_lanes(a1);
  out[1] += reduce_lanes(a2);
}

template <typename D>
void grad_wsum(const void* dyv, const void* yv, const void* xv, double mean, double rstd,
               double slope, const void* w_pat, int64_t period, int64_t phase, int64_t n,
               double* out) {
  using T = T_of<D>;
  const T m = static_cast<T>(mean), r = static_cast<T>(rstd), s = static_cast<T>(slope);
  const auto* w = static_cast<const T*>(w_pat);
  T acc[2] = {};
  for_each_stretch(period, phase, n, [&](int64_t i, int64_t k, int64_t len) {
    const S<D>* dy = static_cast<const S<D>*>(dyv) + i;
    const S<D>* y = static_cast<const S<D>*>(yv) + i;
    const S<D>* x = static_cast<const S<D>*>(xv) + i;
    if (w) {
      grad_wsum_stretch<D, true>(dy, y, x, w + k, len, m, r, s, acc);
    } else {
      grad_wsum_stretch<D, false>(dy, y, x, nullptr, len, m, r, s, acc);
    }
  });
  out[0] = acc[0];
  out[1] = acc[1];
}

template <typename D, typename V>
inline void grad_stretch(const S<D>* __restrict dy, const S<D>* __restrict y,
                         const S<D>* __restrict x, S<D>* __restrict dx, int64_t n, T_of<D> mean,
                         T_of<D> rstd, T_of<D> ms, T_of<D> msx, V w, T_of<D> s) {
  using E = Elem<D>;
  using T = T_of<D>;
  for (int64_t j = 0; j < n; ++j) {
    const T a = leaky_relu_grad(E::load(dy[j]), E::load(y[j]), s) * w[j];
    const T xhat = (E::load(x[j]) - mean) * rstd;
    dx[j] = E::store(l_op(a, xhat, rstd, ms, msx));
  }
}

template <typename D>
void grad_run(const void* dyv, const void* yv, const void* xv, void* dxv, const double* sp, double w,
              double slope, int64_t n) {
  using T = T_of<D>;
  grad_stretch<D, Same<T>>(static_cast<const S<D>*>(dyv), static_cast<const S<D>*>(yv),
                           static_cast<const S<D>*>(xv), static_cast<S<D>*>(dxv), n,
                           static_cast<T>(sp[kSnBMean]), static_cast<T>(sp[kSnBRstd]),
                           static_cast<T>(sp[kSnBMeanS]), static_cast<T>(sp[kSnBMeanSx]),
                           {static_cast<T>(w)}, static_cast<T>(slope));
}

template <typename D>
void grad_periodic(const void* dyv, const void* yv, const void* xv, void* dxv, const double* sp,
                   const void* w_pat, int64_t period, int64_t phase, double slope, int64_t n) {
  using T = T_of<D>;
  const auto* w = static_cast<const T*>(w_pat);
  const T mean = static_cast<T>(sp[kSnBMean]), rstd = static_cast<T>(sp[kSnBRstd]),
          ms = static_cast<T>(sp[kSnBMeanS]), msx = static_cast<T>(sp[kSnBMeanSx]),
          s = static_cast<T>(slope);
  for_each_stretch(period, phase, n, [&](int64_t i, int64_t k, int64_t len) {
    grad_stretch<D, Pat<T>>(static_cast<const S<D>*>(dyv) + i, static_cast<const S<D>*>(yv) + i,
                            static_cast<const S<D>*>(xv) + i, static_cast<S<D>*>(dxv) + i, len, mean,
                            rstd, ms, msx, w + k, s);
  });
}

// ---- double backward -----------------------------------------------------------------------

template <typename D>
void dd_sum(const void* ggxv, const void* dyv, const void* yv, const void* xv, double mean,
            double rstd, double slope, int64_t n, double* out) {
  using E = Elem<D>;
  using T = T_of<D>;
  const auto* __restrict gg = static_cast<const S<D>*>(ggxv);
  const auto* __restrict dy = static_cast<const S<D>*>(dyv);
  const auto* __restrict y = static_cast<const S<D>*>(yv);
  const auto* __restrict x = static_cast<const S<D>*>(xv);
  const T m = static_cast<T>(mean), r = static_cast<T>(rstd), s = static_cast<T>(slope);
  T a0[kLanes] = {}, a1[kLanes] = {}, a2[kLanes] = {}, a3[kLanes] = {}, a4[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const T q = E::load(gg[i + l]);
      const T g = leaky_relu_grad(E::load(dy[i + l]), E::load(y[i + l]), s);
      const T xhat = (E::load(x[i + l]) - m) * r;
      a0[l] += q;
      a1[l] += q * xhat;
      a2[l] += g;
      a3[l] += g * xhat;
      a4[l] += g * q;
    }
  }
  for (int l = 0; i + l < n; ++l) {
    const T q = E::load(gg[i + l]);
    const T g = leaky_relu_grad(E::load(dy[i + l]), E::load(y[i + l]), s);
    const T xhat = (E::load(x[i + l]) - m) * r;
    a0[l] += q;
    a1[l] += q * xhat;
    a2[l] += g;
    a3[l] += g * xhat;
    a4[l] += g * q;
  }
  out[kSnSumGgx] = reduce_lanes(a0);
  out[kSnSumGgxXhat] = reduce_lanes(a1);
  out[kSnSumG] = reduce_lanes(a2);
  out[kSnSumGXhat] = reduce_lanes(a3);
  out[kSnSumGGgx] = reduce_lanes(a4);
}

// One stretch of dd_wsum: the lane sums added to out[kSnDdWSums].
template <typename D, bool kGgx>
inline void dd_wsum_stretch(const S<D>* __restrict gg, const S<D>* __restrict dy,
                            const S<D>* __restrict y, const S<D>* __restrict x,
                            Pat<T_of<D>> w, Pat<T_of<D>> ggw, int64_t n, T_of<D> m, T_of<D> r,
                            T_of<D> s, T_of<D>* out) {
  using E = Elem<D>;
  using T = T_of<D>;
  T a[kSnDdWSums][kLanes] = {};
  auto step = [&](int64_t j, int l) {
    const T g = leaky_relu_grad(E::load(dy[j]), E::load(y[j]), s);
    const T xhat = (E::load(x[j]) - m) * r;
    const T ga = g * w[j], gu = g * ggw[j];
    if constexpr (kGgx) {
      const T q = E::load(gg[j]);
      a[kSnS1][l] += q;
      a[kSnS2][l] += q * xhat;
      a[kSnSAG][l] += ga * q;
    }
    a[kSnSA][l] += ga;
    a[kSnTA][l] += ga * xhat;
    a[kSnSU][l] += gu;
    a[kSnTU][l] += gu * xhat;
  };
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) step(i + l, l);
  }
  for (int l = 0; i + l < n; ++l) step(i + l, l);
  for (int q = 0; q < kSnDdWSums; ++q) out[q] += reduce_lanes(a[q]);
}

template <typename D>
void dd_wsum(const void* ggxv, const void* dyv, const void* yv, const void* xv, double mean,
             double rstd, double slope, const void* const* pat, int64_t period, int64_t phase,
             int64_t n, double* out) {
  using T = T_of<D>;
  const T m = static_cast<T>(mean), r = static_cast<T>(rstd), s = static_cast<T>(slope);
  const auto* w = static_cast<const T*>(pat[kSnDW]);
  const auto* ggw = static_cast<const T*>(pat[kSnDGgw]);
  T acc[kSnDdWSums] = {};
  for_each_stretch(period, phase, n, [&](int64_t i, int64_t k, int64_t len) {
    const S<D>* gg = ggxv ? static_cast<const S<D>*>(ggxv) + i : nullptr;
    const S<D>* dy = static_cast<const S<D>*>(dyv) + i;
    const S<D>* y = static_cast<const S<D>*>(yv) + i;
    const S<D>* x = static_cast<const S<D>*>(xv) + i;
    if (gg) {
      dd_wsum_stretch<D, true>(gg, dy, y, x, w + k, ggw + k, len, m, r, s, acc);
    } else {
      dd_wsum_stretch<D, false>(gg, dy, y, x, w + k, ggw + k, len, m, r, s, acc);
    }
  });
  for (int q = 0; q < kSnDdWSums; ++q) out[q] = acc[q];
}

// The per-sample values of the double backward's element loops, in T.
template <typename T>
struct DdSample {
  T mean, rstd, ms1, ms2, msa, mta, msu, mtu, c_xhat, c_la, c_p;
};

template <typename T>
inline DdSample<T> dd_sample(const double* sp) {
  auto v = [&](int q) { return static_cast<T>(sp[q]); };
  return {v(kSnDMean),   v(kSnDRstd),   v(kSnDMeanS1), v(kSnDMeanS2), v(kSnDMeanSA), v(kSnDMeanTA),
          v(kSnDMeanSU), v(kSnDMeanTU), v(kSnDCXhat),  v(kSnDCLa),    v(kSnDCP)};
}

// One element of the double backward: d_grad_out, d_x and p * g (p = 0 without ggx).
template <typename T>
struct DdOut {
  T dgo, dx, pg;
};

// The activation's derivative, y > 0 ? 1 : slope, chosen by an integer mask.
template <typename T>
inline T act_derivative(T y, T slope) {
  using B = bits_t<T>;
  const B m = B(0) - static_cast<B>(y > T(0));
  return std::bit_cast<T>((std::bit_cast<B>(T(1)) & m) | (std::bit_cast<B>(slope) & ~m));
}

// The activation's derivative mk multiplies both g and d_grad_out: v * mk is
// leaky_relu_grad(v, y, slope) bit for bit (slope finite, >= 0). With two
// leaky_relu_grad selects on the same y > 0 GCC 12 merges them into one branch and leaves
// the loop scalar (float16 without ggx: 263 us per 16K elements, AVX2); a float ternary
// for mk becomes a branch as well, the integer mask does not.
template <typename T, bool kGgx>
inline DdOut<T> dd_elem(T q, T dy, T y, T x, const DdSample<T>& c, T w, T ggw, T ggb, T s) {
  const T mk = act_derivative(y, s);
  const T g = dy * mk;
  const T xhat = (x - c.mean) * c.rstd;
  const T lu = l_op(g * ggw, xhat, c.rstd, c.msu, c.mtu);
  if constexpr (kGgx) {
    const T p = l_op(q, xhat, c.rstd, c.ms1, c.ms2);
    const T la = l_op(g * w, xhat, c.rstd, c.msa, c.mta);
    return {(p * w + ggw * xhat + ggb) * mk, d_x(xhat, p, la, lu, c.c_xhat, c.c_la, c.c_p), p * g};
  } else {
    return {(ggw * xhat + ggb) * mk, lu, T(0)};
  }
}

template <typename D, bool kGgx>
T_of<D> dd_run_impl(const S<D>* __restrict gg, const S<D>* __restrict dy, const S<D>* __restrict y,
                    const S<D>* __restrict x, S<D>* __restrict dgo, S<D>* __restrict dx,
                    const DdSample<T_of<D>> c, T_of<D> w, T_of<D> ggw, T_of<D> ggb, T_of<D> s,
                    int64_t n) {
  using E = Elem<D>;
  using T = T_of<D>;
  T acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const DdOut<T> o = dd_elem<T, kGgx>(kGgx ? E::load(gg[i + l]) : T(0), E::load(dy[i + l]),
                                          E::load(y[i + l]), E::load(x[i + l]), c, w, ggw, ggb, s);
      dgo[i + l] = E::store(o.dgo);
      dx[i + l] = E::store(o.dx);
      if constexpr (kGgx) acc[l] += o.pg;
    }
  }
  for (int l = 0; i + l < n; ++l) {
    const DdOut<T> o = dd_elem<T, kGgx>(kGgx ? E::load(gg[i + l]) : T(0), E::load(dy[i + l]),
                                        E::load(y[i + l]), E::load(x[i + l]), c, w, ggw, ggb, s);
    dgo[i + l] = E::store(o.dgo);
    dx[i + l] = E::store(o.dx);
    if constexpr (kGgx) acc[l] += o.pg;
  }
  return reduce_lanes(acc);
}

template <typename D>
double dd_run(const void* ggxv, const void* dyv, const void* yv, const void* xv, void* dgov,
              void* dxv, const double* sp, const double* cp, double slope, int64_t n) {
  using T = T_of<D>;
  auto* f = ggxv ? &dd_run_impl<D, true> : &dd_run_impl<D, false>;
  return f(static_cast<const S<D>*>(ggxv), static_cast<const S<D>*>(dyv), static_cast<const S<D>*>(yv),
           static_cast<const S<D>*>(xv), static_cast<S<D>*>(dgov), static_cast<S<D>*>(dxv),
           dd_sample<T>(sp), static_cast<T>(cp[kSnDW]), static_cast<T>(cp[kSnDGgw]),
           static_cast<T>(cp[kSnDGgb]), static_cast<T>(slope), n);
}

template <typename D, bool kGgx>
void dd_stretch(const S<D>* __restrict gg, const S<D>* __restrict dy, const S<D>* __restrict y,
                const S<D>* __restrict x, S<D>* __restrict dgo, S<D>* __restrict dx,
                const DdSample<T_of<D>> c, Pat<T_of<D>> w, Pat<T_of<D>> ggw, Pat<T_of<D>> ggb,
                T_of<D> s, int64_t n, T_of<D>* __restrict acc) {
  using E = Elem<D>;
  using T = T_of<D>;
  for (int64_t j = 0; j < n; ++j) {
    const DdOut<T> o = dd_elem<T, kGgx>(kGgx ? E::load(gg[j]) : T(0), E::load(dy[j]), E::load(y[j]),
                                        E::load(x[j]), c, w[j], ggw[j], ggb[j], s);
    dgo[j] = E::store(o.dgo);
    dx[j] = E::store(o.dx);
    if constexpr (kGgx) acc[j] += o.pg;
  }
}

template <typename D>
void dd_periodic(const void* ggxv, const void* dyv, const void* yv, const void* xv, void* dgov,
                 void* dxv, const double* sp, const void* const* pat, int64_t period, int64_t phase,
                 double slope, int64_t n, void* acc_pg) {
  using T = T_of<D>;
  const DdSample<T> c = dd_sample<T>(sp);
  const auto* w = static_cast<const T*>(pat[kSnDW]);
  const auto* ggw = static_cast<const T*>(pat[kSnDGgw]);
  const auto* ggb = static_cast<const T*>(pat[kSnDGgb]);
  auto* acc = static_cast<T*>(acc_pg);
  const T s = static_cast<T>(slope);
  auto* f = ggxv ? &dd_stretch<D, true> : &dd_stretch<D, false>;
  for_each_stretch(period, phase, n, [&](int64_t i, int64_t k, int64_t len) {
    f(ggxv ? static_cast<const S<D>*>(ggxv) + i : nullptr, static_cast<const S<D>*>(dyv) + i,
      static_cast<const S<D>*>(yv) + i, static_cast<const S<D>*>(xv) + i, static_cast<S<D>*>(dgov) + i,
      static_cast<S<D>*>(dxv) + i, c, w + k, ggw + k, ggb + k, s, len, ggxv ? acc + k : nullptr);
  });
}

}  // namespace sn_act_loop

template <typename D>
SnActLoops sn_act_loops() {
  namespace l = sn_act_loop;
  return {&stats_loop::sum<D>, &stats_loop::sum_dev<D>, &l::fwd_run<D>,
          &l::fwd_periodic<D>, &l::grad_sum<D>,    &l::grad_slot_sum<D>,
          &l::grad_wsum<D>,    &l::grad_run<D>,    &l::grad_periodic<D>,
          &l::dd_sum<D>,       &l::dd_wsum<D>,     &l::dd_run<D>,
          &l::dd_periodic<D>};
}

}  // namespace FASTGAN_ISA
}  // namespace fastgan
