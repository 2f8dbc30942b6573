"""The samples a gradient penalty is taken at, with random numbers drawn on the device.

    interpolate(real, fake)  WGAN-GP (Gulrajani et al. 2017, Algorithm 1):
                             x = eps_b * real + (1 - eps_b) * fake, one eps_b ~ U[0, 1) per
                             sample, computed as fma(eps_b, real - fake, fake)
    perturb(real)            DRAGAN's perturbation step (Kodali et al. 2017,
                             arXiv:1705.07215, in the form of the authors' reference code,
                             github.com/kodalinaveen3/DRAGAN): x_p = real + scale * std(real)
                             * u, u ~ U[0, 1) per element, std the population standard
                             deviation (ddof 0) of the whole real batch, scale C = 0.5; then
                             clamped to the data range ([-1, 1] for fastgan's images; the
                             clamp is fastgan's own addition). It is not the penalty's point
                             by itself: the DRAGAN penalty (fastgan.ops.gradient_penalty,
                             mode "dragan") then interpolates between x and the perturbed x,
                             x = interpolate(x_p, real) = real + eps_b * (x_p - real) with one
                             eps_b ~ U[0, 1) per sample, as the authors' code does (the paper
                             itself writes x + delta, delta ~ N(0, cI), with no interpolation).

The random numbers come from Philox4x32-10 keyed by a 1-element int64 seed tensor on the
inputs' device (csrc/philox.h): by default a fresh seed is drawn from `generator` (or the
device's default generator) with one device-side draw, so no host synchronization happens
and a CUDA graph that captures the step replays with new numbers each time. Every backend
computes the same numbers from the same seed, so a seed gives the same x on every backend.
"""
import torch

from fastgan import _backend, _ext, kernels
from fastgan.kernels._launch import on_tensors_device
from fastgan.kernels._layout import copy_like, is_dense, same_walk
from fastgan.ops import _checks, _philox
from fastgan.ops.penalty import compute_dtype, samples_contiguous

INTERPOLATE = _backend.Op("interpolate", auto={"cuda": ("cuda", "triton"), "cpu": ("cpp",)})
PERTURB = _backend.Op("perturb", auto={"cuda": ("cuda", "triton"), "cpu": ("cpp",)})
DRAGAN_SCALE = 0.5  # C of Kodali et al. 2017 (the authors' code: 0.5 * X.std())


def draw_seed(device, generator=None):
    """A fresh 1-element int64 seed on `device`, drawn from `generator` (default: the
    device's default generator) without a host synchronization."""
    device = torch.device(device)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    gen_device = generator.device if generator is not None else device
    seed = torch.empty(1, dtype=torch.int64, device=gen_device).random_(-2**63, None, generator=generator)
    return seed.to(device, non_blocking=True)


def _memory_order(t):
    """A 1-D view of a dense tensor's elements in memory order."""
    return t.as_strided((t.numel(),), (1,), t.storage_offset())


def interpolate_reference(real, fake, seed):
    """The oracle, in real's layout as the fused backends (contiguous where real's samples
    are not each one dense range)."""
    b = real.shape[0]
    t = compute_dtype(real.dtype)
    eps = _philox.uniform(_philox.philox_words(seed, torch.arange(b, device=real.device))[:, 0])
    eps = eps.to(t).reshape((b,) + (1,) * (real.dim() - 1))
    rf, ff = real.to(t), fake.to(t)
    x = torch.addcmul(ff, eps, rf - ff)  # fma(eps, real - fake, fake); fake's layout, maybe
    fmt = torch.preserve_format if samples_contiguous(real) else torch.contiguous_format
    return torch.empty_like(real, memory_format=fmt).copy_(x)


