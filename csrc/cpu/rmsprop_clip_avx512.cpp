// The AVX-512 (F, BW, VL, DQ) build of the rmsprop_clip_ CPU loop (see rmsprop_loop.h), for
// float32 and float64; csrc/cpu/rmsprop_clip.cpp calls it when csrc/cpu/isa.h picks avx512.
// Nothing but the pure loop headers is compiled here, under the target pragma and the
// avx512 namespace.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq")
#define FASTGAN_ISA avx512
#include "rmsprop_loop.h"

namespace fastgan {
void rmsprop_loop_avx512_f32(const RMSpropLoopArgs& a) { avx512::rmsprop_loop<float>(a); }
void rmsprop_loop_avx512_f64(const RMSpropLoopArgs& a) { avx512::rmsprop_loop<double>(a); }
}  // namespace fastgan
#endif
