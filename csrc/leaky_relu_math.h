// One element of fastgan's critic activation (bias_leaky_relu, leaky_relu_backward),
// shared by the CPU and CUDA kernels; kernels/bias_leaky_relu.py and the reference in
// fastgan/ops/bias_leaky_relu.py compute the same.
//
//   forward:   v = x + b (opmath: float, double for float64); y = v > 0 ? v : v * slope,
//              rounded once to the storage dtype
//   backward:  dx = y > 0 ? dy : dy * slope (opmath, rounded once); y > 0 exactly where
//              v > 0 when slope >= 0, so the saved output gives the mask
//
// The channel of an element at memory offset i of a dense tensor is
// (i / channel_stride) % channels, for any dense layout (NCHW: channel_stride = H*W;
// channels_last and 2-D: 1).
#pragma once

#include <c10/macros/Macros.h>

#include "bits.h"  // FASTGAN_ISA

namespace fastgan {
inline namespace FASTGAN_ISA {

// pos ? a : a * slope, as a sum of two selects: the same value for every a (NaN and signed
// zeros included, since -0 + x == x and x + -0 * slope == x for a finite slope >= 0), but
// GCC vectorizes this form and not the ternary, whose multiply sits on one branch (GCC will
// not run it speculatively under the default -ftrapping-math): the C++ loops were scalar.
template <typename T>
C10_HOST_DEVICE inline T leaky_relu_select(bool pos, T a, T slope) {
  return (pos ? a : T(-0.0)) + (pos ? T(-0.0) : a) * slope;
}

template <typename T>
C10_HOST_DEVICE inline T leaky_relu_value(T v, T slope) {
  return leaky_relu_select(v > T(0), v, slope);  // v > 0 ? v : v * slope
}

template <typename T>
C10_HOST_DEVICE inline T leaky_relu_grad(T dy, T y, T slope) {
  return leaky_relu_select(y > T(0), dy, slope);  // y > 0 ? dy : dy * slope
}

}  // namespace FASTGAN_ISA
}  // namespace fastgan
