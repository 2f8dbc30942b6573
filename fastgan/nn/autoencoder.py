"""Autoencoder discriminators: EBGAN's (Zhao et al. 2016) and BEGAN's (Berthelot et al. 2017).

Both GANs score a sample by how well an autoencoder reconstructs it; these modules return
the reconstruction and leave the energy (a reconstruction error) to the model's loss.

EBGAN (Zhao, Mathieu, LeCun 2016, arXiv:1609.03126, appendix, the 64 x 64 setting), a
convolutional autoencoder, stride-2 4 x 4 convolutions throughout:

    encoder  x (C x R x R) -> Conv 4x4/2 (w) -> LeakyReLU(0.2)                      (no BN)
               -> Conv 4x4/2 (2w) -> BN -> LeakyReLU(0.2)
               -> Conv 4x4/2 (4w) -> BN -> LeakyReLU(0.2)  = the code (4w x R/8 x R/8)
    decoder  -> ConvT 4x4/2 (2w) -> BN -> ReLU -> ConvT 4x4/2 (w) -> BN -> ReLU
               -> ConvT 4x4/2 (C)                                       (no output activation)

The slope 0.2 and the BN placement follow DCGAN (Radford et al. 2015, sec. 3), as EBGAN's
appendix does. Convolutions followed by BN have no bias (BN's shift replaces it). Weights
use DCGAN's initialization (fastgan.nn.dcgan.dcgan_init_).

fused=True builds every Conv -> BN -> LeakyReLU of the encoder as fastgan.nn.ConvBNLeakyReLU
and every ConvT -> BN -> ReLU of the decoder as fastgan.nn.ConvTransposeBNReLU (fused
kernels, see fastgan/nn/blocks.py); fused=False builds the same layers as stock
nn.Sequential(conv, BatchNorm2d, act). The first encoder layer and the last decoder layer
have no BN and are stock modules either way. The two have identical state_dict keys, so a
checkpoint loads into either, and compute the same function in train and eval mode.

BEGAN (Berthelot, Schumm, Metz 2017, arXiv:1703.10717, sec. 3.5, fig. 1): 3 x 3
convolutions, each followed by an ELU, no normalization anywhere.

    decoder  h -> Linear -> (w x 8 x 8) -> [Conv ELU, Conv ELU, upsample x2 (nearest)] ...
               -> [Conv ELU, Conv ELU] -> Conv 3x3 (C)                  (no output activation)
    encoder  x -> Conv ELU (w) -> level l = 1..L at l*w channels:
               [Conv ELU, Conv ELU] then Conv 3x3/2 ELU to (l+1)*w (sub-sampling; not at l = L)
               -> (L*w x 8 x 8) -> Linear -> h

L = log2(R / 8) + 1 levels; the channel count grows linearly with depth (w, 2w, 3w, ...),
as in the paper. The decoder also serves as BEGAN's generator (with h = z_dim), so it has
z_dim. The paper applies the ELU after every convolution, the sub-sampling ones included;
the only layers without one are the Linear layers and the decoder's output convolution.
Initialization is PyTorch's default (the paper states none).

BEGAN's decoder with fused=True (the default) computes the same function with fewer
multiply-adds: each nearest upsampling and the 3 x 3 convolution after it run as one 4 x 4
transposed convolution at stride 2 whose kernel is built from that convolution's weight at
every call (fastgan.nn.resnet.upsampled_conv: 16 multiply-adds per input pixel and
channel pair instead of 36, and no upsampled tensor in the forward or the backward); the
modules and state_dict are the same, only the rounding differs. fused=False runs the
modules as written.
"""
import math

import torch
import torch.fx
from torch import nn

from fastgan.nn._shapes import sample_batch, z_batch
from fastgan.nn.blocks import ConvBNLeakyReLU, ConvTransposeBNReLU
from fastgan.nn.dcgan import dcgan_init_
from fastgan.nn.resnet import upsampled_conv

NEGATIVE_SLOPE = 0.2  # Radford et al. 2015, sec. 3; EBGAN's appendix uses DCGAN's blocks


