"""The DCGAN generator and critic (Radford et al. 2015) at 16-128 px, as DCGAN and WGAN-GP use them.

Generator (Radford et al. 2015, fig. 1):

    z (z_dim) -> ConvT 4x4/1 -> (16*width x 4 x 4 at 64 px) -> BN -> ReLU
      -> [ConvT 4x4/2 -> BN -> ReLU] ... (channels halve as the side doubles)
      -> ConvT 4x4/2 -> C x R x R -> tanh

At 64 px and width 64 this is the paper's 4x4x1024 -> 8x8x512 -> 16x16x256 -> 32x32x128
-> 64x64x3. fused=True builds each ConvT -> BN -> ReLU as fastgan.nn.ConvTransposeBNReLU
(the same state_dict as the stock nn.Sequential, which fused=False builds).

Critic:

    x (C x R x R) -> Conv 4x4/2 (width) -> act -> Conv 4x4/2 (2*width) -> [norm] -> act -> ...
      -> (8*width x 4 x 4) -> Conv 4x4/1 -> one score per sample

The activation is LeakyReLU(0.2) (Radford et al. 2015, sec. 3). norm=None is the WGAN-GP
critic (Gulrajani et al. 2017 use no BatchNorm in a gradient-penalty critic: the penalty
is per sample and BatchNorm couples the samples); norm="batch" is the DCGAN discriminator
(BatchNorm on every layer but the first; fused=True runs each Conv -> BN -> LeakyReLU
with fastgan's fused kernels through fastgan.accelerate, which keeps the state_dict
keys). No sigmoid: the losses take logits.

fused=True builds each norm-free layer as Conv2d(bias=False) + fastgan.nn.BiasLeakyReLU
(bias and activation fused, differentiable twice with fused kernels); fused=False is the
same network in stock modules, Conv2d(bias=True) + nn.LeakyReLU, for comparison. The
norm-free critic (fused=True, norm=None: the one a gradient penalty differentiates twice)
uses fastgan.nn.Conv2d, whose double backward skips PyTorch's pass of zeros back through
the critic (fastgan/nn/conv.py); same parameters and state_dict as nn.Conv2d.
Weights are initialized N(0, 0.02), BatchNorm scales N(1, 0.02), biases 0 (Radford et al.
2015, sec. 4).
"""
import functools
import math

import torch
import torch.fx
from torch import nn

from fastgan.accelerate import accelerate
from fastgan.nn._shapes import z_batch
from fastgan.nn.activation import BiasLeakyReLU
from fastgan.nn.blocks import ConvTransposeBNReLU
from fastgan.nn.conv import Conv2d

NEGATIVE_SLOPE = 0.2
INIT_STD = 0.02


def dcgan_init_(module):
    """DCGAN's initialization (Radford et al. 2015, sec. 4), in place."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, INIT_STD)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, INIT_STD)
            nn.init.zeros_(m.bias)
        elif isinstance(m, BiasLeakyReLU) and m.bias is not None:
            nn.init.zeros_(m.bias)
    return module


class CriticScores(nn.Module):
    """The critic's last step: its (B, 1, 1, 1) output as (B,) scores (an unbatched image's
    (1, 1, 1) as (1,)). Any other shape means images of another size than
    the critic was built for, which a flatten would turn silently into more scores than
    samples: ValueError naming both sizes."""

    def __init__(self, resolution):
        super().__init__()
        self.resolution = resolution

    def forward(self, x):
        return critic_scores(x, self.resolution)

    def extra_repr(self):
        return f"resolution={self.resolution}"


def critic_scores(x, resolution):
    """CriticScores' forward: x (B, 1, 1, 1) as (B,), (1, 1, 1) as (1,), else ValueError."""
    if x.dim() == 3 and tuple(x.shape) == (1, 1, 1):  # one unbatched image: (1,), as nn.Flatten(0)
        return x.reshape(1)
    if x.dim() != 4 or tuple(x.shape[1:]) != (1, 1, 1):
        got = "x".join(map(str, x.shape[-2:])) if x.dim() in (3, 4) else f"shape {tuple(x.shape)}"
        raise ValueError(f"DCGANCritic: built for {resolution}x{resolution} images, but "
                         f"its last convolution gave {got}, not 1x1: the input images have "
                         "another size")
    return x.reshape(x.shape[0])


torch.fx.wrap("critic_scores")  # a torch.fx trace keeps the shape check: one call


def _on_input(fn, module, args, kwargs):
    """A forward pre-hook, as functools.partial(_on_input, fn) registered with_kwargs=True
    (a partial of module-level functions pickles with the model): the container's input
    replaced by fn(module, input), whether it came positionally or by keyword (nn.Sequential's
    forward names it `input`)."""
    if args:
        return (fn(module, args[0]), *args[1:]), kwargs
    if "input" in kwargs:
        return args, {**kwargs, "input": fn(module, kwargs["input"])}
    return None


