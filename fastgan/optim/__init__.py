"""Fused optimizers and flat parameters.

RMSpropClip: torch.optim.RMSprop + WGAN's weight clip in one kernel per dtype.
flatten_parameters: a module's parameters (and gradients) as views of one buffer per
dtype, so optimizer steps and clips are single kernels on fixed addresses.
The weight clip on its own is fastgan.ops.clip_weights_.
"""
from fastgan.optim.flat import FlatParameters, flatten_parameters
from fastgan.optim.rmsprop_clip import RMSpropClip, clip_param_groups

__all__ = ["FlatParameters", "RMSpropClip", "clip_param_groups", "flatten_parameters"]
