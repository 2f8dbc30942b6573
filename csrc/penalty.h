// Host-side pieces of the gradient-penalty ops shared by the CPU and CUDA kernels:
// argument checks (messages in the words of fastgan/ops/*.py) and hyperparameters.
// The element math is in csrc/penalty_math.h, csrc/leaky_relu_math.h, csrc/philox.h.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <optional>

#include "checks.h"
#include "penalty_math.h"

namespace fastgan {

inline bool is_penalty_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kHalf || t == at::kBFloat16 || t == at::kDouble;
}

inline at::ScalarType compute_dtype(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

inline void check_floating(const char* op, const char* name, const at::Tensor& t,
                           c10::DeviceType device_type) {
  TORCH_CHECK(t.defined(), op, ": ", name, " is undefined");
  TORCH_CHECK(is_penalty_dtype(t.scalar_type()), op, ": ", name, " has dtype ", t.scalar_type(),
              "; expected float32, float16, bfloat16 or float64");
  TORCH_CHECK(t.device().type() == device_type, op, ": ", name, " is on ", t.device(),
              "; this kernel expects ", c10::DeviceTypeName(device_type), " tensors");
}

// Every sample of `grad` one contiguous range of numel / B elements in memory.
inline bool samples_contiguous(const at::Tensor& grad) {
  if (!is_dense(grad)) return false;
  const int64_t b = grad.size(0);
  return b <= 1 || grad.stride(0) * b == grad.numel();
}

inline void check_penalty_grad(const char* op, const at::Tensor& grad, c10::DeviceType dev) {
  check_floating(op, "grad", grad, dev);
  TORCH_CHECK(grad.dim() >= 1 && grad.size(0) >= 1 && grad.numel() > 0, op,
              ": grad must have a batch dimension and at least one element, got shape ",
              grad.sizes());
  TORCH_CHECK(samples_contiguous(grad), op,
              ": every sample of grad must be one dense range in memory (contiguous or "
              "channels_last), got strides ", grad.strides());
}

inline void check_penalty_hyper(const char* op, double weight, double center, double eps) {
  TORCH_CHECK(std::isfinite(weight) && weight >= 0.0, op, ": weight must be a finite number >= 0, got ", weight);
  TORCH_CHECK(std::isfinite(center) && center >= 0.0, op, ": center must be a finite number >= 0, got ", center);
  TORCH_CHECK(std::isfinite(eps) && eps >= 0.0, op, ": eps must be a finite number >= 0, got ", eps);
  TORCH_CHECK(center == 0.0 || eps > 0.0, op, ": eps must be > 0 when center != 0 (it keeps the "
              "norm of a zero gradient finite)");
}

// A per-sample or 0-dim tensor of the compute dtype on grad's device.
inline void check_companion(const char* op, const char* name, const at::Tensor& t,
                            const at::Tensor& grad, int64_t numel) {
  TORCH_CHECK(t.defined(), op, ": ", name, " is undefined");
  TORCH_CHECK(t.scalar_type() == compute_dtype(grad.scalar_type()), op, ": ", name, " has dtype ",
              t.scalar_type(), "; expected ", compute_dtype(grad.scalar_type()), " for ",
              grad.scalar_type(), " grad");
  TORCH_CHECK(t.device() == grad.device(), op, ": ", name, " is on ", t.device(),
              " but grad is on ", grad.device());
  TORCH_CHECK(t.numel() == numel && t.is_contiguous(), op, ": ", name, " must be contiguous with ",
              numel, " element(s), got shape ", t.sizes());
}

// Same sizes and the same strides on every dim of more than one element: walked in memory
// order, the two visit the same elements together (a size-1 dim's stride is arbitrary, and
// a 1-channel channels_last tensor from cuDNN has another one than .contiguous() gives).
inline bool same_walk(const at::Tensor& t, const at::Tensor& like) {
  if (t.sizes() != like.sizes()) return false;
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (t.size(d) != 1 && t.stride(d) != like.stride(d)) return false;
  }
  return true;
}

inline void check_same_walk(const char* op, const char* name, const at::Tensor& t,
                            const at::Tensor& like, const char* like_name) {
  TORCH_CHECK(t.defined() && t.scalar_type() == like.scalar_type() &&
                  t.device() == like.device() && same_walk(t, like),
              op, ": ", name, " must match ", like_name, " (", like.scalar_type(), " ", like.sizes(),
              " strides ", like.strides(), " on ", like.device(), ")");
}

