"""fastgan.ops.batch_norm_act: BatchNorm followed by ReLU / LeakyReLU, fused.

The tail of every DCGAN block (Radford et al. 2015): a convolution (left to cuDNN), then
BatchNorm2d, then ReLU (generator) or LeakyReLU(0.2) (discriminator). Eager PyTorch runs
BatchNorm and the activation as separate kernels over the convolution's output, forward
and backward. Here, with batch statistics (training):

    forward   one split reduction for the per-channel mean and variance (Welford/Chan
              merges in float32, so a large mean loses no precision; the running
              statistics updated on the device with BatchNorm2d's momentum and
              unbiased-variance rule), then one pass: normalize, affine, activation
    backward  one split reduction (sum g, sum g * xhat, g the output gradient through the
              activation's mask, taken from the saved output), then one pass for dx; a
              backward that builds a graph (create_graph=True: a gradient penalty through
              a BatchNorm critic) runs as differentiable PyTorch ops of the saved input
              instead, so the double backward is exact

The mask y > 0 of the saved output y equals the reference's v > 0 (v the normalized,
affine value before rounding to x's dtype) except where v is positive but rounds to zero
in x's dtype: only for a 16-bit x (v is computed in float32), v <= 2**-25 (float16) or
2**-134 (bfloat16). There y is 0 in both and the fused backward takes g = slope * dy
where the reference takes dy (a difference that reaches dx, dweight and dbias through the
reductions). Never for a float32 or float64 x, whose v is y exactly. Saving v or the mask
instead would cost memory and bandwidth in every step for this.

Exact formulas: csrc/ops.cpp and csrc/batch_norm_act_math.h. The reference is BatchNorm's
arithmetic in plain PyTorch (float32 for 16-bit inputs, like cuDNN's), differentiated by
autograd.
"""
import numbers

import torch
from torch.overrides import handle_torch_function, has_torch_function_variadic

from fastgan import _backend, _ext, kernels
from fastgan.kernels._launch import on_tensors_device
from fastgan._autograd import Function
from fastgan.kernels._layout import copy_like, is_dense
from fastgan.ops import _checks, _vmap
from fastgan.ops.bias_leaky_relu import channel_view
from fastgan.ops.penalty import compute_dtype

OP = _backend.Op("batch_norm_act", auto={"cuda": ("cuda", "triton"), "cpu": ("cpp",)})


def batch_norm_act_reference(x, weight, bias, running_mean, running_var, use_batch_stats, momentum,
                             eps, negative_slope):
    """(out, mean, invstd) in plain PyTorch; updates the running statistics like BatchNorm2d."""
    t = compute_dtype(x.dtype)
    xt = x.to(t)
    if use_batch_stats:
        dims = [0] + list(range(2, x.dim()))
        var, mean = torch.var_mean(xt, dim=dims, correction=0)
        if running_mean is not None:
            n = x.numel() // x.shape[1]
            with torch.no_grad():
                running_mean.mul_(1 - momentum).add_(momentum * mean.detach().to(running_mean.dtype))
                running_var.mul_(1 - momentum).add_(
                    momentum * (var.detach() * (n / (n - 1))).to(running_var.dtype))
    else:
        mean, var = running_mean.to(t), running_var.to(t)
    invstd = 1 / torch.sqrt(var + eps)
    scale = invstd if weight is None else weight.to(t) * invstd
    v = (xt - channel_view(mean, x)) * channel_view(scale, x)
    if bias is not None:
        v = v + channel_view(bias.to(t), x)
    out = torch.nn.functional.leaky_relu(v, negative_slope).to(x.dtype)
    return out, mean, invstd


def _fake_forward(x, weight, bias, running_mean, running_var, use_batch_stats, momentum, eps, slope):
    t = compute_dtype(x.dtype)
    c = x.shape[1]
    return torch.empty_like(x), x.new_empty((c,), dtype=t), x.new_empty((c,), dtype=t)


def _fake_backward(grad_out, out, x, weight, mean, invstd, use_batch_stats, slope):
    return torch.empty_like(x), torch.empty_like(mean), torch.empty_like(mean)


if _ext.has_op("batch_norm_act"):
    torch.library.register_fake("fastgan::batch_norm_act")(_fake_forward)
    torch.library.register_fake("fastgan::batch_norm_act_backward")(_fake_backward)

