"""fastgan.ops.bias_leaky_relu: a critic's bias + leaky ReLU, fused at every order.

    y = leaky_relu(x + bias[c], negative_slope),  c the index along dim 1

The DCGAN/WGAN-GP critic's activation (LeakyReLU(0.2), Radford et al. 2015). In a
gradient-penalty step the critic is differentiated twice, and there eager PyTorch is
wasteful: the derivative of leaky_relu_backward with respect to its input is zero almost
everywhere, yet autograd materializes that zero tensor and pushes it back through the
convolution before it (a full convolution backward of zeros per layer). Here the
backward is one kernel, dx = (y > 0 ? dy : slope * dy), computed from the saved output,
and that kernel is its own derivative with respect to dy, with no derivative with respect
to y: the second order costs one more elementwise pass and nothing else (the pattern of
StyleGAN2's bias_act). The bias gradient is the sum of dx over every dimension but 1,
computed only when the backward uses it (not in a gradient penalty's grad with respect to
the critic's input).

Arithmetic in float32 (float64 for float64), rounded once to x's dtype: in float32 and
float64 exactly F.leaky_relu(x + bias.view(...)). negative_slope >= 0.

The backward's mask is read from the saved output: dx = dy where y > 0, else slope * dy.
It equals the reference's (x + bias > 0, in float32 or float64) except where x + bias is
positive but rounds to zero in x's dtype: possible only for a 16-bit x with a bias of a
finer dtype (a float32 bias under autocast), at 0 < x + bias <= 2**-25 (float16) or
2**-134 (bfloat16). There y is 0 in both and dx is slope * dy where the reference's is dy.
Never for a float32 or float64 x, nor with x and bias of one dtype (a sum of two float16
or two bfloat16 values is 0 or at least the dtype's smallest subnormal). Saving x + bias
or the mask instead would cost memory and bandwidth in every step for this.
"""
import torch
from torch.overrides import handle_torch_function, has_torch_function_variadic

from fastgan import _backend, _ext, kernels
from fastgan.kernels._launch import on_tensors_device
from fastgan._autograd import Function
from fastgan.kernels._layout import copy_like, is_dense
from fastgan.ops import _checks, _vmap
from fastgan.ops.penalty import compute_dtype

OP = _backend.Op("bias_leaky_relu", auto={"cuda": ("cuda", "triton"), "cpu": ("cpp",)})
NEGATIVE_SLOPE = 0.2  # the DCGAN critic's (Radford et al. 2015)


def channel_view(v, x):
    """A (C,) per-channel vector broadcast against x (N, C, ...)."""
    return v.reshape((1, -1) + (1,) * (x.dim() - 2))


def bias_leaky_relu_reference(x, bias, negative_slope):
    """The oracle: plain PyTorch in opmath, differentiated by autograd."""
    t = compute_dtype(x.dtype)
    v = x.to(t)
    if bias is not None:
        v = v + channel_view(bias.to(t), x)
    return torch.nn.functional.leaky_relu(v, negative_slope).to(x.dtype)


def _fake_like_first(t, *args):
    return torch.empty_like(t)


if _ext.has_op("bias_leaky_relu"):
    torch.library.register_fake("fastgan::bias_leaky_relu")(_fake_like_first)
    torch.library.register_fake("fastgan::leaky_relu_backward")(_fake_like_first)

if kernels.error() is None:
    @torch.library.custom_op("fastgan::bias_leaky_relu_triton", mutates_args=())
    @on_tensors_device
    def _forward_triton(x: torch.Tensor, bias: torch.Tensor | None,
                        negative_slope: float) -> torch.Tensor:
        # the kernel reads bias[c] at offset c: a strided bias (a column of a batched bias
        # under vmap, say) is copied first, as the C++ and CUDA backends do
        bias = None if bias is None else bias.contiguous()
        return kernels.bias_leaky_relu.bias_leaky_relu(x, bias, negative_slope)

    @torch.library.custom_op("fastgan::leaky_relu_backward_triton", mutates_args=())
    @on_tensors_device
    def _backward_triton(grad: torch.Tensor, out: torch.Tensor,
                         negative_slope: float) -> torch.Tensor:
        return kernels.bias_leaky_relu.leaky_relu_backward(grad, out, negative_slope)

    _forward_triton.register_fake(_fake_like_first)
    _backward_triton.register_fake(_fake_like_first)


