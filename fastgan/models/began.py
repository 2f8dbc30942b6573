"""BEGAN (Berthelot, Schumm, Metz 2017, "BEGAN: Boundary Equilibrium Generative Adversarial
Networks", arXiv:1703.10717).

The discriminator is an autoencoder; L(v) = mean |v - D(v)| is its reconstruction loss.

    L_D = L(x) - k_t L(G(z))                       L_G = L(G(z))            (sec. 3.4)
    k_{t+1} = clamp(k_t + lambda_k (gamma L(x) - L(G(z))), 0, 1)
    M_global = L(x) + |gamma L(x) - L(G(z))|      (the convergence measure, sec. 3.4.1)

gamma = 0.5, lambda_k = 0.001, k_0 = 0 (sec. 3.4, 4.1). The discriminator step runs
fastgan.ops.began_loss: both reconstruction errors, k_{t+1} and M in one fused pass, with
k_t a tensor on the device (never read back in the step). k is updated in the
discriminator step, from the L(x) and L(G(z)) of that step. Logged: k and M
("convergence"), the paper's two diagnostics; a step's logged k is the k_{t+1} it
computed (the value the next step uses), and
its M is from that step's own losses.

Networks (sec. 3.5, fig. 1): no BatchNorm, ELU everywhere; the decoder is FC -> 8x8xn
then [3x3 conv, ELU] x 2 and nearest upsampling per scale; the encoder mirrors it with
stride-2 subsampling and channels growing linearly (n, 2n, 3n, ...), to an embedding of
size h; the generator has the decoder's architecture (its own weights). z is uniform
in [-1, 1]^Nz (sec. 4), Nz = h = 64; n = 64 (d_width, g_width).

Optimizer: Adam, lr 1e-4 (sec. 4.1), "decayed by a factor of 2 when the measure of
convergence stalls": fastgan halves both learning rates when M has not improved by 1%
over `lr_patience` generator steps (checked on the logged M, so without synchronizing
the step). Batch 16 (sec. 4.1).
"""
import math

import torch
from torch import distributed as dist

from fastgan.models.dcgan import DCGAN
from fastgan.nn.autoencoder import BEGANAutoencoder, BEGANDecoder
from fastgan.ops.began_loss import began_loss


