"""fastgan.ops.penalty_from_grad: the gradient penalty on a gradient tensor, fused.

Given g = the critic's input gradient (B, ...), per sample s_b = ||g_b||^2 over all of
C*H*W (never one axis: a known bug elsewhere), n_b = sqrt(s_b + eps):

    center != 0 (WGAN-GP, DRAGAN):  weight * mean_b (n_b - center)^2
    center == 0 (R1):               weight * mean_b s_b          (exact; no epsilon)

eps (1e-12) inside the square root keeps a zero gradient finite: the penalty is then
weight * center^2 and every derivative 0, never NaN. Sums accumulate in float32 (float64
for float64 gradients) whatever the gradient's dtype, so bf16/fp16 gradients under
autocast cannot overflow or lose the norm.

The fused backends (CUDA, Triton, C++) compute the penalty in one split reduction (every
sample cut into slices so that even batch 1 fills the GPU, the partials summed in a fixed
order: deterministic) and its gradient in one elementwise pass. That gradient is itself
differentiable with the same kernels (the pattern of StyleGAN2's bias_act): a second
autograd Function whose backward is one more fused reduction + pass, so gradgradcheck
holds. Exact formulas: csrc/penalty_math.h. The reference is the formula in plain
PyTorch, differentiated by autograd.
"""

import torch

from fastgan import _backend, _ext, kernels
from fastgan.kernels._launch import on_tensors_device
from fastgan._autograd import Function
from fastgan.kernels._layout import copy_like, is_dense
from fastgan.ops import _checks, _vmap

OP = _backend.Op("penalty_from_grad", auto={"cuda": ("cuda", "triton"), "cpu": ("cpp",)},
                 ext_op="penalty_forward")
EPS = 1e-12


def compute_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def penalty_reference(grad, weight, center, eps=EPS):
    """The oracle: the formula in plain PyTorch (autograd differentiates it to any order)."""
    s = grad.reshape(grad.shape[0], -1).to(compute_dtype(grad.dtype)).square().sum(1)
    t = s if center == 0 else (torch.sqrt(s + eps) - center).square()
    return weight * t.sum() / grad.shape[0]


def samples_contiguous(t):
    """Every sample (index along dim 0) one dense range in memory: contiguous, channels_last."""
    return is_dense(t) and (t.shape[0] <= 1 or t.stride(0) * t.shape[0] == t.numel())


# ---- registrations: the C++ ops' fakes, the Triton launchers as custom ops ------------------

def _fake_forward(grad, weight, center, eps):
    t = compute_dtype(grad.dtype)
    return grad.new_empty((), dtype=t), grad.new_empty((grad.shape[0],), dtype=t)


def _fake_backward(grad, sumsq, dout, weight, center, eps):
    return torch.empty_like(grad)


def _fake_double_backward(grad, sumsq, dout, ggrad, weight, center, eps):
    return torch.empty_like(grad), dout.new_empty(())


if _ext.has_op("penalty_forward"):
    torch.library.register_fake("fastgan::penalty_forward")(_fake_forward)
    torch.library.register_fake("fastgan::penalty_backward")(_fake_backward)
    torch.library.register_fake("fastgan::penalty_double_backward")(_fake_double_backward)

