"""Builds fastgan and its extension fastgan._C against the torch already installed.

Environment switches (all optional):
  FASTGAN_BUILD_EXT = auto | 1 | 0   auto (default): build the extension when torch
                                     is importable, else a pure-Python install with
                                     a warning; 1: the extension or an error; 0: none.
  FASTGAN_CUDA      = auto | 1 | 0   auto (default): add the CUDA kernels when torch
                                     has CUDA and nvcc is found, and fall back to a
                                     CPU-only extension if they fail to compile;
                                     1: CUDA kernels or an error; 0: CPU kernels only.
  TORCH_CUDA_ARCH_LIST               CUDA architectures; default: the visible GPUs,
                                     or "8.0;9.0+PTX" when none is visible.
  MAX_JOBS                           parallel compile jobs (ninja).

Build against the installed torch: pip install --no-build-isolation .
"""
import glob
import os
import re
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _switch(name):
    value = os.environ.get(name, "auto").strip().lower()
    if value not in ("auto", "1", "0"):
        sys.exit(f"fastgan setup: {name}={value!r}; expected auto, 1 or 0")
    return value


def _version():
    text = open(os.path.join(ROOT, "fastgan", "_version.py")).read()
    return re.search(r'__version__ = "([^"]+)"', text).group(1)


def _sources(pattern):
    # Relative paths: setuptools refuses absolute ones in a wheel build.
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def _nvcc_problem(cuda_home, torch_cuda):
    """Why nvcc under cuda_home cannot build for a torch built with CUDA torch_cuda ("13.0"),
    or None: torch's BuildExtension checks this before compiling and raises, so an auto build
    must find it first to fall back to the CPU kernels."""
    import subprocess
    nvcc = os.path.join(cuda_home, "bin", "nvcc")
    if not os.access(nvcc, os.X_OK):
        return f"there is no nvcc at {nvcc} (CUDA_HOME {cuda_home})"
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{nvcc} --version failed ({exc})"
    found = re.search(r"release (\d+)\.(\d+)", out)
    if found is None:
        return f"{nvcc} --version names no CUDA release"
    if found.group(1) != str(torch_cuda).split(".")[0]:
        return (f"nvcc at {nvcc} is CUDA {found.group(1)}.{found.group(2)}, this torch was built with "
                f"CUDA {torch_cuda} (the major versions must match)")
    return None


def _extension_and_cmdclass():
    build_ext = _switch("FASTGAN_BUILD_EXT")
    want_cuda = _switch("FASTGAN_CUDA")
    if build_ext == "0":
        return [], {}
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError as exc:
        msg = (f"fastgan setup: torch is not importable here ({exc}); the extension builds "
               "against the installed torch: install torch first, then "
               "`pip install --no-build-isolation .`")
        if build_ext == "1" or want_cuda == "1":  # FASTGAN_CUDA=1 asks for the extension too
            sys.exit(msg)
        print(f"WARNING: {msg}. Installing without the extension (reference kernels only).",
              file=sys.stderr)
        return [], {}

    cpp = _sources("csrc/*.cpp") + _sources("csrc/cpu/*.cpp")
    cuda = _sources("csrc/cuda/*.cu")
    has_cuda = torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None
    if want_cuda == "1" and not has_cuda:
        sys.exit("fastgan setup: FASTGAN_CUDA=1 but "
                 + ("this torch has no CUDA" if torch.version.cuda is None
                    else "nvcc was not found (set CUDA_HOME)"))
    use_cuda = has_cuda and want_cuda != "0"
    problem = _nvcc_problem(cpp_extension.CUDA_HOME, torch.version.cuda) if use_cuda else None
    if problem:  # torch's build would stop on it before compiling anything (no fallback there)
        if want_cuda == "1":
            sys.exit(f"fastgan setup: FASTGAN_CUDA=1 but {problem}")
        print(f"WARNING: {problem}; building the CPU kernels only. FASTGAN_CUDA=1 makes this an error.",
              file=sys.stderr)
        use_cuda = False

    # No implicit fused multiply-adds: the kernels write every fma they mean
    # (csrc/rmsprop_math.h), so results do not depend on what a compiler contracts.
    # No errno from math functions: with it GCC keeps sqrtf a possible libm call and
    # will not vectorize the RMSprop loop (8x slower than torch's step on the dev host).
    # -g0: Python's own CFLAGS carry -g, which made 94% of the library debug information.
    cxx = ["-O3", "-std=c++20", "-ffp-contract=off", "-fno-math-errno", "-g0"]
    link = []
    if sys.platform.startswith("linux"):
        # at::parallel_for is inline OpenMP: without -fopenmp the C++ kernels run on one
        # thread. The library it links, libgomp.so.1, resolves at run time to the copy
        # torch has already loaded (same SONAME), so there is one OpenMP runtime.
        cxx.append("-fopenmp")
        link.append("-fopenmp")
    if not use_cuda:
        ext = cpp_extension.CppExtension("fastgan._C", cpp, extra_compile_args={"cxx": cxx},
                                         extra_link_args=link)
    else:
        if "TORCH_CUDA_ARCH_LIST" not in os.environ and not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0+PTX"
        ext = cpp_extension.CUDAExtension(
            "fastgan._C", cpp + cuda, define_macros=[("FASTGAN_WITH_CUDA", None)],
            extra_compile_args={"cxx": cxx, "nvcc": ["-O3", "-std=c++20", "--fmad=false"]}, extra_link_args=link)

    class BuildExtension(cpp_extension.BuildExtension):
        # A failed CUDA compile in auto mode costs the CUDA kernels, never the install.
        def build_extension(self, ext):
            try:
                super().build_extension(ext)
            except Exception as exc:  # compiler errors come as several types
                if not (use_cuda and want_cuda == "auto"):
                    raise
                print(f"WARNING: fastgan's CUDA kernels failed to build ({exc}); "
                      "building the CPU kernels only. FASTGAN_CUDA=1 makes this an error.",
                      file=sys.stderr)
                ext.sources = [s for s in ext.sources if not s.endswith(".cu")]
                ext.define_macros = [m for m in ext.define_macros if m[0] != "FASTGAN_WITH_CUDA"]
                super().build_extension(ext)

    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = _extension_and_cmdclass()

setup(
    version=_version(),
    # fastgan/kernels is a link to the top-level kernels/, so the checkout is a complete
    # package too; the wheel holds a copy.
    packages=find_packages(include=["fastgan", "fastgan.*"]),
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
