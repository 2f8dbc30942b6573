// The one place where fastgan's C++ op schemas are declared.
//
// Implementations register per device next to their kernels:
//   csrc/cpu/<op>.cpp   TORCH_LIBRARY_IMPL(fastgan, CPU, m)
//   csrc/cuda/<op>.cu   TORCH_LIBRARY_IMPL(fastgan, CUDA, m)
// Fake (meta) implementations for torch.compile live beside the Python
// wrapper in fastgan/ops/<op>.py.
#include <torch/library.h>

TORCH_LIBRARY(fastgan, m) {
  // WGAN weight clip (Arjovsky et al. 2017): clamp every tensor of the list
  // in place to [-c, c]. c is rounded to each tensor's dtype first, exactly
  // as torch.clamp_ rounds its scalar bounds.
  m.def("clip_weights_(Tensor(a!)[] tensors, float c) -> ()");
}
