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
  // step with a new learning rate); clip < 0 means no clip. Loss scaling (torch.amp.
  // GradScaler's contract with optimizers that handle it, read on the device): grad_scale,
  // when given, divides each gradient (in opmath), the quotient is stored back into grads
  // and the step reads it; found_inf, when given and != 0, skips the step (nothing is
  // written). Both 1-element float32 tensors on the params' device.
  m.def(
      "rmsprop_clip_(Tensor(a!)[] params, Tensor(e!)[] grads, Tensor(b!)[] square_avgs, "
      "Tensor(c!)[] momentum_bufs, Tensor(d!)[] grad_avgs, Tensor lr, float alpha, "
      "float eps, float weight_decay, float momentum, bool centered, bool maximize, "
      "float clip, Tensor? grad_scale=None, Tensor? found_inf=None) -> ()");

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

  // ---- BatchNorm + (leaky) ReLU after a convolution (DCGAN blocks), fused -------------
  // x: (N, C, ...) dense (NCHW or channels_last), the convolution's output. T = float64 for
  // float64 x, float32 otherwise. use_batch_stats: mean_c and the biased var_c over every
  // element of channel c (n = numel / C), accumulated in T by Welford/Chan merges; then, when
  // running_mean/running_var are given, in place: r = (1 - momentum) * r + momentum * s with
  // the unbiased variance var * n / (n - 1) (BatchNorm2d's rule). Otherwise mean = running_mean
  // and var = running_var. invstd = 1 / sqrt(var + eps). Then per element, in T, rounded once
  // to x's dtype: v = (x - mean_c) * (w_c * invstd_c) + b_c (w = 1, b = 0 when None);
  // out = v > 0 ? v : v * negative_slope. Returns (out, mean, invstd), the last two (C,) T.
  // Exact formulas: csrc/batch_norm_act_math.h.
  m.def("batch_norm_act(Tensor x, Tensor? weight, Tensor? bias, Tensor(a!)? running_mean, "
        "Tensor(b!)? running_var, bool use_batch_stats, float momentum, float eps, "
        "float negative_slope) -> (Tensor, Tensor, Tensor)");
  // The backward, in two passes: g = out > 0 ? grad_out : grad_out * negative_slope,
  // xhat = (x - mean_c) * invstd_c; pass 1 sums per channel sum_g = sum g, sum_gx = sum g * xhat;
  // pass 2 grad_x = w_c * invstd_c * (g - sum_g / n - xhat * sum_gx / n) when use_batch_stats,
  // else w_c * invstd_c * g. Returns (grad_x like x, grad_weight = sum_gx, grad_bias = sum_g),
  // the last two (C,) T. grad_out, out, x: same shape, dtype and strides.
  m.def("batch_norm_act_backward(Tensor grad_out, Tensor out, Tensor x, Tensor? weight, "
        "Tensor mean, Tensor invstd, bool use_batch_stats, float negative_slope) "
        "-> (Tensor, Tensor, Tensor)");

  // ---- Per-sample normalization + (leaky) ReLU (the WGAN-GP ResNet critic), fused -----
  // Each sample normalized over all its elements (nn.GroupNorm(1, C), "layer norm"), a
  // per-channel scale and shift, then the activation. x: (N, C, ...) dense (NCHW or
  // channels_last); every sample one contiguous range of M = numel / N elements. T =
  // float64 for float64 x, float32 otherwise. mean_n and the biased var_n over sample n's M
  // elements, accumulated in T (Welford/Chan merges); rstd_n = 1 / sqrt(var_n + eps). Per
  // element, in T, rounded once to x's dtype: xhat = (x - mean_n) * rstd_n,
  // v = xhat * w_c + b_c (w = 1, b = 0 when None), out = v > 0 ? v : v * negative_slope.
  // weight, bias: contiguous (C,) of any floating dtype. Returns (out like x, mean, rstd),
  // the last two (N,) T. Exact formulas: csrc/sample_norm_act_math.h and the references in
  // fastgan/ops/sample_norm_act.py.
  m.def("sample_norm_act(Tensor x, Tensor? weight, Tensor? bias, float eps, "
        "float negative_slope) -> (Tensor, Tensor, Tensor)");
  // The backward: g = out > 0 ? grad_out : grad_out * negative_slope, a = g * w_c,
  // xhat as above; per sample s1 = sum a, s2 = sum a * xhat (over M); grad_x = rstd_n *
  // (a - s1 / M - xhat * s2 / M), rounded to x's dtype. With channel_grads: grad_weight_c =
  // sum g * xhat and grad_bias_c = sum g over every element of channel c (all samples),
  // (C,) T; without: both empty (0,) T tensors (a gradient penalty's input gradient needs
  // neither). grad_out, out, x: same shape, dtype and strides; mean, rstd: (N,) T.
  m.def("sample_norm_act_backward(Tensor grad_out, Tensor out, Tensor x, Tensor? weight, "
        "Tensor mean, Tensor rstd, float negative_slope, bool channel_grads) "
        "-> (Tensor, Tensor, Tensor)");
  // The backward of the backward (a gradient penalty through the critic), given the
  // incoming gradients ggx (of grad_x; like x), ggw (of grad_weight) and ggb (of
  // grad_bias) ((C,) any floating dtype), each optional (None: zero). With g, a, xhat as in
  // the backward, m = out > 0 ? 1 : negative_slope, per sample (sums over M):
  // S1 = sum ggx, S2 = sum ggx * xhat, p = rstd_n * (ggx - S1 / M - xhat * S2 / M);
  // SA = sum a, TA = sum a * xhat, SAG = sum a * ggx; u = g * ggw_c, SU = sum u,
  // TU = sum u * xhat; la = rstd_n * (a - SA / M - xhat * TA / M),
  // lu = rstd_n * (u - SU / M - xhat * TU / M). Then, per element:
  // d_grad_out = m * (p * w_c + ggw_c * xhat + ggb_c);
  // d_x = -(rstd_n^2 * xhat / M) * (SAG - SA * S1 / M - TA * S2 / M)
  //       - (rstd_n / M) * (S2 * la + TA * p) + lu;
  // both rounded to x's dtype; d_weight_c = sum p * g over channel c ((C,) T; empty (0,)
  // when weight is None). The activation's mask has derivative zero almost everywhere, so
  // bias gets none.
  m.def("sample_norm_act_double_backward(Tensor? ggx, Tensor? ggw, Tensor? ggb, "
        "Tensor grad_out, Tensor out, Tensor x, Tensor? weight, Tensor mean, Tensor rstd, "
        "float negative_slope) -> (Tensor, Tensor, Tensor)");

  // ---- BEGAN's losses and k_t update (Berthelot et al. 2017), fused --------------------
  // L_r = mean |real - real_recon|, L_f = mean |fake - fake_recon| (sums in T); k: a 1-element
  // floating tensor on the device. Returns 0-dim T tensors (d_loss = L_r - k * L_f,
  // g_loss = L_f, k_next = clamp(k + lambda_k * (gamma * L_r - L_f), 0, 1),
  // convergence = L_r + |gamma * L_r - L_f|, L_r, L_f). real/real_recon and fake/fake_recon:
  // pairwise same shape, dtype and strides; both pairs one dtype.
  m.def("began_loss(Tensor real, Tensor real_recon, Tensor fake, Tensor fake_recon, Tensor k, "
        "float gamma, float lambda_k) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  // Its backward: c_r = d_dloss, c_f = d_gloss - k * d_dloss (0-dim T device tensors);
  // d_real = c_r * sign(real - real_recon) / N_r, d_real_recon = -d_real, likewise for fake
  // with c_f and N_f (sign(0) = 0). Returns (d_real, d_real_recon, d_fake, d_fake_recon).
  m.def("began_loss_backward(Tensor real, Tensor real_recon, Tensor fake, Tensor fake_recon, "
        "Tensor k, Tensor d_dloss, Tensor d_gloss) -> (Tensor, Tensor, Tensor, Tensor)");

  // ---- A training batch from a uint8 dataset in memory (issue 6), in one pass -----------
  // data: uint8 [N, H, W, C] contiguous (HWC images, C = 1 or 3); index: int64 [B] on data's
  // device; flip: uint8 or bool [B] or None (nonzero: mirror sample b along W). Returns
  // out[b, c, h, w] = (float(data[index[b], h, w', c]) - 127.5f) / 127.5f, w' = flip[b] ?
  // W-1-w : w, the division IEEE in float32, rounded once to dtype (float32, float16 or
  // bfloat16); [B, C, H, W], contiguous or channels_last. The CPU kernel checks every
  // index against N; the CUDA kernel writes NaN for an index outside [0, N) (no read, no sync).
  m.def("gather_images(Tensor data, Tensor index, Tensor? flip, ScalarType dtype, "
        "bool channels_last) -> Tensor");
}
