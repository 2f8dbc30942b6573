"""fastgan.ops.sample_norm_act: per-sample normalization followed by ReLU / LeakyReLU, fused
at every order a gradient penalty needs.

The WGAN-GP ResNet critic (Gulrajani et al. 2017, arXiv:1704.00028, app. C) normalizes each
sample over all of its elements with a per-channel scale and shift (nn.GroupNorm(1, C),
fastgan.nn.resnet.SampleNorm), then applies ReLU, eight times per critic at 64 x 64. Its
gradient penalty differentiates the critic's input gradient, so every such layer runs three
times per critic step: forward, the backward that builds the input gradient, and that
backward's own backward. Eager PyTorch runs the normalization, the affine and the
activation as separate kernels in each, and the double backward of layer_norm / group_norm
is a composite of some twenty elementwise ops and reductions over the whole activation.
Here each order is one reduction pass and one elementwise pass over the activation:

    forward          per-sample mean and variance (Welford/Chan merges in T), then
                     out = act((x - mean) * rstd * w_c + b_c)
    backward         per-sample sums of a = g * w_c and a * xhat (g the output gradient
                     through the activation's mask, read from the saved output), then
                     grad_x; the per-channel sums of g and g * xhat (grad_bias,
                     grad_weight) only when the backward needs them (a penalty's input
                     gradient does not)
    double backward  seven per-sample sums, then grad of grad_out and x in one pass, and
                     the per-channel sum of p * g for the weight

T is float64 for float64 x and float32 otherwise; the output is rounded once to x's dtype
(under autocast, a bfloat16 convolution output gives a bfloat16 activation: the rounding
the next convolution's input cast would make). The exact formulas are the schema comments
in csrc/ops.cpp; the *_math references below implement them in plain PyTorch and are the
oracle of every backend's backward and double backward.

The double backward's formula. With L_n(v) = rstd_n (v - mean(v) - xhat mean(v xhat))
(means over sample n), grad_x = L(a): L is symmetric, so <ggx, grad_x> = <L(ggx), a>,
which gives d grad_out = m (p w_c + ...) with p = L(ggx); and d (sum u xhat) / dx = L(u)
for any u, with d rstd / dx = -rstd^2 xhat / M, which gives d_x. Checked against autograd
through F.group_norm in float64 (tests/ops/test_sample_norm_act.py).

The activation's mask is read from the saved output (out > 0), as in batch_norm_act: for
a 16-bit x it differs from the reference's v > 0 only where v > 0 rounds to zero (see
fastgan/ops/batch_norm_act.py); never for float32 or float64 x.
"""
import torch
from torch.overrides import handle_torch_function, has_torch_function_variadic

from fastgan import _backend, _ext, kernels
from fastgan.kernels._launch import on_tensors_device
from fastgan._autograd import Function
from fastgan.ops import _checks, _vmap
from fastgan.ops.bias_leaky_relu import channel_view, engine_wants_grad
from fastgan.ops.penalty import compute_dtype, samples_contiguous

OP = _backend.Op("sample_norm_act", auto={"cuda": ("cuda", "triton"), "cpu": ("cpp",)})
_NAMES = ("sample_norm_act", "sample_norm_act_backward", "sample_norm_act_double_backward")


def _sample_view(v, x):
    """A (N,) per-sample vector broadcast against x (N, C, ...)."""
    return v.reshape((-1,) + (1,) * (x.dim() - 1))


def _sample_dims(x):
    return tuple(range(1, x.dim()))


def _channel_dims(x):
    return (0,) + tuple(range(2, x.dim()))


def _stats(xt, eps):
    """(mean, rstd), (N,) each, of every sample of xt (already in T), differentiable."""
    var, mean = torch.var_mean(xt.reshape(xt.shape[0], -1), dim=1, correction=0)
    return mean, 1 / torch.sqrt(var + eps)


def sample_norm_act_reference(x, weight=None, bias=None, eps=1e-5, negative_slope=0.0):
    """(out, mean, rstd) in plain PyTorch, in T, out rounded once to x's dtype:
    leaky_relu(group_norm(x, 1, weight, bias, eps), negative_slope). Differentiable to any
    order by autograd: the fallback and the oracle of the forward."""
    t = compute_dtype(x.dtype)
    xt = x.to(t)
    mean, rstd = _stats(xt, eps)
    v = (xt - _sample_view(mean, x)) * _sample_view(rstd, x)
    if weight is not None:
        v = v * channel_view(weight.to(t), x)
    if bias is not None:
        v = v + channel_view(bias.to(t), x)
    out = torch.nn.functional.leaky_relu(v, negative_slope).to(x.dtype)
    return out, mean, rstd


