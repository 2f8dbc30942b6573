// The gradient penalty on CPU tensors: the C++ backend of fastgan.ops.penalty_from_grad
// (penalty_forward, penalty_backward, penalty_double_backward; the formulas are
// csrc/penalty_math.h, shared with the CUDA kernels).
//
// Every sample of grad is one contiguous range of M = numel / B elements (penalty.h), cut
// into slices of kSlice elements; a (sample, slice) pair is one task of at::parallel_for.
// The reductions (s_b = sum g^2, dot_b = <ggrad_b, g_b>) keep one partial per task and add
// a sample's partials in slice order afterwards, so their bits depend on kSlice alone,
// never on the number of threads. The loops are penalty_loop.h, run from its best build
// for the CPU (csrc/cpu/isa.h). AVX2+FMA against the baseline, on 786K cached elements,
// one thread of the dev host: bfloat16 scale 286 -> 127 us and float16 1036 -> 493 us (the 16-bit conversions);
// float32 and float64 run at memory speed in both builds (sum of squares 32 / 68 us).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "../penalty.h"
#include "penalty_loop.h"

namespace fastgan {
namespace {

// 64 KiB of float32 per task: a DCGAN 64x64 RGB sample (12,288 elements) is one slice; a
// larger one (batch 1, 256x256) still spreads over all threads.
constexpr int64_t kSlice = 16384;
// Below this many elements per thread one thread does it all (an OpenMP region costs ~us).
constexpr int64_t kMinPerThread = 32768;

struct Split {
  int64_t batch, m, slices;  // B, M = numel / B, slices per sample

  int64_t tasks() const { return batch * slices; }
  int64_t sample(int64_t k) const { return k / slices; }
  int64_t begin(int64_t k) const { return sample(k) * m + (k % slices) * kSlice; }
  int64_t size(int64_t k) const { return std::min(kSlice, m - (k % slices) * kSlice); }
  int64_t grain() const { return std::max<int64_t>(1, kMinPerThread / std::min(m, kSlice)); }
};

Split split_of(const at::Tensor& grad) {
  const int64_t batch = grad.size(0), m = grad.numel() / batch;
  return {batch, m, (m + kSlice - 1) / kSlice};
}

template <typename D>
PenaltyLoops loops_for() {
  return FASTGAN_PICK_ISA(&penalty_loops<D>, &penalty_loops_avx2<D>, &penalty_loops_avx512<D>)();
}

// Per-sample sums of reduce(first element, count) over the tasks, deterministic.
template <typename T, typename Reduce>
std::vector<T> per_sample_sums(const Split& sp, const Reduce& reduce) {
  std::vector<T> partial(sp.tasks());
  at::parallel_for(0, sp.tasks(), sp.grain(), [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) partial[k] = static_cast<T>(reduce(sp.begin(k), sp.size(k)));
  });
  std::vector<T> sums(sp.batch);
  for (int64_t b = 0; b < sp.batch; ++b) {
    T s = partial[b * sp.slices];
    for (int64_t j = 1; j < sp.slices; ++j) s += partial[b * sp.slices + j];
    sums[b] = s;
  }
  return sums;
}

// f(first element, count, sample) over every task, in parallel.
template <typename F>
void for_each_task(const Split& sp, const F& f) {
  at::parallel_for(0, sp.tasks(), sp.grain(), [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) f(sp.begin(k), sp.size(k), sp.sample(k));
  });
}

void check_saved(const char* op, const at::Tensor& grad, const at::Tensor& sumsq,
                 const at::Tensor& dout, double weight, double center, double eps) {
  check_penalty_grad(op, grad, c10::DeviceType::CPU);
  check_penalty_hyper(op, weight, center, eps);
  check_companion(op, "sumsq", sumsq, grad, grad.size(0));
  check_companion(op, "dout", dout, grad, 1);
}

std::tuple<at::Tensor, at::Tensor> penalty_forward_cpu(const at::Tensor& grad, double weight,
                                                       double center, double eps) {
  constexpr const char* op = "penalty_forward";
  check_penalty_grad(op, grad, c10::DeviceType::CPU);
  check_penalty_hyper(op, weight, center, eps);
  const Split sp = split_of(grad);
  const auto opts = grad.options().dtype(compute_dtype(grad.scalar_type()));
  at::Tensor penalty = at::empty({}, opts), sumsq = at::empty({sp.batch}, opts);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), op, [&] {
    using D = elem_of<scalar_t, c10::Half, c10::BFloat16>;
    using T = typename Elem<D>::T;
    const PenaltyLoops loops = loops_for<D>();
    const auto* g = static_cast<const scalar_t*>(grad.data_ptr());
    const auto s = per_sample_sums<T>(sp, [&](int64_t i, int64_t n) { return loops.sum_squares(g + i, n); });
    const auto h = make_penalty_hyper<T>(weight, center, eps, sp.batch);
    T* out = sumsq.data_ptr<T>();
    double total = 0;  // a float32 running sum over a large batch drifts (4.7e-4 at 1e6 samples)
    for (int64_t b = 0; b < sp.batch; ++b) {
      out[b] = s[b];
      total += static_cast<double>(penalty_term(s[b], h));
    }
    // weight * sum / B in that order, as the reference (fastgan/ops/penalty.py) rounds it.
    *penalty.data_ptr<T>() = h.weight * static_cast<T>(total) / static_cast<T>(sp.batch);
  });
  return {penalty, sumsq};
}

