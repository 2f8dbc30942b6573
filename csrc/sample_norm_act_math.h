// The element math of sample_norm_act, shared by the CPU loops (csrc/cpu/
// sample_norm_act_loop.h, compiled once per instruction set) and the CUDA kernels (host-side
// checks: csrc/sample_norm_act.h; schemas and formulas: csrc/ops.cpp). Pure C++ and
// ISA-namespaced (bits.h), so the AVX2 and AVX-512 units can include it.
#pragma once

#include <c10/macros/Macros.h>

#include "bits.h"  // FASTGAN_ISA
#include "leaky_relu_math.h"

namespace fastgan {
inline namespace FASTGAN_ISA {

// ---- element math (T: float, double for float64) ---------------------------------------

// The per-sample operator of the backward: L(v) = rstd * (v - s / M - xhat * s_x / M), with
// mean_s = s / M and mean_sx = s_x / M computed once per sample in T.
template <typename T>
C10_HOST_DEVICE inline T sample_norm_l(T v, T xhat, T rstd, T mean_s, T mean_sx) {
  return rstd * (v - mean_s - xhat * mean_sx);
}

// The forward's value before the activation: xhat * w_c + b_c, xhat = (x - mean) * rstd.
template <typename T>
C10_HOST_DEVICE inline T sample_norm_value(T x, T mean, T rstd, T w, T b) {
  return (x - mean) * rstd * w + b;
}

// d_x of the double backward (csrc/ops.cpp), given the element's xhat, p = L(ggx),
// la = L(a), lu = L(u) and the per-sample coefficients c_xhat = -(rstd^2 / M) *
// (SAG - SA * S1 / M - TA * S2 / M), c_la = -(rstd / M) * S2, c_p = -(rstd / M) * TA.
template <typename T>
C10_HOST_DEVICE inline T sample_norm_dx(T xhat, T p, T la, T lu, T c_xhat, T c_la, T c_p) {
  return c_xhat * xhat + c_la * la + c_p * p + lu;
}

}  // namespace FASTGAN_ISA
}  // namespace fastgan
