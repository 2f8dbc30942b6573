// The AVX2+FMA build of the batch_norm_act loops (see batch_norm_act_loop.h), for every
// dtype; csrc/cpu/batch_norm_act.cpp calls it when csrc/cpu/isa.h picks avx2. Nothing but
// the pure loop headers is compiled here, under the target pragma and the avx2 namespace.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC target("avx2,fma")
#define FASTGAN_ISA avx2
#include "batch_norm_act_loop.h"

namespace fastgan {
template <typename D>
BnActLoops bn_act_loops_avx2() {
  return avx2::bn_act_loops<D>();
}
template BnActLoops bn_act_loops_avx2<float>();
template BnActLoops bn_act_loops_avx2<double>();
template BnActLoops bn_act_loops_avx2<f16>();
template BnActLoops bn_act_loops_avx2<bf16>();
}  // namespace fastgan
#endif
