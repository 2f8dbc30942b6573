// The instruction-set choice of csrc/cpu/isa.h.
#include "isa.h"

#include <algorithm>
#include <atomic>
#include <cstring>

namespace fastgan {
namespace {

CpuIsa detect() {
#ifdef FASTGAN_HAVE_X86_UNITS
  // libgcc's checks include the OS's support for the register state (XCR0).
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    return CpuIsa::kAvx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CpuIsa::kAvx2;
#endif
  return CpuIsa::kBase;
}

std::atomic<int>& current() {
  static std::atomic<int> isa{static_cast<int>(cpu_isa_best())};
  return isa;
}

}  // namespace

CpuIsa cpu_isa_best() {
  static const CpuIsa best = detect();
  return best;
}

CpuIsa cpu_isa() { return static_cast<CpuIsa>(current().load(std::memory_order_relaxed)); }

CpuIsa set_cpu_isa(CpuIsa isa) {
  const int use = std::min(static_cast<int>(isa), static_cast<int>(cpu_isa_best()));
  current().store(use, std::memory_order_relaxed);
  return static_cast<CpuIsa>(use);
}

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kAvx512: return "avx512";
    case CpuIsa::kAvx2: return "avx2";
    case CpuIsa::kBase: break;
  }
  return "base";
}

bool cpu_isa_named(const char* name, CpuIsa* isa) {
  for (CpuIsa each : {CpuIsa::kBase, CpuIsa::kAvx2, CpuIsa::kAvx512}) {
    if (std::strcmp(name, cpu_isa_name(each)) == 0) {
      *isa = each;
      return true;
    }
  }
  return false;
}

}  // namespace fastgan
