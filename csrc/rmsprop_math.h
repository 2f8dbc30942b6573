// One element of fastgan::rmsprop_clip_, shared by the CPU and CUDA kernels.
//
// The arithmetic is torch.optim.RMSprop's single-tensor sequence (torch/optim/rmsprop.py)
// with the roundings torch's own kernels make, which differ by device. On the CPU the AVX2
// kernels fuse `a + s*b*c` (addcmul) into fma(s*b, c, a) and compute addcdiv as
// a + (s*b)/c; CUDA's compute s*(b*c) and s*(b/c) and add with one rounding, fma(s, b*c, a)
// and fma(s, b/c, a) (aten/src/ATen/native/cuda/PointwiseOpsKernel.cu: a + alpha * (b * c),
// which nvcc contracts; an explicit std::fma in recent torch, DeviceAddCmulCdiv.cuh). Both
// fuse add(alpha=) and lerp into one fma. Done with explicit fmas here, the host code
// (CPU kernels) taking the CPU's order and the device code (__CUDA_ARCH__) CUDA's, float32
// results equal torch's on that device bit for bit, whatever a compiler would contract:
//   g  = maximize ? -grad : grad;  g = fma(p, wd, g)              (grad.add(p, alpha=wd))
//   v  = CPU fma((1 - alpha) * g, g, v * alpha),                  (mul_, addcmul_)
//        CUDA fma(1 - alpha, g * g, v * alpha)
//   centered:  ga = fma(1 - alpha, g - ga, ga)                    (lerp_, weight < 0.5)
//              avg = sqrt(CPU fma(-ga, ga, v), CUDA v - ga * ga) + eps
//                                                                 (addcmul(value=-1), sqrt, add)
//   else:      avg = sqrt(v) + eps
//   momentum:  b = b * momentum + g / avg;  p = fma(b, -lr, p)    (mul_, addcdiv_, add_)
//   else:      p = CPU p + (-lr * g) / avg, CUDA fma(-lr, g / avg, p)   (addcdiv_(value=-lr))
// then the clip of clip_weights_ on the stored value (clip_bits: t.clamp_(-c, c)).
// (Triton, kernels/rmsprop_clip.py, takes the order of the device it runs on the same way.)
// Storage may be fp16/bf16 (torch keeps the state in the parameter's dtype); the
// arithmetic runs in opmath (float, double for float64) and each state is rounded
// once per step, where torch rounds after every op: with 16-bit storage fastgan is
// the more accurate of the two, not bit-identical.
#pragma once

// Pure C++ (no torch headers) and ISA-namespaced like bits.h, so that the AVX2 and AVX-512
// units of the CPU kernel (csrc/cpu/rmsprop_clip_avx*.cpp) compile their own copies.
#include <c10/macros/Macros.h>

#include <cmath>
#include <type_traits>

#include "bits.h"

namespace fastgan {
inline namespace FASTGAN_ISA {

template <typename T>  // T: the opmath type
struct RMSpropHyper {
  T alpha, one_minus_alpha, eps, weight_decay, momentum;  // rounded on the host, as torch does
};

// sqrtf for float: ::sqrt(float) is C's double sqrt, which made `sqrt(v) + eps` one
// double-precision add where torch rounds the root to float first (up to 4 ulps apart
// after 100 steps). sqrtf/sqrt are correctly rounded on host and device alike.
template <typename T>
C10_HOST_DEVICE inline T sqrt_rn(T x) {
  if constexpr (std::is_same_v<T, float>) {
    return ::sqrtf(x);
  } else {
    return ::sqrt(x);
  }
}

template <typename T>
C10_HOST_DEVICE inline T fma_rn(T a, T b, T c) {  // a * b + c, one rounding
  if constexpr (std::is_same_v<T, float>) {
    return ::fmaf(a, b, c);
  } else {
    return ::fma(a, b, c);
  }
}

// p, v, b, ga are read and written in opmath; g is the gradient; lr the step size.
template <typename T, bool kCentered, bool kMomentum, bool kMaximize, bool kWeightDecay>
C10_HOST_DEVICE inline void rmsprop_element(T& p, T g, T& v, T& b, T& ga, T lr,
                                            const RMSpropHyper<T>& h) {
  if (kMaximize) g = -g;
  if (kWeightDecay) g = fma_rn(p, h.weight_decay, g);  // torch skips it when wd == 0
#if defined(__CUDA_ARCH__)
  v = fma_rn(h.one_minus_alpha, g * g, v * h.alpha);
#else
  v = fma_rn(h.one_minus_alpha * g, g, v * h.alpha);
#endif
  T avg;
  if (kCentered) {
    // torch's grad_avg.lerp_(g, w), w = 1 - alpha: ga + w (g - ga) while w < 0.5, else
    // g + (w - 1)(g - ga) (ATen's lerp; its vectorized CPU kernel and CUDA's contraction
    // both one fma; the same value as g - (g - ga)(1 - w))
    const T w = h.one_minus_alpha;
    ga = w < T(0.5) ? fma_rn(w, g - ga, ga) : fma_rn(w - T(1), g - ga, g);
#if defined(__CUDA_ARCH__)
    avg = sqrt_rn(v - ga * ga) + h.eps;
#else
    avg = sqrt_rn(fma_rn(-ga, ga, v)) + h.eps;
#endif
  } else {
    avg = sqrt_rn(v) + h.eps;
  }
  if (kMomentum) {
    b = b * h.momentum + g / avg;
    p = fma_rn(b, -lr, p);
  } else {
#if defined(__CUDA_ARCH__)
    p = fma_rn(-lr, g / avg, p);
#else
    p = p + (-lr * g) / avg;
#endif
  }
}

// dispatch_flags(f, a, b, c) calls f(std::bool_constant<a>{}, ...): runtime flags
// become template parameters, so the element loop has no branch on them.
template <bool... Bs, typename F>
void dispatch_flags(F&& f) {
  f(std::bool_constant<Bs>{}...);
}
template <bool... Bs, typename F, typename... Rest>
void dispatch_flags(F&& f, bool first, Rest... rest) {
  if (first) {
    dispatch_flags<Bs..., true>(f, rest...);
  } else {
    dispatch_flags<Bs..., false>(f, rest...);
  }
}

}  // namespace FASTGAN_ISA
}  // namespace fastgan