if kernels.error() is None:
    @torch.library.custom_op("fastgan::penalty_forward_triton", mutates_args=())
    @on_tensors_device
    def _forward_triton(grad: torch.Tensor, weight: float, center: float,
                        eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        return kernels.penalty.penalty_forward(grad, weight, center, eps)

    @torch.library.custom_op("fastgan::penalty_backward_triton", mutates_args=())
    @on_tensors_device
    def _backward_triton(grad: torch.Tensor, sumsq: torch.Tensor, dout: torch.Tensor,
                         weight: float, center: float, eps: float) -> torch.Tensor:
        return kernels.penalty.penalty_backward(grad, sumsq, dout, weight, center, eps)

    @torch.library.custom_op("fastgan::penalty_double_backward_triton", mutates_args=())
    @on_tensors_device
    def _double_backward_triton(grad: torch.Tensor, sumsq: torch.Tensor, dout: torch.Tensor,
                                ggrad: torch.Tensor, weight: float, center: float,
                                eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        return kernels.penalty.penalty_double_backward(grad, sumsq, dout, ggrad, weight, center, eps)

    _forward_triton.register_fake(_fake_forward)
    _backward_triton.register_fake(_fake_backward)
    _double_backward_triton.register_fake(_fake_double_backward)


def _ops(backend):
    """(forward, backward, double_backward) of a fused backend."""
    ns = torch.ops.fastgan
    if backend == "triton":
        return ns.penalty_forward_triton, ns.penalty_backward_triton, ns.penalty_double_backward_triton
    return ns.penalty_forward, ns.penalty_backward, ns.penalty_double_backward


# Batching rules: each vmapped slice is a penalty of its own (its mean over its samples, its
# own incoming gradient), which folding the slices into one batch would mix: the ops run once
# per slice (exact; one launch each).
_vmap.register(("penalty_forward", "penalty_backward", "penalty_double_backward"),
               (_forward_triton, _backward_triton, _double_backward_triton) if kernels.error() is None
               else None, (_vmap.loop,) * 3)


# ---- autograd: the penalty, its gradient, and the gradient's gradient ---------------------

class _Penalty(Function):
    # forward without ctx, setup_context apart (the form torch.func transforms take); the
    # per-sample sums of squares the backward needs are an output, marked non-differentiable.
    # vmap runs forward and backward under vmap, through the ops' batching rules
    generate_vmap_rule = True

    @staticmethod
    def forward(grad, weight, center, eps, backend):
        return tuple(_ops(backend)[0](grad, weight, center, eps))

    @staticmethod
    def setup_context(ctx, inputs, outputs):
        grad, weight, center, eps, backend = inputs
        ctx.save_for_backward(grad, outputs[1])
        ctx.mark_non_differentiable(outputs[1])
        ctx.hyper = (weight, center, eps, backend)

    @staticmethod
    def backward(ctx, dout, _sumsq):
        grad, sumsq = ctx.saved_tensors
        dgrad = _PenaltyGrad.apply(grad, sumsq, _as_dout(dout, sumsq), *ctx.hyper)
        return dgrad, None, None, None, None


class _PenaltyGrad(Function):
    """dgrad = coef_b(s_b, dout) * g: differentiable in grad (through s_b too) and dout."""
    generate_vmap_rule = True

    @staticmethod
    def forward(grad, sumsq, dout, weight, center, eps, backend):
        return _ops(backend)[1](grad, sumsq, dout, weight, center, eps)

    @staticmethod
    def setup_context(ctx, inputs, output):
        grad, sumsq, dout, weight, center, eps, backend = inputs
        ctx.save_for_backward(grad, sumsq, dout)
        ctx.hyper = (weight, center, eps, backend)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, ggrad):
        grad, sumsq, dout = ctx.saved_tensors
        weight, center, eps, backend = ctx.hyper
        if ggrad.stride() != grad.stride():
            ggrad = copy_like(ggrad, grad)
        d_grad, d_dout = _ops(backend)[2](grad, sumsq, dout, ggrad, weight, center, eps)
        return d_grad, None, d_dout, None, None, None, None


def _as_dout(dout, sumsq):
    """The incoming gradient as the 0-dim compute-dtype tensor the kernels read."""
    return dout.reshape(()).to(sumsq.dtype)


def _check(grad, weight, center, eps):
    op = "penalty_from_grad"
    _checks.floating(op, "grad", grad)
    if grad.dim() < 1 or grad.shape[0] < 1 or grad.numel() == 0:
        raise ValueError(f"{op}: grad must have a batch dimension and at least one element, got "
                         f"shape {tuple(grad.shape)}")
    weight = _checks.nonnegative(op, "weight", weight)
    center = _checks.nonnegative(op, "center", center)
    eps = _checks.nonnegative(op, "eps", eps)
    if center != 0 and eps == 0:
        raise ValueError(f"{op}: eps must be > 0 when center != 0 (it keeps the norm of a zero "
                         "gradient finite)")
    return weight, center, eps


def penalty_from_grad(grad, *, weight, center=1.0, eps=EPS, backend=None):
    """The weighted gradient penalty of `grad` (B, ...), ready to add to the critic loss.

    weight * mean_b (sqrt(||g_b||^2 + eps) - center)^2, or weight * mean_b ||g_b||^2 when
    center == 0. A 0-dim float32 tensor (float64 for float64 grad), differentiable twice
    with fused kernels. grad: any layout; fused backends take contiguous and channels_last
    as they are and copy others.
    """
    weight, center, eps = _check(grad, weight, center, eps)
    chosen = OP.resolve(grad.device, backend)
    if chosen == "reference":
        return penalty_reference(grad, weight, center, eps)
    if not samples_contiguous(grad):
        grad = grad.contiguous()
    return _Penalty.apply(grad, weight, center, eps, chosen)[0]
