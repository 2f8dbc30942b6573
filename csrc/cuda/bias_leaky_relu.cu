// The critic activation on CUDA: bias_leaky_relu (y = leaky_relu(x + bias[c])) and
// leaky_relu_backward (dx = y > 0 ? dy : dy * slope), each one pass over memory order
// with 16-byte vectors (csrc/cuda/elementwise.cuh, a grid-stride walk of at most one
// wave of blocks). The element math is csrc/leaky_relu_math.h, shared with the CPU.
//
// Any dense layout: the channel of memory offset i is (i / channel_stride) % channels
// (csrc/penalty.h channel_walk). That costs two integer divisions, so a thread does
// them once per vector and steps the channel from element to element; they are 32-bit
// when the tensor has < 2^32 elements (a 64-bit division is a ~70-instruction software
// routine on the GPU, near the budget of a memory-bound fp32 pass).
//
// The bias may have another floating dtype than x (an fp32 bias with bf16 x under
// autocast): it is loaded through a converting loader, one uniform switch per load,
// rather than 16 dtype pairs of kernels or a conversion launch on the host.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <cstdint>
#include <limits>
#include <optional>

#include "../leaky_relu_math.h"
#include "../penalty.h"
#include "elementwise.cuh"

namespace fastgan {
namespace {

using ew::Vec;

enum class BiasDtype : int { kFloat, kHalf, kBFloat16, kDouble };

BiasDtype bias_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return BiasDtype::kFloat;
    case at::kHalf: return BiasDtype::kHalf;
    case at::kBFloat16: return BiasDtype::kBFloat16;
    default: return BiasDtype::kDouble;  // check_bias_leaky_relu admits these four only
  }
}

template <typename T>
C10_HOST_DEVICE inline T load_bias(const void* p, int64_t c, BiasDtype d) {
  switch (d) {
    case BiasDtype::kFloat: return static_cast<T>(static_cast<const float*>(p)[c]);
    case BiasDtype::kHalf: return ew::to_op<T>(static_cast<const c10::Half*>(p)[c]);
    case BiasDtype::kBFloat16: return ew::to_op<T>(static_cast<const c10::BFloat16*>(p)[c]);
    default: return static_cast<T>(static_cast<const double*>(p)[c]);
  }
}

// y = leaky_relu(x + bias[channel]); index_t: uint32_t or uint64_t (see above).
template <typename scalar_t, bool kBias, typename index_t>
struct BiasLeakyReluOp {
  using T = ew::opmath_t<scalar_t>;
  static constexpr int V = ew::kVec<scalar_t>;
  using Tile = Vec<scalar_t, V>;

  const scalar_t* __restrict__ x;
  scalar_t* __restrict__ y;
  const void* __restrict__ bias;
  BiasDtype bias_dtype;
  index_t channel_stride, channels;
  T slope;

  C10_HOST_DEVICE scalar_t value(scalar_t xi, T b) const {
    const T v = kBias ? ew::to_op<T>(xi) + b : ew::to_op<T>(xi);
    return static_cast<scalar_t>(leaky_relu_value(v, slope));
  }
  C10_HOST_DEVICE Tile load(int64_t i) const { return ew::load_vec<scalar_t, V>(x, i); }
  C10_HOST_DEVICE void vec(const Tile& t, int64_t i) {
    Tile o;
    if constexpr (kBias) {
      const auto idx = static_cast<index_t>(i);
      const index_t q = idx / channel_stride;
      index_t r = idx - q * channel_stride;  // position within the channel's run
      index_t c = q % channels;
      T b = load_bias<T>(bias, c, bias_dtype);
      FASTGAN_UNROLL
      for (int j = 0; j < V; ++j) {
        o.val[j] = value(t.val[j], b);
        if (j + 1 < V && ++r == channel_stride) {  // next element starts the next channel
          r = 0;
          c = c + 1 == channels ? 0 : c + 1;
          b = load_bias<T>(bias, c, bias_dtype);
        }
      }
    } else {
      FASTGAN_UNROLL
      for (int j = 0; j < V; ++j) o.val[j] = value(t.val[j], T(0));
    }
    ew::store_vec<scalar_t, V>(y, i, o);
  }
  C10_HOST_DEVICE void one(int64_t i) {
    T b = T(0);
    if constexpr (kBias) {
      const auto idx = static_cast<index_t>(i);
      b = load_bias<T>(bias, (idx / channel_stride) % channels, bias_dtype);
    }
    y[i] = value(x[i], b);
  }
};

template <typename scalar_t>
struct LeakyReluBackwardOp {
  using T = ew::opmath_t<scalar_t>;
  static constexpr int V = ew::kVec<scalar_t>;
  struct Tile {
    Vec<scalar_t, V> dy, y;
  };

  const scalar_t* __restrict__ dy;
  const scalar_t* __restrict__ y;
  scalar_t* __restrict__ dx;
  T slope;

