// The AVX-512 (F, BW, VL, DQ) build of the sample_norm_act loops (see
// sample_norm_act_loop.h), for every dtype; csrc/cpu/sample_norm_act.cpp calls it when
// csrc/cpu/isa.h picks avx512. Nothing but the pure loop headers is compiled here, under
// the target pragma and the avx512 namespace.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq")
#define FASTGAN_ISA avx512
#include "sample_norm_act_loop.h"

namespace fastgan {
template <typename D>
SnActLoops sn_act_loops_avx512() {
  return avx512::sn_act_loops<D>();
}
template SnActLoops sn_act_loops_avx512<float>();
template SnActLoops sn_act_loops_avx512<double>();
template SnActLoops sn_act_loops_avx512<f16>();
template SnActLoops sn_act_loops_avx512<bf16>();
}  // namespace fastgan
#endif
