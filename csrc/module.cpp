// The Python module fastgan._C. Ops are not bound here: they register with the
// dispatcher (csrc/ops.cpp, csrc/cpu/, csrc/cuda/) when this module is loaded
// and are called as torch.ops.fastgan.<name>. The module itself only reports
// how it was built, for fastgan.info(), and which instruction-set build of the C++ CPU
// loops runs (csrc/cpu/isa.h).
#include <torch/extension.h>

#include <string>

#include "cpu/isa.h"

#ifdef FASTGAN_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace {

pybind11::dict build_info() {
  pybind11::dict info;
#ifdef FASTGAN_WITH_CUDA
  info["with_cuda"] = true;
  info["cuda_runtime"] = CUDART_VERSION;
#else
  info["with_cuda"] = false;
  info["cuda_runtime"] = pybind11::none();
#endif
  info["torch"] = std::string(TORCH_VERSION);
#if defined(__clang__)
  info["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  info["compiler"] = std::string("gcc ") + __VERSION__;
#else
  info["compiler"] = std::string("unknown");
#endif
  return info;
}

fastgan::CpuIsa isa_named(const std::string& name) {
  fastgan::CpuIsa isa;
  if (!fastgan::cpu_isa_named(name.c_str(), &isa)) {
    throw pybind11::value_error("unknown CPU instruction set '" + name +
                                "': expected 'base', 'avx2' or 'avx512'");
  }
  return isa;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fastgan's compiled kernels; the ops are torch.ops.fastgan.*";
  m.def("build_info", &build_info,
        "How this extension was built: with_cuda, cuda_runtime, torch, compiler.");
  m.def("cpu_isa", [] { return std::string(fastgan::cpu_isa_name(fastgan::cpu_isa())); },
        "The instruction-set build of the C++ CPU loops in use: 'base', 'avx2' or 'avx512'.");
  m.def("cpu_isa_best", [] { return std::string(fastgan::cpu_isa_name(fastgan::cpu_isa_best())); },
        "The best instruction-set build of the C++ CPU loops this CPU can run.");
  m.def("_set_cpu_isa",
        [](const std::string& name) {
          return std::string(fastgan::cpu_isa_name(fastgan::set_cpu_isa(isa_named(name))));
        },
        "Uses the named build ('base', 'avx2', 'avx512'), or the best this CPU can run if "
        "that is lower; returns the one now in use. Every build gives the same bits.");
}
