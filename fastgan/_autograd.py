"""fastgan's base for its autograd Functions: torch's, less a per-call signature binding.

Every fastgan Function has its forward apart from setup_context (the form torch.func's
transforms take). For such a Function, torch.autograd.Function.apply binds the call's
arguments to forward's signature with inspect.signature on every call, to fill in defaults:
on the development machine an apply of a trivial Function took 48 us with it and 12 us
without, and a WGAN-GP generator iteration makes 144 applies (the fused blocks, their
activations and convolutions, the penalty, and their backwards): host time in an eager step,
which is launch-bound on a GPU (a CUDA-graph replay runs no Python at all). fastgan's
forwards have no defaults and are called with every argument positionally
(tests/test_autograd.py checks both), so the binding changes nothing: apply goes straight
to autograd's own (C++) apply, as torch's does after binding, and keeps torch's whole path
where it is needed: under a torch.func transform (vmap, grad, jvp, ...) and for keyword
arguments. torch.compile traces these Functions as it traces any.
"""
import torch

try:  # private, present in every torch fastgan supports; without it, torch's own apply
    from torch._functorch.utils import unwrap_dead_wrappers as _unwrap_dead_wrappers
    _transforms_active = torch._C._are_functorch_transforms_active
except (ImportError, AttributeError):  # pragma: no cover
    _unwrap_dead_wrappers = _transforms_active = None


class Function(torch.autograd.Function):
    """torch.autograd.Function whose apply skips the signature binding outside torch.func
    transforms. Subclasses: forward with no default arguments, setup_context apart."""

    @classmethod
    def apply(cls, *args, **kwargs):
        if kwargs or _transforms_active is None or _transforms_active():
            return super().apply(*args, **kwargs)
        # what torch.autograd.Function.apply does once it has bound the arguments
        return super(torch.autograd.Function, cls).apply(*_unwrap_dead_wrappers(args))
