// The AVX2+FMA build of the began_loss loops (see began_loss_loop.h), for every dtype;
// csrc/cpu/began_loss.cpp calls it when csrc/cpu/isa.h picks avx2. Nothing but the pure
// loop headers is compiled here, under the target pragma and the avx2 namespace.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC target("avx2,fma")
#define FASTGAN_ISA avx2
#include "began_loss_loop.h"

namespace fastgan {
template <typename D>
BeganLoops began_loops_avx2() {
  return avx2::began_loops<D>();
}
template BeganLoops began_loops_avx2<float>();
template BeganLoops began_loops_avx2<double>();
template BeganLoops began_loops_avx2<f16>();
template BeganLoops began_loops_avx2<bf16>();
}  // namespace fastgan
#endif
