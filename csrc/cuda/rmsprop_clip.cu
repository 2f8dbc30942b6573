// rmsprop_clip_ on CUDA: one RMSprop step (torch.optim.RMSprop's arithmetic) and
// the WGAN clip of every parameter, fused into one pass over params, grads and the
// optimizer state, with one multi-tensor launch series per dtype (a critic's 10-300
// parameters cost 1-8 launches instead of ~10 ATen launches each).
//
// The element math is fastgan::rmsprop_element (csrc/rmsprop_math.h) and the clip
// fastgan::clip_bits (csrc/clip_weights.h), both shared with the CPU kernel. Storage
// is fp32/fp16/bf16/fp64; arithmetic in opmath (float, double for fp64), each
// stored value rounded once.
//
// centered, momentum != 0, maximize, weight_decay != 0 and loss scaling are template
// parameters (32 instantiations per dtype): the kernel has no branch on them, and the
// lists it walks and writes are exactly the ones the step uses (DEPTH 3 to 5; the
// gradients are written back only under loss scaling). An overflow flag (found_inf)
// is one read per block, which returns before touching memory. The clip needs no
// flag: without one the bound is +inf's bit pattern, for which clip_bits returns every
// value unchanged (no magnitude is both > inf and <= inf), so "no clip" is the
// identity exactly.
#include <ATen/core/Tensor.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <type_traits>
#include <vector>

#include "../checks.h"
#include "../clip_weights.h"
#include "../rmsprop_clip.h"
#include "elementwise.cuh"
#include "multi_tensor_apply.cuh"

namespace fastgan {
namespace {


template <typename scalar_t>
using opmath_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

// x with its bit pattern clipped as clip_weights_ clips it.
template <typename scalar_t>
C10_HOST_DEVICE inline scalar_t clip_value(scalar_t x, const ClipBits<scalar_t>& cb) {
  using bits = bits_t<scalar_t>;
  bits b;
  memcpy(&b, &x, sizeof b);
  b = clip_bits<bits>(b, cb.hi, cb.inf);
  memcpy(&x, &b, sizeof b);
  return x;
}

template <typename scalar_t, bool kCentered, bool kMomentum, bool kMaximize, bool kWeightDecay,
          bool kUnscale>
struct RMSpropClipFunctor {
  using T = opmath_t<scalar_t>;
  // The gradient list is written (the unscaled gradient) only under loss scaling.
  using GradT = std::conditional_t<kUnscale, scalar_t, const scalar_t>;
  static constexpr int kDepth = 3 + int{kMomentum} + int{kCentered};
  // 16-byte vectors: 8 fp16/bf16, 4 fp32 or 2 fp64 elements (all lists share the dtype).
  static constexpr int kVec = static_cast<int>(16 / sizeof(scalar_t));

  // One element: load in opmath, step, store rounded, clip the stored parameter. Loads
  // through ew::to_op: c10's bf16 -> float reads the value through a pointer cast
  // (type punning a register tile; more registers and spills in the bf16 kernels).
  // b / ga are dummies (never read or written) when their list is absent.
  C10_HOST_DEVICE static void step(scalar_t& p, GradT& g, scalar_t& v, scalar_t& b,
                                   scalar_t& ga, T lr, T scale, const RMSpropHyper<T>& h,
                                   const ClipBits<scalar_t>& cb) {
    T gt = ew::to_op<T>(g);
    if constexpr (kUnscale) {  // stored, and the stored value stepped
      g = static_cast<scalar_t>(gt / scale);
      gt = ew::to_op<T>(g);
    }
    T pt = ew::to_op<T>(p);
    T vt = ew::to_op<T>(v);
    T bt = T(0);
    T gat = T(0);
    if constexpr (kMomentum) bt = ew::to_op<T>(b);
    if constexpr (kCentered) gat = ew::to_op<T>(ga);
    rmsprop_element<T, kCentered, kMomentum, kMaximize, kWeightDecay>(pt, gt, vt, bt, gat, lr, h);
    v = static_cast<scalar_t>(vt);
    if constexpr (kMomentum) b = static_cast<scalar_t>(bt);
    if constexpr (kCentered) ga = static_cast<scalar_t>(gat);
    p = clip_value<scalar_t>(static_cast<scalar_t>(pt), cb);
  }

