// The AVX-512 (F, BW, VL, DQ) build of the batch_norm_act loops (see
// batch_norm_act_loop.h), for every dtype; csrc/cpu/batch_norm_act.cpp calls it when
// csrc/cpu/isa.h picks avx512. Nothing but the pure loop headers is compiled here, under
// the target pragma and the avx512 namespace.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq")
#define FASTGAN_ISA avx512
#include "batch_norm_act_loop.h"

namespace fastgan {
template <typename D>
BnActLoops bn_act_loops_avx512() {
  return avx512::bn_act_loops<D>();
}
template BnActLoops bn_act_loops_avx512<float>();
template BnActLoops bn_act_loops_avx512<double>();
template BnActLoops bn_act_loops_avx512<f16>();
template BnActLoops bn_act_loops_avx512<bf16>();
}  // namespace fastgan
#endif
