"""fastgan.ops.rmsprop_clip_: one RMSprop step (as torch.optim.RMSprop) and the WGAN clip.

WGAN (Arjovsky et al. 2017, Algorithm 1) updates the critic with RMSprop and then
clips every parameter to [-c, c]. Done as torch.optim.RMSprop + a clamp loop, that
is a dozen launches per parameter tensor; here it is one pass over all of them
(CUDA and Triton: one multi-tensor launch per dtype; C++: one parallel loop).

Arithmetic: torch.optim.RMSprop's single-tensor sequence with the roundings of
torch's kernels on the device (explicit fmas where they fuse; csrc/rmsprop_math.h), in float32
(float64 for float64 tensors), each state rounded to its storage dtype once per
step. The reference backend is torch's own ops in that order and equals
torch.optim.RMSprop + clamp_ to the bit. The fused kernels take the correctly
rounded square root; torch's float32 CPU sqrt is not, so on CPU they drift 4-20 ulps
of c apart over 100 steps (measured, tests/optim); on CUDA both roots are IEEE and the
tests ask for 1 ulp (not yet run on a GPU as written: the 2026-11-22 run compared with
torch's foreach path, and the CUDA rounding order came after it). With 16-bit storage
torch rounds after every op and fastgan once, so fastgan is the more accurate of
the two there. The clip is clip_weights_'s, on the result.

The tensors of one parameter (param, grad, states) must be dense and identically
strided for the fused backends; other layouts run on the reference.

Loss scaling (float16 training under torch.amp.GradScaler), without a host
synchronization: grad_scale, when given, divides every gradient in opmath (as torch's
fused Adam does: g / scale, exact for the scaler's powers of two), the quotient is
stored back into the gradient (rounded to its dtype: the unscaled gradient a
GradScaler.unscale_ leaves) and the step reads that stored value. found_inf, when
given and non-zero, skips the whole step: nothing is written (params, gradients,
states). Both are 1-element float32 tensors on the parameters' device, read there,
so a CUDA graph replays the step with whatever they hold.
"""
import math
import numbers

import torch

from fastgan import _backend, _ext, kernels
from fastgan.kernels._launch import on_tensors_device
from fastgan.ops import _checks
from fastgan.kernels._layout import is_dense, same_walk
from fastgan.ops.clip_weights import clip_weights_reference

OP = _backend.Op("rmsprop_clip_", auto={"cuda": ("cuda", "triton"), "cpu": ("cpp",)})
_OP_NAME = "rmsprop_clip_"


def rmsprop_clip_reference(params, grads, square_avgs, momentum_bufs, grad_avgs, lr, alpha, eps,
                           weight_decay, momentum, centered, maximize, clip, grad_scale=None,
                           found_inf=None):
    """The oracle: torch.optim.RMSprop's sequence per tensor, in opmath, then clamp_;
    with grad_scale, the gradients unscaled first; with found_inf != 0, no change at all
    (decided on the device: the step is computed, then the old values put back)."""
    if found_inf is not None:
        mutated = [*params, *square_avgs, *momentum_bufs, *grad_avgs]
        if grad_scale is not None:
            mutated += list(grads)
        before = [t.clone() for t in mutated]
    _rmsprop_clip_reference(params, grads, square_avgs, momentum_bufs, grad_avgs, lr, alpha, eps,
                            weight_decay, momentum, centered, maximize, clip, grad_scale)
    if found_inf is not None:
        skip = found_inf.reshape(()) != 0
        for t, old in zip(mutated, before):
            t.copy_(torch.where(skip.to(t.device), old, t))


