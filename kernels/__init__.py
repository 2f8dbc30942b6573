"""fastgan's Triton kernels, installed as `fastgan.kernels`.

One module per op, holding the @triton.jit kernels and their launchers; no
autograd here (that lives in fastgan/ops/<op>.py). The launchers take tensors and
return when the work is queued on the current stream.

On a machine without a GPU the kernels run in Triton's interpreter when
TRITON_INTERPRET=1 is set before this package is imported (the kernels are
interpreted or compiled when their module is defined).
"""
try:
    import triton  # noqa: F401
except Exception as exc:  # an ImportError, or a broken triton install
    _error = f"triton is not usable ({type(exc).__name__}: {exc})"
else:
    _error = None
    from . import (batch_norm_act, began_loss, bias_leaky_relu, clip_weights,  # noqa: F401
                   gather_images, penalty, penalty_sampling, rmsprop_clip, sample_norm_act)


def error():
    """Why the Triton kernels are unavailable, or None."""
    return _error


def interpreted():
    """True when the kernels were defined under TRITON_INTERPRET=1 (they run on CPU tensors)."""
    return _error is None and type(clip_weights.clip_weights_kernel).__name__ == "InterpretedFunction"
