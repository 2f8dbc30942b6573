// Fused RMSprop + WGAN clip on CPU tensors: the C++ backend of fastgan.optim.RMSpropClip.
// One parallel pass over chunks of all parameters; the element math is
// csrc/rmsprop_math.h, shared with the CUDA kernel; the loop is rmsprop_loop.h, run from
// its best build for the CPU (csrc/cpu/isa.h) for float32/float64 and its baseline build
// otherwise. Measured on the 2-core EPYC dev host, DCGAN critic, float32: see
// benchmarks/bench_rmsprop_clip.py.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <optional>
#include <utility>
#include <vector>

#include "../checks.h"
#include "../clip_weights.h"
#include "../rmsprop_clip.h"
#include "rmsprop_loop.h"

namespace fastgan {
namespace {

constexpr int64_t kChunk = 32768;  // as clip_weights: 128 KiB of float32 per task

template <typename scalar_t>
void run_loop(const RMSpropLoopArgs& a) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    FASTGAN_PICK_ISA(&rmsprop_loop<float>, &rmsprop_loop_avx2_f32, &rmsprop_loop_avx512_f32)(a);
  } else if constexpr (std::is_same_v<scalar_t, double>) {
    FASTGAN_PICK_ISA(&rmsprop_loop<double>, &rmsprop_loop_avx2_f64, &rmsprop_loop_avx512_f64)(a);
  } else {
    rmsprop_loop<scalar_t>(a);  // 16-bit dtypes: the baseline build only
  }
}

void rmsprop_clip_cpu(at::TensorList params, at::TensorList grads, at::TensorList square_avgs,
                      at::TensorList momentum_bufs, at::TensorList grad_avgs,
                      const at::Tensor& lr, double alpha, double eps, double weight_decay,
                      double momentum, bool centered, bool maximize, double clip,
                      const std::optional<at::Tensor>& grad_scale,
                      const std::optional<at::Tensor>& found_inf) {
  check_rmsprop_clip_args(params, grads, square_avgs, momentum_bufs, grad_avgs, lr, alpha, eps,
                          weight_decay, momentum, centered, clip, grad_scale, found_inf,
                          c10::DeviceType::CPU);
  if (found_inf.has_value() && found_inf->item<float>() != 0.0f) return;  // skipped step
  const bool use_momentum = momentum != 0.0;
  const bool unscale = grad_scale.has_value();
  const float scale_value = unscale ? grad_scale->item<float>() : 1.0f;
  std::vector<std::pair<size_t, int64_t>> chunks;  // (parameter index, first element)
  for (size_t i = 0; i < params.size(); ++i) {
    for (int64_t s = 0; s < params[i].numel(); s += kChunk) chunks.emplace_back(i, s);
  }
  const float lr_value = lr.item<float>();

  at::parallel_for(0, static_cast<int64_t>(chunks.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const auto [i, start] = chunks[k];
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, params[i].scalar_type(),
                                      "rmsprop_clip_cpu", [&] {
        auto ptr = [&](const at::Tensor& t) { return static_cast<scalar_t*>(t.data_ptr()) + start; };
        const auto bounds = make_clip_bits<scalar_t>(clip >= 0.0 ? clip : 0.0);
        RMSpropLoopArgs a{};
        a.p = ptr(params[i]);
        a.g = ptr(grads[i]);
        a.v = ptr(square_avgs[i]);
        a.b = use_momentum ? ptr(momentum_bufs[i]) : nullptr;
        a.ga = centered ? ptr(grad_avgs[i]) : nullptr;
        a.n = std::min(kChunk, params[i].numel() - start);
        a.lr = lr_value;
        a.grad_scale = scale_value;
        a.unscale = unscale;
        a.alpha = alpha;
        a.eps = eps;
        a.weight_decay = weight_decay;
        a.momentum = momentum;
        a.clip_hi = bounds.hi;
        a.clip_inf = bounds.inf;
        a.centered = centered;
        a.use_momentum = use_momentum;
        a.maximize = maximize;
        a.use_weight_decay = weight_decay != 0.0;
        a.use_clip = clip >= 0.0;
        run_loop<scalar_t>(a);
      });
    }
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CPU, m) { m.impl("rmsprop_clip_", &rmsprop_clip_cpu); }

}  // namespace fastgan