  C10_HOST_DEVICE scalar_t grad(scalar_t g, scalar_t out) const {
    return static_cast<scalar_t>(leaky_relu_grad(ew::to_op<T>(g), ew::to_op<T>(out), slope));
  }
  C10_HOST_DEVICE Tile load(int64_t i) const {
    return Tile{ew::load_vec<scalar_t, V>(dy, i), ew::load_vec<scalar_t, V>(y, i)};
  }
  C10_HOST_DEVICE void vec(const Tile& t, int64_t i) {
    Vec<scalar_t, V> o;
    FASTGAN_UNROLL
    for (int j = 0; j < V; ++j) o.val[j] = grad(t.dy.val[j], t.y.val[j]);
    ew::store_vec<scalar_t, V>(dx, i, o);
  }
  C10_HOST_DEVICE void one(int64_t i) { dx[i] = grad(dy[i], y[i]); }
};

template <typename Op>
void launch_flat(const Op& op, int64_t n, ew::Alignment al, int device) {
  const unsigned blocks =
      ew::flat_blocks(n, sizeof(typename Op::Tile) / Op::V, ew::multiprocessor_count(device));
  ew::flat_kernel<Op::V, Op>
      <<<blocks, ew::kThreads, 0, c10::cuda::getCurrentCUDAStream().stream()>>>(op, n, al);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t, bool kBias>
void launch_bias_leaky_relu(const at::Tensor& x, const void* bias, BiasDtype bd, at::Tensor& y,
                            double slope) {
  using T = ew::opmath_t<scalar_t>;
  const int64_t n = x.numel();
  auto [channel_stride, channels] = channel_walk(x);
  if (channels == 1) channel_stride = n;  // one channel: one run, no per-element stepping
  const auto* xp = x.const_data_ptr<scalar_t>();
  auto* yp = y.mutable_data_ptr<scalar_t>();
  const ew::Alignment al = ew::alignment_of(sizeof(scalar_t), {xp, yp});
  const auto s = static_cast<T>(slope);
  if (n <= static_cast<int64_t>(std::numeric_limits<uint32_t>::max())) {
    using Op = BiasLeakyReluOp<scalar_t, kBias, uint32_t>;
    launch_flat(Op{xp, yp, bias, bd, static_cast<uint32_t>(channel_stride),
                   static_cast<uint32_t>(channels), s},
                n, al, x.get_device());
  } else {
    using Op = BiasLeakyReluOp<scalar_t, kBias, uint64_t>;
    launch_flat(Op{xp, yp, bias, bd, static_cast<uint64_t>(channel_stride),
                   static_cast<uint64_t>(channels), s},
                n, al, x.get_device());
  }
}

at::Tensor bias_leaky_relu_cuda(const at::Tensor& x, const std::optional<at::Tensor>& bias,
                                double negative_slope) {
  check_bias_leaky_relu(x, bias, negative_slope, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor y = at::empty_like(x);  // x is dense: same strides
  if (x.numel() == 0) return y;
  const bool has_bias = bias.has_value() && bias->defined();
  // The kernel reads bias[c] at offset c: a strided 1-D view (rare) is copied first.
  const at::Tensor b = has_bias ? bias->contiguous() : at::Tensor();
  constexpr const char* op = "bias_leaky_relu";
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), op, [&] {
    if (has_bias) {
      launch_bias_leaky_relu<scalar_t, true>(x, b.const_data_ptr(), bias_dtype(b.scalar_type()), y,
                                             negative_slope);
    } else {
      launch_bias_leaky_relu<scalar_t, false>(x, nullptr, BiasDtype::kFloat, y, negative_slope);
    }
  });
  return y;
}

at::Tensor leaky_relu_backward_cuda(const at::Tensor& grad, const at::Tensor& out,
                                    double negative_slope) {
  check_leaky_relu_backward(grad, out, negative_slope, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(grad.device());
  at::Tensor dx = at::empty_like(grad);
  const int64_t n = grad.numel();
  if (n == 0) return dx;
  constexpr const char* op = "leaky_relu_backward";
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), op, [&] {
    using T = ew::opmath_t<scalar_t>;
    const auto* dy = grad.const_data_ptr<scalar_t>();
    const auto* y = out.const_data_ptr<scalar_t>();
    auto* dxp = dx.mutable_data_ptr<scalar_t>();
    launch_flat(LeakyReluBackwardOp<scalar_t>{dy, y, dxp, static_cast<T>(negative_slope)}, n,
                ew::alignment_of(sizeof(scalar_t), {dy, y, dxp}), grad.get_device());
  });
  return dx;
}

}  // namespace
}  // namespace fastgan

TORCH_LIBRARY_IMPL(fastgan, CUDA, m) {
  m.impl("bias_leaky_relu", &fastgan::bias_leaky_relu_cuda);
  m.impl("leaky_relu_backward", &fastgan::leaky_relu_backward_cuda);
}
