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

test_rmsprop_clip_step_loss_scaled is the same step in float16 training, through
torch.amp.GradScaler.step + update: torch's RMSprop makes the scaler unscale the gradients
(one foreach pass) and read the overflow flag on the host (a synchronization on a GPU);
RMSpropClip takes scale and flag as device tensors in its one kernel. The scale is held
at 1 (the work does not depend on it, and the gradients, unscaled in place, stay the
same from call to call). GB/s counts 6 x the bytes (the gradients are written too). No
torch.compile row: the scaler's host read of the flag (.item()) breaks the graph there.

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


@pytest.mark.parametrize("impl", ["eager-loop", "eager-foreach", "fastgan-cuda-flat",
                                  "fastgan-triton-flat", "fastgan-cpp-flat"])
def test_rmsprop_clip_step_loss_scaled(measure, device, dcgan_critic, skip_unavailable, impl):
    skip_unavailable(impl, device)
    model = _critic(dcgan_critic, device, flat=impl.startswith("fastgan-"))
    if impl.startswith("fastgan-"):
        opt = RMSpropClip(model.parameters(), lr=LR, clip=C, backend=impl.split("-")[1])
    else:
        opt = torch.optim.RMSprop(model.parameters(), lr=LR, foreach=impl == "eager-foreach")
    params = list(model.parameters())
    scaler = torch.amp.GradScaler(device, init_scale=1.0, growth_interval=2 ** 30)
    scaler.scale(torch.ones((), device=device))  # creates the scale tensor

    def step():
        scaler.step(opt)
        scaler.update()
        if not impl.startswith("fastgan-"):  # the clip, as in _torch_step
            with torch.no_grad():
                if impl == "eager-foreach":
                    torch._foreach_clamp_min_(params, -C)
                    torch._foreach_clamp_max_(params, C)
                else:
                    for p in params:
                        p.data.clamp_(-C, C)
    nbytes = 6 * sum(p.numel() * p.element_size() for p in params)
    measure(step, nbytes=nbytes, group=f"rmsprop_clip dcgan-critic float32 {device} GradScaler", rounds=30)
