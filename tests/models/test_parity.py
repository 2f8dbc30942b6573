"""Issue 8's parity requirement: every model trains, step for step, as a plain-PyTorch
reference of the same model written from its paper, with fastgan's kernels on and off.

The model side is the shipped path: fastgan.Trainer(model, loader, config).fit() on a loader
of fixed batches, for STEPS generator steps, each with the model's critic steps (n_critic; 2
where the paper's is 5, to keep the test fast). The model's critic_loss / generator_loss /
sample_z are wrapped only to record what they return; everything else is the trainer's.

The reference side shares nothing with fastgan's losses, optimizers or fused kernels:

* networks: the same architecture built with fused=False (stock torch modules only; asserted)
  and loaded with the model's initial weights (a fused critic keeps a conv's bias in the
  BiasLeakyReLU after it: that one key is renamed);
* losses: the papers' formulas below, in plain torch (F.binary_cross_entropy_with_logits,
  squared errors, torch.autograd.grad(create_graph=True), norms, a Python k_t);
* optimizers: torch.optim.Adam / torch.optim.RMSprop with the model's hyperparameters, and
  for WGAN a Python loop clamping every critic parameter after RMSprop.step();
* the same real batches and the same z (the z the model drew, recorded).

Random numbers inside the penalties: WGAN-GP's interpolation factors and DRAGAN's noise come
from fastgan's counter-based RNG (Philox) keyed by a seed the op draws. The test records each
seed the model side drew (fastgan.ops.sampling.draw_seed, wrapped) and the reference turns it
into the raw uniforms, then applies the paper's formula itself:
  - WGAN-GP: eps_b = interpolate(ones, zeros, seed) (= eps_b exactly: fma(eps, 1 - 0, 0)),
    then x_hat = eps * x + (1 - eps) * x_tilde (Gulrajani et al. 2017, Alg. 1, line 6);
  - DRAGAN: two seeds per critic step, in the model's order: perturb's, then interpolate's.
    From the first, u = perturb(a, scale=2, seed) - a on the elements where a == 0, a being
    a 0/1 checkerboard (its population std is exactly 0.5, so scale * std = 1 and a + u is
    exact where a = 0), the other elements from the complementary checkerboard; from the
    second, eps_b as for WGAN-GP. Then the authors' code's points (github.com/kodalinaveen3/
    DRAGAN): x_p = clamp(x + 0.5 * std(x) * u, -1, 1), x_hat = x + eps * (x_p - x).
The sampling ops themselves are tested against their references in tests/ops/test_sampling.py.

Compared: every critic and generator loss (before each update), the trainer's logged per-step
means, the final parameters and buffers of both networks, and for BEGAN k_t and the
convergence measure after every critic step. DRAGAN is also checked against a reference that
backpropagates only the penalty (a known bug elsewhere): the parameters must differ from it.

Tolerance (float32): losses rtol 2e-5, parameters and buffers atol 1e-6 (measured worst
cases: see LOSS_TOL). fused=True runs fastgan's C++ kernels, which reorder the sums of
BatchNorm statistics, of the penalty's norms and of the loss reductions, and take a correctly
rounded sqrt in RMSprop where torch's CPU float32 one is not: last-bit differences (~1e-7
relative) that 3 steps of Adam/RMSprop carry forward without amplifying much.
"""
import math

import pytest
import torch
from torch.nn import functional as F

from fastgan import models
from fastgan.ops import interpolate, perturb
from fastgan.ops import sampling
from fastgan.train.trainer import Trainer

TINY = {"resolution": 16, "channels": 1, "g_width": 4, "d_width": 4, "z_dim": 8, "batch_size": 6}
STEPS = 3
# Measured over every case, fused and stock, 5 initializations each (CPU, torch 2.13, one
# thread): losses agree to <= 2.9e-6 relative (wgan fused: its later losses are ~1e-5, the
# difference of two near-equal means), parameters to <= 1.2e-7 and BatchNorm running
# statistics to <= 6e-8 absolute; the stock side is often bit-identical. Tolerances keep
# ~7x headroom and stay far below one optimizer step (Adam moves a weight by ~lr = 1e-4).
LOSS_TOL = dict(rtol=2e-5, atol=1e-8)
PARAM_TOL = dict(rtol=0, atol=1e-6)

