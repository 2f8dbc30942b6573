// sample_norm_act (per-sample normalization + leaky ReLU, fused at every order): the
// host-side argument checks, shared by the CPU and CUDA kernels (element math:
// csrc/sample_norm_act_math.h)
// (csrc/cpu/sample_norm_act.cpp, csrc/cuda/sample_norm_act.cu). Schemas and semantics:
// csrc/ops.cpp; the plain-PyTorch formulas: fastgan/ops/sample_norm_act.py (the
// *_math references), which kernels/sample_norm_act.py follows too.
//
// x is (N, C, ...) and dense, so every sample is one contiguous range of M = numel / N
// elements (NCHW, channels_last, 2-D); the channel of memory offset i is (i / run) % C with
// run = x.stride(1) (channel_walk in penalty.h). T is double for float64 x, float otherwise.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/macros/Macros.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <optional>

#include "batch_norm_act.h"  // check_channel_vector
#include "penalty.h"  // check_floating, check_same_walk, check_slope, compute_dtype, samples_contiguous
#include "sample_norm_act_math.h"  // element math

namespace fastgan {

// ---- argument checks --------------------------------------------------------------------

inline void check_sample_norm_x(const char* op, const at::Tensor& x, c10::DeviceType dev) {
  check_floating(op, "x", x, dev);
  TORCH_CHECK(x.dim() >= 2 && x.numel() > 0, op, ": x must be (N, C, ...) with elements, got shape ",
              x.sizes());
  TORCH_CHECK(samples_contiguous(x), op,
              ": x must be dense (contiguous or channels_last), every sample one range in memory, "
              "got strides ", x.strides());
}

// A contiguous (N,) tensor of x's compute dtype on x's device (mean, rstd).
inline void check_sample_vector(const char* op, const char* name, const at::Tensor& v, const at::Tensor& x) {
  const auto t = compute_dtype(x.scalar_type());
  TORCH_CHECK(v.defined() && v.scalar_type() == t && v.dim() == 1 && v.size(0) == x.size(0) &&
                  v.is_contiguous() && v.device() == x.device(),
              op, ": ", name, " must be a contiguous (", x.size(0), ",) ", t, " tensor on ", x.device());
}

inline void check_sample_norm_act(const at::Tensor& x, const std::optional<at::Tensor>& weight,
                                  const std::optional<at::Tensor>& bias, double eps, double slope,
                                  c10::DeviceType dev) {
  constexpr const char* op = "sample_norm_act";
  check_sample_norm_x(op, x, dev);
  check_channel_vector(op, "weight", weight, x);
  check_channel_vector(op, "bias", bias, x);
  TORCH_CHECK(std::isfinite(eps) && eps >= 0.0, op, ": eps must be a finite number >= 0, got ", eps);
  check_slope(op, slope);
}

inline void check_sample_norm_act_backward(const at::Tensor& grad_out, const at::Tensor& out,
                                           const at::Tensor& x, const std::optional<at::Tensor>& weight,
                                           const at::Tensor& mean, const at::Tensor& rstd, double slope,
                                           c10::DeviceType dev, const char* op = "sample_norm_act_backward") {
  check_sample_norm_x(op, x, dev);
  check_same_walk(op, "grad_out", grad_out, x, "x");
  check_same_walk(op, "out", out, x, "x");
  check_channel_vector(op, "weight", weight, x);
  check_sample_vector(op, "mean", mean, x);
  check_sample_vector(op, "rstd", rstd, x);
  check_slope(op, slope);
}

inline void check_sample_norm_act_double_backward(
    const std::optional<at::Tensor>& ggx, const std::optional<at::Tensor>& ggw,
    const std::optional<at::Tensor>& ggb, const at::Tensor& grad_out, const at::Tensor& out,
    const at::Tensor& x, const std::optional<at::Tensor>& weight, const at::Tensor& mean,
    const at::Tensor& rstd, double slope, c10::DeviceType dev) {
  constexpr const char* op = "sample_norm_act_double_backward";
  check_sample_norm_act_backward(grad_out, out, x, weight, mean, rstd, slope, dev, op);
  if (ggx.has_value() && ggx->defined()) check_same_walk(op, "ggx", *ggx, x, "x");
  check_channel_vector(op, "ggw", ggw, x);
  check_channel_vector(op, "ggb", ggb, x);
}

}  // namespace fastgan
