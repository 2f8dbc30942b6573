"""The inputs the networks take. A generator's z: (B, z_dim), also (B, z_dim, 1, 1) (the shape
PyTorch's DCGAN example draws) or one unbatched (z_dim,) (a batch of one). A critic's
samples: (B, *sample_shape), or one unbatched sample (a batch of one)."""
import math

import torch
import torch.fx


def z_batch(generator, z):
    """z as (B, generator.z_dim); any other shape is refused with the shapes accepted. A
    torch.fx Proxy (a trace, fastgan.accelerate's say) passes as it is."""
    if isinstance(z, torch.fx.Proxy):
        return z
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"{type(generator).__name__}: z must be a tensor, got {type(z).__name__}")
    flat = z
    if z.dim() == 1:
        flat = z.unsqueeze(0)
    elif z.dim() == 4 and z.shape[2:] == (1, 1):
        flat = z.flatten(1)
    d = generator.z_dim
    if flat.dim() != 2 or flat.shape[1] != d:
        raise ValueError(f"{type(generator).__name__}: z must have shape (B, {d}), (B, {d}, 1, 1) "
                         f"or ({d},) (z_dim={d}), got {tuple(z.shape)}")
    return flat


def sample_batch(critic, x, sample_shape, *, any_layout=False):
    """x as (B, *sample_shape): one unbatched sample becomes a batch of one; a batch of
    samples of another shape is refused, naming the shape expected. any_layout: a batch of
    any per-sample shape with as many values passes too (for a critic that flattens)."""
    if isinstance(x, torch.fx.Proxy):
        return x
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{type(critic).__name__}: x must be a tensor, got {type(x).__name__}")
    sample_shape = tuple(sample_shape)
    if tuple(x.shape) == sample_shape:
        return x.unsqueeze(0)
    if any_layout:
        ok = x.dim() >= 2 and math.prod(x.shape[1:]) == math.prod(sample_shape)
    else:
        ok = x.dim() == len(sample_shape) + 1 and tuple(x.shape[1:]) == sample_shape
    if not ok:
        want = ", ".join(str(d) for d in sample_shape)
        layouts = f" (or any (B, ...) of {math.prod(sample_shape)} values per sample)" if any_layout else ""
        raise ValueError(f"{type(critic).__name__}: x must have shape (B, {want}){layouts} or ({want}), "
                         f"got {tuple(x.shape)}")
    return x
