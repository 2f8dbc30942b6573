// The AVX2+FMA build of the bias + leaky ReLU loops (see bias_leaky_relu_loop.h), for every
// dtype; csrc/cpu/bias_leaky_relu.cpp calls it when csrc/cpu/isa.h picks avx2. Nothing but
// the pure loop headers is compiled here, under the target pragma and the avx2 namespace.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC target("avx2,fma")
#define FASTGAN_ISA avx2
#include "bias_leaky_relu_loop.h"

namespace fastgan {
template <typename D>
LeakyReluLoops leaky_relu_loops_avx2() {
  return avx2::leaky_relu_loops<D>();
}
template LeakyReluLoops leaky_relu_loops_avx2<float>();
template LeakyReluLoops leaky_relu_loops_avx2<double>();
template LeakyReluLoops leaky_relu_loops_avx2<f16>();
template LeakyReluLoops leaky_relu_loops_avx2<bf16>();
}  // namespace fastgan
#endif
