"""Which implementation of an op runs: the backend selector.

Backends: "triton" and "cuda" for CUDA tensors, "cpp" for CPU tensors, "reference"
(plain PyTorch, the fallback and the test oracle) everywhere. "auto" takes, per op
and device, the first available backend of the op's preference list, and the
reference when none is. Naming a backend explicitly never falls back silently: an
unavailable one raises BackendUnavailable saying why.

The default comes from FASTGAN_BACKEND (else "auto") and set_backend(); every op
also takes backend= to choose per call, which is what library code should do.
"""
import os

import torch

from fastgan import _ext, kernels

BACKENDS = ("auto", "triton", "cuda", "cpp", "reference")


class BackendUnavailable(RuntimeError):
    """An explicitly requested backend cannot run the op here."""


def _validate(name, source):
    if name not in BACKENDS:
        raise ValueError(f"{source}: unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
    return name


def check_choice(name, source):
    """A module's or optimizer's backend= at construction: None (fastgan's default) or a
    backend name, else the ValueError an op would raise at the first call."""
    return None if name is None else _validate(name, source)


# FASTGAN_BACKEND is checked when it is first used, not at import: a bad value then fails
# the first op (or `fastgan info`) with one line naming it, instead of every import of
# fastgan (the CLI included) with a traceback.
_default = None


def set_backend(name):
    """Sets the default backend of every op: "auto", "triton", "cuda", "cpp" or "reference"."""
    global _default
    _default = _validate(name, "set_backend")


def get_backend():
    """The default backend (FASTGAN_BACKEND, then set_backend)."""
    global _default
    if _default is None:
        _default = _validate(os.environ.get("FASTGAN_BACKEND", "auto").strip().lower() or "auto",
                             "FASTGAN_BACKEND")
    return _default


def _triton_status(device_type):
    if kernels.error() is not None:
        return False, kernels.error()
    if device_type == "cuda":
        return True, "interpreted (TRITON_INTERPRET=1)" if kernels.interpreted() else "compiled"
    if device_type == "cpu":
        if kernels.interpreted():
            return True, "interpreted (TRITON_INTERPRET=1)"
        return False, ("Triton runs on CPU tensors only in its interpreter: set TRITON_INTERPRET=1 "
                       "before fastgan is imported")
    return False, f"Triton does not run on {device_type} tensors"


def _cpp_status(device_type):
    if _ext.module() is None:
        return False, _ext.error()
    if device_type != "cpu":
        return False, f"the C++ backend runs on CPU tensors, not {device_type}"
    return True, "fastgan._C"


def _cuda_status(device_type):
    if _ext.module() is None:
        return False, _ext.error()
    if not _ext.build_info().get("with_cuda"):
        return False, "fastgan._C was built without its CUDA kernels"
    if device_type != "cuda":
        return False, f"the CUDA backend runs on CUDA tensors, not {device_type}"
    if not torch.cuda.is_available():
        return False, "no CUDA device is available"
    return True, f"fastgan._C (CUDA runtime {_ext.build_info().get('cuda_runtime')})"


_STATUS = {
    "triton": _triton_status,
    "cuda": _cuda_status,
    "cpp": _cpp_status,
    "reference": lambda device_type: (True, "plain PyTorch"),
}


def status(backend, device_type):
    """(available, reason) of one backend for tensors of one device type."""
    return _STATUS[backend](device_type)


class Op:
    """One op's backends: which it implements, and its "auto" order per device type.

    auto maps a device type to the backends to try, best first, before the reference;
    the preference is per op because the fastest implementation differs between ops.
    ext_op: the name of its C++ op (torch.ops.fastgan.<ext_op>, default `name`); an
    extension built from older sources that lacks it cannot run the "cpp" and "cuda"
    backends of this op ("auto" then goes on down the list).
    """

    def __init__(self, name, auto, ext_op=None):
        self.name = name
        self.auto = auto
        self.ext_op = name if ext_op is None else ext_op
        self.implemented = {"reference"}.union(*auto.values())

    def status(self, backend, device_type):
        """(available, reason) of one of this op's backends for tensors of one device type."""
        ok, why = status(backend, device_type)
        if ok and backend in ("cpp", "cuda") and not _ext.has_op(self.ext_op):
            return False, (f"the loaded fastgan._C was built from older sources and has no op "
                           f"fastgan::{self.ext_op}; rebuild it (pip install --no-build-isolation -e .)")
        return ok, why

    def resolve(self, device, backend=None):
        """The backend that runs this op on tensors of `device`."""
        name = (_default or get_backend()) if backend is None else _validate(backend, self.name)
        if name == "reference":
            return name
        if name == "auto":
            for candidate in self.auto.get(device.type, ()):
                if self.status(candidate, device.type)[0]:
                    return candidate
            return "reference"
        if name not in self.implemented:
            raise BackendUnavailable(f"{self.name}: has no {name!r} backend; it has "
                                     f"{', '.join(sorted(self.implemented))}")
        ok, why = self.status(name, device.type)
        if not ok:
            raise BackendUnavailable(f"{self.name}: backend {name!r} cannot run on {device} tensors: {why}")
        return name
