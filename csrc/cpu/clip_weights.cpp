// WGAN weight clip on CPU tensors: the C++ backend of fastgan.ops.clip_weights_.
//
// The list is cut into fixed chunks and the chunks, not the tensors, are spread
// over threads: a DCGAN critic is ~10 tensors of very unequal size (48 to
// 2,097,152 elements), so per-tensor parallelism leaves cores idle.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "../checks.h"
#include "../clip_weights.h"
#include "clip_weights_loop.h"

namespace fastgan {
namespace {

// 32K elements (128 KiB of float32) per task: big enough to amortise the
// task overhead, small enough to balance 2.7M parameters over 2-64 threads.
constexpr int64_t kChunk = 32768;

// The loop is clip_weights_loop.h, from the build csrc/cpu/isa.h picks. The DCGAN critic's
// fp32 clip on the 2-core EPYC dev machine (2 threads, one process): baseline (SSE2) 247 us,
// AVX2 104 us, AVX-512 86 us (fastgan.ops.clip_weights_, its Python checks included; eager
// ATen's loop of clamp_ 78-80 us). Benchmarks: benchmarks/bench_clip_weights.py.
template <typename bits>
ClipRange<bits> clip_range_for() {
  return FASTGAN_PICK_ISA(&clip_range<bits>, clip_range_avx2<bits>(), clip_range_avx512<bits>());
}

void clip_weights_cpu(at::TensorList tensors, double c) {
  check_clip_value("clip_weights_", c);
  check_tensor_list("clip_weights_", tensors, c10::DeviceType::CPU);
  check_clip_range("clip_weights_", tensors, c);

  std::vector<std::pair<size_t, int64_t>> chunks;  // (tensor index, first element)
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    if (t.numel() == 0) continue;
    if (!is_dense(t)) {  // a strided view: ATen walks its strides
      t.clamp_(-c, c);
      continue;
    }
    for (int64_t s = 0; s < t.numel(); s += kChunk) chunks.emplace_back(i, s);
  }

  at::parallel_for(0, static_cast<int64_t>(chunks.size()), 1,
                   [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const auto [i, start] = chunks[k];
      const auto& t = tensors[i];
      const int64_t n = std::min(kChunk, t.numel() - start);
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, t.scalar_type(),
                                      "clip_weights_cpu", [&] {
        using bits = bits_t<scalar_t>;
        const auto b = make_clip_bits<scalar_t>(c);
        clip_range_for<bits>()(static_cast<bits*>(t.data_ptr()) + start, n, b.hi, b.inf);
      });
    }
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CPU, m) { m.impl("clip_weights_", &clip_weights_cpu); }

}  // namespace fastgan