if kernels.error() is None:
    @torch.library.custom_op("fastgan::batch_norm_act_triton",
                             mutates_args=("running_mean", "running_var"))
    @on_tensors_device
    def _forward_triton(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                        running_mean: torch.Tensor | None, running_var: torch.Tensor | None,
                        use_batch_stats: bool, momentum: float, eps: float,
                        negative_slope: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return kernels.batch_norm_act.batch_norm_act(x, weight, bias, running_mean, running_var,
                                                     use_batch_stats, momentum, eps, negative_slope)

    @torch.library.custom_op("fastgan::batch_norm_act_backward_triton", mutates_args=())
    @on_tensors_device
    def _backward_triton(grad_out: torch.Tensor, out: torch.Tensor, x: torch.Tensor,
                         weight: torch.Tensor | None, mean: torch.Tensor, invstd: torch.Tensor,
                         use_batch_stats: bool,
                         negative_slope: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return kernels.batch_norm_act.batch_norm_act_backward(grad_out, out, x, weight, mean, invstd,
                                                              use_batch_stats, negative_slope)

    _forward_triton.register_fake(_fake_forward)
    _backward_triton.register_fake(_fake_backward)


def _ops(backend):
    ns = torch.ops.fastgan
    if backend == "triton":
        return ns.batch_norm_act_triton, ns.batch_norm_act_backward_triton
    return ns.batch_norm_act, ns.batch_norm_act_backward


def _vmap_forward(op):
    """The forward's batching rule. Each vmapped slice is a batch of its own, with its own
    statistics: the slices fold into the channel dim (slice v's channel c at v * C + c),
    with weight, bias and the running statistics repeated where unbatched or laid out
    slice by slice where batched. Batched running statistics are updated in place, each
    slice's own; unbatched ones cannot take every slice's statistics, and the rule refuses
    them with batch statistics (torch.func's rule for aten's batch_norm refuses them too)."""
    def rule(info, in_dims, x, weight, bias, running_mean, running_var, use_batch_stats,
             momentum, eps, slope):
        size = info.batch_size
        x_dim, w_dim, b_dim, mean_dim, var_dim = in_dims[:5]
        if use_batch_stats and running_mean is not None and (mean_dim is None or var_dim is None):
            raise RuntimeError(
                "batch_norm_act under torch.func.vmap: with batch statistics each vmapped slice "
                "updates running_mean and running_var with its own statistics, so they must be "
                "batched too (one pair per slice); got unbatched running statistics. Pass "
                "batched ones (torch.func.stack_module_state stacks buffers), none "
                "(BatchNorm2d(track_running_stats=False)), or use_batch_stats=False")
        stats, write_back = [], []
        for r, r_dim in ((running_mean, mean_dim), (running_var, var_dim)):
            if r is None or not use_batch_stats:  # read only
                stats.append(_vmap.flat_channels(r, r_dim, size))
                continue
            r = _vmap.first(r, r_dim, size)
            if r.is_contiguous():  # a view: the op updates the caller's storage
                stats.append(r.view(-1))
            else:
                stats.append(r.reshape(-1).clone())
                write_back.append((r, stats[-1]))
        out, mean, invstd = op(_vmap.fold_channels(_vmap.first(x, x_dim, size)),
                               _vmap.flat_channels(weight, w_dim, size),
                               _vmap.flat_channels(bias, b_dim, size), *stats, use_batch_stats,
                               momentum, eps, slope)
        for r, flat in write_back:
            r.copy_(flat.view(r.shape))
        return ((_vmap.unfold_channels(out, size), mean.view(size, -1), invstd.view(size, -1)),
                (0, 0, 0))
    return rule


def _vmap_backward(op):
    """The backward's batching rule: the forward's fold into the channel dim (the per-channel
    sums are per slice), grad_out and out walked with x."""
    def rule(info, in_dims, grad_out, out, x, weight, mean, invstd, use_batch_stats, slope):
        size = info.batch_size
        g_dim, out_dim, x_dim, w_dim, mean_dim, invstd_dim = in_dims[:6]
        x = _vmap.fold_channels(_vmap.first(x, x_dim, size))
        out = _vmap.like(_vmap.fold_channels(_vmap.first(out, out_dim, size)), x)
        grad_out = _vmap.like(_vmap.fold_channels(_vmap.first(grad_out, g_dim, size)), x)
        gx, gw, gb = op(grad_out, out, x, _vmap.flat_channels(weight, w_dim, size),
                        _vmap.flat_channels(mean, mean_dim, size),
                        _vmap.flat_channels(invstd, invstd_dim, size), use_batch_stats, slope)
        return (_vmap.unfold_channels(gx, size), gw.view(size, -1), gb.view(size, -1)), (0, 0, 0)
    return rule


_vmap.register(("batch_norm_act", "batch_norm_act_backward"),
               (_forward_triton, _backward_triton) if kernels.error() is None else None,
               (_vmap_forward, _vmap_backward))


class _BatchNormAct(Function):
    # forward without ctx, setup_context apart (the form torch.func transforms take); the
    # statistics the backward needs are outputs, marked non-differentiable. vmap runs
    # forward and backward under vmap, through the ops' batching rules
    generate_vmap_rule = True

    @staticmethod
    def forward(x, weight, bias, running_mean, running_var, use_batch_stats, momentum, eps,
                slope, backend):
        return tuple(_ops(backend)[0](x, weight, bias, running_mean, running_var,
                                      use_batch_stats, momentum, eps, slope))

    @staticmethod
    def setup_context(ctx, inputs, outputs):
        x, weight, bias, _, _, use_batch_stats, _, _, slope, backend = inputs
        out, mean, invstd = outputs
        ctx.save_for_backward(x, out, weight, mean, invstd)
        ctx.mark_non_differentiable(mean, invstd)
        ctx.args = (use_batch_stats, slope, backend)
        ctx.eps = inputs[7]
        ctx.param_dtypes = (None if weight is None else weight.dtype, None if bias is None else bias.dtype)

    @staticmethod
    def backward(ctx, grad_out, _mean, _invstd):
        if torch.is_grad_enabled():  # create_graph=True: a double backward (a penalty's) follows
            return _differentiable_backward(ctx, grad_out)
        x, out, weight, mean, invstd = ctx.saved_tensors
        use_batch_stats, slope, backend = ctx.args
        if grad_out.stride() != x.stride() or grad_out.dtype != x.dtype:
            grad_out = copy_like(grad_out, x)
        gx, gw, gb = _ops(backend)[1](grad_out, out, x, weight, mean, invstd, use_batch_stats, slope)
        w_dtype, b_dtype = ctx.param_dtypes
        gw = gw.to(w_dtype) if w_dtype is not None and ctx.needs_input_grad[1] else None
        gb = gb.to(b_dtype) if b_dtype is not None and ctx.needs_input_grad[2] else None
        return gx, gw, gb, None, None, None, None, None, None, None


def _differentiable_backward(ctx, grad_out):
    """_BatchNormAct's backward for a backward that builds a graph (create_graph=True, as a
    gradient penalty's, or torch.func's transforms): batch norm's gradients in closed form,
    as differentiable PyTorch ops of the saved x, weight and grad_out (the statistics
    recomputed from x with batch statistics), so the double backward is exact. With x̂ the
    normalized x, g the incoming gradient through the activation and s = weight * invstd:
    dx = s * (g - mean(g) - x̂ * mean(g * x̂)) (batch statistics; s * g with running ones),
    dweight = sum(g * x̂), dbias = sum(g), means and sums over every dim but the channels.
    The activation's mask comes from the saved output, as in the fused backward (its
    derivative is zero almost everywhere)."""
    x, out, weight, mean, invstd = ctx.saved_tensors
    use_batch_stats, slope, _ = ctx.args
    t = compute_dtype(x.dtype)
    dims = [0] + list(range(2, x.dim()))
    xt = x.to(t)
    if use_batch_stats:
        var, mean = torch.var_mean(xt, dim=dims, correction=0)
        invstd = torch.rsqrt(var + ctx.eps)
    mean, invstd = mean.to(t), invstd.to(t)
    xhat = (xt - channel_view(mean, x)) * channel_view(invstd, x)
    g = grad_out.to(t)
    g = torch.where(out.detach() > 0, g, g * slope)
    gx = gw = gb = None
    if ctx.needs_input_grad[0]:
        scale = channel_view(invstd if weight is None else weight.to(t) * invstd, x)
        if use_batch_stats:
            gx = scale * (g - channel_view(g.mean(dims), x) - xhat * channel_view((g * xhat).mean(dims), x))
        else:
            gx = scale * g
        gx = gx.to(x.dtype)
    if weight is not None and ctx.needs_input_grad[1]:
        gw = (g * xhat).sum(dims).to(ctx.param_dtypes[0])
    if ctx.param_dtypes[1] is not None and ctx.needs_input_grad[2]:
        gb = g.sum(dims).to(ctx.param_dtypes[1])
    return gx, gw, gb, None, None, None, None, None, None, None


def _check(x, weight, bias, running_mean, running_var, use_batch_stats, momentum, eps, slope):
    op = "batch_norm_act"
    if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real):
        raise TypeError(f"{op}: momentum must be a number in [0, 1], got {momentum!r}; None "
                        "(BatchNorm2d's cumulative average) is the module's business: pass "
                        "1 / num_batches_tracked")
    momentum = float(momentum)
    _checks.floating(op, "x", x)
    if x.dim() < 2 or x.numel() == 0:
        raise ValueError(f"{op}: x must be (N, C, ...) with elements, got shape {tuple(x.shape)}")
    for name, v in (("weight", weight), ("bias", bias), ("running_mean", running_mean),
                    ("running_var", running_var)):
        if v is not None and (not isinstance(v, torch.Tensor) or v.shape != (x.shape[1],)
                              or v.dtype not in _checks.FINITE_MAX or v.device != x.device):
            raise ValueError(f"{op}: {name} must be a floating ({x.shape[1]},) tensor on {x.device}")
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{op}: running_mean and running_var come together")
    if not use_batch_stats and running_mean is None:
        raise ValueError(f"{op}: without batch statistics the running statistics are needed")
    if use_batch_stats and x.numel() // x.shape[1] <= 1:
        raise ValueError(f"{op}: batch statistics need more than one value per channel, got shape "
                         f"{tuple(x.shape)}")
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"{op}: momentum must be in [0, 1], got {momentum}")
    return (momentum, _checks.nonnegative(op, "eps", eps),
            _checks.nonnegative(op, "negative_slope", slope))


