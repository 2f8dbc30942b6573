// Which instruction-set build of the C++ kernels' element loops runs: every loop header
// (csrc/cpu/*_loop.h) is compiled for the baseline x86-64 (SSE2) in its op's unit, for
// AVX2+FMA in csrc/cpu/*_avx2.cpp and for AVX-512 (F, BW, VL, DQ) in csrc/cpu/*_avx512.cpp.
// The loops are written so that every build gives the same bits (no implicit fma, sums in
// fixed lanes: elem.h), so the choice is speed only; tests/test_cpu_isa.py checks the bits.
//
// The best build this CPU runs is the default. FASTGAN_CPU_ISA=base|avx2|avx512 (read by
// fastgan._ext when the module loads) or fastgan._C._set_cpu_isa caps it, as
// ATEN_CPU_CAPABILITY caps ATen's: to compare the builds, or to run the bits a machine
// without AVX-512 would.
#pragma once

// Where the kernels have x86 units besides the baseline one.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FASTGAN_HAVE_X86_UNITS 1
#endif

namespace fastgan {

enum class CpuIsa : int { kBase = 0, kAvx2 = 1, kAvx512 = 2 };

CpuIsa cpu_isa();       // the build in use
CpuIsa cpu_isa_best();  // the best build this CPU can run
// Uses min(isa, cpu_isa_best()); returns the build now in use. Not for use while a kernel
// runs on another thread (the choice is read at the start of each op).
CpuIsa set_cpu_isa(CpuIsa isa);
const char* cpu_isa_name(CpuIsa isa);  // "base", "avx2", "avx512"
// The build of that name; false for any other name.
bool cpu_isa_named(const char* name, CpuIsa* isa);

// The one of three builds' versions of something (a loop table, a function pointer) that
// matches the build in use.
template <typename T>
T pick_isa(T base, [[maybe_unused]] T avx2, [[maybe_unused]] T avx512) {
  switch (cpu_isa()) {
    case CpuIsa::kAvx512: return avx512;
    case CpuIsa::kAvx2: return avx2;
    case CpuIsa::kBase: break;
  }
  return base;
}

}  // namespace fastgan

// FASTGAN_PICK_ISA(base, avx2, avx512): pick_isa where the x86 units exist, else `base`
// (the other two names are then never declared, so they must not be evaluated).
#ifdef FASTGAN_HAVE_X86_UNITS
#define FASTGAN_PICK_ISA(base, avx2, avx512) ::fastgan::pick_isa(base, avx2, avx512)
#else
#define FASTGAN_PICK_ISA(base, avx2, avx512) (base)
#endif
