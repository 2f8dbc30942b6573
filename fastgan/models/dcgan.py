"""DCGAN (Radford, Metz, Chintala 2015, "Unsupervised Representation Learning with Deep
Convolutional Generative Adversarial Networks", arXiv:1511.06434).

Generator: z -> 4x4x(16*width) -> transposed convolutions with BatchNorm + ReLU -> tanh;
discriminator: strided convolutions with BatchNorm (none on the first layer) and
LeakyReLU(0.2). Both on fastgan's fused Conv/ConvT + BatchNorm + activation blocks.
Loss: the standard GAN discriminator loss and the non-saturating generator loss
(Goodfellow et al. 2014, sec. 3), on logits.
"""
import torch
from torch.nn import functional as F

from fastgan.models.base import GANModel
from fastgan.nn.dcgan import DCGANCritic, DCGANGenerator


def adam(params, lr, betas):
    """Adam, fused (one kernel per step on CUDA, one vectorized loop on the CPU; foreach on
    other devices). On the CPU the foreach Adam reads each parameter's step count back
    with .item() for the bias corrections (76 of them per WGAN-GP iteration) and makes
    several passes over the state: the fused step of a 64-wide DCGAN generator (12.7 M
    parameters) took 3.1 ms against foreach's 28.3 ms (2 threads, 2026-11-24). Its result
    differs from foreach's by rounding (6e-8 after 20 steps)."""
    params = list(params)
    fused = bool(params) and params[0].device.type in ("cuda", "cpu")
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas), fused=fused or None,
                            foreach=None if fused else True)


class DCGAN(GANModel):
    name = "dcgan"
    paper = "Radford, Metz, Chintala 2015, arXiv:1511.06434"
    summary = "deep convolutional GAN: BatchNorm generator and discriminator, standard GAN loss"
    archs = ("dcgan", "mlp")
    defaults = {
        "z_dim": 100,          # sec. 3 / fig. 1: a 100-dimensional uniform z (we use N(0, I))
        "g_width": 64,         # fig. 1: 4x4x1024 ... 32x32x128 at 64 px
        "d_width": 64,
        "lr_g": 2e-4,          # sec. 4: Adam, learning rate 0.0002
        "lr_d": 2e-4,
        "betas": (0.5, 0.999),  # sec. 4: beta1 = 0.5 (0.9 oscillated); beta2 Adam's default
        "batch_size": 128,     # sec. 4: mini-batch 128
        "n_critic": 1,
    }
    critic_norm = "batch"  # BatchNorm on every discriminator layer but the first (sec. 3)

    def build_networks(self):
        c = self.config
        if c["arch"] == "mlp":
            return self.mlp_generator(), self.mlp_critic()
        g = DCGANGenerator(c["resolution"], c["z_dim"], c["channels"], c["g_width"], fused=c["fused"])
        d = DCGANCritic(c["resolution"], c["channels"], c["d_width"], norm=self.critic_norm,
                        fused=c["fused"])
        return g, d

    def build_optimizers(self):
        c = self.config
        return (adam(self.generator.parameters(), c["lr_g"], c["betas"]),
                adam(self.critic.parameters(), c["lr_d"], c["betas"]))

    def critic_loss(self, critic, real, fake, *, scaler=None):
        d_real, d_fake = (s.float() for s in self.critic_scores(critic, real, fake))
        # -log sigmoid(D(x)) - log(1 - sigmoid(D(G(z)))), in the stable softplus form
        loss = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        return loss, {"loss/d": loss.detach(), "d/real": d_real.detach().mean(),
                      "d/fake": d_fake.detach().mean()}

    def generator_loss(self, critic, fake):
        loss = F.softplus(-critic(fake).float()).mean()  # non-saturating: -log sigmoid(D(G(z)))
        return loss, {"loss/g": loss.detach()}
