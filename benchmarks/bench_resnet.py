"""The WGAN-GP ResNet (Gulrajani et al. 2017, app. C): a critic step with its gradient
penalty and a generator step, fastgan's networks against the same networks as written.

  stock       fused=False: nn.Conv2d, each down-block's 3x3 convolution then mean_pool2,
              each up-block's nearest upsampling then 3x3 convolution, nn.BatchNorm2d
              then ReLU, the penalty in plain PyTorch (fastgan.ops' reference backend)
  unfolded    fused=True with the blocks as written (block.fused = False): what the
              blocks' folds and fused BatchNorms save
  fastgan     fused=True: the down-block's convolution and mean pool as one 4x4 stride-2
              convolution (pooled_kernel), the up-block's upsampling and convolution as one
              4x4 stride-2 transposed convolution (upsampled_kernel), its BatchNorms and
              ReLUs as fastgan.ops.batch_norm_act, fastgan.nn.Conv2d, the fused penalty

The critic step: D(real), D(fake), the penalty at interpolates (double backward), Adam
(lr 1e-4, betas (0, 0.9)); the generator step: G(z), D(G(z)), backward through both, Adam.
torch.compile is absent: AOTAutograd cannot compile the penalty's double backward. On a GPU
64 px, width 64 (the paper's), batch 64; on a CPU the digits run's 16 px, width 32, batch 64.

    pytest benchmarks/bench_resnet.py
"""
import pytest
import torch

from fastgan import models


def _model(impl, device):
    torch.manual_seed(0)
    size, width, batch = (64, 64, 64) if device == "cuda" else (16, 32, 64)
    m = models.build("wgan-gp", arch="resnet", resolution=size, channels=3, g_width=width,
                     d_width=width, batch_size=batch, fused=impl != "stock")
    if impl == "unfolded":
        for block in list(m.generator.blocks) + list(m.critic.blocks):
            block.fused = False
    g, d = m.generator.to(device), m.critic.to(device)
    if device == "cuda":
        g.to(memory_format=torch.channels_last), d.to(memory_format=torch.channels_last)
    return m, g, d, batch, size


def _opt(net, device):
    return torch.optim.Adam(net.parameters(), lr=1e-4, betas=(0.0, 0.9),
                            **({"fused": True} if device == "cuda" else {}))


@pytest.mark.parametrize("impl", ["stock", "unfolded", "fastgan"])
@pytest.mark.parametrize("step", ["critic", "generator"])
def test_resnet_step(measure, device, impl, step):
    m, g, d, batch, size = _model(impl, device)
    z = torch.randn(batch, m.config["z_dim"], device=device)
    real = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    if device == "cuda":
        real = real.contiguous(memory_format=torch.channels_last)
    opt = _opt(d if step == "critic" else g, device)

    def critic_step():
        with torch.no_grad():
            fake = g(z)
        opt.zero_grad(set_to_none=True)
        m.critic_loss(d, real, fake)[0].backward()
        opt.step()

    def generator_step():
        opt.zero_grad(set_to_none=True)
        m.generator_loss(d, g(z))[0].backward()
        opt.step()
    rounds, iterations = (20, 2) if device == "cuda" else (5, 1)
    measure(critic_step if step == "critic" else generator_step, nbytes=None,
            group=f"wgan-gp resnet {step} step {size}px batch {batch} {device}", rounds=rounds,
            iterations=iterations)
