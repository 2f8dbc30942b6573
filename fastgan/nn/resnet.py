"""The WGAN-GP ResNet generator and critic (Gulrajani et al. 2017, arXiv:1704.00028, app. C)
at 16-128 px.

Generator (their 64x64 "ResNet" generator; z_dim=128 is theirs):

    z (z_dim) -> Linear -> (c0 x 4 x 4) -> [up-block] x n -> BN -> ReLU -> Conv 3x3 -> C -> tanh

    up-block(c_in, c_out):  residual  BN -> ReLU -> upsample x2 -> Conv 3x3 (c_in -> c_out)
                                      -> BN -> ReLU -> Conv 3x3 (c_out -> c_out)
                            shortcut  upsample x2 -> Conv 1x1 (c_in -> c_out)
                            output    shortcut + residual

Critic (their 64x64 discriminator, the mirror of the generator):

    x (C x R x R) -> Conv 3x3 (width) -> [down-block] x n -> (c_n x 4 x 4) -> Linear -> score

    down-block(c_in, c_out):  residual  LN -> ReLU -> Conv 3x3 (c_in -> c_in)
                                        -> LN -> ReLU -> Conv 3x3 (c_in -> c_out) -> mean pool 2x2
                              shortcut  mean pool 2x2 -> Conv 1x1 (c_in -> c_out)

n = log2(R / 4) blocks take 4 x 4 to R x R. Channels at 64 px and width 64 (n = 4) are the
paper's 8*64: 512 -> 512 -> 256 -> 128 -> 64 in the generator and 64 -> 128 -> 256 -> 512 ->
512 in the critic; the multiplier is capped at 8, so 128 px also tops out at 8 * width.
Upsampling is nearest neighbour (their UpsampleConv is a depth-to-space of four copies, which
is the same thing). The up-block's convolutions have no biases: a per-channel constant added
to a block's output reaches the next BatchNorm through the residual branch and, linearly,
through the shortcuts, so the BatchNorms cancel every such bias in training (measured: their
gradients are ~1e-14 in float64); the Linear's bias varies over space and is kept.

The critic's "LN" is layer normalization over (C, H, W) of each sample with a per-channel
scale and shift, nn.GroupNorm(1, C): the normalization Gulrajani et al. use in their ResNet
critic. It is never BatchNorm: the gradient penalty is a per-sample constraint on
||grad_x D(x)||, and BatchNorm makes each sample's score depend on the other samples of the
batch, so the penalty would constrain a different function from the one the critic computes
at test time (Gulrajani et al. 2017, sec. 4, "No critic batch normalization"). With
GroupNorm(1, C) a sample's score and its input gradient depend on that sample alone, in
train and eval mode alike. There is no sigmoid: the losses take raw scores.

Initialization: PyTorch's defaults (Kaiming-uniform weights, a=sqrt(5); uniform biases). A
documented choice: Gulrajani et al. use He init for layers followed by ReLU and Glorot
otherwise; with a normalization before every ReLU the scale of the initial weights matters
little, and the ResNet does not use DCGAN's N(0, 0.02).

With fused=True (the default) both networks compute these functions with fewer
multiply-adds: a convolution followed by a 2 x 2 mean pool is one 4 x 4 convolution at
stride 2 (pooled_kernel), and nearest upsampling followed by a 3 x 3 convolution is one
4 x 4 transposed convolution at stride 2 (upsampled_kernel), their kernels built from the
modules' 3 x 3 weights at every call (the parameters and state_dict are the same); only the
rounding differs. The critic's SampleNorm + ReLU pairs run as fastgan.ops.sample_norm_act,
whose backward and double backward (the gradient penalty's) are fused ops too. fused=False
runs every module as written.

Every op in the critic (conv, group_norm or layer_norm, ReLU, mean, Linear) is twice
differentiable in stock PyTorch, which the gradient penalty's double backward needs. The
critic keeps its input's memory layout throughout (SampleNorm, mean_pool2): channels_last
on CUDA, where the trainer puts it, costs no layout copies.
"""
import math

import torch
import torch.fx
from torch import nn
from torch.nn import functional as F

from fastgan.nn._shapes import sample_batch, z_batch
from fastgan.nn.blocks import bn_act
from fastgan.nn.conv import Conv2d, conv2d
from fastgan.ops.sample_norm_act import sample_norm_act

#: Resolutions these networks build: 4 x 4 doubled n = 2..5 times.
RESOLUTIONS = (16, 32, 64, 128)
#: The channel multiplier's cap, 8 * width (Gulrajani et al. 2017, app. C: 8 * dim at 4 x 4).
MAX_MULT = 8


