// BEGAN's losses and k_t update (Berthelot et al. 2017) on CUDA: began_loss and
// began_loss_backward (schemas and semantics: csrc/ops.cpp; checks and l1_sign:
// csrc/batch_norm_act.h).
//
// Both pairs (real, real_recon) and (fake, fake_recon) are walked in memory order, in one
// launch: blocks [0, S_r) take slices of the real pair, blocks [S_r, S_r + S_f) slices of
// the fake pair ("sample slices" of csrc/cuda/elementwise.cuh with one sample per pair,
// planned as two samples so that the grid is at most one wave; 16-byte vectors).
//   forward   partials[k] = sum |a - b| over block k's slice      (S_r + S_f blocks)
//             finalize: the partials of each pair in a fixed order (a per-thread sum,
//             then a shuffle tree), L_r, L_f, and the four outputs   (1 block)
//   backward  d_a = c * sign(a - b) / N, d_b = -d_a, c per pair      (S_r + S_f blocks)
// k, d_dloss and d_gloss are read by the kernels: nothing is read back to the host, so
// CUDA graphs can capture every launch.
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

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <tuple>

#include "../batch_norm_act.h"
#include "elementwise.cuh"

namespace fastgan {
namespace {

using ew::kThreads;
using ew::Slices;
using ew::Vec;

// Block k: slice k of pair 0 when k < p0.S, else slice k - p0.S of pair 1. op.begin(pair)
// points the op at that pair's tensors (and computes per-pair constants).
template <int V, typename Op>
__global__ void __launch_bounds__(kThreads, ew::kBlocksPerSM)
    pair_slices_kernel(Op op, const Slices p0, const Slices p1) {
  const int64_t k = blockIdx.x;
  const bool first = k < p0.S;
  // Field by field: a reference to either parameter struct put both on the stack (64 bytes).
  const int64_t len = first ? p0.len : p1.len;
  const int64_t M = first ? p0.M : p1.M;
  const ew::Alignment al{first ? p0.al.residue : p1.al.residue, first ? p0.al.vec_ok : p1.al.vec_ok};
  const int64_t start = (first ? k : k - p0.S) * len;
  const int64_t end = std::min(M, start + len);
  op.begin(first ? 0 : 1);
  ew::walk<V>(start, end, al, threadIdx.x, kThreads, op);
  op.end(k);
}

template <typename T>
C10_HOST_DEVICE inline T abs_diff(T a, T b) {
  const T d = a - b;
  return d < T(0) ? -d : d;  // NaN stays NaN
}

// partials[k] = sum |a - b| over block k's slice, in T.
template <typename scalar_t>
struct L1Partial {
  using T = ew::opmath_t<scalar_t>;
  static constexpr int V = ew::kVec<scalar_t>;
  struct Tile {
    Vec<scalar_t, V> a, b;
  };

  const scalar_t* real;
  const scalar_t* real_recon;
  const scalar_t* fake;
  const scalar_t* fake_recon;
  T* __restrict__ partials;
  const scalar_t* __restrict__ pa;  // this block's pair
  const scalar_t* __restrict__ pb;
  T acc;

  C10_HOST_DEVICE void begin(int pair) {
    pa = pair == 0 ? real : fake;
    pb = pair == 0 ? real_recon : fake_recon;
    acc = T(0);
  }
  C10_HOST_DEVICE Tile load(int64_t i) const {
    return Tile{ew::load_vec<scalar_t, V>(pa, i), ew::load_vec<scalar_t, V>(pb, i)};
  }
  C10_HOST_DEVICE void vec(const Tile& t, int64_t) {
    FASTGAN_UNROLL
    for (int j = 0; j < V; ++j) acc += abs_diff(ew::to_op<T>(t.a.val[j]), ew::to_op<T>(t.b.val[j]));
  }
  C10_HOST_DEVICE void one(int64_t i) { acc += abs_diff(ew::to_op<T>(pa[i]), ew::to_op<T>(pb[i])); }
  __device__ void end(int64_t k) {
    const T s = ew::block_sum(acc);
    if (threadIdx.x == 0) partials[k] = s;
  }
};

template <typename T>
struct LossFinalize {
  const T* partials;  // S_r, then S_f
  int s_real, s_fake;
  T n_real, n_fake;
  const void* k;
  ew::FloatDtype k_dtype;
  T gamma, lambda_k;
  T* d_loss;
  T* g_loss;
  T* k_next;
  T* convergence;
  T* l_real;
  T* l_fake;
};

template <typename T>
__global__ void __launch_bounds__(kThreads) loss_finalize_kernel(const LossFinalize<T> f) {
  const int t = static_cast<int>(threadIdx.x);
  T a = T(0);
  for (int s = t; s < f.s_real; s += kThreads) a += f.partials[s];
  const T sum_real = ew::block_sum(a);
  __syncthreads();  // block_sum's shared memory is used again
  T b = T(0);
  for (int s = t; s < f.s_fake; s += kThreads) b += f.partials[f.s_real + s];
  const T sum_fake = ew::block_sum(b);
  if (t != 0) return;
  const T lr = sum_real / f.n_real;
  const T lf = sum_fake / f.n_fake;
  const T kt = ew::load_float<T>(f.k, 0, f.k_dtype);
  const T balance = f.gamma * lr - lf;
  const T kn = kt + f.lambda_k * balance;
  *f.d_loss = lr - kt * lf;
  *f.g_loss = lf;
  *f.k_next = kn < T(0) ? T(0) : (kn > T(1) ? T(1) : kn);  // clamp(kn, 0, 1); NaN stays NaN
  *f.convergence = lr + (balance < T(0) ? -balance : balance);
  *f.l_real = lr;
  *f.l_fake = lf;
}

// d_a = sign(a - b) * coef, d_b = -d_a; coef = c / N per pair (c_r = d_dloss,
// c_f = d_gloss - k * d_dloss), computed once per block. sign * (c / N) is c * sign / N
// bit for bit (sign is -1, 0 or 1, and IEEE division is symmetric in sign).
template <typename scalar_t>
struct L1Backward {
  using T = ew::opmath_t<scalar_t>;
  static constexpr int V = ew::kVec<scalar_t>;
  struct Tile {
    Vec<scalar_t, V> a, b;
  };

