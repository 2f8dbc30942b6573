// The penalty's sample construction on CUDA, random numbers drawn on the device from
// Philox4x32-10 keyed by a seed tensor (csrc/philox.h, the same words on every backend):
//   interpolate  x = fma(eps_b, real - fake, fake), eps_b from counter b
//                (WGAN-GP, Gulrajani et al. 2017: points between real and fake samples)
//   perturb      x = clamp(fma(u_i, scale, real_i), lo, hi), u_i word i % 4 of counter i / 4
//                (DRAGAN, Kodali et al. 2017: noise around the real samples)
// The seed and scale are read by the kernels, never by the host, so a CUDA graph replays
// with a fresh seed written into the same tensor.
//
// interpolate runs on the sample-slices grid (csrc/cuda/elementwise.cuh): every block
// lies inside one sample, so eps_b is one Philox call per thread, not one per element.
// perturb gives each thread whole counters: one Philox call (~60 integer instructions)
// yields the four words of four consecutive elements, one 16-byte fp32 vector.
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

#include "../penalty.h"
#include "../philox.h"
#include "elementwise.cuh"

namespace fastgan {
namespace {

using ew::Vec;

template <typename scalar_t>
struct InterpolateOp {
  using T = ew::opmath_t<scalar_t>;
  static constexpr int V = ew::kVec<scalar_t>;
  struct Tile {
    Vec<scalar_t, V> r, f;
  };

  const scalar_t* __restrict__ real;
  const scalar_t* __restrict__ fake;
  scalar_t* __restrict__ out;
  const int64_t* __restrict__ seed;
  T eps;

