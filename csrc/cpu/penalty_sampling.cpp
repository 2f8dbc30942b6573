// The samples of the gradient penalty on CPU tensors: the C++ backend of
// fastgan.ops.interpolate and fastgan.ops.perturb. Random words are Philox4x32-10
// (csrc/philox.h, shared with the CUDA kernels), so a seed gives the same numbers, and
// in fp32/fp64 the same bits, on every backend. The seed and scale tensors are read here,
// on the host: for CPU tensors that is the device.
//
// interpolate: (sample, slice) tasks as penalty.cpp's, one eps_b per sample. perturb:
// tasks are ranges of Philox counters (4 elements each). The loops are
// penalty_sampling_loop.h, run from its best build for the CPU (csrc/cpu/isa.h). AVX2+FMA
// against the baseline, on 786K float32 elements, one thread of the dev host: interpolate
// 1806 -> 102 us and perturb 3169 -> 1452 us (the baseline calls libm's fma per element
// and keeps Philox scalar). AVX-512 takes perturb another 41% below AVX2 (Philox's 32-bit
// multiplies, 16 lanes).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty_like.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <algorithm>

#include "../penalty.h"
#include "penalty_sampling_loop.h"

namespace fastgan {
namespace {

// 128 KiB of float32 per task, as clip_weights.
constexpr int64_t kChunk = 32768;

template <typename D>
SamplingLoops loops_for() {
  return FASTGAN_PICK_ISA(&sampling_loops<D>, &sampling_loops_avx2<D>, &sampling_loops_avx512<D>)();
}

at::Tensor interpolate_cpu(const at::Tensor& real, const at::Tensor& fake, const at::Tensor& seed) {
  check_interpolate(real, fake, seed, c10::DeviceType::CPU);
  at::Tensor out = at::empty_like(real);  // real's strides: the walk is the same
  const int64_t n = real.numel();
  if (n == 0) return out;
  const int64_t batch = real.size(0), m = n / batch, slices = (m + kChunk - 1) / kChunk;
  const int64_t key = *seed.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, real.scalar_type(), "interpolate", [&] {
    using D = elem_of<scalar_t, c10::Half, c10::BFloat16>;
    const SamplingLoops loops = loops_for<D>();
    const auto* rp = static_cast<const scalar_t*>(real.data_ptr());
    const auto* fp = static_cast<const scalar_t*>(fake.data_ptr());
    auto* op = static_cast<scalar_t*>(out.data_ptr());
    const int64_t grain = std::max<int64_t>(1, kChunk / std::min(m, kChunk));
    at::parallel_for(0, batch * slices, grain, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        const int64_t b = k / slices, j = k % slices;
        const int64_t i = b * m + j * kChunk, len = std::min(kChunk, m - j * kChunk);
        const float eps = uniform_from_word(philox_words(key, static_cast<uint64_t>(b)).w[0]);
        loops.interpolate(rp + i, fp + i, op + i, eps, len);
      }
    });
  });
  return out;
}

at::Tensor perturb_cpu(const at::Tensor& real, const at::Tensor& scale, const at::Tensor& seed,
                       double lo, double hi) {
  check_perturb(real, scale, seed, lo, hi, c10::DeviceType::CPU);
  at::Tensor out = at::empty_like(real);
  const int64_t n = real.numel();
  if (n == 0) return out;
  const int64_t key = *seed.data_ptr<int64_t>();
  const float scale_value = *scale.data_ptr<float>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, real.scalar_type(), "perturb", [&] {
    using D = elem_of<scalar_t, c10::Half, c10::BFloat16>;
    const SamplingLoops loops = loops_for<D>();
    const auto* rp = static_cast<const scalar_t*>(real.data_ptr());
    auto* op = static_cast<scalar_t*>(out.data_ptr());
    at::parallel_for(0, (n + 3) / 4, kChunk / 4, [&](int64_t c0, int64_t c1) {
      loops.perturb(rp, op, c0, c1, n, key, scale_value, lo, hi);
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("interpolate", &interpolate_cpu);
  m.impl("perturb", &perturb_cpu);
}

}  // namespace fastgan