def _ops(backend):
    ns = torch.ops.fastgan
    if backend == "triton":
        return ns.bias_leaky_relu_triton, ns.leaky_relu_backward_triton
    return ns.bias_leaky_relu, ns.leaky_relu_backward


def _vmap_forward(op):
    """The forward's batching rule. An unbatched bias (a layer's, under a per-sample vmap) is
    every slice's: the slices fold into the batch dim, as they lie in memory where they can.
    A batched bias (an ensemble's) folds the slices into the channel dim instead, slice v's
    channel c at v * C + c, so each slice meets its own bias. Without a bias the op is
    elementwise and runs on the tensor as it lies."""
    def rule(info, in_dims, x, bias, negative_slope):
        x_dim, bias_dim = in_dims[:2]
        if bias is None:
            return op(_vmap.dense(x), None, negative_slope), x_dim
        x = _vmap.first(x, x_dim, info.batch_size)
        if bias_dim is None:
            return op(_vmap.fold_batch(x), bias, negative_slope).reshape(x.shape), 0
        y = op(_vmap.fold_channels(x), _vmap.flat_channels(bias, bias_dim, info.batch_size),
               negative_slope)
        return _vmap.unfold_channels(y, info.batch_size), 0
    return rule


def _vmap_backward(op):
    """The backward's batching rule: elementwise, grad walked with out in memory order."""
    def rule(info, in_dims, grad, out, negative_slope):
        grad_dim, out_dim = in_dims[:2]
        if grad_dim != out_dim:  # one of them unbatched (a vmap over grad outputs): expanded
            grad = _vmap.first(grad, grad_dim, info.batch_size)
            out, out_dim = _vmap.first(out, out_dim, info.batch_size), 0
        out = _vmap.dense(out)
        return op(_vmap.like(grad, out), out, negative_slope), out_dim
    return rule


_vmap.register(("bias_leaky_relu", "leaky_relu_backward"),
               (_forward_triton, _backward_triton) if kernels.error() is None else None,
               (_vmap_forward, _vmap_backward))


def engine_wants_grad(ctx, i):
    """Whether this backward will use the gradient of the Function's input i. A gradient
    penalty's autograd.grad(D(x_hat), x_hat) uses none of the bias's, and summing dx for it
    is a full reduction pass per layer (the H100 profile's costliest non-convolution kernel
    in the WGAN-GP step was a bf16 sum). Under torch.func transforms ctx is the node of
    the transform's own autograd pass (torch.func.grad and vjp run the engine; vmap's
    generated rule hands the backward a wrapper that reads the node's attributes), so the
    answer holds there too. True where the engine cannot say: under torch.compile, which
    traces the backward ahead of any engine, outside an engine's run, a ctx without a
    node, or an older torch."""
    if torch.compiler.is_compiling():
        return True
    try:
        node = ctx.next_functions[i][0]
    except (AttributeError, IndexError, TypeError):
        return True
    if node is None:
        return False
    try:
        return torch._C._will_engine_execute_node(node)
    except (AttributeError, RuntimeError):
        return True


