// The element math of batch_norm_act and began_loss, shared by the CPU and CUDA kernels
// (host-side checks: csrc/batch_norm_act.h). Pure C++ and ISA-namespaced (bits.h), so the
// AVX2 units of the CPU loops (csrc/cpu/*_avx2.cpp) can include it.
#pragma once

#include <c10/macros/Macros.h>

#include "bits.h"  // FASTGAN_ISA
#include "leaky_relu_math.h"

namespace fastgan {
inline namespace FASTGAN_ISA {

// ---- element math (T: float, double for float64) ---------------------------------------

// One output element: v = (x - mean) * scale + shift, scale = w * invstd, then the
// activation. scale_c = w_c * invstd_c is computed once per channel in T.
template <typename T>
C10_HOST_DEVICE inline T bn_act_value(T x, T mean, T scale, T shift, T slope) {
  return leaky_relu_value((x - mean) * scale + shift, slope);
}

// One grad_x element of the batch-statistics backward:
// scale * (g - sum_g / n - xhat * sum_gx / n), with mean_g = sum_g / n and
// mean_gx = sum_gx / n computed once per channel in T.
template <typename T>
C10_HOST_DEVICE inline T bn_act_grad_x(T g, T xhat, T scale, T mean_g, T mean_gx) {
  return scale * (g - mean_g - xhat * mean_gx);
}

// sign(a - b) as -1, 0 or 1 (0 also for NaN), BEGAN's L1 derivative.
template <typename T>
C10_HOST_DEVICE inline T l1_sign(T a, T b) {
  return static_cast<T>((a > b) - (a < b));
}

}  // namespace FASTGAN_ISA
}  // namespace fastgan
