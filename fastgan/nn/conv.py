"""fastgan.nn.Conv2d: nn.Conv2d whose gradient-penalty double backward has no pass of zeros.

A gradient penalty differentiates the critic's input gradient. For a convolution
y = conv(x, W) that gradient is dx = conv_transpose(dy, W): linear in dy and W, and
independent of x. PyTorch's autograd computes dx with aten.convolution_backward(dy, x, W),
an op that takes x, so the graph of dx has an edge to x; its double backward
(_convolution_double_backward) then returns zeros_like(x) for that edge, and autograd
pushes those zeros back through the critic's whole forward graph of the penalty's points:
for every layer a convolution backward (input and weight gradients) of zeros, the bias
and activation backwards, and additions of zero into every weight gradient, all wasted
(tests/nn/test_conv.py watches the zeros arrive with nn.Conv2d and not with this one).
Measured on the 2-core CPU (pytest benchmarks/bench_wgan_gp_step.py, DCGAN critic at
64 x 64, batch 16, medians; AMD EPYC with AVX-512 and bf16, 2026-11-24): a WGAN-GP critic
step took 120.0 ms in float32 and 85.2 ms under bf16 autocast, against 151.5 and 98.5 ms
with nn.Conv2d. Not yet measured on a GPU.

Here the backward computes dx as F.conv_transpose2d(dy, W) (an op of dy and W only) and
the weight gradient with aten.convolution_backward's weight half, only when the backward
uses it (torch._C._will_engine_execute_node, as fastgan.ops.bias_leaky_relu's bias
gradient: a penalty's autograd.grad with respect to the critic's input needs no weight
gradient). The double backward is PyTorch's own, of those two ops, and never reaches x.
The values are the same convolutions as nn.Conv2d's: the tests compare every gradient of
a WGAN-GP critic step with the stock module's in float64, and run gradcheck and
gradgradcheck.

Under autocast the input, weight and bias are cast to the autocast dtype before the
convolution, as autocast casts them for aten.convolution (no cast cache: each call casts
the weight once more, which a CUDA-graphed step does anyway, since graphs run without the
cache). Only zero padding with numeric padding and a batched (4-D) input are handled here;
any other configuration runs nn.Conv2d's own forward.
"""
import contextlib

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import handle_torch_function, has_torch_function_variadic

from fastgan._autograd import Function
from fastgan.ops.bias_leaky_relu import engine_wants_grad


def _input_grad(gy, weight, x_shape, stride, padding, dilation, groups):
    """dx = conv_transpose2d(dy, W), with the output padding that restores x's size."""
    out_pad = []
    for d in range(2):
        natural = (gy.shape[2 + d] - 1) * stride[d] - 2 * padding[d] + dilation[d] * (weight.shape[2 + d] - 1) + 1
        out_pad.append(x_shape[2 + d] - natural)
    return F.conv_transpose2d(gy, weight, None, stride, padding, tuple(out_pad), groups, dilation)


class _Conv2d(Function):
    # forward without ctx, setup_context apart: the form torch.func transforms (grad, vjp) take;
    # vmap runs forward and backward under vmap (every op here is aten's, with batching rules)
    generate_vmap_rule = True

    @staticmethod
    def forward(x, weight, bias, stride, padding, dilation, groups):
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias, stride, padding, dilation, groups = inputs
        ctx.save_for_backward(x, weight)
        ctx.conf = (stride, padding, dilation, groups)
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, gy):
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conf
        gx = gw = gb = None
        if ctx.needs_input_grad[0] and engine_wants_grad(ctx, 0):
            gx = _input_grad(gy, weight, x.shape, stride, padding, dilation, groups)
        if ctx.needs_input_grad[1] and engine_wants_grad(ctx, 1):
            gw = torch.ops.aten.convolution_backward(
                gy, x, weight, None, list(stride), list(padding), list(dilation), False, [0, 0], groups,
                [False, True, False])[1]
        if ctx.has_bias and ctx.needs_input_grad[2] and engine_wants_grad(ctx, 2):
            gb = gy.sum((0, 2, 3))
        return gx, gw, gb, None, None, None, None


def conv2d(x, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """F.conv2d (zero padding, pairs of ints), with the backward of the module doc for a 4-D x;
    an unbatched 3-D x is F.conv2d's. Defers to __torch_function__ like F.conv2d (tensor
    subclasses, torch.fx's symbolic trace: one call_function node)."""
    if has_torch_function_variadic(x, weight, bias):
        return handle_torch_function(conv2d, (x, weight, bias), x, weight, bias, stride, padding,
                                     dilation, groups)
    if x.dim() != 4:
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    device = x.device.type
    autocast = torch.is_autocast_enabled(device)
    if autocast:
        dtype = torch.get_autocast_dtype(device)

        def cast(t):  # autocast's rule: floating tensors other than float64
            return t.to(dtype) if t is not None and t.is_floating_point() and t.dtype != torch.float64 else t
        x, weight, bias = cast(x), cast(weight), cast(bias)
    with torch.autocast(device, enabled=False) if autocast else contextlib.nullcontext():
        return _Conv2d.apply(x, weight, bias, tuple(stride), tuple(padding), tuple(dilation), groups)


class Conv2d(nn.Conv2d):
    """nn.Conv2d (the same parameters, state_dict and initialization) whose input gradient
    is an op of the output gradient and the weight only, so a gradient penalty's double
    backward does not push zeros back through the layers before it (see the module doc).
    Use it for the convolutions of a critic that a gradient penalty differentiates twice;
    anywhere else it equals nn.Conv2d."""

    def _conv_forward(self, input, weight, bias):
        if self.padding_mode != "zeros" or isinstance(self.padding, str):
            return super()._conv_forward(input, weight, bias)
        return conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)
