"""Fused convolution blocks: ConvTranspose2d/Conv2d -> BatchNorm2d -> ReLU/LeakyReLU.

The DCGAN generator block (ConvTranspose2d without bias, BatchNorm2d, ReLU) and the
DCGAN/LSGAN discriminator block (Conv2d, BatchNorm2d, LeakyReLU(0.2)) of Radford et al.
2015. Each module *is* the nn.Sequential it replaces (the same three child modules, so
the same state_dict keys and shapes: "0.weight", "1.weight", "1.bias",
"1.running_mean", ...) with a fused forward:

    training (batch statistics)  the convolution on cuDNN, then fastgan.ops.batch_norm_act:
                                 one statistics reduction, one normalize + affine +
                                 activation pass; backward in two passes
    eval (running statistics)    BatchNorm folded into the convolution's weight and bias:
                                 one convolution, then one fused bias + activation
                                 (fastgan.ops.bias_leaky_relu)

BatchNorm2d's semantics are kept: momentum (None: cumulative average), eps, affine,
track_running_stats, num_batches_tracked, train/eval.

The block runs fused only while its children are still what the fused kernels compute: a
Conv2d/ConvTranspose2d, a BatchNorm2d and a ReLU/LeakyReLU (subclasses that keep torch's
forward, so a torch.nn.utils.parametrize'd convolution is fused), none with a hook (a
forward pre-hook is how nn.utils.spectral_norm and weight_norm recompute the weight), and
BatchNorm settings the op takes. Otherwise, e.g. after `block[2] = nn.ELU()`, an added
layer or a hook, it runs as the nn.Sequential it is.
"""
import torch
import torch.fx
from torch import nn
from torch.nn import functional as F

from fastgan import _backend
from fastgan.ops.batch_norm_act import batch_norm_act
from fastgan.ops.bias_leaky_relu import bias_leaky_relu


def act_slope(act):
    """The negative slope of a ReLU (0) or LeakyReLU module."""
    return float(act.negative_slope) if isinstance(act, nn.LeakyReLU) else 0.0


def _conv(conv, x, weight, bias):
    if isinstance(conv, nn.ConvTranspose2d):
        return F.conv_transpose2d(x, weight, bias, conv.stride, conv.padding, conv.output_padding,
                                  conv.groups, conv.dilation)
    return conv._conv_forward(x, weight, bias)