template <typename T>
PenaltyHyper<T> make_penalty_hyper(double weight, double center, double eps, int64_t batch) {
  return PenaltyHyper<T>{static_cast<T>(weight), static_cast<T>(center), static_cast<T>(eps),
                         static_cast<T>(2.0 * weight / static_cast<double>(batch))};
}

// ---- bias_leaky_relu ------------------------------------------------------------------

inline void check_slope(const char* op, double slope) {
  TORCH_CHECK(std::isfinite(slope) && slope >= 0.0, op,
              ": negative_slope must be a finite number >= 0, got ", slope);
}

inline void check_bias_leaky_relu(const at::Tensor& x, const std::optional<at::Tensor>& bias,
                                  double slope, c10::DeviceType dev) {
  constexpr const char* op = "bias_leaky_relu";
  check_floating(op, "x", x, dev);
  check_slope(op, slope);
  TORCH_CHECK(is_dense(x), op, ": x must be dense (contiguous, channels_last or permuted), got strides ",
              x.strides());
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(x.dim() >= 2, op, ": a bias needs x with a channel dimension (dim 1), got shape ", x.sizes());
    check_floating(op, "bias", *bias, dev);
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == x.size(1), op, ": bias must be 1-D with ",
                x.size(1), " elements (x.size(1)), got shape ", bias->sizes());
    TORCH_CHECK(bias->device() == x.device(), op, ": bias is on ", bias->device(), " but x is on ",
                x.device());
  }
}

// (channel_stride, channels) of x's dim 1: the channel of memory offset i is
// (i / channel_stride) % channels (see csrc/leaky_relu_math.h).
inline std::pair<int64_t, int64_t> channel_walk(const at::Tensor& x) {
  if (x.dim() < 2 || x.size(1) <= 1) return {1, 1};
  return {x.stride(1), x.size(1)};
}

inline void check_leaky_relu_backward(const at::Tensor& grad, const at::Tensor& out, double slope,
                                      c10::DeviceType dev) {
  constexpr const char* op = "leaky_relu_backward";
  check_floating(op, "grad", grad, dev);
  check_slope(op, slope);
  TORCH_CHECK(is_dense(out), op, ": out must be dense, got strides ", out.strides());
  check_same_walk(op, "grad", grad, out, "out");
}

// ---- interpolate / perturb -------------------------------------------------------------

inline void check_seed(const char* op, const at::Tensor& seed, const at::Tensor& like) {
  TORCH_CHECK(seed.defined() && seed.scalar_type() == at::kLong && seed.numel() == 1, op,
              ": seed must be a 1-element int64 tensor");
  TORCH_CHECK(seed.device() == like.device(), op, ": seed is on ", seed.device(),
              " but real is on ", like.device());
}

inline void check_interpolate(const at::Tensor& real, const at::Tensor& fake, const at::Tensor& seed,
                              c10::DeviceType dev) {
  constexpr const char* op = "interpolate";
  check_floating(op, "real", real, dev);
  TORCH_CHECK(real.dim() >= 1, op, ": real must have a batch dimension, got a 0-dim tensor");
  TORCH_CHECK(samples_contiguous(real), op, ": every sample of real must be one dense range in "
              "memory (contiguous or channels_last), got strides ", real.strides());
  check_same_walk(op, "fake", fake, real, "real");
  check_seed(op, seed, real);
}

inline void check_perturb(const at::Tensor& real, const at::Tensor& scale, const at::Tensor& seed,
                          double lo, double hi, c10::DeviceType dev) {
  constexpr const char* op = "perturb";
  check_floating(op, "real", real, dev);
  TORCH_CHECK(is_dense(real), op, ": real must be dense, got strides ", real.strides());
  TORCH_CHECK(scale.defined() && scale.scalar_type() == at::kFloat && scale.numel() == 1 &&
                  scale.device() == real.device(),
              op, ": scale must be a 1-element float32 tensor on ", real.device());
  check_seed(op, seed, real);
  TORCH_CHECK(!std::isnan(lo) && !std::isnan(hi) && lo <= hi, op, ": the data range [lo, hi] = [",
              lo, ", ", hi, "] is empty or NaN");
}

}  // namespace fastgan
