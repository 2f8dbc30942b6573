"""WGAN critic update: RMSprop + weight clip, fastgan fused against torch.

One optimizer step over the DCGAN 64x64 critic's parameters (Radford et al. 2015,
ndf = 64: 11 tensors, 2,765,568 parameters), gradients given:
  eager-loop     torch.optim.RMSprop(foreach=False) + `p.data.clamp_` per tensor
                 (what public WGAN code does)
  eager-foreach  torch.optim.RMSprop(foreach=True) + torch._foreach_clamp_min_/max_
  torch.compile  the foreach step and clamps under torch.compile
  fastgan-*      RMSpropClip on a backend, over the tensors as they are ("list") or
                 over flatten_parameters' buffers ("flat")
GB/s counts params and square_avg read and written and grads read: 5 x the bytes.

    pytest benchmarks/bench_rmsprop_clip.py
"""
import pytest
import torch

from fastgan import _backend
from fastgan.optim import RMSpropClip, flatten_parameters

C = 0.01
LR = 5e-5  # WGAN (Arjovsky et al. 2017)
IMPLS = ["eager-loop", "eager-foreach", "torch.compile", "fastgan-cuda-list", "fastgan-cuda-flat",
         "fastgan-triton-list", "fastgan-triton-flat", "fastgan-cpp-list", "fastgan-cpp-flat"]


def _critic(dcgan_critic, device, flat):
    model = dcgan_critic().to(device)
    if flat:
        flatten_parameters(model)  # gradients become views of one buffer
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            grad = (torch.randn(p.shape, generator=gen) * 0.01).to(device)
            if p.grad is None:
                p.grad = grad
            else:
                p.grad.copy_(grad)
    return model


def _torch_step(model, foreach):
    opt = torch.optim.RMSprop(model.parameters(), lr=LR, foreach=foreach)
    params = list(model.parameters())

    @torch.no_grad()
    def step():
        opt.step()
        if foreach:
            torch._foreach_clamp_min_(params, -C)
            torch._foreach_clamp_max_(params, C)
        else:
            for p in params:
                p.data.clamp_(-C, C)
    return step


@pytest.mark.parametrize("impl", IMPLS)
def test_rmsprop_clip_step(measure, device, dcgan_critic, impl):
    if impl.startswith("fastgan-"):
        _, backend, layout = impl.split("-")
        ok, why = _backend.status(backend, device)
        if not ok:
            pytest.skip(f"{backend} backend unavailable on {device}: {why}")
        if backend == "triton" and device == "cpu":
            pytest.skip("the Triton interpreter is a test vehicle, not a performance backend")
        model = _critic(dcgan_critic, device, flat=layout == "flat")
        step = RMSpropClip(model.parameters(), lr=LR, clip=C, backend=backend).step
    else:
        model = _critic(dcgan_critic, device, flat=False)
        step = _torch_step(model, foreach=impl != "eager-loop")
        if impl == "torch.compile":
            step = torch.compile(step)
    nbytes = 5 * sum(p.numel() * p.element_size() for p in model.parameters())
    measure(step, nbytes=nbytes, group=f"rmsprop_clip dcgan-critic float32 {device}", rounds=30)
