// gather_images on CPU tensors: the C++ backend of fastgan.ops.gather_images (formula and
// checks: csrc/gather_images.h).
//
// A uint8 has 256 values, so the kernel converts none per element: it builds the 256
// outputs once per call, in the output dtype, and then every element is a table lookup.
// The table is pixel_value rounded once to dtype, so it is the formula to the bit. The work
// is split over the B*H output rows (one image row of one sample each, all C channels).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>

#include "../gather_images.h"

namespace fastgan {
namespace {

// Output elements per task (128 KiB of float32), as the other C++ kernels.
constexpr int64_t kChunk = 32768;

template <typename scalar_t>
void gather_rows(const uint8_t* data, const int64_t* index, const uint8_t* flip, scalar_t* out,
                 int64_t B, int64_t H, int64_t W, int64_t C, bool channels_last) {
  std::array<scalar_t, 256> table;
  for (int v = 0; v < 256; ++v) {
    table[v] = static_cast<scalar_t>(pixel_value(static_cast<uint8_t>(v)));
  }
  const int64_t row = W * C;  // elements of one image row, all channels
  at::parallel_for(0, B * H, std::max<int64_t>(1, kChunk / row), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / H, h = r - b * H;
      const uint8_t* src = data + (index[b] * H + h) * row;
      const bool mirror = flip != nullptr && flip[b] != 0;
      if (channels_last) {  // out memory [B, H, W, C]: the source row's order, maybe mirrored
        scalar_t* dst = out + r * row;
        for (int64_t w = 0; w < W; ++w) {
          const uint8_t* px = src + (mirror ? W - 1 - w : w) * C;
          for (int64_t c = 0; c < C; ++c) dst[w * C + c] = table[px[c]];
        }
      } else {  // out memory [B, C, H, W]: one run of W per channel
        for (int64_t c = 0; c < C; ++c) {
          scalar_t* dst = out + ((b * C + c) * H + h) * W;
          if (mirror) {
            for (int64_t w = 0; w < W; ++w) dst[w] = table[src[(W - 1 - w) * C + c]];
          } else {
            for (int64_t w = 0; w < W; ++w) dst[w] = table[src[w * C + c]];
          }
        }
      }
    }
  });
}

at::Tensor gather_images_cpu(const at::Tensor& data, const at::Tensor& index,
                             const std::optional<at::Tensor>& flip, at::ScalarType dtype,
                             bool channels_last) {
  check_gather_images(data, index, flip, dtype, c10::DeviceType::CPU);
  const int64_t N = data.size(0), H = data.size(1), W = data.size(2), C = data.size(3);
  const int64_t B = index.size(0);
  const at::Tensor idx = index.contiguous();
  const int64_t* ip = idx.const_data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {  // B checks: nothing next to the B*H*W*C elements
    TORCH_CHECK(ip[b] >= 0 && ip[b] < N, "gather_images: index[", b, "] = ", ip[b],
                " is out of range for data with N = ", N, " images");
  }
  at::Tensor out = at::empty({B, C, H, W}, data.options().dtype(dtype).memory_format(
                                               channels_last ? at::MemoryFormat::ChannelsLast
                                                             : at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  const bool has_flip = flip.has_value() && flip->defined();
  const at::Tensor f = has_flip ? flip->contiguous() : at::Tensor();
  // bool and uint8 are one byte each, bool 0 or 1: both read as uint8.
  const auto* fp = has_flip ? static_cast<const uint8_t*>(f.const_data_ptr()) : nullptr;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "gather_images", [&] {
    gather_rows<scalar_t>(data.const_data_ptr<uint8_t>(), ip, fp, out.mutable_data_ptr<scalar_t>(),
                          B, H, W, C, channels_last);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CPU, m) { m.impl("gather_images", &gather_images_cpu); }

}  // namespace fastgan
