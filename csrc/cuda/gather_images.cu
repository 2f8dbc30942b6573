// gather_images on CUDA: a training batch from a uint8 dataset in GPU memory, in one launch
// (formula and checks: csrc/gather_images.h).
//
// One thread per output pixel (b, h, w): it reads the C bytes of its source pixel and
// writes C values. Consecutive threads take consecutive w, so the NCHW stores coalesce per
// channel plane and the channels_last stores are one run of 32*C values per warp; the
// loads are 32*C consecutive bytes of one source row (reversed under a flip). The pixel's
// (b, h, w) costs two integer divisions, 32-bit when B*H*W*C < 2^32 (a 64-bit division is a
// ~70-instruction software routine on the GPU).
//
// No host sync: an index outside [0, N) is not reported but written as NaN (one compare
// per pixel), and nothing is read out of bounds.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <type_traits>

#include "../gather_images.h"
#include "elementwise.cuh"

namespace fastgan {
namespace {

template <typename scalar_t, int C, typename index_t>
__global__ void __launch_bounds__(ew::kThreads)
    gather_images_kernel(const uint8_t* __restrict__ data, const int64_t* __restrict__ index,
                         const uint8_t* __restrict__ flip, scalar_t* __restrict__ out, int64_t N,
                         index_t H, index_t W, index_t pixels, bool channels_last) {
  const index_t p = static_cast<index_t>(blockIdx.x) * ew::kThreads + threadIdx.x;
  if (p >= pixels) return;
  const index_t HW = H * W;
  const index_t b = p / HW;
  const index_t hw = p - b * HW;
  const index_t h = hw / W;
  const index_t w = hw - h * W;
  const int64_t i = index[b];
  const bool valid = static_cast<uint64_t>(i) < static_cast<uint64_t>(N);
  const index_t ws = flip != nullptr && flip[b] != 0 ? W - 1 - w : w;
  const int64_t row = (valid ? i : 0) * H + h;  // of all N*H source rows
  const uint8_t* px = data + (row * W + ws) * C;
  float v[C];
#pragma unroll
  for (int c = 0; c < C; ++c) v[c] = valid ? pixel_value(px[c]) : __int_as_float(0x7fc00000);
  if (channels_last) {  // out memory [B, H, W, C]
#pragma unroll
    for (int c = 0; c < C; ++c) out[p * C + c] = static_cast<scalar_t>(v[c]);
  } else {  // out memory [B, C, H, W]
#pragma unroll
    for (int c = 0; c < C; ++c) out[(b * C + c) * HW + hw] = static_cast<scalar_t>(v[c]);
  }
}

template <typename scalar_t, int C, typename index_t>
void launch(const at::Tensor& data, const int64_t* index, const uint8_t* flip, at::Tensor& out,
            bool channels_last) {
  const int64_t pixels = out.numel() / C;
  const auto blocks = static_cast<unsigned>(ew::ceil_div(pixels, ew::kThreads));
  gather_images_kernel<scalar_t, C, index_t>
      <<<blocks, ew::kThreads, 0, c10::cuda::getCurrentCUDAStream().stream()>>>(
          data.const_data_ptr<uint8_t>(), index, flip, out.mutable_data_ptr<scalar_t>(),
          data.size(0), static_cast<index_t>(data.size(1)), static_cast<index_t>(data.size(2)),
          static_cast<index_t>(pixels), channels_last);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor gather_images_cuda(const at::Tensor& data, const at::Tensor& index,
                              const std::optional<at::Tensor>& flip, at::ScalarType dtype,
                              bool channels_last) {
  check_gather_images(data, index, flip, dtype, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(data.device());
  const int64_t C = data.size(3);
  at::Tensor out = at::empty({index.size(0), C, data.size(1), data.size(2)},
                             data.options().dtype(dtype).memory_format(
                                 channels_last ? at::MemoryFormat::ChannelsLast
                                               : at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  const at::Tensor idx = index.contiguous();
  const bool has_flip = flip.has_value() && flip->defined();
  const at::Tensor f = has_flip ? flip->contiguous() : at::Tensor();
  // bool and uint8 are one byte each, bool 0 or 1: both read as uint8.
  const auto* fp = has_flip ? static_cast<const uint8_t*>(f.const_data_ptr()) : nullptr;
  const int64_t* ip = idx.const_data_ptr<int64_t>();
  // p = block * kThreads + thread may pass the last pixel by up to kThreads - 1: room for that too.
  const bool narrow =
      out.numel() + ew::kThreads <= static_cast<int64_t>(std::numeric_limits<uint32_t>::max());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "gather_images", [&] {
    if constexpr (!std::is_same_v<scalar_t, double>) {  // check_gather_images refuses float64
      if (C == 3) {
        narrow ? launch<scalar_t, 3, uint32_t>(data, ip, fp, out, channels_last)
               : launch<scalar_t, 3, uint64_t>(data, ip, fp, out, channels_last);
      } else {
        narrow ? launch<scalar_t, 1, uint32_t>(data, ip, fp, out, channels_last)
               : launch<scalar_t, 1, uint64_t>(data, ip, fp, out, channels_last);
      }
    }
  });
  return out;
}

}  // namespace
}  // namespace fastgan

TORCH_LIBRARY_IMPL(fastgan, CUDA, m) { m.impl("gather_images", &fastgan::gather_images_cuda); }