  // Lists: params, grads (read-only unless kUnscale), square_avgs[, momentum_bufs][, grad_avgs].
  // lr, *scale_ptr and *found_inf_ptr are read on the device: a CUDA graph replays new values.
  C10_HOST_DEVICE void operator()(const mta::Chunk<kDepth>& chunk, const RMSpropHyper<T>& h,
                                  const float* lr_ptr, const float* scale_ptr,
                                  const float* found_inf_ptr, const ClipBits<scalar_t>& cb) const {
    if (found_inf_ptr != nullptr && *found_inf_ptr != 0.0f) return;  // skipped: nothing written
    const T lr = static_cast<T>(*lr_ptr);
    T scale = T(1);
    if constexpr (kUnscale) scale = static_cast<T>(*scale_ptr);
    using S = scalar_t;
    using G = GradT;
    if constexpr (kMomentum && kCentered) {
      mta::for_each_element<kVec, S, G, S, S, S>(chunk, [h, lr, scale, cb](S& p, G& g, S& v, S& b, S& ga) {
        step(p, g, v, b, ga, lr, scale, h, cb);
      });
    } else if constexpr (kMomentum) {
      mta::for_each_element<kVec, S, G, S, S>(chunk, [h, lr, scale, cb](S& p, G& g, S& v, S& b) {
        S ga{};
        step(p, g, v, b, ga, lr, scale, h, cb);
      });
    } else if constexpr (kCentered) {
      mta::for_each_element<kVec, S, G, S, S>(chunk, [h, lr, scale, cb](S& p, G& g, S& v, S& ga) {
        S b{};
        step(p, g, v, b, ga, lr, scale, h, cb);
      });
    } else {
      mta::for_each_element<kVec, S, G, S>(chunk, [h, lr, scale, cb](S& p, G& g, S& v) {
        S b{}, ga{};
        step(p, g, v, b, ga, lr, scale, h, cb);
      });
    }
  }
};

// The tensors of one dtype, list by list (index: 0 params, 1 grads, 2 square_avgs,
// 3 momentum_bufs, 4 grad_avgs; the last two empty when unused).
struct DtypeGroup {
  std::array<std::vector<at::Tensor>, 5> lists;
  bool empty() const { return lists[0].empty(); }
};

struct StepArgs {
  double alpha, eps, weight_decay, momentum, clip;
  const float* lr_ptr;
  const float* scale_ptr;      // null: no loss scaling
  const float* found_inf_ptr;  // null: never skip
};

template <typename scalar_t, bool kCentered, bool kMomentum, bool kMaximize, bool kWeightDecay,
          bool kUnscale>
void launch_group(const DtypeGroup& group, const StepArgs& a) {
  using Functor =
      RMSpropClipFunctor<scalar_t, kCentered, kMomentum, kMaximize, kWeightDecay, kUnscale>;
  using T = typename Functor::T;
  constexpr int kDepth = Functor::kDepth;
  std::array<at::TensorList, kDepth> lists;
  lists[0] = group.lists[0];
  lists[1] = group.lists[1];
  lists[2] = group.lists[2];
  int d = 3;
  if constexpr (kMomentum) lists[d++] = group.lists[3];
  if constexpr (kCentered) lists[d++] = group.lists[4];
  // Rounded on the host as torch rounds its Python scalars (1 - alpha in double).
  const RMSpropHyper<T> h = make_rmsprop_hyper<T>(a.alpha, a.eps, a.weight_decay, a.momentum);
  ClipBits<scalar_t> cb;
  if (a.clip >= 0.0) {  // as the checks: clip < 0 (or NaN) means no clip
    cb = make_clip_bits<scalar_t>(a.clip);
  } else {  // no clip: bound = +inf, for which clip_bits is the identity
    cb = make_clip_bits<scalar_t>(std::numeric_limits<double>::infinity());
  }
  mta::multi_tensor_apply<kDepth>(lists, Functor{}, h, a.lr_ptr, a.scale_ptr, a.found_inf_ptr, cb);
}

template <typename scalar_t>
void run_group(const DtypeGroup& group, const StepArgs& a, bool centered, bool use_momentum,
               bool maximize) {
  if (group.empty()) return;
  dispatch_flags(
      [&](auto kCentered, auto kMomentum, auto kMaximize, auto kWeightDecay, auto kUnscale) {
        launch_group<scalar_t, decltype(kCentered)::value, decltype(kMomentum)::value,
                     decltype(kMaximize)::value, decltype(kWeightDecay)::value,
                     decltype(kUnscale)::value>(group, a);
      },
      centered, use_momentum, maximize, a.weight_decay != 0.0, a.scale_ptr != nullptr);
}

void rmsprop_clip_cuda(at::TensorList params, at::TensorList grads, at::TensorList square_avgs,
                       at::TensorList momentum_bufs, at::TensorList grad_avgs,
                       const at::Tensor& lr, double alpha, double eps, double weight_decay,
                       double momentum, bool centered, bool maximize, double clip,
                       const std::optional<at::Tensor>& grad_scale,
                       const std::optional<at::Tensor>& found_inf) {
  // Every check before any tensor is touched, layouts included; shared with the CPU kernel.
  check_rmsprop_clip_args(params, grads, square_avgs, momentum_bufs, grad_avgs, lr, alpha, eps,
                          weight_decay, momentum, centered, clip, grad_scale, found_inf,
                          c10::DeviceType::CUDA);
  const bool use_momentum = momentum != 0.0;
  const size_t n = params.size();
  if (n == 0) return;

  // --- group by dtype; zero-element tensors have nothing to step ---------
  DtypeGroup f32, f16, bf16, f64;
  for (size_t i = 0; i < n; ++i) {
    if (params[i].numel() == 0) continue;
    DtypeGroup* group = nullptr;
    switch (params[i].scalar_type()) {
      case at::kFloat: group = &f32; break;
      case at::kHalf: group = &f16; break;
      case at::kBFloat16: group = &bf16; break;
      default: group = &f64; break;  // check_tensor_list admits these four only
    }
    group->lists[0].push_back(params[i]);
    group->lists[1].push_back(grads[i]);
    group->lists[2].push_back(square_avgs[i]);
    if (use_momentum) group->lists[3].push_back(momentum_bufs[i]);
    if (centered) group->lists[4].push_back(grad_avgs[i]);
  }

  const StepArgs args{alpha, eps, weight_decay, momentum, clip, lr.data_ptr<float>(),
                      grad_scale.has_value() ? grad_scale->data_ptr<float>() : nullptr,
                      found_inf.has_value() ? found_inf->data_ptr<float>() : nullptr};
  run_group<float>(f32, args, centered, use_momentum, maximize);
  run_group<c10::Half>(f16, args, centered, use_momentum, maximize);
  run_group<c10::BFloat16>(bf16, args, centered, use_momentum, maximize);
  run_group<double>(f64, args, centered, use_momentum, maximize);
}

}  // namespace
}  // namespace fastgan

TORCH_LIBRARY_IMPL(fastgan, CUDA, m) {
  m.impl("rmsprop_clip_", &fastgan::rmsprop_clip_cuda);
}