class _BiasLeakyReLU(Function):
    # forward without ctx, setup_context apart: the form torch.func transforms (grad, vjp) take;
    # vmap runs forward and backward under vmap, through the ops' batching rules
    generate_vmap_rule = True

    @staticmethod
    def forward(x, bias, negative_slope, backend):
        return _ops(backend)[0](x, bias, negative_slope)

    @staticmethod
    def setup_context(ctx, inputs, y):
        _, bias, negative_slope, backend = inputs
        ctx.save_for_backward(y)
        ctx.args = (negative_slope, backend)
        ctx.bias_dtype = None if bias is None else bias.dtype

    @staticmethod
    def backward(ctx, dy):
        (y,) = ctx.saved_tensors
        dx = _LeakyReLUGrad.apply(dy, y.detach(), *ctx.args)  # no derivative in y: no edge
        db = None
        if ctx.bias_dtype is not None and ctx.needs_input_grad[1] and engine_wants_grad(ctx, 1):
            dims = [0] + list(range(2, dx.dim()))
            db = dx.sum(dims, dtype=compute_dtype(dx.dtype)).to(ctx.bias_dtype)
        return dx, db, None, None


class _LeakyReLUGrad(Function):
    """dx = mask(y) * dy: linear in dy, so its derivative is itself; none in y."""
    generate_vmap_rule = True

    @staticmethod
    def forward(dy, y, negative_slope, backend):
        if y.numel() == 0:  # an empty batch: nothing to walk (its strides may be anything)
            return torch.empty_like(y)
        if dy.stride() != y.stride() or dy.dtype != y.dtype:  # walked together, in memory order
            dy = copy_like(dy, y)
        return _ops(backend)[1](dy, y, negative_slope)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, y, negative_slope, backend = inputs
        ctx.save_for_backward(y)
        ctx.args = (negative_slope, backend)

    @staticmethod
    def backward(ctx, ddx):
        (y,) = ctx.saved_tensors
        return _LeakyReLUGrad.apply(ddx, y.detach(), *ctx.args), None, None, None


def _check(x, bias, negative_slope):
    op = "bias_leaky_relu"
    _checks.floating(op, "x", x)
    negative_slope = _checks.nonnegative(op, "negative_slope", negative_slope)
    if bias is not None:
        if not isinstance(bias, torch.Tensor):
            raise TypeError(f"{op}: bias must be a tensor or None, got {type(bias).__name__}")
        if x.dim() < 2:
            raise ValueError(f"{op}: a bias needs x with a channel dimension (dim 1), got shape "
                             f"{tuple(x.shape)}")
        if bias.dim() != 1 or bias.shape[0] != x.shape[1]:
            raise ValueError(f"{op}: bias must be 1-D with {x.shape[1]} elements (x.size(1)), got "
                             f"shape {tuple(bias.shape)}")
        if bias.dtype not in _checks.FINITE_MAX:
            raise TypeError(f"{op}: bias has dtype {bias.dtype}; expected a floating dtype")
        if bias.device != x.device:
            raise ValueError(f"{op}: bias is on {bias.device} but x is on {x.device}")
    return negative_slope


def bias_leaky_relu(x, bias=None, negative_slope=NEGATIVE_SLOPE, *, backend=None):
    """leaky_relu(x + bias[c], negative_slope) with c along dim 1; bias may be None.

    Differentiable to any order with fused kernels. x: NCHW, channels_last, (N, C) or any
    dense layout (others are copied); the output keeps x's layout. bias: 1-D of
    x.size(1), any floating dtype (a float32 bias with a bf16 x under autocast is fine).
    Defers to __torch_function__ like torch.nn.functional's ops (tensor subclasses,
    torch.fx's symbolic trace: one call_function node).
    """
    if has_torch_function_variadic(x, bias):
        return handle_torch_function(bias_leaky_relu, (x, bias), x, bias, negative_slope,
                                     backend=backend)
    negative_slope = _check(x, bias, negative_slope)
    chosen = OP.resolve(x.device, backend)
    if chosen == "reference":
        return bias_leaky_relu_reference(x, bias, negative_slope)
    if not is_dense(x):
        x = x.contiguous()
    return _BiasLeakyReLU.apply(x, bias, negative_slope, chosen)
