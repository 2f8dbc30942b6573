"""Argument checks shared by the ops' Python entry points (all backends).

The C++ entry points check the same things in csrc/checks.h, for callers that
reach torch.ops.fastgan.* directly.
"""
import math
import numbers

import torch

# What fastgan's kernels handle (is_floating_point() also admits the float8 types),
# with each one's largest finite value.
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
FINITE_MAX = {dtype: torch.finfo(dtype).max for dtype in FLOAT_DTYPES}


def tensor_list(op, tensors):
    """A list of float32/float16/bfloat16/float64 tensors on one device, from a tensor or an
    iterable. Checked by sets first (a step's parameter list costs a few microseconds);
    only a failing list is walked tensor by tensor to name the culprit."""
    if isinstance(tensors, torch.Tensor):
        tensors = [tensors]
    elif isinstance(tensors, torch.nn.Module):
        raise TypeError(f"{op}: got a module ({type(tensors).__name__}); pass module.parameters()")
    else:
        tensors = list(tensors)
    try:
        ok = {t.dtype for t in tensors} <= FINITE_MAX.keys() and len({t.device for t in tensors}) <= 1
    except AttributeError:  # not all tensors
        ok = False
    if ok and all(isinstance(t, torch.Tensor) for t in tensors):
        return tensors
    device = None
    for i, t in enumerate(tensors):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: tensors[{i}] is a {type(t).__name__}, expected a torch.Tensor")
        if t.dtype not in FINITE_MAX:
            raise TypeError(f"{op}: tensors[{i}] has dtype {t.dtype}; expected float32, float16, "
                            "bfloat16 or float64")
        if device is None:
            device = t.device
        elif t.device != device:
            raise ValueError(f"{op}: tensors[{i}] is on {t.device} but tensors[0] is on {device}; "
                             "all tensors must be on one device")
    return tensors


def floating(op, name, t):
    """Raises unless t is a float32/float16/bfloat16/float64 tensor, naming it."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a tensor, got {type(t).__name__}")
    if t.dtype not in FINITE_MAX:
        raise TypeError(f"{op}: {name} has dtype {t.dtype}; expected float32, float16, bfloat16 or "
                        "float64")


def bound_fits(op, name, value, tensors, label="tensors"):
    """Raises when `value` exceeds the largest finite value of a tensor's dtype (as
    torch.clamp_ refuses such a bound), naming the first such tensor."""
    if all(value <= FINITE_MAX[d] for d in {t.dtype for t in tensors}):
        return
    for i, t in enumerate(tensors):
        if value > FINITE_MAX[t.dtype]:
            raise ValueError(f"{op}: {name} = {value} exceeds the largest finite {t.dtype} "
                             f"({FINITE_MAX[t.dtype]}) of {label}[{i}]")


def nonnegative(op, name, value):
    """A finite real number >= 0, as a float. A tensor is refused, naming the way out: the
    kernels take it as a constant, and reading a CUDA tensor's value would synchronize the
    host with the GPU in every call (and break a CUDA-graph capture)."""
    if isinstance(value, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a Python number, got a tensor; pass "
                        f"float({name}), read once outside the training step")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{op}: {name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not 0.0 <= value < math.inf:  # NaN fails both; comparisons, which torch.compile traces
        raise ValueError(f"{op}: {name} must be a finite number >= 0, got {value}")
    return value + 0.0  # -0.0 is 0.0: the kernels' bounds have no sign bit
