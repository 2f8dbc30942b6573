// The AVX2+FMA build of the gradient-penalty loops (see penalty_loop.h), for every dtype;
// csrc/cpu/penalty.cpp calls it when csrc/cpu/isa.h picks avx2. Nothing but the pure loop
// headers is compiled here, under the target pragma and the avx2 namespace.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC target("avx2,fma")
#define FASTGAN_ISA avx2
#include "penalty_loop.h"

namespace fastgan {
template <typename D>
PenaltyLoops penalty_loops_avx2() {
  return avx2::penalty_loops<D>();
}
template PenaltyLoops penalty_loops_avx2<float>();
template PenaltyLoops penalty_loops_avx2<double>();
template PenaltyLoops penalty_loops_avx2<f16>();
template PenaltyLoops penalty_loops_avx2<bf16>();
}  // namespace fastgan
#endif
