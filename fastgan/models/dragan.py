"""DRAGAN (Kodali, Abernethy, Hays, Kira 2017, "On Convergence and Stability of GANs",
arXiv:1705.07215).

The standard GAN losses (Goodfellow et al. 2014, non-saturating generator loss) plus a
gradient penalty around the real samples (sec. 5, eq. 4), taken at the points of the
authors' reference code (github.com/kodalinaveen3/DRAGAN, DRAGAN.ipynb):

    L_D = -log sigmoid(D(x)) - log(1 - sigmoid(D(G(z)))) + lambda E[(||grad D(x_hat)|| - 1)^2]
    x_p   = x + 0.5 * std(x) * U[0, 1)     (per element; std over the whole batch)
    x_hat = x + alpha * (x_p - x)          (one alpha ~ U[0, 1) per sample), lambda = 10

The paper writes x + delta, delta ~ N(0, cI), without the interpolation; the code adds it,
and fastgan follows the code. x_p is clamped to the images' range [-1, 1] (fastgan's
choice: the authors' code does not clamp; 2-D toy data are not clamped); x_hat, between two
in-range points, stays in range.

Both parts of L_D are backpropagated together (a known bug elsewhere backpropagates only
the penalty, so the discriminator never learns to discriminate). The penalty is
fastgan.ops.gradient_penalty(mode="dragan") with its fused double backward.

Networks: DCGAN's generator and its discriminator without BatchNorm (the penalty is per
sample; BatchNorm would couple the samples it is taken at). Adam lr 1e-4, betas
(0.5, 0.9) as in the paper's code, batch 64.
"""
from torch.nn import functional as F

from fastgan.models.dcgan import DCGAN
from fastgan.ops.gradient_penalty import gradient_penalty, penalty_at, penalty_points


class DRAGAN(DCGAN):
    name = "dragan"
    paper = "Kodali et al. 2017, arXiv:1705.07215"
    summary = "standard GAN loss plus a gradient penalty around the real data (lambda 10)"
    archs = ("dcgan", "mlp")
    defaults = {
        "z_dim": 100,
        "g_width": 64,
        "d_width": 64,
        "lr_g": 1e-4,          # the paper's code: Adam 1e-4, beta1 0.5, beta2 0.9
        "lr_d": 1e-4,
        "betas": (0.5, 0.9),
        "batch_size": 64,
        "n_critic": 1,
        "gp_weight": 10.0,     # sec. 5: lambda = 10
        "perturb_scale": 0.5,  # the authors' code: X_p = X + 0.5 * X.std() * U[0, 1)
    }
    critic_norm = None

    def critic_loss(self, critic, real, fake, *, scaler=None):
        c = self.config
        backend = None if c["fused"] else "reference"
        if self.one_pass(critic):  # real, fake and the penalty's points in one forward
            x = penalty_points(real, mode="dragan", perturb_scale=c["perturb_scale"],
                               data_range=self.data_range, backend=backend)
            d_real, d_fake, s_x = self.critic_scores(critic, real, fake, x)
            d_real, d_fake = d_real.float(), d_fake.float()
            gp = penalty_at(x, s_x, mode="dragan", weight=c["gp_weight"], scaler=scaler, backend=backend)
        else:
            d_real = critic(real).float()
            d_fake = critic(fake).float()
            gp = gradient_penalty(critic, real, mode="dragan", weight=c["gp_weight"], scaler=scaler,
                                  perturb_scale=c["perturb_scale"], data_range=self.data_range,
                                  backend=backend)
        gan = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        loss = gan + gp
        return loss, {"loss/d": loss.detach(), "loss/d_gan": gan.detach(), "gp": gp.detach(),
                      "d/real": d_real.detach().mean(), "d/fake": d_fake.detach().mean()}

    @property
    def data_range(self):
        # images live in [-1, 1]; 2-D toy points have no range to clamp to
        return (-1.0, 1.0) if self.config["resolution"] > 1 else None