def _rmsprop_clip_reference(params, grads, square_avgs, momentum_bufs, grad_avgs, lr, alpha, eps,
                            weight_decay, momentum, centered, maximize, clip, grad_scale):
    for i, p in enumerate(params):
        compute = torch.float64 if p.dtype == torch.float64 else torch.float32
        if grad_scale is not None:  # unscaled in opmath, stored, and the stored value stepped
            grads[i].copy_(grads[i].to(compute) / grad_scale.to(device=p.device, dtype=compute).reshape(()))
        pf, g, v = p.to(compute), grads[i].to(compute), square_avgs[i].to(compute)
        lr_t = lr.to(device=p.device, dtype=compute)
        if maximize:
            g = -g
        if weight_decay != 0:
            g = g.add(pf, alpha=weight_decay)
        v = v.mul(alpha).addcmul(g, g, value=1 - alpha)
        if centered:
            ga = grad_avgs[i].to(compute).lerp(g, 1 - alpha)
            avg = v.addcmul(ga, ga, value=-1).sqrt().add(eps)
            grad_avgs[i].copy_(ga)
        else:
            avg = v.sqrt().add(eps)
        # lr is a device tensor (a CUDA graph replays it), torch's a number: torch's
        # add_(b, alpha=-lr) and, on CUDA, addcdiv_(g, avg, value=-lr) are one fma of
        # -lr, which addcmul with value=1 makes on either device (fma(t1, t2, self): the CPU's
        # contraction, and CUDA's explicit fma since torch's "use fma in addcmul when
        # possible", pytorch#172750, January 2026); the CPU's addcdiv is (-lr * g) / avg + p
        if momentum != 0:
            b = momentum_bufs[i].to(compute).mul(momentum).addcdiv(g, avg)
            momentum_bufs[i].copy_(b)
            pf = torch.addcmul(pf, b, -lr_t)
        elif pf.is_cuda:
            pf = torch.addcmul(pf, g / avg, -lr_t)
        else:
            pf = pf + (-lr_t * g) / avg
        square_avgs[i].copy_(v)
        p.copy_(pf)
    if clip >= 0:
        clip_weights_reference(params, clip)


if kernels.error() is None:
    @torch.library.custom_op("fastgan::rmsprop_clip_triton_",
                             mutates_args=("params", "grads", "square_avgs", "momentum_bufs",
                                           "grad_avgs"))
    @on_tensors_device
    def _rmsprop_clip_triton(params: list[torch.Tensor], grads: list[torch.Tensor],
                             square_avgs: list[torch.Tensor], momentum_bufs: list[torch.Tensor],
                             grad_avgs: list[torch.Tensor], lr: torch.Tensor, alpha: float,
                             eps: float, weight_decay: float, momentum: float, centered: bool,
                             maximize: bool, clip: float, grad_scale: torch.Tensor | None = None,
                             found_inf: torch.Tensor | None = None) -> None:
        kernels.rmsprop_clip.rmsprop_clip_(params, grads, square_avgs, momentum_bufs, grad_avgs,
                                           lr, alpha, eps, weight_decay, momentum, centered,
                                           maximize, clip, grad_scale, found_inf)

    @_rmsprop_clip_triton.register_fake
    def _(*args):
        return None

if _ext.module() is not None:
    @torch.library.register_fake("fastgan::rmsprop_clip_")
    def _(*args):
        return None


