// The AVX2+FMA build of the interpolate / perturb loops (see penalty_sampling_loop.h), for
// every dtype; csrc/cpu/penalty_sampling.cpp calls it when csrc/cpu/isa.h picks avx2.
// Nothing but the pure loop headers is compiled here, under the target pragma and the avx2
// namespace.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC target("avx2,fma")
#define FASTGAN_ISA avx2
#include "penalty_sampling_loop.h"

namespace fastgan {
template <typename D>
SamplingLoops sampling_loops_avx2() {
  return avx2::sampling_loops<D>();
}
template SamplingLoops sampling_loops_avx2<float>();
template SamplingLoops sampling_loops_avx2<double>();
template SamplingLoops sampling_loops_avx2<f16>();
template SamplingLoops sampling_loops_avx2<bf16>();
}  // namespace fastgan
#endif
