"""EBGAN (Zhao, Mathieu, LeCun 2016, "Energy-based Generative Adversarial Network",
arXiv:1609.03126), the autoencoder form with the pulling-away term (EBGAN-PT).

The discriminator is an autoencoder and the energy of a sample is its reconstruction
error, D(x) = ||Dec(Enc(x)) - x|| (sec. 2.3; the Euclidean norm over the whole sample).

    L_D = E[D(x)] + E[max(0, m - D(G(z)))]        (eq. 1, the hinge per sample)
    L_G = E[D(G(z))] + w_pt * PT(S)                (eq. 2, plus sec. 2.4's term)
    PT(S) = 1 / (N (N - 1)) sum_{i != j} (S_i . S_j / (|S_i| |S_j|))^2

S are the encoder's codes of the generated batch; the pulling-away term pushes them apart
(against mode collapse) and enters the generator's loss only (sec. 2.4). The hinge is
taken per sample, before the mean (a batch-mean hinge, common elsewhere, turns off the
push on every fake as soon as the batch average passes m). w_pt = 0.1 (sec. 2.4);
m = 20, the margin of fastgan's reference comparison at 64x64. The margin is on the
energy's scale, which grows with the size of a sample: for other data set `margin`
(the paper grid-searches it, sec. 4.1).

Networks: DCGAN's generator; the discriminator autoencoder of fastgan.nn.autoencoder
(strided convolutions with BatchNorm and LeakyReLU down to R/8, transposed convolutions
back). Adam lr 2e-4, beta1 0.5, batch 64 (the comparison's settings for EBGAN).
"""
import torch

from fastgan.models.dcgan import DCGAN
from fastgan.nn.autoencoder import EBGANDiscriminator
from fastgan.nn.dcgan import DCGANGenerator


def energy(x, recon):
    """The per-sample reconstruction error ||recon - x||_2, in float32, shape (B,)."""
    return torch.linalg.vector_norm((recon.float() - x.float()).flatten(1), dim=1)


def pulling_away(codes):
    """PT(S) of Zhao et al. 2016, sec. 2.4: the mean squared cosine similarity over the
    pairs i != j of a batch's codes (B, ...)."""
    s = codes.float().flatten(1)
    n = s.shape[0]
    if n < 2:
        return s.new_zeros(())
    # in float32 under autocast too (which would run the matrix product in bf16/fp16), and
    # the diagonal masked rather than subtracted: the term is small (near 0 when the codes
    # spread), where subtracting the diagonal's n from the whole sum leaves only rounding
    with torch.autocast(s.device.type, enabled=False):
        s = s / torch.linalg.vector_norm(s, dim=1, keepdim=True).clamp_min(1e-12)
        cos2 = (s @ s.t()).square()
        off = cos2.masked_fill(torch.eye(n, dtype=torch.bool, device=s.device), 0.0)
        return off.sum() / (n * (n - 1))


class EBGAN(DCGAN):
    name = "ebgan"
    paper = "Zhao, Mathieu, LeCun 2016, arXiv:1609.03126"
    summary = "energy-based GAN: autoencoder discriminator, margin hinge, pulling-away term"
    archs = ("dcgan", "mlp")
    defaults = {
        "z_dim": 100,
        "g_width": 64,
        "d_width": 64,
        "lr_g": 2e-4,
        "lr_d": 2e-4,
        "betas": (0.5, 0.999),
        "batch_size": 64,
        "n_critic": 1,
        "margin": 20.0,        # m, on the scale of ||x - D(x)|| for 64x64x3 images
        "pt_weight": 0.1,      # sec. 2.4: the pulling-away term's weight
    }

    def build_networks(self):
        c = self.config
        if c["arch"] == "mlp":
            return self.mlp_generator(), self.mlp_autoencoder()
        g = DCGANGenerator(c["resolution"], c["z_dim"], c["channels"], c["g_width"], fused=c["fused"])
        d = EBGANDiscriminator(c["resolution"], c["channels"], c["d_width"], fused=c["fused"])
        return g, d

    def critic_loss(self, critic, real, fake, *, scaler=None):
        r_real, r_fake = self.critic_scores(critic, real, fake)
        e_real, e_fake = energy(real, r_real), energy(fake, r_fake)
        loss = e_real.mean() + torch.relu(self.config["margin"] - e_fake).mean()
        return loss, {"loss/d": loss.detach(), "energy/real": e_real.detach().mean(),
                      "energy/fake": e_fake.detach().mean()}

    def generator_loss(self, critic, fake):
        recon, codes = critic(fake, return_code=True)
        e_fake = energy(fake, recon).mean()
        pt = pulling_away(codes)
        loss = e_fake + self.config["pt_weight"] * pt
        return loss, {"loss/g": loss.detach(), "pt": pt.detach()}
