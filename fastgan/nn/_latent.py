"""The latent input the generators take: (B, z_dim), also (B, z_dim, 1, 1) (the shape
PyTorch's DCGAN example draws) or one unbatched (z_dim,) (a batch of one)."""
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