def _check(cls, resolution, width, channels_name, channels):
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution not in RESOLUTIONS:
        raise ValueError(f"{cls}: resolution must be 16, 32, 64 or 128, got {resolution!r}")
    for name, value in (("width", width), (channels_name, channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{cls}: {name} must be a positive int, got {value!r}")


def _channel_plan(resolution, width):
    """The generator's channels, 4 x 4 first: [w*m(n-1)] + [w*m(n-1-i) for i < n], m(k) =
    min(2**k, 8). The critic uses the reverse."""
    n = int(math.log2(resolution)) - 2
    mult = [min(2 ** (n - 1 - i), MAX_MULT) for i in range(n)]
    return [width * mult[0]] + [width * m for m in mult]


def pooled_kernel(weight):
    """The (C_out, C_in, 4, 4) kernel K with conv2d(x, K, b, stride=2, padding=1) ==
    mean_pool2(conv2d(x, weight, b, padding=1)) for a 3 x 3 `weight`, at every size of x
    (odd ones too: both drop the last row and column). Output (p, q) of the pair averages the
    3 x 3 windows at rows 2p + a, columns 2q + b, a, b in {0, 1}: one 4 x 4 window of x at
    stride 2 whose weights are the 2 x 2 box sums of the zero-padded weight, over 4. A
    difference of rounding only; the strided convolution does 4/9 of the multiply-adds."""
    return F.avg_pool2d(F.pad(weight, (1, 1, 1, 1)), 2, stride=1)


def upsampled_kernel(weight):
    """The (C_in, C_out, 4, 4) kernel T with conv_transpose2d(x, T, stride=2, padding=1) ==
    conv2d(upsample2(x), weight, padding=1) for a 3 x 3 `weight` (upsample2: nearest, x2).
    Along each axis output 2p reads x[p-1] with w[0] and x[p] with w[1] + w[2], output 2p+1
    x[p] with w[0] + w[1] and x[p+1] with w[2]; the transposed convolution writes x[p] to
    outputs 2p - 1 + k with T[k] = (w[2], w[1] + w[2], w[0] + w[1], w[0])[k], the box sums of
    the flipped weight. A difference of rounding only; 16 multiply-adds per input pixel
    instead of 36."""
    return (4 * pooled_kernel(weight.flip(2, 3))).transpose(0, 1)


def upsampled_conv(x, conv):
    """conv(upsample2(x)) for a 3 x 3, stride-1, padding-1 nn.Conv2d `conv`, as one 4 x 4
    transposed convolution at stride 2 (upsampled_kernel), with the conv's bias."""
    return F.conv_transpose2d(x, upsampled_kernel(conv.weight), conv.bias, 2, 1)


def upsample2(x):
    """Nearest-neighbour upsampling by 2."""
    return F.interpolate(x, scale_factor=2, mode="nearest")


def bn_relu(bn, x):
    """relu(bn(x)) for the fused generator: fastgan.ops.batch_norm_act with batch statistics
    (one statistics pass, one normalize + affine + ReLU pass, the running statistics updated
    as BatchNorm2d does; fastgan.nn.blocks.bn_act). A torch.fx trace records the two modules
    instead, so the train/eval choice is made when the traced module runs."""
    if isinstance(x, torch.fx.Proxy):
        return F.relu(bn(x))
    return bn_act(bn, x, 0.0)


class UpBlock(nn.Module):
    """The generator's residual up-block (see the module docstring): (B, c_in, H, W) ->
    (B, c_out, 2H, 2W). fused=True (the default) computes the same function with fewer
    multiply-adds and passes: upsampling then the first 3 x 3 convolution as one transposed
    convolution (upsampled_kernel), the shortcut's 1 x 1 convolution before the upsampling
    instead of after (the same values: each output pixel is its input pixel's product either
    way), and each BatchNorm with its ReLU as fastgan.ops.batch_norm_act (bn_relu).
    fused=False: the modules one after another, as written."""

    def __init__(self, c_in, c_out, fused=True):
        super().__init__()
        self.fused = fused
        self.bn1 = nn.BatchNorm2d(c_in)
        # No biases (see the module docstring): BatchNorm cancels every one of them.
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, 1, 0, bias=False)

    def forward(self, x):
        if self.fused:
            h = upsampled_conv(bn_relu(self.bn1, x), self.conv1)
            return upsample2(self.shortcut(x)) + self.conv2(bn_relu(self.bn2, h))
        h = self.conv1(upsample2(F.relu(self.bn1(x))))
        return self.shortcut(upsample2(x)) + self.conv2(F.relu(self.bn2(h)))


def _nhwc_in_memory(x):
    """A 4-D channels_last tensor that is not also NCHW-contiguous (its (N, H, W, C) view
    is the contiguous one)."""
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def mean_pool2(x):
    """2 x 2 mean pooling with stride 2: F.avg_pool2d(x, 2). On CUDA, for even H and W, a mean
    over a view (_mean_over_view): one reduction in whatever memory layout x has, and a
    backward that is a broadcast. Stock avg_pool2d's channels_last CUDA backward was the
    costliest non-convolution kernel of the WGAN-GP ResNet step on an H100 (34.8 ms per
    step, 2026-11-22). On the CPU avg_pool2d is the faster in both layouts (forward and
    backward, one thread, 2026-11-24: 2.8 against 7.9 ms NCHW and 0.7 against 5.4 ms
    channels_last at (64, 32, 16, 16); 60 against 106 ms NCHW at (16, 128, 64, 64)), and
    keeps the layout too. Odd sizes go to F.avg_pool2d (which drops the last row or column)."""
    n, c, h, w = x.shape
    if h % 2 or w % 2 or x.device.type != "cuda":
        return F.avg_pool2d(x, 2)
    return _mean_over_view(x)


def _mean_over_view(x):
    """mean_pool2 for even H and W as a mean over a (.., H/2, 2, W/2, 2) view of x."""
    n, c, h, w = x.shape
    if _nhwc_in_memory(x):
        # in the (N, H, W, C) order of memory: the reduction's output is contiguous there,
        # so the result is channels_last (a reduction allocates its output contiguous)
        nhwc = x.permute(0, 2, 3, 1).unflatten(2, (w // 2, 2)).unflatten(1, (h // 2, 2))
        return nhwc.mean((2, 4)).permute(0, 3, 1, 2)
    return x.unflatten(3, (w // 2, 2)).unflatten(2, (h // 2, 2)).mean((3, 5))


class SampleNorm(nn.GroupNorm):
    """nn.GroupNorm(1, C) (the same parameters and state_dict): each sample normalized over
    (C, H, W), then a per-channel scale and shift. A channels_last input is normalized as
    its (N, H, W, C) view with layer_norm, the scale and shift applied along C there, and
    returned channels_last: no layout copies. (Stock group_norm on CUDA copies a
    channels_last input to NCHW and returns NCHW, which the next channels_last convolution
    copies back; those copies were 29 ms per WGAN-GP ResNet step on an H100.) Other layouts
    take F.group_norm. The same math either way; rounding differs at float32 ulps. Under CUDA
    autocast both return float32 (layer_norm and group_norm are float32 ops there); under
    CPU autocast group_norm keeps bfloat16 and the channels_last path returns float32."""

    def __init__(self, num_channels, eps=1e-5):
        super().__init__(1, num_channels, eps=eps)

    def forward(self, x):
        return sample_norm(x, self.weight, self.bias, self.eps)


def sample_norm(x, weight, bias, eps=1e-5):
    """SampleNorm's forward: F.group_norm(x, 1, weight, bias, eps), a channels_last x as its
    (N, H, W, C) view (see SampleNorm)."""
    if _nhwc_in_memory(x):
        nhwc = x.permute(0, 2, 3, 1)  # contiguous
        y = F.layer_norm(nhwc, nhwc.shape[1:], eps=eps)
        return torch.addcmul(bias, y, weight).permute(0, 3, 1, 2)
    return F.group_norm(x, 1, weight, bias, eps)


def norm_relu(norm, x):
    """relu(norm(x)) for a SampleNorm `norm`, as fastgan.ops.sample_norm_act: the
    normalization, its scale and shift and the ReLU in one op, whose backward and double
    backward (the gradient penalty's) are fused too. The output has x's dtype (under
    autocast, a bfloat16 convolution output gives a bfloat16 activation: the rounding the
    next convolution's input cast makes of SampleNorm's float32 output)."""
    return sample_norm_act(x, norm.weight, norm.bias, eps=norm.eps)


# mean_pool2 and sample_norm choose their path by x's layout and device: a torch.fx
# symbolic trace records each as one call (the choice made when the traced module runs)
torch.fx.wrap("mean_pool2")
torch.fx.wrap("sample_norm")


class DownBlock(nn.Module):
    """The critic's residual down-block (see the module docstring): (B, c_in, H, W) ->
    (B, c_out, H/2, W/2). Per-sample normalization only (GroupNorm(1, C), as SampleNorm).
    fused=True (the default): fastgan.nn.Conv2d convolutions, each SampleNorm with its ReLU
    as fastgan.ops.sample_norm_act (norm_relu), and the residual branch's last convolution
    and mean pool as one 4 x 4 convolution at stride 2 (pooled_kernel: the same function,
    4/9 of the multiply-adds, no pooling in the forward, the backward or the penalty's
    double backward); fused=False: nn.Conv2d, SampleNorm then ReLU, then mean_pool2."""

    def __init__(self, c_in, c_out, fused=True):
        super().__init__()
        self.fused = fused
        conv = Conv2d if fused else nn.Conv2d
        self.norm1 = SampleNorm(c_in)
        self.conv1 = conv(c_in, c_in, 3, 1, 1)
        self.norm2 = SampleNorm(c_in)
        self.conv2 = conv(c_in, c_out, 3, 1, 1)
        self.shortcut = conv(c_in, c_out, 1, 1, 0)

    def forward(self, x):
        if self.fused:
            h = norm_relu(self.norm2, self.conv1(norm_relu(self.norm1, x)))
            # the convolution and the mean pool as one strided convolution
            h = conv2d(h, pooled_kernel(self.conv2.weight), self.conv2.bias, (2, 2), (1, 1))
        else:
            h = mean_pool2(self.conv2(F.relu(self.norm2(self.conv1(F.relu(self.norm1(x)))))))
        return self.shortcut(mean_pool2(x)) + h


class ResNetGenerator(nn.Module):
    """The WGAN-GP ResNet generator: z of shape (B, z_dim) -> images (B, C, R, R) in [-1, 1].
    Also takes z as (B, z_dim, 1, 1) or (z_dim,) (a batch of one). fused=True: each
    up-block's upsampling and first convolution run as one transposed convolution and every
    BatchNorm with its ReLU as one fused op (see UpBlock; the same parameters and function);
    fused=False: as written."""

    def __init__(self, resolution=64, z_dim=128, out_channels=3, width=64, fused=True):
        _check("ResNetGenerator", resolution, width, "out_channels", out_channels)
        if isinstance(z_dim, bool) or not isinstance(z_dim, int) or z_dim < 1:
            raise ValueError(f"ResNetGenerator: z_dim must be a positive int, got {z_dim!r}")
        super().__init__()
        c = _channel_plan(resolution, width)
        self.z_dim = z_dim
        self.resolution, self.fused = resolution, fused
        self.linear = nn.Linear(z_dim, c[0] * 4 * 4)
        self.unflatten = nn.Unflatten(1, (c[0], 4, 4))
        self.blocks = nn.Sequential(*(UpBlock(a, b, fused) for a, b in zip(c[:-1], c[1:])))
        self.bn = nn.BatchNorm2d(c[-1])
        self.to_rgb = nn.Conv2d(c[-1], out_channels, 3, 1, 1)

    def forward(self, z):
        h = self.blocks(self.unflatten(self.linear(z_batch(self, z))))  # (B, c[-1], R, R)
        return torch.tanh(self.to_rgb(bn_relu(self.bn, h) if self.fused else F.relu(self.bn(h))))


class ResNetCritic(nn.Module):
    """The WGAN-GP ResNet critic: images (B, C, R, R) -> one score per sample, shape (B,);
    one unbatched image (C, R, R) -> (1,).
    Normalization is per sample (GroupNorm(1, C)), never BatchNorm; see the module docstring.
    fused=True: the convolutions are fastgan.nn.Conv2d (the same parameters; a double
    backward of PyTorch's own ops that skips its zero gradients, 8% faster critic step with
    its penalty on the CPU), each SampleNorm + ReLU is fastgan.ops.sample_norm_act, and each
    down-block's last convolution and mean pool run as one strided convolution (see
    DownBlock); fused=False: nn.Conv2d, SampleNorm, ReLU, pooled after."""

    def __init__(self, resolution=64, in_channels=3, width=64, fused=True):
        _check("ResNetCritic", resolution, width, "in_channels", in_channels)
        super().__init__()
        c = _channel_plan(resolution, width)[::-1]  # [w, 2w, 4w, 8w, 8w] at 64 px
        self.resolution = resolution
        self.from_rgb = (Conv2d if fused else nn.Conv2d)(in_channels, c[0], 3, 1, 1)
        self.blocks = nn.Sequential(*(DownBlock(a, b, fused) for a, b in zip(c[:-1], c[1:])))
        self.linear = nn.Linear(c[-1] * 4 * 4, 1)

    def forward(self, x):
        x = sample_batch(self, x, (self.from_rgb.in_channels, self.resolution, self.resolution))
        h = self.blocks(self.from_rgb(x))  # (B, c[-1], 4, 4)
        return self.linear(h.flatten(1)).squeeze(1)