def _masked(grad_out, out, slope, t):
    """g = out > 0 ? grad_out : grad_out * slope, in T."""
    g = grad_out.to(t)
    return torch.where(out > 0, g, g * slope)


def _l_op(v, xhat, rstd, x, m):
    """L_n(v) = rstd_n (v - sum_n(v) / M - xhat sum_n(v xhat) / M), per sample."""
    dims = _sample_dims(x)
    s = v.sum(dims, keepdim=True)
    s_x = (v * xhat).sum(dims, keepdim=True)
    return _sample_view(rstd, x) * (v - s / m - xhat * (s_x / m))


def sample_norm_act_backward_math(grad_out, out, x, weight, mean, rstd, negative_slope, channel_grads):
    """The backward op's formulas (csrc/ops.cpp) in plain PyTorch, in T: (grad_x in x's
    dtype, grad_weight, grad_bias), the last two (C,) T, or empty (0,) T tensors without
    channel_grads. Differentiable in grad_out, x and weight when mean and rstd are
    differentiable functions of x."""
    t = compute_dtype(x.dtype)
    m = x[0].numel()
    xhat = (x.to(t) - _sample_view(mean, x)) * _sample_view(rstd, x)
    g = _masked(grad_out, out, negative_slope, t)
    a = g if weight is None else g * channel_view(weight.to(t), x)
    gx = _l_op(a, xhat, rstd, x, m).to(x.dtype)
    if channel_grads:
        dims = _channel_dims(x)
        gw, gb = (g * xhat).sum(dims), g.sum(dims)
    else:
        gw = gb = x.new_empty((0,), dtype=t)
    return gx, gw, gb


def sample_norm_act_double_backward_math(ggx, ggw, ggb, grad_out, out, x, weight, mean, rstd,
                                         negative_slope):
    """The double backward op's formulas (csrc/ops.cpp) in plain PyTorch, in T:
    (d_grad_out, d_x) in x's dtype and d_weight ((C,) T; empty without weight). ggx, ggw,
    ggb: the incoming gradients of grad_x, grad_weight, grad_bias, each None for zero.
    Differentiable in every tensor argument when mean and rstd are functions of x."""
    t = compute_dtype(x.dtype)
    m = x[0].numel()
    dims = _sample_dims(x)
    xhat = (x.to(t) - _sample_view(mean, x)) * _sample_view(rstd, x)
    mask = torch.where(out > 0, torch.ones((), dtype=t, device=x.device),
                       torch.full((), negative_slope, dtype=t, device=x.device))
    g = grad_out.to(t) * mask
    w = None if weight is None else channel_view(weight.to(t), x)
    a = g if w is None else g * w
    r = _sample_view(rstd, x)
    d_go = torch.zeros_like(xhat)
    d_x = torch.zeros_like(xhat)
    d_w = None if weight is None else torch.zeros(weight.shape, dtype=t, device=x.device)
    if ggx is not None:
        ggx = ggx.to(t)
        s1 = ggx.sum(dims, keepdim=True)
        s2 = (ggx * xhat).sum(dims, keepdim=True)
        p = r * (ggx - s1 / m - xhat * (s2 / m))
        s_a = a.sum(dims, keepdim=True)
        t_a = (a * xhat).sum(dims, keepdim=True)
        s_ag = (a * ggx).sum(dims, keepdim=True)
        la = r * (a - s_a / m - xhat * (t_a / m))
        d_go = d_go + (p if w is None else p * w)
        d_x = d_x - (r * r * xhat / m) * (s_ag - s_a * s1 / m - t_a * s2 / m) - (r / m) * (s2 * la + t_a * p)
        if d_w is not None:
            d_w = d_w + (p * g).sum(_channel_dims(x))
    if ggw is not None and ggw.numel():
        gw = channel_view(ggw.to(t), x)
        d_go = d_go + gw * xhat
        d_x = d_x + _l_op(g * gw, xhat, rstd, x, m)
    if ggb is not None and ggb.numel():
        d_go = d_go + channel_view(ggb.to(t), x)
    d_go = (d_go * mask).to(x.dtype)
    if d_w is None:
        d_w = x.new_empty((0,), dtype=t)
    return d_go, d_x.to(x.dtype), d_w


# -- the ops of each backend ---------------------------------------------------------------

def _fake_forward(x, weight, bias, eps, slope):
    t = compute_dtype(x.dtype)
    n = x.shape[0]
    return torch.empty_like(x), x.new_empty((n,), dtype=t), x.new_empty((n,), dtype=t)