def _unbatched_image_as_a_batch(critic, x):
    """One unbatched image (C, H, W) becomes a batch of one, for the layers that need
    (B, C, H, W): BiasLeakyReLU (its bias is per dim 1) and BatchNorm2d."""
    return x.unsqueeze(0) if isinstance(x, torch.Tensor) and x.dim() == 3 else x


class DCGANCritic(nn.Sequential):
    """The DCGAN critic/discriminator; forward returns one logit per sample, shape (B,), of
    images (B, C, H, W), or of one unbatched image (C, H, W) as (1,)."""

    def __init__(self, resolution=64, in_channels=3, width=64, norm=None, fused=True,
                 negative_slope=NEGATIVE_SLOPE, backend=None):
        _check_resolution("DCGANCritic", resolution)
        if norm not in (None, "batch"):
            raise ValueError(f"DCGANCritic: norm must be None or 'batch', got {norm!r}")
        layers = []
        conv = Conv2d if fused and norm is None else nn.Conv2d
        c_in, c_out = in_channels, width
        for i in range(int(math.log2(resolution)) - 2):  # down to 4 x 4
            conv_bias = not fused and (norm is None or i == 0)
            layers.append(conv(c_in, c_out, 4, 2, 1, bias=conv_bias))
            if norm == "batch" and i > 0:
                layers.append(nn.BatchNorm2d(c_out))
                layers.append(nn.LeakyReLU(negative_slope))  # fused below by accelerate
            else:
                layers.append(BiasLeakyReLU(c_out, negative_slope, backend=backend) if fused
                              else nn.LeakyReLU(negative_slope))
            c_in, c_out = c_out, c_out * 2
        layers.append(conv(c_in, 1, 4, 1, 0))
        layers.append(CriticScores(resolution))
        super().__init__(*layers)
        dcgan_init_(self)
        if fused and norm == "batch":
            accelerate(self, backend=backend, verbose=False)
        self.register_forward_pre_hook(functools.partial(_on_input, _unbatched_image_as_a_batch),
                                        with_kwargs=True)
        self._register_load_state_dict_pre_hook(self._move_biases)

    def _move_biases(self, state_dict, prefix, *args):
        """A layer's bias lives in its convolution (fused=False) or in the activation after
        it (fused=True, BiasLeakyReLU): a state_dict of either kind loads into both."""
        mods = list(self._modules.values())
        for i in range(len(mods) - 1):
            here, there = f"{prefix}{i}.bias", f"{prefix}{i + 1}.bias"
            conv_has = getattr(mods[i], "bias", None) is not None
            act_has = isinstance(mods[i + 1], BiasLeakyReLU) and mods[i + 1].bias is not None
            if act_has and not conv_has and here in state_dict and there not in state_dict:
                state_dict[there] = state_dict.pop(here)
            elif conv_has and isinstance(mods[i + 1], (BiasLeakyReLU, nn.LeakyReLU)) and not act_has \
                    and there in state_dict and here not in state_dict:
                state_dict[here] = state_dict.pop(there)

    def __getitem__(self, idx):
        # nn.Sequential rebuilds its own class from a slice; a slice of a critic is a plain
        # nn.Sequential of its layers (e.g. critic[:-2], the features before the score).
        if isinstance(idx, slice):
            return nn.Sequential(*list(self._modules.values())[idx])
        return super().__getitem__(idx)


def _check_resolution(cls, resolution):
    if resolution not in (16, 32, 64, 128):
        raise ValueError(f"{cls}: resolution must be 16, 32, 64 or 128, got {resolution}")


class DCGANGenerator(nn.Sequential):
    """The DCGAN generator: z of shape (B, z_dim) -> images (B, C, R, R) in [-1, 1]. z may
    also be (B, z_dim, 1, 1), or one unbatched (z_dim,), which gives (1, C, R, R)."""

    def __init__(self, resolution=64, z_dim=100, out_channels=3, width=64, fused=True, backend=None):
        _check_resolution("DCGANGenerator", resolution)
        n_up = int(math.log2(resolution)) - 2  # 4 x 4 -> R x R

        def block(c_in, c_out, stride, padding):
            if fused:
                return ConvTransposeBNReLU(c_in, c_out, 4, stride, padding, backend=backend)
            return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 4, stride, padding, bias=False),
                                 nn.BatchNorm2d(c_out), nn.ReLU())

        c = width * 2 ** n_up
        layers = [nn.Unflatten(1, (z_dim, 1, 1)), block(z_dim, c, 1, 0)]
        for _ in range(n_up - 1):
            layers.append(block(c, c // 2, 2, 1))
            c //= 2
        layers += [nn.ConvTranspose2d(c, out_channels, 4, 2, 1), nn.Tanh()]
        super().__init__(*layers)
        self.z_dim = z_dim
        dcgan_init_(self)
        # z as (B, z_dim), the container's forward kept
        self.register_forward_pre_hook(functools.partial(_on_input, z_batch), with_kwargs=True)
