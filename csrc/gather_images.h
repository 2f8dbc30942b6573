// gather_images, shared by the CPU and CUDA kernels: the argument checks (in the words of
// fastgan/ops/gather_images.py) and the one element formula.
//
//   out[b, c, h, w] = (float(data[index[b], h, w', c]) - 127.5f) / 127.5f,
//   w' = flip[b] ? W-1-w : w
//
// The division is IEEE float32 (nvcc's default -prec-div=true, GCC without -ffast-math;
// kernels/gather_images.py uses div_rn), so 0 -> -1 and 255 -> +1 exactly and every backend
// agrees with the reference to the bit before the one rounding to the output dtype.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/macros/Macros.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <optional>

namespace fastgan {

C10_HOST_DEVICE inline float pixel_value(uint8_t v) {
  return (static_cast<float>(v) - 127.5f) / 127.5f;
}

inline void check_gather_images(const at::Tensor& data, const at::Tensor& index,
                                const std::optional<at::Tensor>& flip, at::ScalarType dtype,
                                c10::DeviceType dev) {
  constexpr const char* op = "gather_images";
  TORCH_CHECK(data.defined() && index.defined(), op, ": data and index must be defined");
  TORCH_CHECK(data.device().type() == dev, op, ": data is on ", data.device(),
              "; this kernel expects ", c10::DeviceTypeName(dev), " tensors");
  TORCH_CHECK(data.scalar_type() == at::kByte, op, ": data has dtype ", data.scalar_type(),
              "; expected torch.uint8");
  TORCH_CHECK(data.dim() == 4 && (data.size(3) == 1 || data.size(3) == 3), op,
              ": data must be [N, H, W, C] with C = 1 or 3, got shape ", data.sizes());
  TORCH_CHECK(data.is_contiguous(), op, ": data must be contiguous (HWC images back to back)");
  TORCH_CHECK(index.scalar_type() == at::kLong, op, ": index has dtype ", index.scalar_type(),
              "; expected torch.int64");
  TORCH_CHECK(index.dim() == 1, op, ": index must be 1-D, got shape ", index.sizes());
  TORCH_CHECK(index.device() == data.device(), op, ": index is on ", index.device(),
              " but data is on ", data.device());
  if (flip.has_value() && flip->defined()) {
    TORCH_CHECK(flip->scalar_type() == at::kByte || flip->scalar_type() == at::kBool, op,
                ": flip has dtype ", flip->scalar_type(), "; expected torch.bool or torch.uint8");
    TORCH_CHECK(flip->dim() == 1 && flip->size(0) == index.size(0), op, ": flip must be 1-D with ",
                index.size(0), " elements (one per index), got shape ", flip->sizes());
    TORCH_CHECK(flip->device() == data.device(), op, ": flip is on ", flip->device(),
                " but data is on ", data.device());
  }
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16, op,
              ": dtype must be torch.float32, torch.float16 or torch.bfloat16, got ", dtype);
}

}  // namespace fastgan
