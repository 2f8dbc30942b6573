"""The penalty's samples: fastgan's fused sampling ops against torch.

On B x 3 x 64 x 64 float32 batches (B = 256 on a GPU, 64 on a CPU):
  interpolate  WGAN-GP's eps * real + (1 - eps) * fake, one eps per sample
               eager / torch.compile: torch.rand(B) on the device and lerp
  perturb      DRAGAN's perturbation step x_p = clamp(real + 0.5 * std(real) * U[0, 1)) per
               element (the penalty's points are then interpolate(x_p, real), timed above)
               eager / torch.compile: std, torch.rand_like, addcmul, clamp
  fastgan-*    fastgan.ops.interpolate / perturb: the random numbers (Philox) drawn inside
               the one pass that writes the samples
GB/s: interpolate reads two batches and writes one (3 x); perturb reads real twice (the
std, the pass) and writes once (3 x).

    pytest benchmarks/bench_sampling.py
"""
import pytest
import torch

from fastgan.ops import interpolate, perturb

IMPLS = ["eager", "torch.compile", "fastgan-cuda", "fastgan-triton", "fastgan-cpp"]


def _eager_interpolate(real, fake):
    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    return torch.lerp(fake, real, eps)


def _eager_perturb(real):
    noise = torch.rand_like(real)
    return torch.addcmul(real, noise, 0.5 * real.std(correction=0)).clamp(-1.0, 1.0)


@pytest.mark.parametrize("op", ["interpolate", "perturb"])
@pytest.mark.parametrize("impl", IMPLS)
def test_sampling(measure, device, skip_unavailable, impl, op):
    skip_unavailable(impl, device)
    batch = 256 if device == "cuda" else 64
    real = torch.rand(batch, 3, 64, 64, device=device) * 2 - 1
    fake = torch.rand(batch, 3, 64, 64, device=device) * 2 - 1
    if impl.startswith("fastgan-"):
        backend = impl.split("-")[1]
        fn = ((lambda: interpolate(real, fake, backend=backend)) if op == "interpolate"
              else (lambda: perturb(real, backend=backend)))
    else:
        eager = ((lambda r, f: _eager_interpolate(r, f)) if op == "interpolate"
                 else (lambda r, f: _eager_perturb(r)))
        if impl == "torch.compile":
            eager = torch.compile(eager)
        fn = lambda: eager(real, fake)  # noqa: E731
    measure(fn, nbytes=3 * real.numel() * 4, group=f"{op} {batch}x3x64x64 float32 {device}")