def batch_norm_act(x, weight=None, bias=None, running_mean=None, running_var=None, *,
                   use_batch_stats=True, momentum=0.1, eps=1e-5, negative_slope=0.0, backend=None):
    """leaky_relu(batch_norm(x), negative_slope) (negative_slope 0: ReLU), fused.

    x: (N, C, ...), NCHW or channels_last (other layouts are copied). With
    use_batch_stats, the statistics of x are used and, when given, running_mean and
    running_var are updated in place (BatchNorm2d's rule, `momentum` the factor);
    otherwise the running statistics are used. momentum: a number in [0, 1] (BatchNorm2d's
    None, a cumulative average, is the caller's: pass 1 / num_batches_tracked). weight, bias
    and the running statistics: (C,) tensors of any stride (the fused backends run on
    contiguous copies and write updated running statistics back). Differentiable in x,
    weight and bias, twice too: a backward that builds a graph (create_graph=True, a
    gradient penalty's) runs as differentiable PyTorch ops instead of the fused backward.
    The backward's activation mask is read from the output (see the module doc for where
    that differs from the reference in 16-bit).

    Like torch.nn.functional's ops it defers to __torch_function__ (tensor subclasses,
    torch.fx's symbolic trace: one call_function node).
    """
    if has_torch_function_variadic(x, weight, bias, running_mean, running_var):
        return handle_torch_function(
            batch_norm_act, (x, weight, bias, running_mean, running_var), x, weight, bias,
            running_mean, running_var, use_batch_stats=use_batch_stats, momentum=momentum, eps=eps,
            negative_slope=negative_slope, backend=backend)
    momentum, eps, negative_slope = _check(x, weight, bias, running_mean, running_var,
                                           use_batch_stats, momentum, eps, negative_slope)
    chosen = OP.resolve(x.device, backend)
    if chosen == "reference":
        return batch_norm_act_reference(x, weight, bias, running_mean, running_var, use_batch_stats,
                                        momentum, eps, negative_slope)[0]
    if not is_dense(x):
        x = x.contiguous()
    # The kernels take contiguous 1-D vectors: .contiguous() is differentiable, so the
    # gradients reach strided weight/bias; strided running stats are updated as copies,
    # written back below.
    weight = None if weight is None else weight.contiguous()
    bias = None if bias is None else bias.contiguous()
    stats = (running_mean, running_var)
    if running_mean is not None:
        running_mean, running_var = running_mean.contiguous(), running_var.contiguous()
    out = _BatchNormAct.apply(x, weight, bias, running_mean, running_var, bool(use_batch_stats),
                              momentum, eps, negative_slope, chosen)[0]
    if use_batch_stats and running_mean is not None:
        with torch.no_grad():
            for given, used in zip(stats, (running_mean, running_var)):
                if used is not given:
                    given.copy_(used)
    return out