def _fake_backward(grad_out, out, x, weight, mean, rstd, slope, channel_grads):
    c = x.shape[1] if channel_grads else 0
    return torch.empty_like(x), mean.new_empty((c,)), mean.new_empty((c,))


def _fake_double_backward(ggx, ggw, ggb, grad_out, out, x, weight, mean, rstd, slope):
    c = 0 if weight is None else x.shape[1]
    return torch.empty_like(x), torch.empty_like(x), mean.new_empty((c,))


_FAKES = (_fake_forward, _fake_backward, _fake_double_backward)

for _name, _fake in zip(_NAMES, _FAKES):
    if _ext.has_op(_name):
        torch.library.register_fake(f"fastgan::{_name}")(_fake)

_triton_ops = None
if kernels.error() is None:
    @torch.library.custom_op("fastgan::sample_norm_act_triton", mutates_args=())
    @on_tensors_device
    def _forward_triton(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                        eps: float, negative_slope: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return kernels.sample_norm_act.sample_norm_act(x, weight, bias, eps, negative_slope)

    @torch.library.custom_op("fastgan::sample_norm_act_backward_triton", mutates_args=())
    @on_tensors_device
    def _backward_triton(grad_out: torch.Tensor, out: torch.Tensor, x: torch.Tensor,
                         weight: torch.Tensor | None, mean: torch.Tensor, rstd: torch.Tensor,
                         negative_slope: float,
                         channel_grads: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return kernels.sample_norm_act.sample_norm_act_backward(grad_out, out, x, weight, mean, rstd,
                                                                negative_slope, channel_grads)

    @torch.library.custom_op("fastgan::sample_norm_act_double_backward_triton", mutates_args=())
    @on_tensors_device
    def _double_backward_triton(ggx: torch.Tensor | None, ggw: torch.Tensor | None,
                                ggb: torch.Tensor | None, grad_out: torch.Tensor, out: torch.Tensor,
                                x: torch.Tensor, weight: torch.Tensor | None, mean: torch.Tensor,
                                rstd: torch.Tensor,
                                negative_slope: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return kernels.sample_norm_act.sample_norm_act_double_backward(
            ggx, ggw, ggb, grad_out, out, x, weight, mean, rstd, negative_slope)

    _triton_ops = (_forward_triton, _backward_triton, _double_backward_triton)
    for _op, _fake in zip(_triton_ops, _FAKES):
        _op.register_fake(_fake)


def _ops(backend):
    if backend == "triton":
        return _triton_ops
    ns = torch.ops.fastgan
    return tuple(getattr(ns, name) for name in _NAMES)


# Each op reduces over whole samples, and a vmapped slice's samples are its own: the rule
# runs the op once per slice (exact; one launch each).
_vmap.register(_NAMES, _triton_ops, (_vmap.loop,) * 3)


class _SampleNormAct(Function):
    # forward without ctx, setup_context apart (the form torch.func transforms take); mean
    # and rstd are outputs the backward needs, marked non-differentiable
    generate_vmap_rule = True

    @staticmethod
    def forward(x, weight, bias, eps, slope, backend):
        return tuple(_ops(backend)[0](x, weight, bias, eps, slope))

    @staticmethod
    def setup_context(ctx, inputs, outputs):
        x, weight, bias, eps, slope, backend = inputs
        out, mean, rstd = outputs
        ctx.save_for_backward(x, out, weight, mean, rstd)
        ctx.mark_non_differentiable(mean, rstd)
        ctx.args = (eps, slope, backend)
        ctx.bias_dtype = None if bias is None else bias.dtype

    @staticmethod
    def backward(ctx, grad_out, _mean, _rstd):
        x, out, weight, mean, rstd = ctx.saved_tensors
        eps, slope, backend = ctx.args
        want_w = weight is not None and ctx.needs_input_grad[1] and engine_wants_grad(ctx, 1)
        want_b = ctx.bias_dtype is not None and ctx.needs_input_grad[2] and engine_wants_grad(ctx, 2)
        gx, gw, gb = _SampleNormActBackward.apply(_vmap.like(grad_out, x), out, x, weight, mean, rstd, slope,
                                                  want_w or want_b, eps, backend)
        gw = gw.to(weight.dtype) if want_w else None
        gb = gb.to(ctx.bias_dtype) if want_b else None
        return gx, gw, gb, None, None, None


class _SampleNormActBackward(Function):
    """The backward as a Function of its own, whose backward is the fused double backward
    (a gradient penalty's). A third order (create_graph=True through the double backward)
    runs the double backward's formulas as differentiable PyTorch ops instead, with the
    statistics recomputed from x: exact at every order."""
    generate_vmap_rule = True

    @staticmethod
    def forward(grad_out, out, x, weight, mean, rstd, slope, channel_grads, eps, backend):
        return tuple(_ops(backend)[1](grad_out, out, x, weight, mean, rstd, slope, channel_grads))

    @staticmethod
    def setup_context(ctx, inputs, outputs):
        grad_out, out, x, weight, mean, rstd, slope, channel_grads, eps, backend = inputs
        ctx.save_for_backward(grad_out, out, x, weight, mean, rstd)
        ctx.args = (slope, eps, backend)

    @staticmethod
    def backward(ctx, ggx, ggw, ggb):
        grad_out, out, x, weight, mean, rstd = ctx.saved_tensors
        slope, eps, backend = ctx.args
        ggw = ggw if ggw is not None and ggw.numel() else None
        ggb = ggb if ggb is not None and ggb.numel() else None
        if torch.is_grad_enabled():  # a third order follows: differentiable formulas
            mean, rstd = _stats(x.to(compute_dtype(x.dtype)), eps)
            d_go, d_x, d_w = sample_norm_act_double_backward_math(ggx, ggw, ggb, grad_out, out, x, weight,
                                                                  mean, rstd, slope)
        else:
            t = compute_dtype(x.dtype)
            ggx = None if ggx is None else _vmap.like(ggx, x)
            ggw = None if ggw is None else ggw.to(t).contiguous()
            ggb = None if ggb is None else ggb.to(t).contiguous()
            d_go, d_x, d_w = _ops(backend)[2](ggx, ggw, ggb, grad_out, out, x, weight, mean, rstd, slope)
        d_w = d_w.to(weight.dtype) if weight is not None and ctx.needs_input_grad[3] else None
        return d_go, None, d_x, d_w, None, None, None, None, None, None


def _check(x, weight, bias, eps, slope):
    op = "sample_norm_act"
    _checks.floating(op, "x", x)
    if x.dim() < 2 or x.numel() == 0:
        raise ValueError(f"{op}: x must be (N, C, ...) with elements, got shape {tuple(x.shape)}")
    for name, v in (("weight", weight), ("bias", bias)):
        if v is not None and (not isinstance(v, torch.Tensor) or v.shape != (x.shape[1],)
                              or v.dtype not in _checks.FINITE_MAX or v.device != x.device):
            got = (f"{type(v).__name__}" if not isinstance(v, torch.Tensor)
                   else f"shape {tuple(v.shape)}, {v.dtype}, on {v.device}")
            raise ValueError(f"{op}: {name} must be a floating ({x.shape[1]},) tensor on {x.device} "
                             f"(x.shape[1] channels), got {got}")
    return _checks.nonnegative(op, "eps", eps), _checks.nonnegative(op, "negative_slope", slope)


def sample_norm_act(x, weight=None, bias=None, *, eps=1e-5, negative_slope=0.0, backend=None):
    """leaky_relu(group_norm(x, 1, weight, bias, eps), negative_slope) (negative_slope 0:
    ReLU), fused: each sample normalized over all of its elements, a per-channel scale and
    shift, the activation.

    x: (N, C, ...), NCHW or channels_last (other layouts are copied); the output has x's
    dtype, and its strides where x was not copied. weight, bias: (C,) tensors of any
    floating dtype and stride, or None.
    Differentiable in x, weight and bias to any order: the backward and the double backward
    (a gradient penalty's) are fused ops, a third order runs as differentiable PyTorch.
    The backward reads the activation's mask from the output (see the module doc).

    Like torch.nn.functional's ops it defers to __torch_function__ (tensor subclasses,
    torch.fx's symbolic trace: one call_function node).
    """
    if has_torch_function_variadic(x, weight, bias):
        return handle_torch_function(sample_norm_act, (x, weight, bias), x, weight, bias, eps=eps,
                                     negative_slope=negative_slope, backend=backend)
    eps, negative_slope = _check(x, weight, bias, eps, negative_slope)
    chosen = OP.resolve(x.device, backend)
    if chosen == "reference":
        return sample_norm_act_reference(x, weight, bias, eps, negative_slope)[0]
    if not samples_contiguous(x):  # the kernels walk each sample as one range of memory
        x = x.contiguous()
    # the kernels take contiguous (C,) vectors: .contiguous() is differentiable
    weight = None if weight is None else weight.contiguous()
    bias = None if bias is None else bias.contiguous()
    return _SampleNormAct.apply(x, weight, bias, eps, negative_slope, chosen)[0]