  const scalar_t* real;
  const scalar_t* real_recon;
  const scalar_t* fake;
  const scalar_t* fake_recon;
  scalar_t* d_real;
  scalar_t* d_real_recon;
  scalar_t* d_fake;
  scalar_t* d_fake_recon;
  const T* d_dloss;
  const T* d_gloss;
  const void* k;
  ew::FloatDtype k_dtype;
  T n_real, n_fake;
  const scalar_t* __restrict__ pa;  // this block's pair
  const scalar_t* __restrict__ pb;
  scalar_t* __restrict__ pda;
  scalar_t* __restrict__ pdb;
  T coef;

  C10_HOST_DEVICE void begin(int pair) {
    const T dd = *d_dloss;
    if (pair == 0) {
      pa = real;
      pb = real_recon;
      pda = d_real;
      pdb = d_real_recon;
      coef = dd / n_real;
    } else {
      pa = fake;
      pb = fake_recon;
      pda = d_fake;
      pdb = d_fake_recon;
      coef = (*d_gloss - ew::load_float<T>(k, 0, k_dtype) * dd) / n_fake;
    }
  }
  C10_HOST_DEVICE Tile load(int64_t i) const {
    return Tile{ew::load_vec<scalar_t, V>(pa, i), ew::load_vec<scalar_t, V>(pb, i)};
  }
  C10_HOST_DEVICE T grad(scalar_t a, scalar_t b) const {
    return l1_sign(ew::to_op<T>(a), ew::to_op<T>(b)) * coef;
  }
  C10_HOST_DEVICE void vec(const Tile& t, int64_t i) {
    Vec<scalar_t, V> da, db;
    FASTGAN_UNROLL
    for (int j = 0; j < V; ++j) {
      const T d = grad(t.a.val[j], t.b.val[j]);
      da.val[j] = static_cast<scalar_t>(d);
      db.val[j] = static_cast<scalar_t>(-d);
    }
    ew::store_vec<scalar_t, V>(pda, i, da);
    ew::store_vec<scalar_t, V>(pdb, i, db);
  }
  C10_HOST_DEVICE void one(int64_t i) {
    const T d = grad(pa[i], pb[i]);
    pda[i] = static_cast<scalar_t>(d);
    pdb[i] = static_cast<scalar_t>(-d);
  }
  C10_HOST_DEVICE void end(int64_t) {}
};

template <typename Op>
void launch_pairs(const Op& op, const Slices& p0, const Slices& p1, cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>(int64_t{p0.S} + p1.S);
  pair_slices_kernel<Op::V, Op><<<blocks, kThreads, 0, stream>>>(op, p0, p1);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Each pair planned as one of two samples: S_r + S_f <= 4 x SMs (one wave).
template <typename scalar_t>
Slices plan_pair(int64_t M, std::initializer_list<const void*> ptrs, int sms) {
  return ew::plan_slices(2, M, sizeof(scalar_t), sms, ew::alignment_of(sizeof(scalar_t), ptrs));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> began_loss_cuda(
    const at::Tensor& real, const at::Tensor& real_recon, const at::Tensor& fake,
    const at::Tensor& fake_recon, const at::Tensor& k, double gamma, double lambda_k) {
  check_began_loss(real, real_recon, fake, fake_recon, k, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(real.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const auto opts = real.options().dtype(compute_dtype(real.scalar_type()));
  at::Tensor outs[6];
  for (auto& o : outs) o = at::empty({}, opts);
  const int sms = ew::multiprocessor_count(real.get_device());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, real.scalar_type(), "began_loss", [&] {
    using T = ew::opmath_t<scalar_t>;
    const auto* r = real.const_data_ptr<scalar_t>();
    const auto* rr = real_recon.const_data_ptr<scalar_t>();
    const auto* f = fake.const_data_ptr<scalar_t>();
    const auto* fr = fake_recon.const_data_ptr<scalar_t>();
    const Slices p0 = plan_pair<scalar_t>(real.numel(), {r, rr}, sms);
    const Slices p1 = plan_pair<scalar_t>(fake.numel(), {f, fr}, sms);
    at::Tensor partials = at::empty({int64_t{p0.S} + p1.S}, opts);
    T* pp = partials.mutable_data_ptr<T>();
    launch_pairs(L1Partial<scalar_t>{r, rr, f, fr, pp, nullptr, nullptr, T(0)}, p0, p1, stream);
    LossFinalize<T> fin{};
    fin.partials = pp;
    fin.s_real = p0.S;
    fin.s_fake = p1.S;
    fin.n_real = static_cast<T>(real.numel());
    fin.n_fake = static_cast<T>(fake.numel());
    fin.k = k.const_data_ptr();
    fin.k_dtype = ew::float_dtype(k.scalar_type());
    fin.gamma = static_cast<T>(gamma);
    fin.lambda_k = static_cast<T>(lambda_k);
    T* o[6];
    for (int i = 0; i < 6; ++i) o[i] = outs[i].mutable_data_ptr<T>();
    fin.d_loss = o[0];
    fin.g_loss = o[1];
    fin.k_next = o[2];
    fin.convergence = o[3];
    fin.l_real = o[4];
    fin.l_fake = o[5];
    loss_finalize_kernel<T><<<1, kThreads, 0, stream>>>(fin);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {outs[0], outs[1], outs[2], outs[3], outs[4], outs[5]};
}

void check_loss_grad(const char* name, const at::Tensor& g, const at::Tensor& real) {
  const auto t = compute_dtype(real.scalar_type());
  TORCH_CHECK(g.defined() && g.numel() == 1 && g.scalar_type() == t && g.device() == real.device(),
              "began_loss_backward: ", name, " must be a 1-element ", t, " tensor on ",
              real.device());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> began_loss_backward_cuda(
    const at::Tensor& real, const at::Tensor& real_recon, const at::Tensor& fake,
    const at::Tensor& fake_recon, const at::Tensor& k, const at::Tensor& d_dloss,
    const at::Tensor& d_gloss) {
  check_began_loss(real, real_recon, fake, fake_recon, k, c10::DeviceType::CUDA);
  check_loss_grad("d_dloss", d_dloss, real);
  check_loss_grad("d_gloss", d_gloss, real);
  const c10::cuda::CUDAGuard guard(real.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  at::Tensor d_real = at::empty_like(real);  // dense inputs: same strides
  at::Tensor d_real_recon = at::empty_like(real_recon);
  at::Tensor d_fake = at::empty_like(fake);
  at::Tensor d_fake_recon = at::empty_like(fake_recon);
  const int sms = ew::multiprocessor_count(real.get_device());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, real.scalar_type(),
                                  "began_loss_backward", [&] {
    using T = ew::opmath_t<scalar_t>;
    const auto* r = real.const_data_ptr<scalar_t>();
    const auto* rr = real_recon.const_data_ptr<scalar_t>();
    const auto* f = fake.const_data_ptr<scalar_t>();
    const auto* fr = fake_recon.const_data_ptr<scalar_t>();
    auto* dr = d_real.mutable_data_ptr<scalar_t>();
    auto* drr = d_real_recon.mutable_data_ptr<scalar_t>();
    auto* df = d_fake.mutable_data_ptr<scalar_t>();
    auto* dfr = d_fake_recon.mutable_data_ptr<scalar_t>();
    const Slices p0 = plan_pair<scalar_t>(real.numel(), {r, rr, dr, drr}, sms);
    const Slices p1 = plan_pair<scalar_t>(fake.numel(), {f, fr, df, dfr}, sms);
    launch_pairs(L1Backward<scalar_t>{r, rr, f, fr, dr, drr, df, dfr,
                                      d_dloss.const_data_ptr<T>(), d_gloss.const_data_ptr<T>(),
                                      k.const_data_ptr(), ew::float_dtype(k.scalar_type()),
                                      static_cast<T>(real.numel()), static_cast<T>(fake.numel()),
                                      nullptr, nullptr, nullptr, nullptr, T(0)},
                 p0, p1, stream);
  });
  return {d_real, d_real_recon, d_fake, d_fake_recon};
}

}  // namespace
}  // namespace fastgan

TORCH_LIBRARY_IMPL(fastgan, CUDA, m) {
  m.impl("began_loss", &fastgan::began_loss_cuda);
  m.impl("began_loss_backward", &fastgan::began_loss_backward_cuda);
}
