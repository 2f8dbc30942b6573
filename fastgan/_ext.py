"""Loads the compiled extension fastgan._C once, and remembers why when it cannot.

Loading it registers the C++ and CUDA kernels with torch's dispatcher
(torch.ops.fastgan.*). Without it every op still runs, on its reference or
Triton backend, after one warning.

FASTGAN_NO_EXT=1 ignores a built extension (to compare against the fallback);
FASTGAN_REQUIRE_EXT=1 turns a missing extension into an ImportError (CI uses it,
so a broken build cannot pass as a fallback). FASTGAN_CPU_ISA=base|avx2|avx512 caps the
instruction-set build of the C++ CPU loops (csrc/cpu/isa.h; the best one this CPU runs by
default; every build gives the same bits).
"""
import importlib.util
import os
import warnings

import torch  # noqa: F401  (loads libc10/libtorch, which fastgan._C links against)

_module = None
_error = None
_build_info = {}


def _load():
    global _module, _error
    if os.environ.get("FASTGAN_NO_EXT") == "1":
        _error = "disabled by FASTGAN_NO_EXT=1"
    else:
        try:
            from fastgan import _C
        except ImportError as exc:
            if importlib.util.find_spec("fastgan._C") is None:
                _error = "fastgan._C is not installed (fastgan was installed without its extension)"
            else:  # built, but does not load: an ABI or library mismatch, say
                _error = f"fastgan._C could not be imported ({exc})"
            if os.environ.get("FASTGAN_REQUIRE_EXT") == "1":
                raise ImportError(f"{_error}; FASTGAN_REQUIRE_EXT=1 forbids the fallback") from exc
        else:
            _module = _C
            _build_info.update(_C.build_info())  # fixed at build time: read once
            mismatch = version_mismatch(_build_info.get("torch"), torch.__version__)
            if mismatch:
                if os.environ.get("FASTGAN_REQUIRE_EXT") == "1":
                    raise ImportError(f"{mismatch}; FASTGAN_REQUIRE_EXT=1 forbids running it")
                warnings.warn(mismatch, RuntimeWarning, stacklevel=3)
            _choose_cpu_isa(_C)
            return
    warnings.warn(
        f"fastgan's compiled extension is not loaded ({_error}): fastgan runs its reference and "
        "Triton kernels only. Build it with `pip install --no-build-isolation .` after "
        "installing torch; `fastgan info` says more.", RuntimeWarning, stacklevel=3)


def version_mismatch(built, running):
    """A warning's text when the extension was built against another torch release (major.minor)
    than the one running, else None. torch keeps no C++ ABI across releases: such a build
    mostly fails to load (then the fallback), and where it loads it is untested."""
    def release(v):
        return tuple(str(v).split("+")[0].split(".")[:2])
    if not built or release(built) == release(running):
        return None
    return (f"fastgan's compiled extension was built against torch {built} and torch {running} is "
            "running: rebuild it (`pip install --no-build-isolation --force-reinstall --no-deps .`)")


def _choose_cpu_isa(ext):
    wanted = os.environ.get("FASTGAN_CPU_ISA")
    if not wanted or not hasattr(ext, "_set_cpu_isa"):
        return
    try:
        used = ext._set_cpu_isa(wanted)
    except ValueError as exc:  # a warning, not an import error: every build gives the same bits
        warnings.warn(f"FASTGAN_CPU_ISA={wanted!r} is ignored: {exc}; fastgan's C++ CPU kernels use "
                      f"the best build this CPU runs, {ext.cpu_isa()}", RuntimeWarning, stacklevel=3)
        return
    if used != wanted:
        warnings.warn(f"FASTGAN_CPU_ISA={wanted}, but this CPU runs the {used} build at most: "
                      f"fastgan's C++ CPU kernels use {used}", RuntimeWarning, stacklevel=3)


def cpu_isa():
    """(in use, best this CPU runs) for the C++ CPU loops, or (None, None) without them."""
    if _module is None or not hasattr(_module, "cpu_isa"):
        return None, None
    return _module.cpu_isa(), _module.cpu_isa_best()


def module():
    """The extension module, or None."""
    return _module


def error():
    """Why the extension is not loaded, or None when it is."""
    return _error


def build_info():
    """How the extension was built (with_cuda, cuda_runtime, torch, compiler), or {}."""
    return _build_info


_load()


def has_op(name):
    """True when the loaded extension registered the op torch.ops.fastgan.<name> (an
    extension built from older sources may lack newer ops)."""
    if module() is None:
        return False
    return hasattr(torch.ops.fastgan, name)