def perturb_reference(real, scale, seed, lo, hi):
    if not is_dense(real):
        real = real.contiguous()  # as the fused backends do: numbers follow memory order
    n = real.numel()
    t = compute_dtype(real.dtype)
    counters = torch.arange((n + 3) // 4, device=real.device)
    u = _philox.uniform(_philox.philox_words(seed, counters).reshape(-1)[:n]).to(t)
    out = torch.empty_like(real)
    x = torch.addcmul(_memory_order(real).to(t), u, scale.reshape(()).to(t))  # fma(u, scale, real)
    _memory_order(out).copy_(x.clamp(lo, hi))
    return out


def _fake_like_real(real, *args):
    return torch.empty_like(real)


if _ext.has_op("interpolate"):
    torch.library.register_fake("fastgan::interpolate")(_fake_like_real)
    torch.library.register_fake("fastgan::perturb")(_fake_like_real)

if kernels.error() is None:
    @torch.library.custom_op("fastgan::interpolate_triton", mutates_args=())
    @on_tensors_device
    def _interpolate_triton(real: torch.Tensor, fake: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
        return kernels.penalty_sampling.interpolate(real, fake, seed)

    @torch.library.custom_op("fastgan::perturb_triton", mutates_args=())
    @on_tensors_device
    def _perturb_triton(real: torch.Tensor, scale: torch.Tensor, seed: torch.Tensor, lo: float,
                        hi: float) -> torch.Tensor:
        return kernels.penalty_sampling.perturb(real, scale, seed, lo, hi)

    _interpolate_triton.register_fake(_fake_like_real)
    _perturb_triton.register_fake(_fake_like_real)


def _check_real(op, real):
    _checks.floating(op, "real", real)
    if real.dim() < 1 or real.numel() == 0:
        raise ValueError(f"{op}: real must have a batch dimension and at least one element, got "
                         f"shape {tuple(real.shape)}")


def _seed(op, seed, device, generator):
    if seed is None:
        return draw_seed(device, generator)
    if not (isinstance(seed, torch.Tensor) and seed.dtype == torch.int64 and seed.numel() == 1):
        raise TypeError(f"{op}: seed must be a 1-element int64 tensor")
    return seed.reshape(1).to(device)


def interpolate(real, fake, *, generator=None, seed=None, backend=None):
    """WGAN-GP's samples: eps_b * real + (1 - eps_b) * fake, eps_b ~ U[0, 1) per sample.

    real, fake: same shape, dtype and device (no gradient is tracked: detach them or not).
    generator: a torch.Generator on real's device (or the CPU) for the seed; seed: a
    1-element int64 tensor to use instead. Returns a new tensor in real's layout.
    """
    op = "interpolate"
    _check_real(op, real)
    if not isinstance(fake, torch.Tensor) or fake.shape != real.shape or fake.dtype != real.dtype \
            or fake.device != real.device:
        raise ValueError(f"{op}: fake must match real ({real.dtype} {tuple(real.shape)} on "
                         f"{real.device}), got "
                         + (f"{fake.dtype} {tuple(fake.shape)} on {fake.device}"
                            if isinstance(fake, torch.Tensor) else type(fake).__name__))
    seed = _seed(op, seed, real.device, generator)
    chosen = INTERPOLATE.resolve(real.device, backend)
    with torch.no_grad():
        real, fake = real.detach(), fake.detach()
        if chosen == "reference":
            return interpolate_reference(real, fake, seed)
        if not samples_contiguous(real):
            real = real.contiguous()
        if not same_walk(fake, real):  # (fake.contiguous() would not do: it keeps a layout
            fake = copy_like(fake, real)  # that is dense but not real's)
        if chosen == "triton":
            return torch.ops.fastgan.interpolate_triton(real, fake, seed)
        return torch.ops.fastgan.interpolate(real, fake, seed)


def perturb(real, *, scale=DRAGAN_SCALE, data_range=(-1.0, 1.0), generator=None, seed=None,
            backend=None):
    """DRAGAN's perturbation step: real + scale * std(real) * u, u ~ U[0, 1) per element,
    clamped to data_range (None: no clamp). std is the population standard deviation of the
    whole batch, computed on the device. Returns a new tensor in real's layout. (The DRAGAN
    penalty's points are interpolate(perturb(real), real): see the module docstring.)"""
    op = "perturb"
    _check_real(op, real)
    scale = _checks.nonnegative(op, "scale", scale)
    lo, hi = (-float("inf"), float("inf")) if data_range is None else map(float, data_range)
    if not lo <= hi:
        raise ValueError(f"{op}: data_range {data_range} is empty or NaN")
    seed = _seed(op, seed, real.device, generator)
    chosen = PERTURB.resolve(real.device, backend)
    with torch.no_grad():
        real = real.detach()
        wide = real if real.dtype in (torch.float32, torch.float64) else real.float()
        sigma = torch.std(wide, correction=0).to(torch.float32).reshape(1) * scale
        if chosen == "reference":
            return perturb_reference(real, sigma, seed, lo, hi)
        if not is_dense(real):
            real = real.contiguous()
        if chosen == "triton":
            return torch.ops.fastgan.perturb_triton(real, sigma, seed, lo, hi)
        return torch.ops.fastgan.perturb(real, sigma, seed, lo, hi)
