// The critic activation on CPU tensors: the C++ backend of fastgan.ops.bias_leaky_relu
// (bias_leaky_relu, leaky_relu_backward; element math csrc/leaky_relu_math.h, shared with
// the CUDA kernels).
//
// Inputs are dense, so the kernels walk numel elements linearly from data_ptr; the
// channel of memory offset i is (i / run) % channels with (run, channels) from penalty.h's
// channel_walk. The loops are bias_leaky_relu_loop.h, run from its best build for the CPU
// (csrc/cpu/isa.h). AVX2+FMA against the baseline, 786K elements on one thread of the dev
// host: float32 151 -> 67 us, bfloat16 491 -> 196 us, float16 1441 -> 572 us (the
// baseline's SSE2 has no blend).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty_like.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "../penalty.h"
#include "bias_leaky_relu_loop.h"

namespace fastgan {
namespace {

// 128 KiB of float32 per task, as clip_weights: amortises the task, balances the threads.
constexpr int64_t kChunk = 32768;
// Runs of at least kMinRun elements of one channel (NCHW from 8x8 up) take the constant-bias
// loop once per run. Shorter runs (channels_last and 2-D: 1 element; NCHW 4x4: 16) take the
// periodic loop over a bias pattern of >= kMinPeriod elements: on 64x3x64x64 channels_last
// float32 (runs of 1) and 64x512x4x4 NCHW, one thread, per-run calls took 3.3 ms and 99 us,
// the pattern 78 and 63 us, no bias at all 73 and 48 us.
constexpr int64_t kMinRun = 64;
constexpr int64_t kMinPeriod = 1024;

template <typename D>
LeakyReluLoops loops_for() {
  return FASTGAN_PICK_ISA(&leaky_relu_loops<D>, &leaky_relu_loops_avx2<D>, &leaky_relu_loops_avx512<D>)();
}

// f(first, count) over [0, n) in parallel, at least kChunk per thread.
template <typename F>
void for_each_range(int64_t n, const F& f) {
  at::parallel_for(0, n, kChunk, [&](int64_t begin, int64_t end) { f(begin, end - begin); });
}

at::Tensor bias_leaky_relu_cpu(const at::Tensor& x, const std::optional<at::Tensor>& bias,
                               double negative_slope) {
  check_bias_leaky_relu(x, bias, negative_slope, c10::DeviceType::CPU);
  at::Tensor y = at::empty_like(x);  // x's strides: the walk is the same
  const int64_t n = x.numel();
  if (n == 0) return y;
  const bool has_bias = bias.has_value() && bias->defined();
  const auto walk = channel_walk(x);
  const int64_t run = walk.first, channels = walk.second;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bias_leaky_relu", [&] {
    using D = elem_of<scalar_t, c10::Half, c10::BFloat16>;
    using T = typename Elem<D>::T;
    const LeakyReluLoops loops = loops_for<D>();
    const auto* xp = static_cast<const scalar_t*>(x.data_ptr());
    auto* yp = static_cast<scalar_t*>(y.data_ptr());
    if (!has_bias) {
      for_each_range(n, [&](int64_t i, int64_t len) { loops.plain(xp + i, yp + i, negative_slope, len); });
      return;
    }
    // The bias in T, whatever its own dtype (fp32 bias with bf16 x under autocast).
    const at::Tensor b = bias->to(compute_dtype(x.scalar_type())).contiguous();
    const T* bp = b.data_ptr<T>();
    if (run >= kMinRun) {  // runs of one channel: a constant bias each
      at::parallel_for(0, n / run, std::max<int64_t>(1, kChunk / run), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          loops.channel(xp + r * run, yp + r * run, bp[r % channels], negative_slope, run);
        }
      });
      return;
    }
    // The walk's bias repeats every run * channels elements; lay it out once, repeated to at
    // least kMinPeriod elements, and add it element by element.
    const int64_t walk_period = run * channels;
    const int64_t period = walk_period * ((kMinPeriod + walk_period - 1) / walk_period);
    std::vector<T> pattern;
    pattern.reserve(period);
    while (static_cast<int64_t>(pattern.size()) < period) {
      for (int64_t c = 0; c < channels; ++c) pattern.insert(pattern.end(), run, bp[c]);
    }
    for_each_range(n, [&](int64_t i, int64_t len) {
      loops.periodic(xp + i, yp + i, pattern.data(), period, i % period, negative_slope, len);
    });
  });
  return y;
}

at::Tensor leaky_relu_backward_cpu(const at::Tensor& grad, const at::Tensor& out,
                                   double negative_slope) {
  check_leaky_relu_backward(grad, out, negative_slope, c10::DeviceType::CPU);
  at::Tensor dx = at::empty_like(grad);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "leaky_relu_backward", [&] {
    using D = elem_of<scalar_t, c10::Half, c10::BFloat16>;
    const LeakyReluLoops loops = loops_for<D>();
    const auto* gp = static_cast<const scalar_t*>(grad.data_ptr());
    const auto* op = static_cast<const scalar_t*>(out.data_ptr());
    auto* dp = static_cast<scalar_t*>(dx.data_ptr());
    for_each_range(grad.numel(), [&](int64_t i, int64_t len) {
      loops.backward(gp + i, op + i, dp + i, negative_slope, len);
    });
  });
  return dx;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("bias_leaky_relu", &bias_leaky_relu_cpu);
  m.impl("leaky_relu_backward", &leaky_relu_backward_cpu);
}

}  // namespace fastgan
