// The AVX-512 (F, BW, VL, DQ) build of the bias + leaky ReLU loops (see
// bias_leaky_relu_loop.h), for every dtype; csrc/cpu/bias_leaky_relu.cpp calls it when
// csrc/cpu/isa.h picks avx512. Nothing but the pure loop headers is compiled here, under
// the target pragma and the avx512 namespace.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq")
#define FASTGAN_ISA avx512
#include "bias_leaky_relu_loop.h"

namespace fastgan {
template <typename D>
LeakyReluLoops leaky_relu_loops_avx512() {
  return avx512::leaky_relu_loops<D>();
}
template LeakyReluLoops leaky_relu_loops_avx512<float>();
template LeakyReluLoops leaky_relu_loops_avx512<double>();
template LeakyReluLoops leaky_relu_loops_avx512<f16>();
template LeakyReluLoops leaky_relu_loops_avx512<bf16>();
}  // namespace fastgan
#endif