def _folded(conv, bn):
    """(weight, bias) of the convolution with eval-mode BatchNorm folded in."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = bn.weight * scale
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    # Output channels: dim 0 of a Conv2d weight (out, in/groups, kh, kw); a ConvTranspose2d
    # weight is (in, out/groups, kh, kw), output channel g * out/groups + j in column j of
    # the rows of group g.
    if isinstance(conv, nn.ConvTranspose2d):
        g = conv.groups
        w = conv.weight.reshape(g, -1, *conv.weight.shape[1:]) * scale.reshape(g, 1, -1, 1, 1)
        w = w.reshape(conv.weight.shape)
    else:
        w = conv.weight * scale.reshape(-1, 1, 1, 1)
    return w.to(conv.weight.dtype), shift


def fused_conv_bn_act(conv, bn, slope, x, backend=None):
    """act(bn(conv(x))) with the BatchNorm and the activation fused (see the module docstring)."""
    if x.dim() != 4:  # BatchNorm2d's refusal (the fused op would take dim 1 of (C, H, W) for channels)
        raise ValueError(f"{type(bn).__name__}: expected 4D input (got {x.dim()}D input)")
    use_batch_stats = bn.training or bn.running_mean is None
    if not use_batch_stats:
        weight, shift = _folded(conv, bn)
        return bias_leaky_relu(_conv(conv, x, weight, None), shift, slope, backend=backend)
    y = _conv(conv, x, conv.weight, conv.bias)  # not conv(x): an accelerated conv's forward is this
    return bn_act(bn, y, slope, backend)


def bn_act(bn, y, slope, backend=None):
    """leaky_relu(bn(y), slope) for a BatchNorm2d `bn` using batch statistics (training, or
    no running statistics), as fastgan.ops.batch_norm_act: one statistics reduction and one
    normalize + affine + activation pass, the running statistics, num_batches_tracked and
    momentum=None handled as BatchNorm2d does. In eval mode with running statistics: the
    module, then the activation."""
    if not (bn.training or bn.running_mean is None):
        return F.relu(bn(y)) if slope == 0 else F.leaky_relu(bn(y), slope)
    if y.dim() != 4:  # BatchNorm2d's refusal (the fused op would take dim 1 of (C, H, W) for channels)
        raise ValueError(f"{type(bn).__name__}: expected 4D input (got {y.dim()}D input)")
    momentum = 0.0 if bn.momentum is None else bn.momentum
    update = bn.training and bn.track_running_stats and bn.running_mean is not None
    if update and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:  # cumulative moving average (BatchNorm2d reads the count too)
            momentum = 1.0 / float(bn.num_batches_tracked)
    if y.numel() == 0:  # BatchNorm2d's answer to an empty batch: empty, the statistics as they were
        return F.relu(y) if slope == 0 else F.leaky_relu(y, slope)
    return batch_norm_act(y, bn.weight, bn.bias, bn.running_mean if update else None,
                          bn.running_var if update else None, use_batch_stats=True,
                          momentum=momentum, eps=bn.eps, negative_slope=slope, backend=backend)


_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_STOCK_FORWARDS = (nn.Conv2d.forward, nn.ConvTranspose2d.forward, nn.BatchNorm2d.forward,
                   nn.ReLU.forward, nn.LeakyReLU.forward)


def hooked(m):
    """Whether module m has a forward or backward hook (which must see m's own tensors)."""
    return any(getattr(m, h, None) for h in _HOOKS)


def bn_refused(bn):
    """Why the fused op would refuse BatchNorm bn's settings (which torch takes), or None."""
    if bn.momentum is not None and not 0.0 <= bn.momentum <= 1.0:
        return f"BatchNorm momentum {bn.momentum} (the fused op takes [0, 1] or None)"
    if not bn.eps > 0:
        return f"BatchNorm eps {bn.eps} (the fused op takes eps > 0)"
    return None


def fusable(conv, bn, act):
    """Whether conv -> bn -> act computes what fused_conv_bn_act computes: the torch classes
    (or subclasses keeping their forward), no hook on any, a non-negative slope, BatchNorm's
    momentum in [0, 1] (or None) and eps > 0, the channels matching."""
    if not (isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(bn, nn.BatchNorm2d)
            and isinstance(act, (nn.ReLU, nn.LeakyReLU))):
        return False
    if any(type(m).forward not in _STOCK_FORWARDS or hooked(m) for m in (conv, bn, act)):
        return False
    if isinstance(act, nn.LeakyReLU) and not act.negative_slope >= 0:
        return False
    return bn_refused(bn) is None and bn.num_features == conv.out_channels


class _ConvBNAct(nn.Sequential):
    def __init__(self, conv, bn, act, backend):
        super().__init__(conv, bn, act)
        self.backend = _backend.check_choice(backend, type(self).__name__)

    def forward(self, x):
        mods = list(self._modules.values())
        if isinstance(x, torch.fx.Proxy) or len(mods) != 3 or not fusable(*mods):
            # a torch.fx symbolic trace: the three modules as they are (nn.Sequential's nodes,
            # so BatchNorm's train/eval choice is made when the traced module runs, not baked
            # in); children changed or hooked since: the nn.Sequential they are
            return nn.Sequential.forward(self, x)
        return fused_conv_bn_act(mods[0], mods[1], act_slope(mods[2]), x, self.backend)

    def __getitem__(self, idx):
        if isinstance(idx, slice):  # a plain nn.Sequential of the layers, not a fused block
            return nn.Sequential(*list(self._modules.values())[idx])
        return super().__getitem__(idx)


class ConvTransposeBNReLU(_ConvBNAct):
    """nn.Sequential(nn.ConvTranspose2d(..., bias=False), nn.BatchNorm2d(out), nn.ReLU()),
    fused: the DCGAN generator block. Same state_dict; checkpoints load either way."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=False, dilation=1, *, eps=1e-5, momentum=0.1,
                 affine=True, track_running_stats=True, backend=None, device=None, dtype=None):
        kw = dict(device=device, dtype=dtype)
        super().__init__(
            nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride, padding, output_padding,
                               groups, bias, dilation, **kw),
            nn.BatchNorm2d(out_channels, eps, momentum, affine, track_running_stats, **kw),
            nn.ReLU(), backend)


class ConvBNLeakyReLU(_ConvBNAct):
    """nn.Sequential(nn.Conv2d(..., bias=False), nn.BatchNorm2d(out), nn.LeakyReLU(0.2)),
    fused: the DCGAN/LSGAN discriminator block. Same state_dict."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=False, *, negative_slope=0.2, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, backend=None, device=None, dtype=None):
        kw = dict(device=device, dtype=dtype)
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                      **kw),
            nn.BatchNorm2d(out_channels, eps, momentum, affine, track_running_stats, **kw),
            nn.LeakyReLU(negative_slope), backend)
