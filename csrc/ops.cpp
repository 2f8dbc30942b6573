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

  // ---- The gradient penalty on a gradient tensor (WGAN-GP, DRAGAN, R1) ----------------
  // grad: (B, ...), float32/float16/bfloat16/float64, every sample one contiguous range of
  // M = numel/B elements (contiguous or channels_last; callers make others contiguous).
  // T, the compute type, is float64 for float64 grads and float32 otherwise. Per sample
  // s_b = sum g^2 (in T), n_b = sqrt(s_b + eps); t_b = s_b if center == 0 else
  // (n_b - center)^2. Returns (penalty = weight * sum_b t_b / B, a 0-dim T tensor;
  // s, a (B,) T tensor saved for the backward). The exact formulas of all three ops are
  // in csrc/penalty_math.h.
  m.def("penalty_forward(Tensor grad, float weight, float center, float eps) -> (Tensor, Tensor)");
  // dgrad = coef_b * g, coef_b = dout * 2 * weight / B * r_b, r_b = 1 if center == 0 else
  // (n_b - center) / n_b. dout: 0-dim T tensor (the penalty's incoming gradient), read on
  // the device. dgrad has grad's dtype, shape and strides.
  m.def("penalty_backward(Tensor grad, Tensor sumsq, Tensor dout, float weight, float center, "
        "float eps) -> Tensor");
  // The backward of penalty_backward: ggrad is the incoming gradient of dgrad. Returns
  // (d_grad, d_dout): d_grad = coef_b * ggrad + q_b * g with q_b = dout * 2 * weight / B *
  // center * dot_b / n_b^3 (0 when center == 0), dot_b = <ggrad_b, g_b>;
  // d_dout = 2 * weight / B * sum_b r_b * dot_b (0-dim, T).
  m.def("penalty_double_backward(Tensor grad, Tensor sumsq, Tensor dout, Tensor ggrad, "
        "float weight, float center, float eps) -> (Tensor, Tensor)");

  // ---- The critic activation: bias + leaky ReLU, fused at every order ----------------
  // y = v > 0 ? v : v * negative_slope, v = x + bias[c] (c: the index along dim 1), in
  // opmath (float32; float64 for float64), rounded once to x's dtype. bias: 1-D with
  // x.size(1) elements, any floating dtype, or None. x: any dense layout (NCHW,
  // channels_last, 2-D); y has x's strides. negative_slope >= 0.
  m.def("bias_leaky_relu(Tensor x, Tensor? bias, float negative_slope) -> Tensor");
  // dx = out > 0 ? grad : grad * negative_slope, from the saved output (out > 0 exactly
  // where the input was > 0 when negative_slope >= 0). The same kernel is its own
  // derivative with respect to grad, which is what makes the activation fused at every
  // order. grad and out: same shape and dtype, dense, identically strided.
  m.def("leaky_relu_backward(Tensor grad, Tensor out, float negative_slope) -> Tensor");

  // ---- Sample construction for the penalty, random numbers on the device --------------
  // seed: a 1-element int64 tensor on the inputs' device (drawn from a torch.Generator by
  // the caller, so that a CUDA graph replays with fresh numbers). Random words are
  // Philox4x32-10 (csrc/philox.h) keyed by the seed; u = (word >> 8) * 2^-24 in [0, 1).
  // interpolate: x = fma(eps_b, real - fake, fake), eps_b = u of word 0 of counter b
  // (WGAN-GP, Gulrajani et al. 2017). real, fake: same shape, dtype and strides.
  m.def("interpolate(Tensor real, Tensor fake, Tensor seed) -> Tensor");
  // perturb: x_i = clamp(fma(u_i, scale, real_i), lo, hi), u_i = u of word i % 4 of counter
  // i / 4, i the element's offset in memory (DRAGAN, Kodali et al. 2017). scale: a 0-dim
  // float32 tensor on the device (0.5 * the batch's standard deviation).
  m.def("perturb(Tensor real, Tensor scale, Tensor seed, float lo, float hi) -> Tensor");
}
