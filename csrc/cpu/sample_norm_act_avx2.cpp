// The AVX2+FMA build of the sample_norm_act loops (see sample_norm_act_loop.h), for every
// dtype; csrc/cpu/sample_norm_act.cpp calls it when csrc/cpu/isa.h picks avx2. Nothing but
// the pure loop headers is compiled here, under the target pragma and the avx2 namespace.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC target("avx2,fma")
#define FASTGAN_ISA avx2
#include "sample_norm_act_loop.h"

namespace fastgan {
template <typename D>
SnActLoops sn_act_loops_avx2() {
  return avx2::sn_act_loops<D>();
}
template SnActLoops sn_act_loops_avx2<float>();
template SnActLoops sn_act_loops_avx2<double>();
template SnActLoops sn_act_loops_avx2<f16>();
template SnActLoops sn_act_loops_avx2<bf16>();
}  // namespace fastgan
#endif
