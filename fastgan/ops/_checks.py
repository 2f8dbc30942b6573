"""Argument checks shared by the ops' Python entry points (all backends).

The C++ entry points check the same things in csrc/checks.h, for callers that
reach torch.ops.fastgan.* directly.
"""
import math
import numbers

import torch

# What fastgan's kernels handle (is_floating_point() also admits the float8 types).
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def tensor_list(op, tensors):
    """A list of float32/float16/bfloat16/float64 tensors on one device, from a tensor or an iterable."""
    if isinstance(tensors, torch.Tensor):
        tensors = [tensors]
    elif isinstance(tensors, torch.nn.Module):
        raise TypeError(f"{op}: got a module ({type(tensors).__name__}); pass module.parameters()")
    else:
        tensors = list(tensors)
    device = None
    for i, t in enumerate(tensors):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: tensors[{i}] is a {type(t).__name__}, expected a torch.Tensor")
        if t.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{op}: tensors[{i}] has dtype {t.dtype}; expected float32, float16, "
                            "bfloat16 or float64")
        if device is None:
            device = t.device
        elif t.device != device:
            raise ValueError(f"{op}: tensors[{i}] is on {t.device} but tensors[0] is on {device}; "
                             "all tensors must be on one device")
    return tensors


def nonnegative(op, name, value):
    """A finite real number >= 0, as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{op}: {name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"{op}: {name} must be a finite number >= 0, got {value}")
    return value
