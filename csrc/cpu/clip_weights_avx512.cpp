// The AVX-512 (F, BW, VL, DQ) build of the clip_weights_ loop (see clip_weights_loop.h);
// csrc/cpu/clip_weights.cpp calls it when csrc/cpu/isa.h picks avx512. Nothing but the pure
// loop headers is compiled here, under the target pragma and the avx512 namespace.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq")
#define FASTGAN_ISA avx512
#include "clip_weights_loop.h"

namespace fastgan {
template <typename bits>
ClipRange<bits> clip_range_avx512() {
  return &avx512::clip_range<bits>;
}
template ClipRange<uint16_t> clip_range_avx512<uint16_t>();
template ClipRange<uint32_t> clip_range_avx512<uint32_t>();
template ClipRange<uint64_t> clip_range_avx512<uint64_t>();
}  // namespace fastgan
#endif
