// clip_weights_ on CUDA: clamp a list of tensors in place to [-c, c] with one
// multi-tensor launch series per dtype (a WGAN critic's 10-300 weight tensors
// cost 1-3 launches instead of one launch each).
//
// The clip itself is fastgan::clip_bits (csrc/clip_weights.h), shared with the CPU
// kernel: an integer select on the bit patterns, bit for bit t.clamp_(-c, c). Being
// integer-only it needs no fp16/bf16 conversions and no float compare, so neither
// --use_fast_math's flush-to-zero compares nor a NaN round trip can change a result.
#include <ATen/core/Tensor.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <vector>

#include "../checks.h"
#include "../clip_weights.h"
#include "multi_tensor_apply.cuh"

namespace fastgan {
namespace {

template <typename scalar_t>
struct ClipFunctor {
  using bits = bits_t<scalar_t>;
  C10_HOST_DEVICE void operator()(const mta::Chunk<1>& chunk, const ClipBits<scalar_t>& b) const {
    // 16-byte vectors: 8 fp16/bf16, 4 fp32 or 2 fp64 elements.
    mta::for_each_element<16 / sizeof(bits), bits>(
        chunk, [b](bits& x) { x = clip_bits<bits>(x, b.hi, b.inf); });
  }
};

template <typename scalar_t>
void clip_dense_group(const std::vector<at::Tensor>& group, double c) {
  if (group.empty()) return;
  mta::multi_tensor_apply<1>({at::TensorList(group)}, ClipFunctor<scalar_t>{},
                             make_clip_bits<scalar_t>(c));
}

void clip_weights_cuda(at::TensorList tensors, double c) {
  constexpr const char* op = "clip_weights_";
  check_clip_value(op, c);
  check_tensor_list(op, tensors, c10::DeviceType::CUDA);
  check_clip_range(op, tensors, c);

  std::vector<at::Tensor> f32, f16, bf16, f64;
  for (const at::Tensor& t : tensors) {
    if (t.numel() == 0) continue;
    if (!is_dense(t)) {  // a strided view: ATen's elementwise kernel walks its strides
      t.clamp_(-c, c);
      continue;
    }
    switch (t.scalar_type()) {
      case at::kFloat: f32.push_back(t); break;
      case at::kHalf: f16.push_back(t); break;
      case at::kBFloat16: bf16.push_back(t); break;
      default: f64.push_back(t); break;  // check_tensor_list admits these four only
    }
  }
  clip_dense_group<float>(f32, c);
  clip_dense_group<c10::Half>(f16, c);
  clip_dense_group<c10::BFloat16>(bf16, c);
  clip_dense_group<double>(f64, c);
}

}  // namespace
}  // namespace fastgan

TORCH_LIBRARY_IMPL(fastgan, CUDA, m) {
  m.impl("clip_weights_", &fastgan::clip_weights_cuda);
}