class BEGAN(DCGAN):
    name = "began"
    paper = "Berthelot, Schumm, Metz 2017, arXiv:1703.10717"
    summary = "boundary-equilibrium GAN: autoencoder discriminator, k_t balance, convergence measure"
    archs = ("began", "mlp")
    defaults = {
        "z_dim": 64,           # sec. 4: Nz = h = 64
        "g_width": 64,         # n, the decoder's channels
        "d_width": 64,
        "embedding": 64,       # h, the discriminator's embedding
        "lr_g": 1e-4,          # sec. 4.1: Adam, initial learning rate 1e-4
        "lr_d": 1e-4,
        # the paper names no betas (Adam's own defaults are (0.9, 0.999)); beta1 = 0.5 is
        # DCGAN's (Radford et al. 2015, sec. 4), as in the widely used BEGAN reimplementation
        # (carpedm20/BEGAN-tensorflow, config.py) and the rest of this catalog
        "betas": (0.5, 0.999),
        "batch_size": 16,      # sec. 4.1: batch size 16
        "n_critic": 1,
        "gamma": 0.5,          # diversity ratio (sec. 3.3)
        "lambda_k": 0.001,     # sec. 3.4
        "k0": 0.0,             # sec. 3.4: k_0 = 0
        "lr_decay": 0.5,       # sec. 4.1: halved when M stalls
        "lr_patience": 5000,   # generator steps without a 1% improvement of M that count as a stall
    }
    IMPROVEMENT = 0.01

    def __init__(self, **config):
        super().__init__(**config)
        self.k = torch.full((1,), float(self.config["k0"]))
        self._k_next = None  # k_{t+1}, computed by critic_loss, moved into k by after_critic_step
        self._best_m, self._best_step = float("inf"), 0
        self._optimizers = ()

    def build_networks(self):
        c = self.config
        if c["arch"] == "mlp":
            return self.mlp_generator(), self.mlp_autoencoder(code_dim=c["embedding"])
        g = BEGANDecoder(c["resolution"], c["z_dim"], c["channels"], c["g_width"], fused=c["fused"])
        d = BEGANAutoencoder(c["resolution"], c["channels"], c["d_width"], c["embedding"], fused=c["fused"])
        return g, d

    def build_optimizers(self):
        opts = super().build_optimizers()
        self._optimizers = opts
        return opts

    def to(self, device=None, memory_format=None):
        super().to(device, memory_format)
        if device is not None:
            self.k = self.k.to(device)
        return self

    def sample_z(self, n, device, generator=None):
        """z ~ U[-1, 1]^Nz (sec. 4)."""
        u = torch.rand(n, self.z_dim, device=device, generator=generator)
        return u.mul_(2).sub_(1)

    def critic_loss(self, critic, real, fake, *, scaler=None):
        c = self.config
        if self.k.device != real.device:
            self.k = self.k.to(real.device)
        if self._k_next is None or self._k_next.device != self.k.device:
            self._k_next = torch.empty_like(self.k)
        # every input of the fused loss in float32 (under autocast fake and the
        # reconstructions may be bf16/fp16)
        real32, fake32 = real.float(), fake.float()
        r_real, r_fake = self.critic_scores(critic, real, fake)
        d_loss, l_fake, k_next, m = began_loss(
            real32, r_real.float(), fake32, r_fake.float(), self.k,
            gamma=c["gamma"], lambda_k=c["lambda_k"], backend=None if c["fused"] else "reference")
        k_next = k_next.detach().reshape(1).to(self.k.dtype)
        l_real = (d_loss + self.k.reshape(()) * l_fake).detach()
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # one k for all processes, that of the whole batch: the update of the losses'
            # means over the processes (equal shares of the batch), clamped after (the mean of
            # each process's clamped k was biased near 0 and 1, k0 = 0 among them), and M
            # from the same means (a mean of each process's |balance| was too high)
            means = torch.stack([l_real, l_fake.detach()])
            dist.all_reduce(means)
            l_real, l_fake_all = means / dist.get_world_size()
            balance = c["gamma"] * l_real - l_fake_all
            k_next = (self.k.reshape(()).to(balance.dtype) + c["lambda_k"] * balance).clamp(0, 1)
            k_next = k_next.reshape(1).to(self.k.dtype)
            m = l_real + balance.abs()
        # a step whose losses overflowed (float16 autocast, where the GradScaler then skips the
        # step) keeps k_t: a NaN k would stay NaN, every loss after it too
        k_next = torch.where(torch.isfinite(k_next), k_next, self.k.reshape(1))
        # k_t itself changes only in after_critic_step, after the backward (which still needs
        # this step's k_t), in place: the same tensors every step, as a CUDA graph replays them
        self._k_next.copy_(k_next)
        return d_loss, {"loss/d": d_loss.detach(), "loss/real": l_real, "loss/fake": l_fake.detach(),
                        "k": k_next.reshape(()), "convergence": m.detach()}

    def after_critic_step(self):
        if self._k_next is not None:
            self.k.copy_(self._k_next)

    def generator_loss(self, critic, fake):
        loss = (fake.float() - critic(fake).float()).abs().mean()
        return loss, {"loss/g": loss.detach()}

    def on_log(self, step, row):
        m = row.get("convergence")
        if m is None or not math.isfinite(m):  # a window with an overflowed (fp16) step: no news
            return
        if m < self._best_m * (1 - self.IMPROVEMENT):
            self._best_m, self._best_step = m, step
        elif step - self._best_step >= self.config["lr_patience"]:
            for opt in self._optimizers:
                for group in opt.param_groups:
                    if isinstance(group["lr"], torch.Tensor):  # a captured step reads it in place
                        group["lr"].mul_(self.config["lr_decay"])
                    else:
                        group["lr"] = group["lr"] * self.config["lr_decay"]
                    if "initial_lr" in group:  # the trainer's lr_schedule scales from it
                        group["initial_lr"] = group["initial_lr"] * self.config["lr_decay"]
            self._best_m, self._best_step = m, step

    def extra_state(self):
        return {"k": float(self.k.reshape(())), "best_m": self._best_m, "best_step": self._best_step}

    def load_extra_state(self, state):
        self.k.fill_(float(state["k"]))
        self._best_m, self._best_step = float(state["best_m"]), int(state["best_step"])
