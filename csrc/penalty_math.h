// The arithmetic of fastgan's gradient-penalty ops, shared by the CPU and CUDA kernels
// (the Triton kernels in kernels/penalty.py and the reference in fastgan/ops/penalty.py
// follow the same formulas). T is the compute type: double for float64 gradients,
// float otherwise; every per-sample quantity is computed in T from s_b, the sample's
// sum of squares accumulated in T.
//
//   forward:          n_b = sqrt(s_b + eps)
//                     t_b = center == 0 ? s_b : (n_b - center)^2
//                     penalty = weight * (sum_b t_b) / B
//   backward:         r_b = center == 0 ? 1 : (n_b - center) / n_b
//                     coef_b = dout * (2 * weight / B) * r_b
//                     dgrad = coef_b * g
//   double backward:  dot_b = <ggrad_b, g_b>
//                     q_b = center == 0 ? 0 : dout * (2 * weight / B) * center * dot_b / n_b^3
//                     d_grad = coef_b * ggrad + q_b * g
//                     d_dout = (2 * weight / B) * sum_b r_b * dot_b
//
// With center == 0 (R1) the penalty is weight * mean ||g||^2 exactly: no epsilon, and
// its gradient 2g needs none. Otherwise eps > 0 keeps n_b > 0, so a zero gradient gives
// a finite penalty (center^2 * weight) and zero, finite derivatives, never NaN.
#pragma once

#include <c10/macros/Macros.h>

#include <cmath>

#include "bits.h"  // FASTGAN_ISA

namespace fastgan {
inline namespace FASTGAN_ISA {

template <typename T>
struct PenaltyHyper {
  T weight, center, eps;
  T two_w_over_b;  // 2 * weight / B, rounded once on the host
};

template <typename T>
C10_HOST_DEVICE inline T penalty_norm(T s, T eps) {
  return ::sqrt(s + eps);  // CUDA and C++: correctly rounded for float and double
}

// The term t_b one sample adds to the penalty's sum.
template <typename T>
C10_HOST_DEVICE inline T penalty_term(T s, const PenaltyHyper<T>& h) {
  if (h.center == T(0)) return s;
  const T d = penalty_norm(s, h.eps) - h.center;
  return d * d;
}

// r_b of the backward.
template <typename T>
C10_HOST_DEVICE inline T penalty_ratio(T s, const PenaltyHyper<T>& h) {
  if (h.center == T(0)) return T(1);
  const T n = penalty_norm(s, h.eps);
  return (n - h.center) / n;
}

// q_b / dot_b of the double backward (multiply by dot_b): dout * 2w/B * center / n^3.
template <typename T>
C10_HOST_DEVICE inline T penalty_curvature(T s, T dout, const PenaltyHyper<T>& h) {
  if (h.center == T(0)) return T(0);
  const T n = penalty_norm(s, h.eps);
  return dout * h.two_w_over_b * h.center / (n * n * n);
}

}  // namespace FASTGAN_ISA
}  // namespace fastgan
