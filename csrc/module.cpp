// The Python module fastgan._C. Ops are not bound here: they register with the
// dispatcher (csrc/ops.cpp, csrc/cpu/, csrc/cuda/) when this module is loaded
// and are called as torch.ops.fastgan.<name>. The module itself only reports
// how it was built, for fastgan.info().
#include <torch/extension.h>

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

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fastgan's compiled kernels; the ops are torch.ops.fastgan.*";
  m.def("build_info", &build_info,
        "How this extension was built: with_cuda, cuda_runtime, torch, compiler.");
}
