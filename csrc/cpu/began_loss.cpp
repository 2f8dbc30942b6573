// BEGAN's losses and k_t update on CPU tensors: the C++ backend of began_loss and
// began_loss_backward (schemas and semantics: csrc/ops.cpp; l1_sign:
// csrc/batch_norm_act_math.h).
//
// Both pairs are dense with matching strides, so each is walked linearly from data_ptr.
// The sums |a - b| are cut into slices of kSlice elements, one partial per slice (lane sums
// of began_loss_loop.h), added in slice order: the bits depend on kSlice alone, never on
// the number of threads. The finalize step is a few scalar operations in T.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

#include "../batch_norm_act.h"
#include "began_loss_loop.h"

namespace fastgan {
namespace {

// 64 KiB of float32 per slice; below kMinPerThread elements per thread, one thread.
constexpr int64_t kSlice = 16384;
constexpr int64_t kMinPerThread = 32768;

template <typename D>
BeganLoops loops_for() {
  return FASTGAN_PICK_ISA(&began_loops<D>, &began_loops_avx2<D>, &began_loops_avx512<D>)();
}

// The value of a 1-element floating tensor (k, d_dloss, d_gloss) in T.
template <typename T>
T scalar_of(const at::Tensor& t) {
  const at::Tensor v = t.to(c10::CppTypeToScalarType<T>::value).contiguous();
  return v.data_ptr<T>()[0];
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> began_loss_cpu(
    const at::Tensor& real, const at::Tensor& real_recon, const at::Tensor& fake,
    const at::Tensor& fake_recon, const at::Tensor& k, double gamma, double lambda_k) {
  check_began_loss(real, real_recon, fake, fake_recon, k, c10::DeviceType::CPU);
  const auto opts = real.options().dtype(compute_dtype(real.scalar_type()));
  at::Tensor out[6];
  for (auto& t : out) t = at::empty({}, opts);
  const int64_t nr = real.numel(), nf = fake.numel();
  const int64_t sr = (nr + kSlice - 1) / kSlice, sf = (nf + kSlice - 1) / kSlice;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, real.scalar_type(), "began_loss", [&] {
    using D = elem_of<scalar_t, c10::Half, c10::BFloat16>;
    using T = typename Elem<D>::T;
    const BeganLoops loops = loops_for<D>();
    const scalar_t* a[2] = {static_cast<const scalar_t*>(real.data_ptr()),
                        static_cast<const scalar_t*>(fake.data_ptr())};
    const scalar_t* b[2] = {static_cast<const scalar_t*>(real_recon.data_ptr()),
                        static_cast<const scalar_t*>(fake_recon.data_ptr())};
    const int64_t numel[2] = {nr, nf};
    // Slices 0 .. sr - 1 of the real pair, then sf of the fake pair.
    std::vector<T> partial(sr + sf);
    const int64_t grain = std::max<int64_t>(1, kMinPerThread / kSlice);
    at::parallel_for(0, sr + sf, grain, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j) {
        const int p = j < sr ? 0 : 1;
        const int64_t i = (j - (p == 0 ? 0 : sr)) * kSlice;
        partial[j] = static_cast<T>(loops.abs_diff_sum(a[p] + i, b[p] + i, std::min(kSlice, numel[p] - i)));
      }
    });
    T sum_r = partial[0], sum_f = partial[sr];
    for (int64_t j = 1; j < sr; ++j) sum_r += partial[j];
    for (int64_t j = sr + 1; j < sr + sf; ++j) sum_f += partial[j];
    const T l_real = sum_r / static_cast<T>(nr), l_fake = sum_f / static_cast<T>(nf);
    const T kt = scalar_of<T>(k), g = static_cast<T>(gamma), lk = static_cast<T>(lambda_k);
    const T balance = g * l_real - l_fake;
    // clamp as max then min: NaN stays NaN (torch.clamp)
    const T k_next = std::min(std::max(kt + lk * balance, T(0)), T(1));
    const T values[6] = {l_real - kt * l_fake, l_fake, k_next, l_real + std::abs(balance), l_real, l_fake};
    for (int q = 0; q < 6; ++q) *out[q].data_ptr<T>() = values[q];
  });
  return {out[0], out[1], out[2], out[3], out[4], out[5]};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> began_loss_backward_cpu(
    const at::Tensor& real, const at::Tensor& real_recon, const at::Tensor& fake,
    const at::Tensor& fake_recon, const at::Tensor& k, const at::Tensor& d_dloss,
    const at::Tensor& d_gloss) {
  constexpr const char* op = "began_loss_backward";
  check_began_loss(real, real_recon, fake, fake_recon, k, c10::DeviceType::CPU);
  const auto t = compute_dtype(real.scalar_type());
  for (const auto& [name, v] : {std::pair<const char*, const at::Tensor*>{"d_dloss", &d_dloss},
                                {"d_gloss", &d_gloss}}) {
    TORCH_CHECK(v->defined() && v->numel() == 1 && v->scalar_type() == t && v->device() == real.device(),
                op, ": ", name, " must be a 1-element ", t, " tensor on ", real.device());
  }
  at::Tensor d_real = at::empty_like(real), d_real_recon = at::empty_like(real_recon),
             d_fake = at::empty_like(fake), d_fake_recon = at::empty_like(fake_recon);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, real.scalar_type(), op, [&] {
    using D = elem_of<scalar_t, c10::Half, c10::BFloat16>;
    using T = typename Elem<D>::T;
    const BeganLoops loops = loops_for<D>();
    const T kt = scalar_of<T>(k), dd = scalar_of<T>(d_dloss), dg = scalar_of<T>(d_gloss);
    const T c_r = dd, c_f = dg - kt * dd;
    // l1_sign * (c / N) == c * l1_sign / N bit for bit (l1_sign is -1, 0 or 1).
    const T q[2] = {c_r / static_cast<T>(real.numel()), c_f / static_cast<T>(fake.numel())};
    const at::Tensor* ins[2][2] = {{&real, &real_recon}, {&fake, &fake_recon}};
    at::Tensor* outs[2][2] = {{&d_real, &d_real_recon}, {&d_fake, &d_fake_recon}};
    for (int p = 0; p < 2; ++p) {
      const auto* a = static_cast<const scalar_t*>(ins[p][0]->data_ptr());
      const auto* b = static_cast<const scalar_t*>(ins[p][1]->data_ptr());
      auto* da = static_cast<scalar_t*>(outs[p][0]->data_ptr());
      auto* db = static_cast<scalar_t*>(outs[p][1]->data_ptr());
      at::parallel_for(0, ins[p][0]->numel(), kMinPerThread, [&](int64_t begin, int64_t end) {
        loops.sign_scale(a + begin, b + begin, da + begin, db + begin, q[p], end - begin);
      });
    }
  });
  return {d_real, d_real_recon, d_fake, d_fake_recon};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("began_loss", &began_loss_cpu);
  m.impl("began_loss_backward", &began_loss_backward_cpu);
}

}  // namespace fastgan
