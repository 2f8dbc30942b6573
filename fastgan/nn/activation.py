"""fastgan.nn.BiasLeakyReLU: a critic's bias + leaky ReLU as one module, fused to second order."""
import torch

from fastgan import _backend
from fastgan.ops.bias_leaky_relu import NEGATIVE_SLOPE, bias_leaky_relu


class BiasLeakyReLU(torch.nn.Module):
    """leaky_relu(x + bias, negative_slope), the bias per channel (dim 1).

    A drop-in for `nn.LeakyReLU(negative_slope)` (channels=None: no bias) or for the bias
    of the layer before it plus that activation: `nn.Conv2d(..., bias=True), nn.LeakyReLU`
    becomes `nn.Conv2d(..., bias=False), BiasLeakyReLU(out_channels)`, so a gradient-penalty
    step differentiates the pair twice with fused kernels (fastgan.ops.bias_leaky_relu).
    The bias starts at zero; fastgan's critics initialize it as their papers say.
    """

    def __init__(self, channels=None, negative_slope=NEGATIVE_SLOPE, *, backend=None, device=None,
                 dtype=None):
        super().__init__()
        if channels is not None and (isinstance(channels, bool) or not isinstance(channels, int)
                                     or channels < 1):
            raise ValueError(f"BiasLeakyReLU: channels must be a positive int or None, got {channels!r}")
        if not negative_slope >= 0:
            raise ValueError(f"BiasLeakyReLU: negative_slope must be >= 0, got {negative_slope}")
        self.channels = channels
        self.negative_slope = float(negative_slope)
        self.backend = _backend.check_choice(backend, type(self).__name__)
        if channels is None:
            self.register_parameter("bias", None)
        else:
            self.bias = torch.nn.Parameter(torch.zeros(channels, device=device, dtype=dtype))

    def forward(self, x):
        return bias_leaky_relu(x, self.bias, self.negative_slope, backend=self.backend)

    def extra_repr(self):
        return f"channels={self.channels}, negative_slope={self.negative_slope}"


class LeakyReLU(torch.nn.LeakyReLU):
    """nn.LeakyReLU (negative_slope >= 0) computed by fastgan.ops.bias_leaky_relu without a
    bias: the same values, and a second order that sends nothing back through the layers
    before it (eager PyTorch's backpropagates a tensor of zeros there). inplace is ignored.
    What fastgan.accelerate(model, penalty=True) makes of a critic's nn.LeakyReLU."""

    def forward(self, x):
        return bias_leaky_relu(x, None, self.negative_slope)


class ReLU(torch.nn.ReLU):
    """nn.ReLU as LeakyReLU above with slope 0 (the same values and second order)."""

    def forward(self, x):
        return bias_leaky_relu(x, None, 0.0)
