"""fastgan.ops.clip_weights_: the WGAN weight clip.

WGAN (Arjovsky et al. 2017, Algorithm 1) clamps every critic parameter to
[-c, c] after each critic update, c = 0.01. Public code loops over
D.parameters() with one launch per tensor; every backend here handles the whole
list at once (CUDA: one multi-tensor launch per dtype; Triton: one launch per
dtype; C++: one parallel loop over chunks of all tensors).

Semantics are exactly those of `t.clamp_(-c, c)` for each tensor: c is rounded
to the tensor's dtype, NaN stays NaN, ±inf becomes ±c, and a c beyond the
dtype's range (float16: 65504) is refused. Strided (non-dense) views are
clamped too, through ATen.
"""
import torch

from fastgan import _backend, _ext, kernels
from fastgan.kernels._launch import on_tensors_device
from fastgan.ops import _checks

OP = _backend.Op("clip_weights_", auto={"cuda": ("cuda", "triton"), "cpu": ("cpp",)})


def clip_weights_reference(tensors, c):
    """The oracle: one clamp_ per tensor."""
    for t in tensors:
        t.clamp_(-c, c)


if kernels.error() is None:
    @torch.library.custom_op("fastgan::clip_weights_triton_", mutates_args=("tensors",))
    @on_tensors_device
    def _clip_weights_triton(tensors: list[torch.Tensor], c: float) -> None:
        kernels.clip_weights.clip_weights_(tensors, c)

    @_clip_weights_triton.register_fake
    def _(tensors, c):
        return None

if _ext.module() is not None:
    @torch.library.register_fake("fastgan::clip_weights_")
    def _(tensors, c):
        return None


def clip_weights_(tensors, c, *, backend=None):
    """Clamps every tensor of `tensors` in place to [-c, c].

    tensors: a tensor or an iterable of floating-point tensors on one device
        (module.parameters() works; gradients are not tracked).
    c: the bound, a finite number >= 0.
    backend: None (the default set by fastgan.set_backend / FASTGAN_BACKEND),
        "auto", "triton", "cuda", "cpp" or "reference".
    """
    tensors = _checks.tensor_list("clip_weights_", tensors)
    c = _checks.nonnegative("clip_weights_", "c", c)
    _checks.bound_fits("clip_weights_", "c", c, tensors)
    if not tensors:
        return
    chosen = OP.resolve(tensors[0].device, backend)
    with torch.no_grad():
        if chosen == "reference":
            clip_weights_reference(tensors, c)
        elif chosen == "triton":
            torch.ops.fastgan.clip_weights_triton_(tensors, c)
        else:  # "cpp" and "cuda": one op, the dispatcher picks the device's kernel
            torch.ops.fastgan.clip_weights_(tensors, c)
