// The per-channel parameters of the normalization ops' C++ units (batch_norm_act.cpp,
// sample_norm_act.cpp) as host vectors of the op's math type. Torch-side: not for the
// per-ISA loop units.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace fastgan {

// A (C,) vector in T: the tensor's values, or `fill` when it is absent.
template <typename T>
std::vector<T> channel_values(const std::optional<at::Tensor>& t, int64_t channels, T fill) {
  if (!t.has_value() || !t->defined()) return std::vector<T>(channels, fill);
  const at::Tensor v = t->to(c10::CppTypeToScalarType<T>::value).contiguous();
  const T* p = v.data_ptr<T>();
  return std::vector<T>(p, p + channels);
}

}  // namespace fastgan