def _check_positive_int(cls, name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{cls}: {name} must be a positive int, got {value!r}")


class Autoencoder(nn.Module):
    """An encoder and a decoder; forward(x) is the reconstruction, forward(x, return_code=True)
    (reconstruction, code) for losses that use the code (EBGAN's pulling-away term). x is a
    batch (B, *sample_shape), or one unbatched sample, whose reconstruction (and code) come
    back unbatched too; any other shape is refused, naming the shape expected. encode and
    decode take batches only."""

    sample_shape = None  # (C, R, R) or the MLP's in_shape, set by each subclass

    def encode(self, x):
        return self.encoder(x)

    def decode(self, code):
        return self.decoder(code)

    def forward(self, x, return_code=False):
        if isinstance(return_code, torch.fx.Proxy):
            raise TypeError(f"{type(self).__name__}: return_code decides what forward returns; trace it "
                            "with torch.fx.symbolic_trace(module, concrete_args={'return_code': False}) "
                            "(or True)")
        batch = sample_batch(self, x, self.sample_shape)
        code = self.encoder(batch)
        recon = self.decoder(code)
        if batch is not x:  # one unbatched sample
            recon, code = recon[0], code[0]
        return (recon, code) if return_code else recon


class EBGANDiscriminator(Autoencoder):
    """EBGAN's autoencoder discriminator: x (B, C, R, R) -> reconstruction (B, C, R, R), or
    (reconstruction, code (B, 4*width, R/8, R/8)) with return_code=True."""

    def __init__(self, resolution=64, channels=3, width=64, fused=True, *,
                 negative_slope=NEGATIVE_SLOPE, backend=None):
        cls = "EBGANDiscriminator"
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 8 \
                or resolution % 8:
            raise ValueError(f"{cls}: resolution must be a multiple of 8 and >= 8, got {resolution!r}")
        _check_positive_int(cls, "channels", channels)
        _check_positive_int(cls, "width", width)
        super().__init__()
        self.resolution = resolution
        self.sample_shape = (channels, resolution, resolution)
        self.fused = fused

        def down(c_in, c_out):  # Conv 4x4/2 -> BN -> LeakyReLU
            if fused:
                return ConvBNLeakyReLU(c_in, c_out, 4, 2, 1, negative_slope=negative_slope,
                                       backend=backend)
            return nn.Sequential(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out),
                                 nn.LeakyReLU(negative_slope))

        def up(c_in, c_out):  # ConvT 4x4/2 -> BN -> ReLU
            if fused:
                return ConvTransposeBNReLU(c_in, c_out, 4, 2, 1, backend=backend)
            return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                                 nn.BatchNorm2d(c_out), nn.ReLU())

        w = width
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, w, 4, 2, 1), nn.LeakyReLU(negative_slope),  # R/2, no BN
            down(w, 2 * w),                                                 # R/4
            down(2 * w, 4 * w))                                             # R/8: the code
        self.decoder = nn.Sequential(
            up(4 * w, 2 * w),                                               # R/4
            up(2 * w, w),                                                   # R/2
            nn.ConvTranspose2d(w, channels, 4, 2, 1))                       # R, no activation
        dcgan_init_(self)



def _check_began(cls, resolution, h, channels, width):
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 8 \
            or resolution & (resolution - 1):
        raise ValueError(f"{cls}: resolution must be a power of two >= 8, got {resolution!r}")
    _check_positive_int(cls, "h", h)
    _check_positive_int(cls, "channels", channels)
    _check_positive_int(cls, "width", width)
    return int(math.log2(resolution)) - 3  # number of 2x resamplings between 8 x 8 and R x R


def _conv_elu(c_in, c_out, stride=1):
    return [nn.Conv2d(c_in, c_out, 3, stride, 1), nn.ELU()]


class BEGANDecoder(nn.Module):
    """BEGAN's decoder, also its generator: h (B, h) -> images (B, C, R, R), no output
    activation (Berthelot et al. 2017, fig. 1). Also takes h as (B, h, 1, 1) or (h,).
    fused=True: each upsampling and the convolution after it as one transposed convolution
    (the module docstring); fused=False: the modules as written."""

    def __init__(self, resolution=64, h=64, channels=3, width=64, fused=True):
        n_up = _check_began("BEGANDecoder", resolution, h, channels, width)
        super().__init__()
        self.z_dim = self.h = h
        self.resolution, self.fused = resolution, fused
        self.linear = nn.Linear(h, width * 8 * 8)
        self.unflatten = nn.Unflatten(1, (width, 8, 8))
        layers = []
        for _ in range(n_up):  # 8 x 8 -> R x R
            layers += _conv_elu(width, width) + _conv_elu(width, width)
            layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        layers += _conv_elu(width, width) + _conv_elu(width, width)
        layers.append(nn.Conv2d(width, channels, 3, 1, 1))
        self.convs = nn.Sequential(*layers)

    def forward(self, h):
        x = self.unflatten(self.linear(z_batch(self, h)))
        if not self.fused:
            return self.convs(x)
        layers = iter(self.convs)
        for layer in layers:  # upsample x2 + the Conv 3x3 after it as one ConvT 4x4/2
            x = upsampled_conv(x, next(layers)) if isinstance(layer, nn.Upsample) else layer(x)
        return x


class BEGANEncoder(nn.Module):
    """BEGAN's encoder: images (B, C, R, R) -> embedding (B, h) (Berthelot et al. 2017, fig. 1)."""

    def __init__(self, resolution=64, h=64, channels=3, width=64):
        n_down = _check_began("BEGANEncoder", resolution, h, channels, width)
        super().__init__()
        self.h = h
        self.resolution = resolution
        levels = n_down + 1
        layers = _conv_elu(channels, width)
        for level in range(1, levels + 1):
            c = level * width
            layers += _conv_elu(c, c) + _conv_elu(c, c)
            if level < levels:  # sub-sampling, channels grow linearly
                layers += _conv_elu(c, c + width, stride=2)
        self.convs = nn.Sequential(*layers)
        self.flatten = nn.Flatten(1)
        self.linear = nn.Linear(levels * width * 8 * 8, h)

    def forward(self, x):
        return self.linear(self.flatten(self.convs(x)))  # convs: (B, L*w, 8, 8)


class BEGANAutoencoder(Autoencoder):
    """BEGAN's discriminator: x (B, C, R, R) -> reconstruction (B, C, R, R), or
    (reconstruction, embedding (B, h)) with return_code=True."""

    def __init__(self, resolution=64, channels=3, width=64, h=64, fused=True):
        _check_began("BEGANAutoencoder", resolution, h, channels, width)
        super().__init__()
        self.encoder = BEGANEncoder(resolution, h, channels, width)
        self.decoder = BEGANDecoder(resolution, h, channels, width, fused)
        self.resolution = resolution
        self.sample_shape = (channels, resolution, resolution)
        self.h = h