  C10_HOST_DEVICE void begin(int64_t b) {
    eps = static_cast<T>(uniform_from_word(philox_words(*seed, static_cast<uint64_t>(b)).w[0]));
  }
  C10_HOST_DEVICE scalar_t mix(scalar_t r, scalar_t f) const {
    const T ft = ew::to_op<T>(f);
    const T d = ew::to_op<T>(r) - ft;  // rounded to T before the fma, as the formula says
    return static_cast<scalar_t>(ew::fma_rn(eps, d, ft));
  }
  C10_HOST_DEVICE Tile load(int64_t i) const {
    return Tile{ew::load_vec<scalar_t, V>(real, i), ew::load_vec<scalar_t, V>(fake, i)};
  }
  C10_HOST_DEVICE void vec(const Tile& t, int64_t i) {
    Vec<scalar_t, V> o;
    FASTGAN_UNROLL
    for (int j = 0; j < V; ++j) o.val[j] = mix(t.r.val[j], t.f.val[j]);
    ew::store_vec<scalar_t, V>(out, i, o);
  }
  C10_HOST_DEVICE void one(int64_t i) { out[i] = mix(real[i], fake[i]); }
  C10_HOST_DEVICE void end(int64_t) {}
};

template <typename T, typename scalar_t>
C10_HOST_DEVICE inline scalar_t perturb_one(scalar_t x, uint32_t word, T scale, T lo, T hi) {
  const T v = ew::fma_rn(static_cast<T>(uniform_from_word(word)), scale, ew::to_op<T>(x));
  return static_cast<scalar_t>(v < lo ? lo : (v > hi ? hi : v));  // NaN passes through
}

template <typename scalar_t>
struct PerturbArgs {
  using T = ew::opmath_t<scalar_t>;
  const scalar_t* __restrict__ real;
  scalar_t* __restrict__ out;
  int64_t n;
  const float* __restrict__ scale;  // on the device, read by the kernel
  const int64_t* __restrict__ seed;
  T lo, hi;
  bool vec_ok;  // real and out both 16-byte aligned
};

// Thread `rank` of `ranks` (a host-device function, so that a CPU emulation can check
// the index math). Items of G elements are whole 16-byte vectors (W of them) and whole
// counters (C of them): fp32 one vector = one counter, fp16/bf16 one vector = two, fp64
// two vectors = one. With vec_ok, item k starts a vector at element k * G, a multiple of
// 4 (counters are element offsets / 4, whatever the address). Elements past the last
// whole item, and all of them without vec_ok, go counter by counter.
template <typename scalar_t>
C10_HOST_DEVICE inline void perturb_thread(const PerturbArgs<scalar_t>& a, int64_t rank,
                                           int64_t ranks) {
  using T = ew::opmath_t<scalar_t>;
  constexpr int V = ew::kVec<scalar_t>;
  constexpr int G = V > 4 ? V : 4;
  constexpr int W = G / V;
  constexpr int C = G / 4;
  constexpr int U = ew::kLoadBytes / (16 * W);  // items whose loads a thread issues at once
  const T scale = static_cast<T>(*a.scale);
  const int64_t seed = *a.seed;

  int64_t done = 0;  // elements covered by whole items
  if (a.vec_ok) {
    const int64_t items = a.n / G;
    for (int64_t first = rank; first < items; first += ranks * U) {
      Vec<scalar_t, V> t[U][W];
      FASTGAN_UNROLL
      for (int u = 0; u < U; ++u) {
        const int64_t k = first + u * ranks;
        if (k < items) {
          FASTGAN_UNROLL
          for (int w = 0; w < W; ++w) t[u][w] = ew::load_vec<scalar_t, V>(a.real, k * G + w * V);
        }
      }
      FASTGAN_UNROLL
      for (int u = 0; u < U; ++u) {
        const int64_t k = first + u * ranks;
        if (k < items) {
          FASTGAN_UNROLL
          for (int c = 0; c < C; ++c) {
            const Philox4 words = philox_words(seed, static_cast<uint64_t>(k * C + c));
            FASTGAN_UNROLL
            for (int e = 0; e < 4; ++e) {
              scalar_t& x = t[u][(c * 4 + e) / V].val[(c * 4 + e) % V];
              x = perturb_one<T>(x, words.w[e], scale, a.lo, a.hi);
            }
          }
          FASTGAN_UNROLL
          for (int w = 0; w < W; ++w) ew::store_vec<scalar_t, V>(a.out, k * G + w * V, t[u][w]);
        }
      }
    }
    done = items * G;
  }
  const int64_t counters = ew::ceil_div(a.n, 4);
  for (int64_t k = done / 4 + rank; k < counters; k += ranks) {
    const Philox4 words = philox_words(seed, static_cast<uint64_t>(k));
    FASTGAN_UNROLL
    for (int e = 0; e < 4; ++e) {
      const int64_t i = k * 4 + e;
      if (i < a.n) a.out[i] = perturb_one<T>(a.real[i], words.w[e], scale, a.lo, a.hi);
    }
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(ew::kThreads, ew::kBlocksPerSM)
    perturb_kernel(const PerturbArgs<scalar_t> a) {
  perturb_thread(a, int64_t{blockIdx.x} * ew::kThreads + threadIdx.x,
                 int64_t{gridDim.x} * ew::kThreads);
}

at::Tensor interpolate_cuda(const at::Tensor& real, const at::Tensor& fake,
                            const at::Tensor& seed) {
  check_interpolate(real, fake, seed, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(real.device());
  at::Tensor x = at::empty_like(real);  // real is dense: same strides
  const int64_t n = real.numel();
  if (n == 0) return x;
  const int64_t B = real.size(0);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, real.scalar_type(), "interpolate", [&] {
    using Op = InterpolateOp<scalar_t>;
    const auto* r = real.const_data_ptr<scalar_t>();
    const auto* f = fake.const_data_ptr<scalar_t>();
    auto* o = x.mutable_data_ptr<scalar_t>();
    const ew::Slices sl = ew::plan_slices(B, n / B, sizeof(scalar_t),
                                          ew::multiprocessor_count(real.get_device()),
                                          ew::alignment_of(sizeof(scalar_t), {r, f, o}));
    ew::slice_kernel<Op::V, Op>
        <<<ew::slice_grid(B, sl), ew::kThreads, 0, c10::cuda::getCurrentCUDAStream().stream()>>>(
            Op{r, f, o, seed.const_data_ptr<int64_t>(), 0}, sl);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return x;
}

at::Tensor perturb_cuda(const at::Tensor& real, const at::Tensor& scale, const at::Tensor& seed,
                        double lo, double hi) {
  check_perturb(real, scale, seed, lo, hi, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(real.device());
  at::Tensor x = at::empty_like(real);
  const int64_t n = real.numel();
  if (n == 0) return x;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, real.scalar_type(), "perturb", [&] {
    using T = ew::opmath_t<scalar_t>;
    const auto* r = real.const_data_ptr<scalar_t>();
    auto* o = x.mutable_data_ptr<scalar_t>();
    const ew::Alignment al = ew::alignment_of(sizeof(scalar_t), {r, o});
    const PerturbArgs<scalar_t> args{r, o, n, scale.const_data_ptr<float>(),
                                     seed.const_data_ptr<int64_t>(), static_cast<T>(lo),
                                     static_cast<T>(hi), al.vec_ok && al.residue == 0};
    const unsigned blocks =
        ew::flat_blocks(n, sizeof(scalar_t), ew::multiprocessor_count(real.get_device()));
    perturb_kernel<scalar_t>
        <<<blocks, ew::kThreads, 0, c10::cuda::getCurrentCUDAStream().stream()>>>(args);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return x;
}

}  // namespace
}  // namespace fastgan

TORCH_LIBRARY_IMPL(fastgan, CUDA, m) {
  m.impl("interpolate", &fastgan::interpolate_cuda);
  m.impl("perturb", &fastgan::perturb_cuda);
}
