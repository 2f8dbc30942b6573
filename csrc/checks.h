// Argument checks shared by the CPU and CUDA implementations. Messages name
// the argument and what was expected, the same words as fastgan/ops/*.py.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>

namespace fastgan {

// Validates the tensor list of a multi-tensor in-place op: every tensor
// float32/float16/bfloat16/float64 and on `device_type`, all on one device.
inline void check_tensor_list(const char* op, at::TensorList tensors,
                              c10::DeviceType device_type) {
  if (tensors.empty()) return;
  const auto device = tensors[0].device();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    TORCH_CHECK(t.defined(), op, ": tensors[", i, "] is undefined");
    const auto dtype = t.scalar_type();
    TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16 ||
                    dtype == at::kDouble,
                op, ": tensors[", i, "] has dtype ", dtype,
                "; expected float32, float16, bfloat16 or float64");
    TORCH_CHECK(t.device().type() == device_type, op, ": tensors[", i,
                "] is on ", t.device(), "; this kernel expects ",
                c10::DeviceTypeName(device_type), " tensors");
    TORCH_CHECK(t.device() == device, op, ": tensors[", i, "] is on ",
                t.device(), " but tensors[0] is on ", device,
                "; all tensors must be on one device");
  }
}

inline void check_clip_value(const char* op, double c) {
  TORCH_CHECK(std::isfinite(c) && c >= 0.0, op,
              ": c must be a finite number >= 0, got ", c);
}

// A tensor whose elements occupy exactly numel() consecutive slots of its
// storage (any dense layout: contiguous, channels_last, permuted; never
// negative strides). An elementwise op may then walk numel() elements
// linearly from data_ptr().
inline bool is_dense(const at::Tensor& t) {
  return t.is_non_overlapping_and_dense();
}

}  // namespace fastgan
