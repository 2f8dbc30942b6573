"""(a) eager-public: a generator iteration written the way common public GAN code writes it.

What makes it "public-style" (each is what the widely copied reference implementations do):
  - float32 throughout, contiguous (NCHW) tensors, PyTorch's default cudnn.benchmark (off);
  - stock torch.optim optimizers with their default implementation choice;
  - WGAN (Arjovsky et al. 2017, arXiv:1701.07875, Algorithm 1 line 7): a Python loop over the
    critic's parameters, `p.data.clamp_(-c, c)`, after every critic update; WGAN and WGAN-GP
    toggle `p.requires_grad` of every critic parameter in a Python loop around the generator
    step (the papers' released code does both);
  - WGAN-GP (Gulrajani et al. 2017, arXiv:1704.00028, Algorithm 1): the penalty with
    torch.autograd.grad(create_graph=True) and `grad.view(B, -1).norm(2, dim=1)`;
  - a `.item()` of every loss every step (the per-step logging line);
  - BEGAN (Berthelot et al. 2017, arXiv:1703.10717, sec. 3.4): k_t a Python float, updated from
    `.item()`s of the two reconstruction losses (a host round trip every step).
The fake batch of a critic step is drawn under torch.no_grad and the generator step draws
fresh z, as fastgan's trainer does, so both compute the same amount of work.
"""
import torch
from torch.nn import functional as F

from .common import PlainLoop


class EagerPublic(PlainLoop):
    name = "eager-public"
    cudnn_benchmark = False
    channels_last = False

    def __init__(self, spec, device, *, seed=0):
        super().__init__(spec, device, seed=seed)
        hp = self.hp
        if self.kind == "wgan":
            self.opt_d = torch.optim.RMSprop(self.D.parameters(), lr=hp["lr_d"])
            self.opt_g = torch.optim.RMSprop(self.G.parameters(), lr=hp["lr_g"])
        else:
            self.opt_d = torch.optim.Adam(self.D.parameters(), lr=hp["lr_d"], betas=tuple(hp["betas"]))
            self.opt_g = torch.optim.Adam(self.G.parameters(), lr=hp["lr_g"], betas=tuple(hp["betas"]))
        self.k = float(hp.get("k0", 0.0))
        self.log = {}

    def _penalty(self, real, fake):
        b = real.size(0)
        alpha = torch.rand(b, 1, 1, 1, device=real.device)
        x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        out = self.D(x_hat)
        grad = torch.autograd.grad(outputs=out, inputs=x_hat, grad_outputs=torch.ones_like(out),
                                   create_graph=True, retain_graph=True, only_inputs=True)[0]
        return self.hp["gp_weight"] * ((grad.view(b, -1).norm(2, dim=1) - 1) ** 2).mean()

    def step(self):
        hp, kind, b = self.hp, self.kind, self.spec.batch
        if kind in ("wgan", "wgan-gp"):
            for p in self.D.parameters():
                p.requires_grad = True
        for _ in range(self.n_critic):
            real = next(self.batches)
            with torch.no_grad():
                fake = self.G(self.sample_z(b))
            self.D.zero_grad()
            if kind == "gan":
                d_real, d_fake = self.D(real), self.D(fake)
                loss_d = (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
                          + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
            elif kind in ("wgan", "wgan-gp"):
                loss_d = self.D(fake).mean() - self.D(real).mean()
                if kind == "wgan-gp":
                    loss_d = loss_d + self._penalty(real, fake)
            else:  # began
                l_real = (self.D(real) - real).abs().mean()
                l_fake = (self.D(fake) - fake).abs().mean()
                loss_d = l_real - self.k * l_fake
            loss_d.backward()
            self.opt_d.step()
            if kind == "wgan":
                for p in self.D.parameters():
                    p.data.clamp_(-hp["clip"], hp["clip"])
            if kind == "began":
                balance = hp["gamma"] * l_real.item() - l_fake.item()
                self.k = min(max(self.k + hp["lambda_k"] * balance, 0.0), 1.0)
                self.log["convergence"] = l_real.item() + abs(balance)
            self.log["d"] = loss_d.item()
        if kind in ("wgan", "wgan-gp"):
            for p in self.D.parameters():
                p.requires_grad = False
        self.G.zero_grad()
        fake = self.G(self.sample_z(b))
        if kind == "gan":
            d_fake = self.D(fake)
            loss_g = F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))
        elif kind in ("wgan", "wgan-gp"):
            loss_g = -self.D(fake).mean()
        else:
            loss_g = (self.D(fake) - fake).abs().mean()
        loss_g.backward()
        self.opt_g.step()
        self.log["g"] = loss_g.item()

    def losses(self):
        return {"d": self.log["d"], "g": self.log["g"]}
