// rmsprop_clip_'s host-side pieces shared by the CPU and CUDA kernels: argument checks,
// hyperparameter rounding, flag dispatch. The element math is csrc/rmsprop_math.h.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/macros/Macros.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <optional>
#include <type_traits>

#include "checks.h"
#include "clip_weights.h"
#include "rmsprop_math.h"

namespace fastgan {

// The checks of rmsprop_clip_'s arguments, before any tensor is touched (host side).
inline void check_rmsprop_clip_args(at::TensorList params, at::TensorList grads,
                                    at::TensorList square_avgs, at::TensorList momentum_bufs,
                                    at::TensorList grad_avgs, const at::Tensor& lr, double alpha,
                                    double eps, double weight_decay, double momentum,
                                    bool centered, double clip,
                                    const std::optional<at::Tensor>& grad_scale,
                                    const std::optional<at::Tensor>& found_inf,
                                    c10::DeviceType device_type) {
  constexpr const char* op = "rmsprop_clip_";
  check_tensor_list(op, params, device_type);
  const size_t n = params.size();
  auto check_list = [&](const char* name, at::TensorList list, bool used) {
    const size_t want = used ? n : 0;
    TORCH_CHECK(list.size() == want, op, ": ", name, " has ", list.size(), " tensors; expected ",
                want, used ? " (one per parameter)" : " (unused with these hyperparameters)");
    for (size_t i = 0; i < list.size(); ++i) {
      const auto& t = list[i];
      const auto& p = params[i];
      TORCH_CHECK(t.defined() && t.sizes() == p.sizes() && t.scalar_type() == p.scalar_type() &&
                      t.device() == p.device(),
                  op, ": ", name, "[", i, "] must match params[", i, "] (", p.scalar_type(), " ",
                  p.sizes(), " on ", p.device(), ")");
    }
  };
  check_list("grads", grads, true);
  check_list("square_avgs", square_avgs, true);
  check_list("momentum_bufs", momentum_bufs, momentum != 0.0);
  check_list("grad_avgs", grad_avgs, centered);
  TORCH_CHECK(lr.numel() == 1 && lr.scalar_type() == at::kFloat, op,
              ": lr must be a 1-element float32 tensor, got ", lr.scalar_type(), " ", lr.sizes());
  TORCH_CHECK(n == 0 || lr.device() == params[0].device(), op, ": lr is on ", lr.device(),
              " but params are on ", params[0].device());
  auto check_scalar = [&](const char* name, const std::optional<at::Tensor>& t) {
    if (!t.has_value()) return;
    TORCH_CHECK(t->defined() && t->numel() == 1 && t->scalar_type() == at::kFloat, op, ": ",
                name, " must be None or a 1-element float32 tensor");
    TORCH_CHECK(n == 0 || t->device() == params[0].device(), op, ": ", name, " is on ",
                t->device(), " but params are on ", params[0].device());
  };
  check_scalar("grad_scale", grad_scale);
  check_scalar("found_inf", found_inf);
  TORCH_CHECK(std::isfinite(alpha) && alpha >= 0.0 && alpha <= 1.0, op,
              ": alpha must be in [0, 1], got ", alpha);
  TORCH_CHECK(std::isfinite(eps) && eps >= 0.0, op, ": eps must be >= 0, got ", eps);
  TORCH_CHECK(std::isfinite(weight_decay) && weight_decay >= 0.0, op,
              ": weight_decay must be >= 0, got ", weight_decay);
  TORCH_CHECK(std::isfinite(momentum) && momentum >= 0.0, op,
              ": momentum must be >= 0, got ", momentum);
  // The kernels walk tensor i of every list linearly and together.
  for (size_t i = 0; i < n; ++i) {
    const auto& p = params[i];
    // the same sizes and the same strides on every dim of more than one element (a size-1
    // dim's stride is arbitrary: autograd may hand such a gradient to a channels_last weight)
    auto same_walk = [&](const at::Tensor& t) {
      if (t.sizes() != p.sizes()) return false;
      for (int64_t d = 0; d < p.dim(); ++d) {
        if (p.size(d) != 1 && t.stride(d) != p.stride(d)) return false;
      }
      return true;
    };
    TORCH_CHECK(is_dense(p) && same_walk(grads[i]) && same_walk(square_avgs[i]) &&
                    (momentum == 0.0 || same_walk(momentum_bufs[i])) &&
                    (!centered || same_walk(grad_avgs[i])),
                op, ": params[", i, "] and its gradient and state must be dense and identically "
                "strided (the Python optimizer routes other layouts to the reference)");
  }
  TORCH_CHECK(!std::isnan(clip), op, ": clip is NaN; pass a bound >= 0, or < 0 for no clip");
  if (clip >= 0.0) {
    check_clip_value(op, clip);
    check_clip_range(op, params, clip);
  }
}

template <typename T>
RMSpropHyper<T> make_rmsprop_hyper(double alpha, double eps, double weight_decay,
                                   double momentum) {
  return {static_cast<T>(alpha), static_cast<T>(1.0 - alpha), static_cast<T>(eps),
          static_cast<T>(weight_decay), static_cast<T>(momentum)};
}

}  // namespace fastgan