def check_hyper(op, alpha, eps, weight_decay, momentum):
    """RMSprop's hyperparameters real numbers (TypeError naming one that is not) in range
    (ValueError): alpha in [0, 1], the rest finite and >= 0."""
    for name, value, top in (("alpha", alpha, 1.0), ("eps", eps, math.inf),
                             ("weight_decay", weight_decay, math.inf), ("momentum", momentum, math.inf)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{op}: {name} must be a real number, got {type(value).__name__} {value!r}")
        if not 0.0 <= value <= top or value == math.inf:  # NaN fails the comparisons
            raise ValueError(f"{op}: {name} = {value} is out of range")


def _check(params, grads, square_avgs, momentum_bufs, grad_avgs, lr, alpha, eps, weight_decay,
           momentum, centered, clip, grad_scale=None, found_inf=None):
    params = _checks.tensor_list(_OP_NAME, params)
    n = len(params)
    lists = {"grads": list(grads), "square_avgs": list(square_avgs),
             "momentum_bufs": list(momentum_bufs), "grad_avgs": list(grad_avgs)}
    used = {"grads": True, "square_avgs": True, "momentum_bufs": momentum != 0, "grad_avgs": centered}
    for name, tensors in lists.items():
        want = n if used[name] else 0
        if len(tensors) != want:
            raise ValueError(f"{_OP_NAME}: {name} has {len(tensors)} tensors; expected {want}"
                             + (" (one per parameter)" if used[name] else
                                " (unused with these hyperparameters)"))
        for i, t in enumerate(tensors):
            p = params[i]
            if not (isinstance(t, torch.Tensor) and t.shape == p.shape and t.dtype == p.dtype
                    and t.device == p.device):
                raise ValueError(f"{_OP_NAME}: {name}[{i}] must match params[{i}] "
                                 f"({p.dtype} {tuple(p.shape)} on {p.device})")
    if not (isinstance(lr, torch.Tensor) and lr.numel() == 1 and lr.dtype == torch.float32):
        raise TypeError(f"{_OP_NAME}: lr must be a 1-element float32 tensor")
    if n and lr.device != params[0].device:
        raise ValueError(f"{_OP_NAME}: lr is on {lr.device} but params are on {params[0].device}")
    for name, t in (("grad_scale", grad_scale), ("found_inf", found_inf)):
        if t is None:
            continue
        if not (isinstance(t, torch.Tensor) and t.numel() == 1 and t.dtype == torch.float32):
            raise TypeError(f"{_OP_NAME}: {name} must be None or a 1-element float32 tensor")
        if n and t.device != params[0].device:
            raise ValueError(f"{_OP_NAME}: {name} is on {t.device} but params are on {params[0].device}")
    check_hyper(_OP_NAME, alpha, eps, weight_decay, momentum)
    if math.isnan(clip):
        raise ValueError(f"{_OP_NAME}: clip is NaN; pass a bound >= 0, or None for no clip")
    if clip >= 0:
        clip = _checks.nonnegative(_OP_NAME, "clip", clip)
        _checks.bound_fits(_OP_NAME, "clip", clip, params, label="params")
    return params, lists, float(clip)  # the bound nonnegative() made (-0.0 is 0.0)


def fusable(params, *lists):
    """True when every parameter is dense and its gradient/state tensors are strided alike
    on every dim of more than one element (same_walk), so a fused kernel may walk them as
    flat ranges."""
    return all(is_dense(p) and all(not lst or same_walk(lst[i], p) for lst in lists)
               for i, p in enumerate(params))


def rmsprop_clip_(params, grads, square_avgs, momentum_bufs, grad_avgs, lr, *, alpha=0.99,
                  eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, maximize=False,
                  clip=0.01, grad_scale=None, found_inf=None, backend=None):
    """One RMSprop step and clip over lists of parameters, in place.

    params, grads, square_avgs: one tensor per parameter. momentum_bufs: one per
    parameter when momentum != 0, else empty; grad_avgs likewise when centered.
    lr: a 1-element float32 tensor on the parameters' device (a CUDA graph replays
    the step with whatever it holds). clip: the WGAN bound, None or < 0 for none.
    grad_scale, found_inf: loss scaling (see the module doc; what torch.amp.GradScaler
    hands an optimizer whose step supports it), None for none.
    backend: as every fastgan op (None: the default of fastgan.set_backend). A list with a
    parameter the kernels cannot walk as a flat range (not dense, or a state or gradient
    strided otherwise: fusable() says) takes the reference's step whatever the backend: the
    update is in place, so a copy would not do.
    """
    clip = -1.0 if clip is None else clip
    params, lists, clip = _check(params, grads, square_avgs, momentum_bufs, grad_avgs, lr, alpha, eps,
                                 weight_decay, momentum, centered, clip, grad_scale, found_inf)
    if not params:
        return
    args = (params, lists["grads"], lists["square_avgs"], lists["momentum_bufs"],
            lists["grad_avgs"], lr, float(alpha), float(eps), float(weight_decay),
            float(momentum), bool(centered), bool(maximize), clip, grad_scale, found_inf)
    chosen = OP.resolve(params[0].device, backend)
    if chosen != "reference" and not fusable(params, *lists.values()):
        chosen = "reference"
    with torch.no_grad():
        if chosen == "reference":
            rmsprop_clip_reference(*args)
        elif chosen == "triton":
            torch.ops.fastgan.rmsprop_clip_triton_(*args)
        else:
            torch.ops.fastgan.rmsprop_clip_(*args)
