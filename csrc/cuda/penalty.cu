// The gradient penalty (WGAN-GP, Gulrajani et al. 2017; DRAGAN, Kodali et al. 2017; R1,
// Mescheder et al. 2018) on CUDA: penalty_forward, penalty_backward and
// penalty_double_backward over a (B, ...) gradient whose samples are contiguous ranges
// of M elements. The formulas are csrc/penalty_math.h, shared with the CPU kernel.
//
// Launches (grids: "sample slices", csrc/cuda/elementwise.cuh; B x S blocks of 256):
//   forward          partials[b, s] = sum g^2 over slice s of sample b  (B x S blocks)
//                    finalize: sumsq[b] = sum_s partials[b, s], penalty    (1 block)
//   backward         dgrad = coef_b * g                                  (B x S blocks)
//   double backward  partials[b, s] = <ggrad, g> over the slice          (B x S blocks)
//                    finalize: dot_b, coef_b, q_b, d_dout                 (1 block)
//                    d_grad = coef_b * ggrad + q_b * g                    (B x S blocks)
// Forward + backward move 3 x the gradient's bytes (read, read, write): 37.7 MB for a
// 256x3x64x64 fp32 gradient, 11 us at an H100's 3.35 TB/s.
//
// Sums run in T (float; double for float64) in a fixed order: a per-thread sum over the
// thread's elements, a shuffle tree per block, then the S partials of a sample in order.
// So results repeat bit for bit on a device (S depends on its SM count), and nothing
// is read back to the host: dout is read by the kernels, so CUDA graphs can replay.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <tuple>
#include <type_traits>

#include "../penalty.h"
#include "../penalty_math.h"
#include "elementwise.cuh"

namespace fastgan {
namespace {

using ew::Slices;
using ew::Vec;

// The registers of one vector of each operand: x alone, or x and y. (Not one struct
// with an unused member: its bytes would count against kLoadBytes, halving the unroll.)
template <typename scalar_t, int V>
struct TileOne {
  Vec<scalar_t, V> x;
};
template <typename scalar_t, int V>
struct TileTwo {
  Vec<scalar_t, V> x, y;
};
template <typename scalar_t, int V, bool kTwo>
using OperandTile = std::conditional_t<kTwo, TileTwo<scalar_t, V>, TileOne<scalar_t, V>>;

// ---- split reductions -----------------------------------------------------------------

// Partial sum of g^2 (forward) or of gg * g (double backward, kDot) over one slice.
template <typename scalar_t, bool kDot>
struct SlicePartial {
  using T = ew::opmath_t<scalar_t>;
  static constexpr int V = ew::kVec<scalar_t>;
  using Tile = OperandTile<scalar_t, V, kDot>;

  const scalar_t* __restrict__ g;
  const scalar_t* __restrict__ gg;  // ggrad when kDot
  T* __restrict__ partials;         // B x S
  T acc;