# (id, model, hyperparameters beyond TINY). gan runs its default arch (mlp, on 16x16 images),
# the others their convolutional ones. EBGAN's margin m (the paper grid-searches it, sec. 4.1)
# is set inside the range of this tiny critic's energies on fakes (~1.0-1.5), so that the
# per-sample hinge is active for some samples and not for others (asserted below).
CASES = [
    ("gan", "gan", {"mlp_hidden": 16, "mlp_depth": 2}),
    ("dcgan", "dcgan", {}),
    ("lsgan", "lsgan", {}),
    ("wgan", "wgan", {"n_critic": 2}),
    ("wgan-gp", "wgan-gp", {"n_critic": 2}),
    ("wgan-gp-resnet", "wgan-gp", {"n_critic": 2, "arch": "resnet"}),
    ("ebgan", "ebgan", {"margin": 1.3}),
    ("began", "began", {"embedding": 8}),
    ("dragan", "dragan", {}),
]
FUSED = [pytest.param(True, id="fused"), pytest.param(False, id="stock")]
FUSED_MODULES = ("fastgan.nn.activation", "fastgan.nn.blocks")


# one intra-op thread (tests/conftest.py): on a loaded 2-core machine OpenMP's spin-waits made
# a 3-step run take up to 65 s instead of 2 s (measured, wgan-gp-resnet)
pytestmark = pytest.mark.usefixtures("one_thread")


# ---- the model side: fastgan's trainer --------------------------------------------------------

class ListLoader:
    """The trainer's loader interface over a fixed list of batches."""

    def __init__(self, batches):
        self.batches = batches
        self.batch_size = batches[0].shape[0]

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        return ((b, torch.zeros(b.shape[0], dtype=torch.long)) for b in self.batches)

    def state_dict(self):
        return {}


