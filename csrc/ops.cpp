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

  // RMSprop (as torch.optim.RMSprop) followed by the WGAN clip, in one pass over
  // every parameter. Lists are per parameter: params, grads, square_avgs always;
  // momentum_bufs when momentum != 0, grad_avgs when centered, else empty. lr is a
  // 1-element float32 tensor on the params' device (so a CUDA graph can replay the
  // step with a new learning rate); clip < 0 means no clip.
  m.def(
      "rmsprop_clip_(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] square_avgs, "
      "Tensor(c!)[] momentum_bufs, Tensor(d!)[] grad_avgs, Tensor lr, float alpha, "
      "float eps, float weight_decay, float momentum, bool centered, bool maximize, "
      "float clip) -> ()");
}