  C10_HOST_DEVICE void begin(int64_t) { acc = T(0); }
  C10_HOST_DEVICE Tile load(int64_t i) const {
    Tile t;
    t.x = ew::load_vec<scalar_t, V>(g, i);
    if constexpr (kDot) t.y = ew::load_vec<scalar_t, V>(gg, i);
    return t;
  }
  C10_HOST_DEVICE void add(scalar_t x, scalar_t y) {
    const T a = ew::to_op<T>(x);
    acc += a * (kDot ? ew::to_op<T>(y) : a);
  }
  C10_HOST_DEVICE void vec(const Tile& t, int64_t) {
    FASTGAN_UNROLL
    for (int j = 0; j < V; ++j) {
      if constexpr (kDot) {
        add(t.x.val[j], t.y.val[j]);
      } else {
        add(t.x.val[j], t.x.val[j]);
      }
    }
  }
  C10_HOST_DEVICE void one(int64_t i) { add(g[i], kDot ? gg[i] : g[i]); }
  __device__ void end(int64_t k) {
    const T s = ew::block_sum(acc);
    if (threadIdx.x == 0) partials[k] = s;
  }
};

// sumsq[b] = the S partials of sample b in order; penalty = weight * sum_b t_b / B.
// One block: thread t owns samples t, t + 256, ... (a fixed order for any B).
template <typename T>
__global__ void __launch_bounds__(ew::kThreads)
    forward_finalize_kernel(const T* __restrict__ partials, int64_t B, int S, PenaltyHyper<T> h,
                            T* __restrict__ sumsq, T* __restrict__ penalty) {
  T terms = T(0);
  for (int64_t b = threadIdx.x; b < B; b += ew::kThreads) {
    T s = T(0);
    for (int j = 0; j < S; ++j) s += partials[b * S + j];
    sumsq[b] = s;
    terms += penalty_term(s, h);
  }
  const T total = ew::block_sum(terms);
  // weight * sum / B in that order, as the reference (fastgan/ops/penalty.py) rounds it.
  if (threadIdx.x == 0) *penalty = h.weight * total / static_cast<T>(B);
}

// dot_b = the S partials in order; coef_b and q_b for the d_grad pass; and
// d_dout = 2w/B * sum_b r_b * dot_b.
template <typename T>
__global__ void __launch_bounds__(ew::kThreads)
    double_backward_finalize_kernel(const T* __restrict__ partials, const T* __restrict__ sumsq,
                                    const T* __restrict__ dout_ptr, int64_t B, int S,
                                    PenaltyHyper<T> h, T* __restrict__ coef, T* __restrict__ q,
                                    T* __restrict__ d_dout) {
  const T dout = *dout_ptr;
  T terms = T(0);
  for (int64_t b = threadIdx.x; b < B; b += ew::kThreads) {
    T dot = T(0);
    for (int j = 0; j < S; ++j) dot += partials[b * S + j];
    const T s = sumsq[b];
    const T r = penalty_ratio(s, h);
    coef[b] = dout * h.two_w_over_b * r;
    q[b] = penalty_curvature(s, dout, h) * dot;
    terms += r * dot;
  }
  const T total = ew::block_sum(terms);
  if (threadIdx.x == 0) *d_dout = h.two_w_over_b * total;
}

// ---- elementwise passes ---------------------------------------------------------------

// dgrad = coef_b * g, coef_b = dout * 2w/B * r_b computed once per block.
template <typename scalar_t>
struct BackwardPass {
  using T = ew::opmath_t<scalar_t>;
  static constexpr int V = ew::kVec<scalar_t>;
  using Tile = Vec<scalar_t, V>;

  const scalar_t* __restrict__ g;
  scalar_t* __restrict__ out;
  const T* __restrict__ sumsq;
  const T* __restrict__ dout;
  PenaltyHyper<T> h;
  T coef;

  C10_HOST_DEVICE void begin(int64_t b) {
    coef = *dout * h.two_w_over_b * penalty_ratio(sumsq[b], h);
  }
  C10_HOST_DEVICE Tile load(int64_t i) const { return ew::load_vec<scalar_t, V>(g, i); }
  C10_HOST_DEVICE scalar_t apply(scalar_t x) const {
    return static_cast<scalar_t>(coef * ew::to_op<T>(x));
  }
  C10_HOST_DEVICE void vec(const Tile& t, int64_t i) {
    Tile o;
    FASTGAN_UNROLL
    for (int j = 0; j < V; ++j) o.val[j] = apply(t.val[j]);
    ew::store_vec<scalar_t, V>(out, i, o);
  }
  C10_HOST_DEVICE void one(int64_t i) { out[i] = apply(g[i]); }
  C10_HOST_DEVICE void end(int64_t) {}
};

// d_grad = coef_b * ggrad + q_b * g. With center == 0 (R1) q_b is 0 and g is not read
// (!kCurv): one stream of reads fewer; it differs from the formula only where g is
// inf/NaN (0 * inf) or in the sign of a zero.
template <typename scalar_t, bool kCurv>
struct DoubleBackwardPass {
  using T = ew::opmath_t<scalar_t>;
  static constexpr int V = ew::kVec<scalar_t>;
  using Tile = OperandTile<scalar_t, V, kCurv>;  // x: ggrad, y: g

  const scalar_t* __restrict__ gg;
  const scalar_t* __restrict__ g;
  scalar_t* __restrict__ out;
  const T* __restrict__ coefs;
  const T* __restrict__ qs;
  T coef, q;