at::Tensor penalty_backward_cpu(const at::Tensor& grad, const at::Tensor& sumsq,
                                const at::Tensor& dout, double weight, double center, double eps) {
  constexpr const char* op = "penalty_backward";
  check_saved(op, grad, sumsq, dout, weight, center, eps);
  const Split sp = split_of(grad);
  at::Tensor dgrad = at::empty_like(grad);  // grad's strides: the walk is the same
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), op, [&] {
    using D = elem_of<scalar_t, c10::Half, c10::BFloat16>;
    using T = typename Elem<D>::T;
    const PenaltyLoops loops = loops_for<D>();
    const auto h = make_penalty_hyper<T>(weight, center, eps, sp.batch);
    const T d = *dout.data_ptr<T>();
    const T* s = sumsq.data_ptr<T>();
    std::vector<T> coef(sp.batch);
    for (int64_t b = 0; b < sp.batch; ++b) coef[b] = d * h.two_w_over_b * penalty_ratio(s[b], h);
    const auto* g = static_cast<const scalar_t*>(grad.data_ptr());
    auto* out = static_cast<scalar_t*>(dgrad.data_ptr());
    for_each_task(sp, [&](int64_t i, int64_t n, int64_t b) { loops.scale(g + i, out + i, coef[b], n); });
  });
  return dgrad;
}

std::tuple<at::Tensor, at::Tensor> penalty_double_backward_cpu(
    const at::Tensor& grad, const at::Tensor& sumsq, const at::Tensor& dout,
    const at::Tensor& ggrad, double weight, double center, double eps) {
  constexpr const char* op = "penalty_double_backward";
  check_saved(op, grad, sumsq, dout, weight, center, eps);
  check_same_walk(op, "ggrad", ggrad, grad, "grad");
  const Split sp = split_of(grad);
  at::Tensor d_grad = at::empty_like(grad);
  at::Tensor d_dout = at::empty({}, sumsq.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), op, [&] {
    using D = elem_of<scalar_t, c10::Half, c10::BFloat16>;
    using T = typename Elem<D>::T;
    const PenaltyLoops loops = loops_for<D>();
    const auto* g = static_cast<const scalar_t*>(grad.data_ptr());
    const auto* gg = static_cast<const scalar_t*>(ggrad.data_ptr());
    auto* out = static_cast<scalar_t*>(d_grad.data_ptr());
    const auto dot = per_sample_sums<T>(sp, [&](int64_t i, int64_t n) { return loops.dot(gg + i, g + i, n); });
    const auto h = make_penalty_hyper<T>(weight, center, eps, sp.batch);
    const T d = *dout.data_ptr<T>();
    const T* s = sumsq.data_ptr<T>();
    std::vector<T> coef(sp.batch), q(sp.batch);
    double sum_r_dot = 0;  // over the batch in double, as the forward's total
    for (int64_t b = 0; b < sp.batch; ++b) {
      const T r = penalty_ratio(s[b], h);
      coef[b] = d * h.two_w_over_b * r;
      q[b] = penalty_curvature(s[b], d, h) * dot[b];
      sum_r_dot += static_cast<double>(r * dot[b]);
    }
    *d_dout.data_ptr<T>() = h.two_w_over_b * static_cast<T>(sum_r_dot);
    if (h.center == T(0)) {  // q_b = 0: d_grad = coef_b * ggrad, as autograd of s_b gives it
      for_each_task(sp, [&](int64_t i, int64_t n, int64_t b) { loops.scale(gg + i, out + i, coef[b], n); });
    } else {
      for_each_task(sp, [&](int64_t i, int64_t n, int64_t b) {
        loops.scale_add(gg + i, g + i, out + i, coef[b], q[b], n);
      });
    }
  });
  return {d_grad, d_dout};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("penalty_forward", &penalty_forward_cpu);
  m.impl("penalty_backward", &penalty_backward_cpu);
  m.impl("penalty_double_backward", &penalty_double_backward_cpu);
}

}  // namespace fastgan
