"""LSGAN (Mao, Li, Xie, Lau, Wang, Smolley 2016, "Least Squares Generative Adversarial
Networks", arXiv:1611.04076).

Discriminator  1/2 E[(D(x) - b)^2] + 1/2 E[(D(G(z)) - a)^2]     (eq. 2)
Generator      1/2 E[(D(G(z)) - c)^2]

with the 0-1 coding a = 0 (fake), b = 1 (real), c = 1 (sec. 3.2.2, eq. 9: the generator
wants the discriminator to take its samples for real). D outputs a raw score (no sigmoid).

Networks: DCGAN's (BatchNorm in both), as the comparison uses one architecture for every
model; the paper's own are larger nets for 112x112 LSUN. Optimizer: Adam with beta1 0.5
(sec. 4.1); the paper's learning rate is 1e-3 for the scenes (sec. 4.1), 2e-4 here, which
the comparison found stabler at 64x64 (set lr_g/lr_d to 1e-3 for the paper's). z is 100-
dimensional by default; the paper's 1024 (sec. 4.1, fig. 3) is z_dim=1024.
"""
from fastgan.models.dcgan import DCGAN


class LSGAN(DCGAN):
    name = "lsgan"
    paper = "Mao et al. 2016, arXiv:1611.04076"
    summary = "least-squares GAN: squared-error losses with the 0-1 coding a=0, b=1, c=1"
    archs = ("dcgan", "mlp")
    defaults = {
        "z_dim": 100,          # the paper's 1024 is available (sec. 4.1); 100 did better in the comparison
        "g_width": 64,
        "d_width": 64,
        "lr_g": 2e-4,          # sec. 4.1 uses 1e-3
        "lr_d": 2e-4,
        "betas": (0.5, 0.999),  # sec. 4.1: beta1 = 0.5
        "batch_size": 64,
        "n_critic": 1,
        "a": 0.0,              # eq. 9: fake target
        "b": 1.0,              # real target
        "c": 1.0,              # the generator's target for its samples
    }

    def critic_loss(self, critic, real, fake, *, scaler=None):
        c = self.config
        d_real, d_fake = (s.float() for s in self.critic_scores(critic, real, fake))
        loss = 0.5 * (d_real - c["b"]).square().mean() + 0.5 * (d_fake - c["a"]).square().mean()
        return loss, {"loss/d": loss.detach(), "d/real": d_real.detach().mean(),
                      "d/fake": d_fake.detach().mean()}

    def generator_loss(self, critic, fake):
        loss = 0.5 * (critic(fake).float() - self.config["c"]).square().mean()
        return loss, {"loss/g": loss.detach()}