  C10_HOST_DEVICE void begin(int64_t b) {
    coef = coefs[b];
    q = kCurv ? qs[b] : T(0);
  }
  C10_HOST_DEVICE Tile load(int64_t i) const {
    Tile t;
    t.x = ew::load_vec<scalar_t, V>(gg, i);
    if constexpr (kCurv) t.y = ew::load_vec<scalar_t, V>(g, i);
    return t;
  }
  C10_HOST_DEVICE scalar_t apply(scalar_t y, scalar_t x) const {
    const T d = coef * ew::to_op<T>(y);
    if constexpr (kCurv) {
      return static_cast<scalar_t>(d + q * ew::to_op<T>(x));
    } else {
      return static_cast<scalar_t>(d);
    }
  }
  C10_HOST_DEVICE void vec(const Tile& t, int64_t i) {
    Vec<scalar_t, V> o;
    FASTGAN_UNROLL
    for (int j = 0; j < V; ++j) {
      if constexpr (kCurv) {
        o.val[j] = apply(t.x.val[j], t.y.val[j]);
      } else {
        o.val[j] = apply(t.x.val[j], t.x.val[j]);  // the second argument is unused
      }
    }
    ew::store_vec<scalar_t, V>(out, i, o);
  }
  C10_HOST_DEVICE void one(int64_t i) { out[i] = apply(gg[i], kCurv ? g[i] : gg[i]); }
  C10_HOST_DEVICE void end(int64_t) {}
};

// ---- launches ---------------------------------------------------------------------------

template <typename Op>
void launch_slices(const Op& op, int64_t B, const Slices& sl, cudaStream_t stream) {
  ew::slice_kernel<Op::V, Op><<<ew::slice_grid(B, sl), ew::kThreads, 0, stream>>>(op, sl);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

std::tuple<at::Tensor, at::Tensor> penalty_forward_cuda(const at::Tensor& grad, double weight,
                                                        double center, double eps) {
  constexpr const char* op = "penalty_forward";
  check_penalty_grad(op, grad, c10::DeviceType::CUDA);
  check_penalty_hyper(op, weight, center, eps);
  const c10::cuda::CUDAGuard guard(grad.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const int64_t B = grad.size(0);
  const int64_t M = grad.numel() / B;
  const auto opts = grad.options().dtype(compute_dtype(grad.scalar_type()));
  at::Tensor penalty = at::empty({}, opts);
  at::Tensor sumsq = at::empty({B}, opts);
  const int sms = ew::multiprocessor_count(grad.get_device());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), op, [&] {
    using T = ew::opmath_t<scalar_t>;
    const Slices sl = ew::plan_slices(B, M, sizeof(scalar_t), sms,
                                      ew::alignment_of(sizeof(scalar_t), {grad.data_ptr()}));
    at::Tensor partials = at::empty({B * sl.S}, opts);
    const auto* g = grad.const_data_ptr<scalar_t>();
    launch_slices(SlicePartial<scalar_t, false>{g, g, partials.mutable_data_ptr<T>(), T(0)}, B,
                  sl, stream);
    forward_finalize_kernel<T><<<1, ew::kThreads, 0, stream>>>(
        partials.const_data_ptr<T>(), B, sl.S, make_penalty_hyper<T>(weight, center, eps, B),
        sumsq.mutable_data_ptr<T>(), penalty.mutable_data_ptr<T>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {penalty, sumsq};
}

at::Tensor penalty_backward_cuda(const at::Tensor& grad, const at::Tensor& sumsq,
                                 const at::Tensor& dout, double weight, double center,
                                 double eps) {
  constexpr const char* op = "penalty_backward";
  check_penalty_grad(op, grad, c10::DeviceType::CUDA);
  check_penalty_hyper(op, weight, center, eps);
  const int64_t B = grad.size(0);
  check_companion(op, "sumsq", sumsq, grad, B);
  check_companion(op, "dout", dout, grad, 1);
  const c10::cuda::CUDAGuard guard(grad.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const int64_t M = grad.numel() / B;
  at::Tensor dgrad = at::empty_like(grad);  // grad is dense: same strides
  const int sms = ew::multiprocessor_count(grad.get_device());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), op, [&] {
    using T = ew::opmath_t<scalar_t>;
    const Slices sl = ew::plan_slices(
        B, M, sizeof(scalar_t), sms,
        ew::alignment_of(sizeof(scalar_t), {grad.data_ptr(), dgrad.data_ptr()}));
    launch_slices(BackwardPass<scalar_t>{grad.const_data_ptr<scalar_t>(),
                                         dgrad.mutable_data_ptr<scalar_t>(),
                                         sumsq.const_data_ptr<T>(), dout.const_data_ptr<T>(),
                                         make_penalty_hyper<T>(weight, center, eps, B), T(0)},
                  B, sl, stream);
  });
  return dgrad;
}

std::tuple<at::Tensor, at::Tensor> penalty_double_backward_cuda(
    const at::Tensor& grad, const at::Tensor& sumsq, const at::Tensor& dout,
    const at::Tensor& ggrad, double weight, double center, double eps) {
  constexpr const char* op = "penalty_double_backward";
  check_penalty_grad(op, grad, c10::DeviceType::CUDA);
  check_penalty_hyper(op, weight, center, eps);
  const int64_t B = grad.size(0);
  check_companion(op, "sumsq", sumsq, grad, B);
  check_companion(op, "dout", dout, grad, 1);
  check_same_walk(op, "ggrad", ggrad, grad, "grad");
  const c10::cuda::CUDAGuard guard(grad.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const int64_t M = grad.numel() / B;
  const auto opts = grad.options().dtype(compute_dtype(grad.scalar_type()));
  at::Tensor d_grad = at::empty_like(grad);
  at::Tensor d_dout = at::empty({}, opts);
  const int sms = ew::multiprocessor_count(grad.get_device());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), op, [&] {
    using T = ew::opmath_t<scalar_t>;
    const auto* g = grad.const_data_ptr<scalar_t>();
    const auto* gg = ggrad.const_data_ptr<scalar_t>();
    // One workspace: B x S partials, then coef (B), then q (B).
    const Slices red = ew::plan_slices(B, M, sizeof(scalar_t), sms,
                                       ew::alignment_of(sizeof(scalar_t), {g, gg}));
    at::Tensor work = at::empty({B * red.S + 2 * B}, opts);
    T* partials = work.mutable_data_ptr<T>();
    T* coef = partials + B * red.S;
    T* q = coef + B;
    const PenaltyHyper<T> h = make_penalty_hyper<T>(weight, center, eps, B);
    launch_slices(SlicePartial<scalar_t, true>{g, gg, partials, T(0)}, B, red, stream);
    double_backward_finalize_kernel<T><<<1, ew::kThreads, 0, stream>>>(
        partials, sumsq.const_data_ptr<T>(), dout.const_data_ptr<T>(), B, red.S, h, coef, q,
        d_dout.mutable_data_ptr<T>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    auto* out = d_grad.mutable_data_ptr<scalar_t>();
    if (center != 0.0) {
      const Slices sl = ew::plan_slices(B, M, sizeof(scalar_t), sms,
                                        ew::alignment_of(sizeof(scalar_t), {gg, g, out}));
      launch_slices(DoubleBackwardPass<scalar_t, true>{gg, g, out, coef, q, T(0), T(0)}, B, sl,
                    stream);
    } else {
      const Slices sl = ew::plan_slices(B, M, sizeof(scalar_t), sms,
                                        ew::alignment_of(sizeof(scalar_t), {gg, out}));
      launch_slices(DoubleBackwardPass<scalar_t, false>{gg, g, out, coef, q, T(0), T(0)}, B, sl,
                    stream);
    }
  });
  return {d_grad, d_dout};
}

}  // namespace
}  // namespace fastgan

TORCH_LIBRARY_IMPL(fastgan, CUDA, m) {
  m.impl("penalty_forward", &fastgan::penalty_forward_cuda);
  m.impl("penalty_backward", &fastgan::penalty_backward_cuda);
  m.impl("penalty_double_backward", &fastgan::penalty_double_backward_cuda);
}
