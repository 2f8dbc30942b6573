// Host-side pieces of batch_norm_act and began_loss (argument checks), shared by the CPU
// and CUDA kernels; their element math is csrc/batch_norm_act_math.h (the Triton kernels
// and the references in fastgan/ops/ follow the same formulas; schemas and semantics:
// csrc/ops.cpp).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/macros/Macros.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <optional>

#include "batch_norm_act_math.h"  // element math (bn_act_value, bn_act_grad_x, l1_sign)
#include "penalty.h"  // check_floating, check_same_walk, compute_dtype

namespace fastgan {

// ---- argument checks --------------------------------------------------------------------

inline void check_channel_vector(const char* op, const char* name,
                                 const std::optional<at::Tensor>& t, const at::Tensor& x) {
  if (!t.has_value() || !t->defined()) return;
  TORCH_CHECK(is_penalty_dtype(t->scalar_type()), op, ": ", name, " has dtype ", t->scalar_type(),
              "; expected a floating dtype");
  TORCH_CHECK(t->dim() == 1 && t->size(0) == x.size(1) && t->is_contiguous(), op, ": ", name,
              " must be a contiguous 1-D tensor of ", x.size(1), " elements (x.size(1)), got shape ",
              t->sizes());
  TORCH_CHECK(t->device() == x.device(), op, ": ", name, " is on ", t->device(), " but x is on ",
              x.device());
}

inline void check_batch_norm_act(const at::Tensor& x, const std::optional<at::Tensor>& weight,
                                 const std::optional<at::Tensor>& bias,
                                 const std::optional<at::Tensor>& running_mean,
                                 const std::optional<at::Tensor>& running_var, bool use_batch_stats,
                                 double momentum, double eps, double slope, c10::DeviceType dev) {
  constexpr const char* op = "batch_norm_act";
  check_floating(op, "x", x, dev);
  TORCH_CHECK(x.dim() >= 2 && x.numel() > 0, op, ": x must be (N, C, ...) with elements, got shape ",
              x.sizes());
  TORCH_CHECK(is_dense(x), op, ": x must be dense (contiguous or channels_last), got strides ",
              x.strides());
  check_channel_vector(op, "weight", weight, x);
  check_channel_vector(op, "bias", bias, x);
  check_channel_vector(op, "running_mean", running_mean, x);
  check_channel_vector(op, "running_var", running_var, x);
  const bool has_mean = running_mean.has_value() && running_mean->defined();
  const bool has_var = running_var.has_value() && running_var->defined();
  TORCH_CHECK(has_mean == has_var, op, ": running_mean and running_var come together");
  TORCH_CHECK(use_batch_stats || has_mean, op,
              ": without batch statistics the running statistics are needed");
  TORCH_CHECK(!use_batch_stats || x.numel() / x.size(1) > 1, op,
              ": batch statistics need more than one value per channel, got shape ", x.sizes());
  TORCH_CHECK(std::isfinite(momentum) && momentum >= 0.0 && momentum <= 1.0, op,
              ": momentum must be in [0, 1], got ", momentum);
  TORCH_CHECK(std::isfinite(eps) && eps >= 0.0, op, ": eps must be a finite number >= 0, got ", eps);
  check_slope(op, slope);
}

inline void check_batch_norm_act_backward(const at::Tensor& grad_out, const at::Tensor& out,
                                          const at::Tensor& x, const std::optional<at::Tensor>& weight,
                                          const at::Tensor& mean, const at::Tensor& invstd,
                                          double slope, c10::DeviceType dev) {
  constexpr const char* op = "batch_norm_act_backward";
  check_floating(op, "x", x, dev);
  TORCH_CHECK(x.dim() >= 2 && x.numel() > 0 && is_dense(x), op,
              ": x must be dense (N, C, ...) with elements, got shape ", x.sizes(), " strides ",
              x.strides());
  check_same_walk(op, "grad_out", grad_out, x, "x");
  check_same_walk(op, "out", out, x, "x");
  check_channel_vector(op, "weight", weight, x);
  const auto t = compute_dtype(x.scalar_type());
  for (const auto& [name, v] : {std::pair<const char*, const at::Tensor*>{"mean", &mean},
                                {"invstd", &invstd}}) {
    TORCH_CHECK(v->defined() && v->scalar_type() == t && v->dim() == 1 && v->size(0) == x.size(1) &&
                    v->is_contiguous() && v->device() == x.device(),
                op, ": ", name, " must be a contiguous (C,) ", t, " tensor on ", x.device());
  }
  check_slope(op, slope);
}

inline void check_began_loss(const at::Tensor& real, const at::Tensor& real_recon,
                             const at::Tensor& fake, const at::Tensor& fake_recon,
                             const at::Tensor& k, c10::DeviceType dev) {
  constexpr const char* op = "began_loss";
  check_floating(op, "real", real, dev);
  TORCH_CHECK(real.numel() > 0 && is_dense(real), op, ": real must be dense with elements");
  check_same_walk(op, "real_recon", real_recon, real, "real");
  check_floating(op, "fake", fake, dev);
  TORCH_CHECK(fake.numel() > 0 && is_dense(fake), op, ": fake must be dense with elements");
  TORCH_CHECK(fake.scalar_type() == real.scalar_type(), op, ": fake has dtype ", fake.scalar_type(),
              " but real has ", real.scalar_type());
  check_same_walk(op, "fake_recon", fake_recon, fake, "fake");
  TORCH_CHECK(k.defined() && k.numel() == 1 && is_penalty_dtype(k.scalar_type()) &&
                  k.device() == real.device(),
              op, ": k must be a 1-element floating tensor on ", real.device());
}

}  // namespace fastgan