def _snapshot(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def run_model(name, hyper, tmp_path, monkeypatch):
    """Trains `name` STEPS generator steps with fastgan.Trainer; returns what it drew and did."""
    with torch.random.fork_rng():
        torch.manual_seed(0)  # the initial weights (the reference copies them)
        model = models.build(name, **hyper)
    n_batches = STEPS * model.n_critic
    gen = torch.Generator().manual_seed(100)
    batches = [torch.rand(hyper["batch_size"], hyper["channels"], hyper["resolution"],
                          hyper["resolution"], generator=gen) * 2 - 1 for _ in range(n_batches)]
    side = {"model": model, "batches": batches, "init_g": _snapshot(model.generator),
            "init_d": _snapshot(model.critic), "z": [], "seeds": [], "d": [], "g": [], "d_logs": []}

    sample_z, critic_loss, generator_loss = model.sample_z, model.critic_loss, model.generator_loss

    def recording_sample_z(n, device, generator=None):
        z = sample_z(n, device, generator=generator)
        if generator is None:  # the training z (the sample grid's fixed z has its own generator)
            side["z"].append(z.detach().clone())
        return z

    def recording_critic_loss(critic, real, fake, *, scaler=None):
        loss, logs = critic_loss(critic, real, fake, scaler=scaler)
        side["d"].append(float(loss.detach()))
        side["d_logs"].append({k: float(v) for k, v in logs.items()})
        return loss, logs

    def recording_generator_loss(critic, fake):
        loss, logs = generator_loss(critic, fake)
        side["g"].append(float(loss.detach()))
        return loss, logs

    draw_seed = sampling.draw_seed

    def recording_draw_seed(device, generator=None):
        seed = draw_seed(device, generator)
        side["seeds"].append(seed.clone())
        return seed

    model.sample_z = recording_sample_z
    model.critic_loss = recording_critic_loss
    model.generator_loss = recording_generator_loss
    monkeypatch.setattr(sampling, "draw_seed", recording_draw_seed)
    config = {"steps": STEPS, "out": str(tmp_path / "run"), "device": "cpu", "log_every": 1,
              "sample_every": 1000, "ckpt_every": 1000, "num_samples": 4, "progress": False,
              "tensorboard": False}
    with torch.random.fork_rng():  # the trainer seeds the global generator
        trainer = Trainer(model, ListLoader(batches), config).fit()
    side["history"] = trainer.history
    return side


# ---- the reference side: plain PyTorch from the papers -----------------------------------------

def stock_state(state, stock_net):
    """`state` (a fused network's state_dict) with the keys of the stock network: a fused
    critic's BiasLeakyReLU at index i holds the bias of the conv at i - 1."""
    want = stock_net.state_dict()
    out = {k: v for k, v in state.items() if k in want}
    for key in sorted(set(state) - set(want)):
        parts = key.split(".")
        assert parts[-1] == "bias" and parts[-2].isdigit(), f"unexpected fused key {key!r}"
        renamed = ".".join(parts[:-2] + [str(int(parts[-2]) - 1), "bias"])
        assert renamed in want and renamed not in out, (key, renamed)
        out[renamed] = state[key]
    assert set(out) == set(want), sorted(set(want) ^ set(out))
    for k, v in out.items():
        assert v.shape == want[k].shape, (k, v.shape, want[k].shape)
    return out


def build_reference_networks(name, config, init_g, init_d):
    """(generator, critic): the model's architecture in stock torch modules (fused=False),
    loaded with the model side's initial weights."""
    with torch.random.fork_rng():  # their own random init is overwritten
        twin = models.build(name, **{**config, "fused": False})
    g, d = twin.generator, twin.critic
    for net in (g, d):
        fused = [type(m).__name__ for m in net.modules() if type(m).__module__ in FUSED_MODULES]
        assert not fused, f"the reference must be stock modules, found {fused}"
    g.load_state_dict(stock_state(init_g, g))
    d.load_state_dict(stock_state(init_d, d))
    return g, d


def penalty(d, x_hat, lam):
    """lambda * E[(||grad_x D(x_hat)||_2 - 1)^2], the norm over each whole sample
    (Gulrajani et al. 2017, eq. 3; Kodali et al. 2017, eq. 4 with k = 1)."""
    x_hat = x_hat.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(d(x_hat).sum(), x_hat, create_graph=True)
    return lam * ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def wgan_gp_eps(seed, real):
    """The per-sample eps ~ U[0, 1) behind `seed`: interpolating 1 and 0 returns it exactly."""
    e = interpolate(torch.ones_like(real), torch.zeros_like(real), seed=seed, backend="reference")
    flat = e.flatten(1)
    assert torch.equal(flat, flat[:, :1].expand_as(flat))  # one eps per sample ...
    assert flat[:, 0].unique().numel() == flat.shape[0]  # ... each its own (not one per batch)
    return flat[:, 0].reshape(-1, *([1] * (real.dim() - 1)))


def dragan_uniforms(seed, real):
    """The per-element u ~ U[0, 1) behind `seed` (see the module docstring)."""
    a = (torch.arange(real.numel()) % 2).to(real.dtype).reshape(real.shape)
    b = 1 - a
    assert real.numel() % 2 == 0  # so that both checkerboards have std exactly 0.5
    pa = perturb(a, scale=2.0, data_range=None, seed=seed, backend="reference")
    pb = perturb(b, scale=2.0, data_range=None, seed=seed, backend="reference")
    u = torch.where(a == 0, pa, pb)
    torch.testing.assert_close(torch.where(a == 0, pb - 1, pa - 1), u, rtol=0, atol=2 ** -23)
    assert (u >= 0).all() and (u < 1).all()
    return u


def bce_critic(d, real, fake):
    """Goodfellow et al. 2014, eq. 1: the discriminator's cross-entropy, targets 1 and 0."""
    dr, df = d(real), d(fake)
    return (F.binary_cross_entropy_with_logits(dr, torch.ones_like(dr))
            + F.binary_cross_entropy_with_logits(df, torch.zeros_like(df)))


def bce_generator(d, fake):
    """Goodfellow et al. 2014, sec. 3: the non-saturating -log D(G(z))."""
    df = d(fake)
    return F.binary_cross_entropy_with_logits(df, torch.ones_like(df))


def energy(d, x):
    """EBGAN's energy ||Dec(Enc(x)) - x||_2 per sample (Zhao et al. 2016, sec. 2.3), and the code."""
    code = d.encoder(x)
    return ((d.decoder(code) - x) ** 2).flatten(1).sum(1).sqrt(), code


def pulling_away(codes):
    """Zhao et al. 2016, sec. 2.4: sum over i != j of cos^2(S_i, S_j), / N(N - 1)."""
    s = codes.flatten(1)
    n = s.shape[0]
    total = 0.0
    for i in range(n):
        for j in range(n):
            if i != j:
                total = total + (s[i] @ s[j] / (s[i].norm() * s[j].norm())) ** 2
    return total / (n * (n - 1))


def recon_l1(d, v):
    """BEGAN's L(v) = mean |v - D(v)| (Berthelot et al. 2017, sec. 3.2, eta = 1)."""
    return (v - d(v)).abs().mean()


class Reference:
    """One model's training math in plain PyTorch. critic_loss(d, real, fake, seeds) returns
    the loss; ebgan/began keep what the test checks besides the losses. The critic sees the
    real batch first, then the fake one, as fastgan's models call it: the order of two
    BatchNorm forwards changes the running statistics (compared at the end), not the losses."""

    def __init__(self, name, c, *, penalty_only=False):
        self.name, self.c, self.penalty_only = name, c, penalty_only
        self.k = float(c.get("k0", 0.0))  # BEGAN's k_t, a Python float
        self.k_hist, self.m_hist, self.hinge_active = [], [], []

    def optimizers(self, g, d):
        c = self.c
        if self.name == "wgan":  # Arjovsky et al. 2017, Alg. 1: RMSprop on both networks
            return (torch.optim.RMSprop(g.parameters(), lr=c["lr_g"]),
                    torch.optim.RMSprop(d.parameters(), lr=c["lr_d"]))
        return (torch.optim.Adam(g.parameters(), lr=c["lr_g"], betas=tuple(c["betas"])),
                torch.optim.Adam(d.parameters(), lr=c["lr_d"], betas=tuple(c["betas"])))

    def after_critic_step(self, d):
        if self.name == "wgan":  # Alg. 1, line 7: clip every critic parameter to [-c, c]
            with torch.no_grad():
                for p in d.parameters():
                    p.clamp_(-self.c["clip"], self.c["clip"])

    def critic_loss(self, d, real, fake, seeds):
        name, c = self.name, self.c
        if name in ("gan", "dcgan"):
            return bce_critic(d, real, fake)
        if name == "lsgan":  # Mao et al. 2016, eq. 2 with a = 0, b = 1
            d_real, d_fake = d(real), d(fake)
            return 0.5 * ((d_real - 1) ** 2).mean() + 0.5 * (d_fake ** 2).mean()
        if name == "wgan":  # Alg. 1: the critic maximizes D(x) - D(G(z))
            d_real, d_fake = d(real).mean(), d(fake).mean()
            return d_fake - d_real
        if name == "wgan-gp":  # Gulrajani et al. 2017, Alg. 1
            d_real, d_fake = d(real).mean(), d(fake).mean()
            w = d_fake - d_real
            eps = wgan_gp_eps(next(seeds), real)
            x_hat = eps * real + (1 - eps) * fake
            return w + penalty(d, x_hat, c["gp_weight"])
        if name == "dragan":  # Kodali et al. 2017, eq. 4, at the authors' code's points:
            # X_p = X + 0.5 * X.std() * U[0, 1) (population std; the paper writes N(0, cI)),
            # then X + alpha * (X_p - X), one alpha ~ U[0, 1) per sample. X_p is clamped to the
            # data range [-1, 1], which fastgan documents as its own addition: without it (the
            # authors' code) the critics end 1.3e-4 apart after 3 steps (measured), so the
            # reference states it.
            gan = bce_critic(d, real, fake)
            u = dragan_uniforms(next(seeds), real)      # perturb's seed, drawn first
            x_p = (real + c["perturb_scale"] * real.std(correction=0) * u).clamp(-1, 1)
            eps = wgan_gp_eps(next(seeds), real)        # then interpolate's
            x_hat = real + eps * (x_p - real)
            gp = penalty(d, x_hat, c["gp_weight"])
            return gp if self.penalty_only else gan + gp
        if name == "ebgan":  # Zhao et al. 2016, eq. 1, the hinge per sample
            e_real, _ = energy(d, real)
            e_fake, _ = energy(d, fake)
            self.hinge_active.append((e_fake < c["margin"]).tolist())
            return e_real.mean() + torch.clamp(c["margin"] - e_fake, min=0).mean()
        if name == "began":  # Berthelot et al. 2017, sec. 3.4
            # k_{t+1} from this discriminator step's L(x) and L(G(z_D)), as fastgan documents;
            # the paper's equation has L(G(z_G)), the generator's term, in a simultaneous
            # update. Measured with the generator step's L(G(z_G)) instead (after the
            # discriminator's update): k after 3 steps 6.24e-4 vs 6.19e-4 here.
            l_real, l_fake = recon_l1(d, real), recon_l1(d, fake)
            loss = l_real - self.k * l_fake
            balance = c["gamma"] * float(l_real.detach()) - float(l_fake.detach())
            self.k = min(max(self.k + c["lambda_k"] * balance, 0.0), 1.0)
            self.k_hist.append(self.k)
            self.m_hist.append(float(l_real.detach()) + abs(balance))  # sec. 3.4.1, M_global
            return loss
        raise AssertionError(name)

    def generator_loss(self, d, fake):
        name, c = self.name, self.c
        if name in ("gan", "dcgan", "dragan"):
            return bce_generator(d, fake)
        if name == "lsgan":  # eq. 2 with c = 1
            return 0.5 * ((d(fake) - 1) ** 2).mean()
        if name in ("wgan", "wgan-gp"):
            return -d(fake).mean()
        if name == "ebgan":  # eq. 2 plus the pulling-away term on the encoder's codes
            e_fake, codes = energy(d, fake)
            return e_fake.mean() + c["pt_weight"] * pulling_away(codes)
        if name == "began":
            return recon_l1(d, fake)
        raise AssertionError(name)


def run_reference(name, side, *, penalty_only=False):
    c = side["model"].config
    g, d = build_reference_networks(name, c, side["init_g"], side["init_d"])
    ref = Reference(name, c, penalty_only=penalty_only)
    opt_g, opt_d = ref.optimizers(g, d)
    batches, zs, seeds = iter(side["batches"]), iter(side["z"]), iter(side["seeds"])
    losses_d, losses_g = [], []
    for _ in range(STEPS):
        for _ in range(c["n_critic"]):
            real, z = next(batches), next(zs)
            with torch.no_grad():
                fake = g(z)
            loss = ref.critic_loss(d, real, fake, seeds)
            opt_d.zero_grad()
            loss.backward()
            opt_d.step()
            ref.after_critic_step(d)
            losses_d.append(float(loss.detach()))
        loss = ref.generator_loss(d, g(next(zs)))
        opt_g.zero_grad()
        loss.backward()
        opt_g.step()
        losses_g.append(float(loss.detach()))
    assert next(zs, None) is None and next(seeds, None) is None, "the sides drew differently"
    return {"d": losses_d, "g": losses_g, "g_net": g, "d_net": d, "ref": ref}


# ---- the comparisons ------------------------------------------------------------------------

def _assert_nets_close(side, ref, **tol):
    model = side["model"]
    for which, net, ref_net in (("generator", model.generator, ref["g_net"]),
                                ("critic", model.critic, ref["d_net"])):
        got = stock_state(_snapshot(net), ref_net)
        for k, want in ref_net.state_dict().items():
            torch.testing.assert_close(got[k], want, **tol, msg=lambda m: f"{which} {k}: {m}")


def _max_diff(net_a_state, net_b):
    """The largest absolute difference between a state dict and a network's."""
    b = net_b.state_dict()
    return max(float((v.float() - b[k].float()).abs().max()) for k, v in net_a_state.items())


@pytest.mark.parametrize("fused", FUSED)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matches_plain_pytorch_reference(case, fused, tmp_path, monkeypatch):
    _, name, extra = case
    side = run_model(name, {**TINY, **extra, "fused": fused}, tmp_path, monkeypatch)
    n_critic = side["model"].n_critic
    assert n_critic == extra.get("n_critic", 1)
    assert len(side["d"]) == STEPS * n_critic and len(side["g"]) == STEPS
    seeds_per_step = {"wgan-gp": 1, "dragan": 2}.get(name, 0)  # dragan: perturb, interpolate
    assert len(side["seeds"]) == STEPS * n_critic * seeds_per_step
    if name == "began":  # Berthelot et al. 2017, sec. 4: z ~ U[-1, 1]
        assert all(z.min() >= -1 and z.max() <= 1 for z in side["z"])

    ref = run_reference(name, side)

    torch.testing.assert_close(side["d"], ref["d"], **LOSS_TOL)
    torch.testing.assert_close(side["g"], ref["g"], **LOSS_TOL)
    # the trainer's logged rows: each step's mean critic loss and its generator loss
    logged_d = [row["loss/d"] for row in side["history"]]
    logged_g = [row["loss/g"] for row in side["history"]]
    mean_d = [sum(ref["d"][i * n_critic:(i + 1) * n_critic]) / n_critic for i in range(STEPS)]
    torch.testing.assert_close(logged_d, mean_d, **LOSS_TOL)
    torch.testing.assert_close(logged_g, ref["g"], **LOSS_TOL)
    _assert_nets_close(side, ref, **PARAM_TOL)
    # training moved the weights (a comparison of untouched networks would prove nothing)
    assert _max_diff(stock_state(side["init_d"], ref["d_net"]), ref["d_net"]) > 1e-6
    assert _max_diff(stock_state(side["init_g"], ref["g_net"]), ref["g_net"]) > 1e-6

    r = ref["ref"]
    if name == "began":
        k_model = [logs["k"] for logs in side["d_logs"]]
        m_model = [logs["convergence"] for logs in side["d_logs"]]
        torch.testing.assert_close(k_model, r.k_hist, rtol=1e-5, atol=1e-8)
        torch.testing.assert_close(m_model, r.m_hist, **LOSS_TOL)
        torch.testing.assert_close(float(side["model"].k.reshape(())), r.k, rtol=1e-5, atol=1e-8)
        assert r.k_hist[-1] > 0  # k moved off k_0 = 0: the update was exercised
    if name == "ebgan":  # the per-sample hinge was on for some fakes and off for others
        flags = [f for step in r.hinge_active for f in step]
        assert any(flags) and not all(flags), r.hinge_active


@pytest.mark.parametrize("fused", FUSED)
def test_dragan_backpropagates_the_gan_loss_too(fused, tmp_path, monkeypatch):
    """Kodali et al. 2017, eq. 4: L_D is the GAN loss plus the penalty. A reference that
    backpropagates only the penalty (a known bug elsewhere) must end elsewhere."""
    side = run_model("dragan", {**TINY, "fused": fused}, tmp_path, monkeypatch)
    full = run_reference("dragan", side)
    only_gp = run_reference("dragan", side, penalty_only=True)
    _assert_nets_close(side, full, **PARAM_TOL)
    got = stock_state(_snapshot(side["model"].critic), only_gp["d_net"])
    apart = _max_diff(got, only_gp["d_net"])
    # Adam moves a parameter by about lr = 1e-4 per step; without the GAN term many move
    # the other way (measured: ~5e-4 apart), far beyond the 1e-6 the full reference matches.
    assert apart > 50 * PARAM_TOL["atol"], apart
    assert not math.isclose(only_gp["d"][0], full["d"][0], rel_tol=1e-3)
