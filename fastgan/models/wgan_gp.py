"""WGAN-GP (Gulrajani, Ahmed, Arjovsky, Dumoulin, Courville 2017, "Improved Training of
Wasserstein GANs", arXiv:1704.00028), with the DCGAN architecture.

Critic loss  D(G(z)) - D(x) + lambda * (||grad D(x_hat)|| - 1)^2,  x_hat = x + u (G(z) - x)
Generator    -D(G(z))

The critic has no BatchNorm (sec. 4: the penalty is per sample, BatchNorm couples the
samples) and, in arch "dcgan", no normalization at all, as the released CIFAR-10 DCGAN critic
(gan_cifar.py; sec. 4 recommends layer normalization as a drop-in replacement, which arch
"resnet" uses), and no sigmoid; its bias + LeakyReLU layers are fastgan's second-order fused
activations and the penalty is fastgan.ops.gradient_penalty (fused, double backward on
fastgan's kernels). The generator is DCGAN's, with BatchNorm, as in the paper's DCGAN
experiments.

arch "resnet" (appendix C, the 64x64 ResNet of the paper's code): a generator of residual
up-blocks (BatchNorm, ReLU, nearest upsampling, 3x3 convolutions, 1x1 shortcut) from a
4x4x512 linear projection, and a critic of residual down-blocks with LayerNorm (never
BatchNorm in a gradient-penalty critic) and mean pooling, then a linear score
(fastgan.nn.resnet). arch "mlp": fully connected networks, for 2-D toy data.

Defaults are Algorithm 1's: lambda = 10, n_critic = 5, Adam alpha = 1e-4, beta1 = 0,
beta2 = 0.9, m = 64. beta1 = 0 is the paper's choice (not DCGAN's 0.5): momentum in the
critic's optimizer works against the moving target the critic tracks.
"""
from fastgan.models.dcgan import DCGAN
from fastgan.nn.resnet import ResNetCritic, ResNetGenerator
from fastgan.ops.gradient_penalty import gradient_penalty, penalty_at, penalty_points


class WGANGP(DCGAN):
    """DCGAN's networks and optimizer (Adam) with the Wasserstein losses and the penalty."""
    name = "wgan-gp"
    paper = "Gulrajani et al. 2017, arXiv:1704.00028"
    summary = "Wasserstein GAN with gradient penalty (DCGAN architecture, critic without BatchNorm)"
    archs = ("dcgan", "resnet", "mlp")
    defaults = {
        "z_dim": 128,          # the paper's code: 128-dimensional noise for every model
        "g_width": 64,
        "d_width": 64,
        "lr_g": 1e-4,          # Algorithm 1: alpha = 0.0001
        "lr_d": 1e-4,
        "betas": (0.0, 0.9),   # Algorithm 1: beta1 = 0, beta2 = 0.9
        "batch_size": 64,      # Algorithm 1: m = 64
        "n_critic": 5,         # Algorithm 1: n_critic = 5
        "gp_weight": 10.0,     # Algorithm 1: lambda = 10
    }
    critic_norm = None  # sec. 4: no BatchNorm in a gradient-penalty critic

    def build_networks(self):
        c = self.config
        if c["arch"] == "resnet":
            return (ResNetGenerator(c["resolution"], c["z_dim"], c["channels"], c["g_width"],
                                    fused=c["fused"]),
                    ResNetCritic(c["resolution"], c["channels"], c["d_width"], fused=c["fused"]))
        return super().build_networks()

    def critic_loss(self, critic, real, fake, *, scaler=None):
        backend = None if self.config["fused"] else "reference"
        weight = self.config["gp_weight"]
        if self.one_pass(critic):  # real, fake and the interpolates in one forward
            x = penalty_points(real, fake, mode="wgan-gp", backend=backend)
            s_real, s_fake, s_x = self.critic_scores(critic, real, fake, x)
            d_real, d_fake = s_real.float().mean(), s_fake.float().mean()
            gp = penalty_at(x, s_x, mode="wgan-gp", weight=weight, scaler=scaler, backend=backend)
        else:
            d_real = critic(real).float().mean()
            d_fake = critic(fake).float().mean()
            gp = gradient_penalty(critic, real, fake, mode="wgan-gp", weight=weight, scaler=scaler,
                                  backend=backend)
        loss = d_fake - d_real + gp
        return loss, {"loss/d": loss.detach(), "wasserstein": (d_real - d_fake).detach(),
                      "gp": gp.detach()}

    def generator_loss(self, critic, fake):
        loss = -critic(fake).float().mean()
        return loss, {"loss/g": loss.detach()}
