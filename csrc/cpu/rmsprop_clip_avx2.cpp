// The AVX2+FMA build of the rmsprop_clip_ CPU loop (see rmsprop_loop.h), for float32 and
// float64; csrc/cpu/rmsprop_clip.cpp calls it when csrc/cpu/isa.h picks avx2. Nothing but
// the pure loop headers is compiled here, under the target pragma and the avx2 namespace.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC target("avx2,fma")
#define FASTGAN_ISA avx2
#include "rmsprop_loop.h"

namespace fastgan {
void rmsprop_loop_avx2_f32(const RMSpropLoopArgs& a) { avx2::rmsprop_loop<float>(a); }
void rmsprop_loop_avx2_f64(const RMSpropLoopArgs& a) { avx2::rmsprop_loop<double>(a); }
}  // namespace fastgan
#endif
