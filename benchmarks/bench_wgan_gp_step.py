"""One whole WGAN-GP critic step on the DCGAN 64x64 critic: fastgan against eager PyTorch.

The step (Gulrajani et al. 2017, Algorithm 1, one critic iteration): D(real), D(fake), the
gradient penalty at interpolates (critic forward, input gradient with create_graph,
penalty, double backward), Adam (lr 1e-4, betas (0, 0.9)).
  eager          the DCGAN critic in stock modules (Conv2d + LeakyReLU, no BatchNorm),
                 the penalty as public code writes it (torch.autograd.grad,
                 norm(2, dim=1) over the flattened gradient)
  fastgan        fastgan.nn.DCGANCritic (bias + leaky ReLU fused to second order,
                 fastgan.nn.Conv2d), fastgan.ops.gradient_penalty
every one with torch.optim.Adam(fused=True), the trainer's (fastgan.models.dcgan.adam): the
optimizer is not what this compares (until 2026-11-25 eager had the default foreach Adam,
as in the 2026-11-22 H100 report).
  fastgan-nn.Conv2d  the same with the critic's convolutions retyped as nn.Conv2d: what
                 fastgan.nn.Conv2d saves (PyTorch's backward of zeros in the double backward)
each in float32 and under bf16 autocast. Batch 64 and 256 on a GPU; 16 on a CPU.
torch.compile is absent on purpose: AOTAutograd cannot compile the double backward.

    pytest benchmarks/bench_wgan_gp_step.py
"""
import pytest
import torch
from torch import nn

from fastgan._devices import cpu_has_bf16
from fastgan.nn import DCGANCritic
from fastgan.ops import gradient_penalty


def _plain_gp(critic, real, fake):
    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    x = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (g,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return 10.0 * ((g.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def _step(impl, amp, device, batch):
    torch.manual_seed(0)
    fused = impl.startswith("fastgan")
    critic = DCGANCritic(64, 3, 64, fused=fused).to(device)
    if impl == "fastgan-nn.Conv2d":
        for m in critic.modules():
            if isinstance(m, nn.Conv2d):
                m.__class__ = nn.Conv2d  # the stock backward (the same weights and forward)
    opt = torch.optim.Adam(critic.parameters(), lr=1e-4, betas=(0.0, 0.9), fused=True)
    real = torch.rand(batch, 3, 64, 64, device=device) * 2 - 1
    fake = torch.rand(batch, 3, 64, 64, device=device) * 2 - 1
    penalty = (lambda: gradient_penalty(critic, real, fake)) if fused else (lambda: _plain_gp(critic, real, fake))

    def step():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
            loss = critic(fake).float().mean() - critic(real).float().mean() + penalty()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


@pytest.mark.parametrize("amp", [False, True], ids=["float32", "bf16-autocast"])
@pytest.mark.parametrize("impl", ["eager", "fastgan", "fastgan-nn.Conv2d"])
@pytest.mark.parametrize("batch", [16, 64, 256])
def test_wgan_gp_critic_step(measure, device, impl, amp, batch):
    if (device == "cuda") != (batch != 16):
        pytest.skip(f"batch {batch} is measured on {'a CPU' if batch == 16 else 'a GPU'} only")
    if amp and device == "cpu" and not cpu_has_bf16():
        pytest.skip("this CPU has no bfloat16 hardware (AVX512-BF16 or AMX): bf16 autocast would time "
                    "torch's emulation of it (11-18 s a step on a 2-core AVX2 EPYC)")
    step = _step(impl, amp, device, batch)
    rounds, iterations = (30, 3) if device == "cuda" else (5, 1)
    precision = "bf16-autocast" if amp else "float32"
    measure(step, nbytes=None, group=f"wgan-gp critic step dcgan64 batch {batch} {precision} {device}",
            rounds=rounds, iterations=iterations)
