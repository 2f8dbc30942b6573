"""The model catalog: every model's paper defaults, its architectures, the parts of its
math that a few training steps cannot show (WGAN's critic schedule and clip, EBGAN's
per-sample hinge and pulling-away term, BEGAN's k_t and learning-rate decay), and the
catalog's listing in the CLI and the README."""
import math
import pathlib
import re

import pytest
import torch
from torch import nn

from fastgan import models
from fastgan.models.ebgan import energy, pulling_away
from fastgan.optim import RMSpropClip

TINY = {"resolution": 16, "channels": 1, "g_width": 4, "d_width": 4, "z_dim": 8, "batch_size": 8}
README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def test_catalog():
    assert models.names() == ["gan", "dcgan", "lsgan", "wgan", "wgan-gp", "ebgan", "began", "dragan"]
    for name in models.names():
        cls = models.get(name)
        assert re.search(r"arXiv:\d{4}\.\d{4,5}", cls.paper), cls.paper
        assert "mlp" in cls.archs and cls.summary
        text = cls.describe()
        assert text.startswith(f"{name}: ") and cls.paper in text and "z_dim = " in text
        assert "mlp_batchnorm = None  (on for images; off for 2-D points, resolution 1)" in text
    with pytest.raises(ValueError, match="unknown arch 'resnet'; expected one of dcgan, mlp"):
        models.build("lsgan", arch="resnet")


def test_paper_defaults():
    c = models.get("lsgan").defaults
    assert (c["a"], c["b"], c["c"]) == (0.0, 1.0, 1.0) and c["lr_g"] == 2e-4 and c["betas"][0] == 0.5
    assert c["z_dim"] == 100
    c = models.get("wgan").defaults
    assert (c["lr_d"], c["lr_g"], c["clip"], c["n_critic"], c["batch_size"]) == (5e-5, 5e-5, 0.01, 5, 64)
    c = models.get("ebgan").defaults
    assert (c["margin"], c["pt_weight"]) == (20.0, 0.1)
    c = models.get("began").defaults
    assert (c["z_dim"], c["gamma"], c["lambda_k"], c["k0"], c["lr_g"], c["batch_size"]) == (
        64, 0.5, 0.001, 0.0, 1e-4, 16)
    c = models.get("dragan").defaults
    assert c["gp_weight"] == 10.0 and c["n_critic"] == 1
    c = models.get("wgan-gp").defaults
    assert (c["gp_weight"], c["n_critic"], c["betas"], c["z_dim"]) == (10.0, 5, (0.0, 0.9), 128)


def test_wgan_optimizers_clip_every_critic_parameter():
    torch.manual_seed(0)
    m = models.build("wgan", **TINY, lr_d=0.5)  # a huge step, so the clip is what bounds it
    opt_g, opt_d = m.build_optimizers()
    assert isinstance(opt_g, RMSpropClip) and isinstance(opt_d, RMSpropClip)
    assert [g["clip"] for g in opt_g.param_groups] == [None]  # the generator is never clipped
    assert [g["clip"] for g in opt_d.param_groups] == [0.01]
    real = torch.rand(8, 1, 16, 16) * 2 - 1
    fake = m.generator(m.sample_z(8, "cpu")).detach()
    loss, logs = m.critic_loss(m.critic, real, fake)
    assert torch.equal(logs["wasserstein"], -logs["loss/d"])
    opt_d.zero_grad()
    loss.backward()
    opt_d.step()
    params = list(m.critic.parameters())
    assert any(isinstance(x, nn.BatchNorm2d) for x in m.critic.modules())  # the paper's critic has BN
    assert max(p.abs().max().item() for p in params) == pytest.approx(0.01)  # every one, BN too
    # the generator's step clips nothing (Algorithm 1 clips the critic's w only): its BatchNorm
    # scales start near 1 and stay far outside [-0.01, 0.01] after a step
    loss, _ = m.generator_loss(m.critic, m.generator(m.sample_z(8, "cpu")))
    opt_g.zero_grad()
    loss.backward()
    opt_g.step()
    assert max(p.abs().max().item() for p in m.generator.parameters()) > 0.5


def test_wgan_critic_schedule():
    m = models.build("wgan", **TINY)
    assert {m.critic_steps(s) for s in range(1200)} == {5}  # Algorithm 1: n_critic = 5
    boost = models.build("wgan", **TINY, critic_boost=True)
    steps = [boost.critic_steps(s) for s in range(1001)]
    assert steps[:25] == [100] * 25 and steps[25:500] == [5] * 475
    assert steps[500] == 100 and steps[501] == 5 and steps[1000] == 100


def test_wgan_gp_resnet_architecture():
    m = models.build("wgan-gp", arch="resnet")  # 64 px, width 64: Gulrajani et al. 2017, appendix C
    g, d = m.generator, m.critic
    linear = next(x for x in g.modules() if isinstance(x, nn.Linear))
    assert linear.in_features == 128 and linear.out_features == 4 * 4 * 512
    assert not any(isinstance(x, nn.BatchNorm2d) for x in d.modules())  # never in a GP critic
    assert any(isinstance(x, nn.GroupNorm) and x.num_groups == 1 for x in d.modules())  # LayerNorm
    z = torch.randn(2, 128)
    assert g(z).shape == (2, 3, 64, 64) and d(g(z)).shape == (2,)


def test_wgan_gp_resnet_follows_the_released_code():
    """The ResNet of Gulrajani et al.'s released gan_64x64.py (GoodGenerator, GoodDiscriminator),
    recomputed op by op: the critic's down-block is LN -> ReLU -> conv -> LN -> ReLU -> conv ->
    mean pool (ConvMeanPool: the pool after the convolution) plus a shortcut of mean pool and
    1x1 conv (MeanPoolConv; with a 1x1 conv either order is the same function, only the cost
    differs, so this test cannot tell them apart); its first block follows an input 3x3 conv
    with nothing in between, and starts with its own LN -> ReLU like the others
    (GoodDiscriminator; the CIFAR code's OptimizedResBlockDisc1, which has no input conv, starts
    with a conv instead); the last block feeds the linear score directly.
    The generator's up-block is BN -> ReLU -> upsample -> conv -> BN -> ReLU -> conv plus
    upsample -> 1x1 conv; after the blocks BN -> ReLU -> 3x3 conv -> tanh."""
    torch.manual_seed(0)
    for fused in (True, False):
        m = models.build("wgan-gp", arch="resnet", resolution=16, channels=3, g_width=4, d_width=4,
                         z_dim=8, fused=fused)
        g, d = m.generator, m.critic
        for net in (g, d):  # non-trivial affine parameters, so that a skipped norm shows
            for mod in net.modules():
                if isinstance(mod, (nn.BatchNorm2d, nn.GroupNorm)):
                    nn.init.uniform_(mod.weight, 0.5, 1.5)
                    nn.init.uniform_(mod.bias, -0.5, 0.5)
        x = torch.randn(5, 3, 16, 16)

        def ln(mod, v):
            return nn.functional.group_norm(v, 1, mod.weight, mod.bias, mod.eps)
        h = d.from_rgb(x)
        for blk in d.blocks:
            r = blk.conv1(nn.functional.relu(ln(blk.norm1, h)))
            r = nn.functional.avg_pool2d(blk.conv2(nn.functional.relu(ln(blk.norm2, r))), 2)
            h = blk.shortcut(nn.functional.avg_pool2d(h, 2)) + r
        assert h.shape == (5, 8, 4, 4)  # 16 px: w -> 2w -> 2w (64 px: w, 2w, 4w, 8w, 8w)
        torch.testing.assert_close(d(x), d.linear(h.flatten(1)).squeeze(1), rtol=1e-5, atol=1e-6)

        z = torch.randn(5, 8)
        g.train()

        def up(v):
            return nn.functional.interpolate(v, scale_factor=2, mode="nearest")
        h = g.linear(z).view(5, -1, 4, 4)
        for blk in g.blocks:
            r = blk.conv1(up(nn.functional.relu(blk.bn1(h))))
            r = blk.conv2(nn.functional.relu(blk.bn2(r)))
            h = blk.shortcut(up(h)) + r
        want = torch.tanh(g.to_rgb(nn.functional.relu(g.bn(h))))
        torch.testing.assert_close(g(z), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, arch", [("wgan-gp", "dcgan"), ("wgan-gp", "resnet"), ("wgan-gp", "mlp"),
                                        ("dragan", "dcgan"), ("dragan", "mlp")])
def test_gradient_penalty_critics_couple_no_samples(name, arch):
    """A gradient penalty is a per-sample constraint: no BatchNorm (nor any layer that mixes
    the samples of a batch) in its critic (Gulrajani et al. 2017, sec. 4), in any arch. Checked
    by behaviour too: a sample's score does not change with the rest of its batch."""
    from fastgan.models.base import couples_samples
    torch.manual_seed(0)
    m = models.build(name, **TINY, arch=arch, mlp_hidden=8)
    assert not couples_samples(m.critic)
    x = torch.randn(6, 1, 16, 16)
    other = torch.cat([x[:3], torch.randn(3, 1, 16, 16) * 5])
    torch.testing.assert_close(m.critic(x)[:3], m.critic(other)[:3], rtol=1e-5, atol=1e-6)
    # the papers' own BatchNorm critics keep it (DCGAN, WGAN's experiments)
    assert couples_samples(models.build("wgan", **TINY).critic)


class _Recording(nn.Module):
    """A critic that records every batch it is called on."""

    def __init__(self, net):
        super().__init__()
        self.net, self.seen = net, []

    def forward(self, v):
        self.seen.append(v.detach().clone())
        return self.net(v)


@pytest.mark.parametrize("one_pass", [False, True])
def test_wgan_gp_penalty_points_have_one_epsilon_per_sample(one_pass):
    """Gulrajani et al. 2017, Algorithm 1, line 4: eps ~ U[0, 1] drawn for each sample, x_hat =
    eps x + (1 - eps) x_tilde (one eps for the whole batch is a known bug elsewhere). With x = 1
    and x_tilde = 0 every element of x_hat_i is eps_i."""
    torch.manual_seed(0)
    m = models.build("wgan-gp", **TINY, one_pass=one_pass)
    critic = _Recording(m.critic)
    real, fake = torch.ones(32, 1, 16, 16), torch.zeros(32, 1, 16, 16)
    loss, logs = m.critic_loss(critic, real, fake)
    x_hat = critic.seen[-1][64:] if one_pass else critic.seen[-1]
    eps = x_hat.flatten(1)
    assert eps.shape == (32, 256) and torch.equal(eps, eps[:, :1].expand_as(eps))
    eps = eps[:, 0]
    assert eps.unique().numel() == 32 and eps.min() >= 0 and eps.max() < 1
    # the penalty: lambda * mean over samples of (||grad_x D(x_hat_i)|| - 1)^2, each norm over
    # the whole sample
    x = x_hat.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(m.critic(x).sum(), x)
    want = 10.0 * ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
    torch.testing.assert_close(logs["gp"], want, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("one_pass", [False, True])
def test_dragan_penalty_points_perturb_by_half_the_batch_std(one_pass):
    """The DRAGAN authors' code: X_p = X + 0.5 * X.std() * U[0, 1) (the std of the whole batch,
    noise per element, non-negative), then X + alpha * (X_p - X) with one alpha per sample. Each
    real sample here is constant (its own std is 0) and the batch std is not, inside [-1, 1]
    so that the clamp does not act: the points must move by 0.5 * std(batch) * alpha_i * u_ij."""
    torch.manual_seed(0)
    m = models.build("dragan", **TINY, one_pass=one_pass)
    critic = _Recording(m.critic)
    b = 64
    real = torch.linspace(-0.5, 0.0, b).view(b, 1, 1, 1).expand(b, 1, 16, 16).contiguous()
    m.critic_loss(critic, real, torch.zeros_like(real))
    x_hat = critic.seen[-1][2 * b:] if one_pass else critic.seen[-1]
    step = (x_hat - real).flatten(1) / (0.5 * real.std(correction=0))  # alpha_i * u_ij in [0, 1)
    assert step.min() >= 0 and step.max() < 1
    assert step.max() > 0.9  # the scale is 0.5 std, not less (max over 64 x 256 products)
    per_sample = step.max(1).values  # ~alpha_i: one per sample, spread over [0, 1)
    assert per_sample.min() < 0.2 and (step.std(1) > 0).all()  # noise per element within a sample


@pytest.mark.parametrize("fused", [True, False])
def test_began_k_is_clamped_to_the_unit_interval(fused):
    """Berthelot et al. 2017, sec. 3.4: k_{t+1} = k_t + lambda_k (gamma L(x) - L(G(z))), kept in
    [0, 1], from the L(x) and L(G(z)) of the same step. A stand-in autoencoder with fixed
    errors: L(x) = r, L(G(z)) = f."""
    real = torch.rand(8, 1, 16, 16) * 2 - 1
    fake = torch.rand(8, 1, 16, 16) * 2 - 1
    for k0, r, f, want in ((1.0, 1.0, 0.0, 1.0), (0.0, 0.0, 1.0, 0.0),
                           (0.5, 0.2, 0.05, 0.5 + 0.001 * (0.5 * 0.2 - 0.05))):
        m = models.build("began", **TINY, embedding=8, k0=k0, fused=fused)

        def critic(v, r=r, f=f):
            return v + (r if v is real else f)
        loss, logs = m.critic_loss(critic, real, fake)
        m.after_critic_step()
        assert m.k.item() == pytest.approx(want, abs=1e-7)
        assert logs["k"].item() == pytest.approx(want, abs=1e-7)
        assert loss.item() == pytest.approx(r - k0 * f, abs=1e-6)  # L_D = L(x) - k_t L(G(z))
        assert logs["convergence"].item() == pytest.approx(r + abs(0.5 * r - f), abs=1e-6)


@pytest.mark.parametrize("fused", [True, False])
def test_began_k_over_processes_is_the_whole_batchs(fused, monkeypatch):
    """Under several processes k_{t+1} and M are those of the whole batch: the update of
    L(x) and L(G(z)) averaged over the processes, clamped after. Each process's clamped
    k_{t+1} was averaged before (a 2026-11-24 review): biased near 0 and 1, k0 = 0 among
    them. Here this process has L(x) = 0, L(G(z)) = 0.2 (its own k would clamp to 0) and a
    stand-in for the other has 1.0 and 0.1: the whole batch's means 0.5, 0.15."""
    import fastgan.models.began as began_module
    other = torch.tensor([1.0, 0.1])
    reduced = []

    def all_reduce(t):
        reduced.append(t.clone())
        t.add_(other.to(t.dtype))
    monkeypatch.setattr(began_module.dist, "is_available", lambda: True)
    monkeypatch.setattr(began_module.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(began_module.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(began_module.dist, "all_reduce", all_reduce)
    real = torch.rand(8, 1, 16, 16) * 2 - 1
    fake = torch.rand(8, 1, 16, 16) * 2 - 1
    m = models.build("began", **TINY, embedding=8, k0=0.0, fused=fused)
    _, logs = m.critic_loss(lambda v: v + (0.0 if v is real else 0.2), real, fake)
    m.after_critic_step()
    torch.testing.assert_close(reduced[0], torch.tensor([0.0, 0.2]), rtol=0, atol=1e-6)
    balance = 0.5 * 0.5 - 0.15
    assert m.k.item() == pytest.approx(0.001 * balance, abs=1e-8)  # not (0 + 0.0004) / 2
    assert logs["convergence"].item() == pytest.approx(0.5 + abs(balance), abs=1e-6)


@pytest.mark.parametrize("fused", [True, False])
def test_began_k_survives_an_overflowed_step(fused):
    """A step whose losses overflow (float16 autocast: the GradScaler then skips the step)
    keeps k_t; before, inf - inf made k NaN, and every loss after it."""
    real = torch.rand(8, 1, 16, 16) * 2 - 1
    fake = torch.rand(8, 1, 16, 16) * 2 - 1
    m = models.build("began", **TINY, embedding=8, k0=0.25, fused=fused)
    for bad in (float("inf"), float("nan")):
        def critic(v, bad=bad):
            return v + bad
        m.critic_loss(critic, real, fake)
        m.after_critic_step()
        assert m.k.item() == 0.25, bad
    m.critic_loss(lambda v: v + (0.2 if v is real else 0.05), real, fake)  # then a finite step moves it
    m.after_critic_step()
    assert m.k.item() == pytest.approx(0.25 + 0.001 * (0.5 * 0.2 - 0.05), abs=1e-7)


def _fixed_autoencoder(residuals):
    """A stand-in discriminator whose reconstruction of sample i is x_i + r_i."""
    class AE(nn.Module):
        def forward(self, x, return_code=False):
            recon = x + residuals.view(-1, *[1] * (x.dim() - 1)) * torch.ones_like(x) / math.sqrt(
                x[0].numel())
            return (recon, x.flatten(1)) if return_code else recon
    return AE()


def test_ebgan_hinge_is_per_sample():
    m = models.build("ebgan", **TINY)
    x = torch.zeros(4, 1, 16, 16)
    # fake energies 5, 5, 5, 45: the batch mean (15) is below m = 20, but only three samples are
    res = torch.tensor([5.0, 5.0, 5.0, 45.0])
    assert torch.allclose(energy(x, _fixed_autoencoder(res)(x)), res)
    real_res = torch.tensor([1.0, 2.0, 3.0, 4.0])
    ae_real, ae_fake = _fixed_autoencoder(real_res), _fixed_autoencoder(res)

    def critic(v):
        return ae_real(v) if v is x else ae_fake(v)
    fake = torch.zeros(4, 1, 16, 16)
    loss, logs = m.critic_loss(critic, x, fake)
    per_sample = real_res.mean() + torch.relu(20.0 - res).mean()  # 2.5 + 45/4
    assert loss.item() == pytest.approx(per_sample.item(), rel=1e-5)
    assert loss.item() != pytest.approx((real_res.mean() + torch.relu(20.0 - res.mean())).item())


def test_pulling_away_term():
    eye = torch.eye(4)
    assert pulling_away(eye).item() == pytest.approx(0.0, abs=1e-7)  # orthogonal codes
    same = torch.ones(5, 3)
    assert pulling_away(same).item() == pytest.approx(1.0, rel=1e-6)  # one code repeated
    s = torch.randn(6, 7, dtype=torch.float64)
    n = s / s.norm(dim=1, keepdim=True)
    brute = sum(float(n[i] @ n[j]) ** 2 for i in range(6) for j in range(6) if i != j) / 30
    assert pulling_away(s).item() == pytest.approx(brute, rel=1e-5)
    # a small term (spread codes) in float32 under autocast too: bf16's product, and the
    # diagonal subtracted from the whole sum, left 75-100% errors here
    torch.manual_seed(0)
    codes = torch.randn(64, 4096, dtype=torch.float64)
    n = codes / codes.norm(dim=1, keepdim=True)
    cos2 = (n @ n.t()) ** 2
    want = float((cos2.sum() - cos2.diagonal().sum()) / (64 * 63))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = pulling_away(codes.float())
    assert got.dtype == torch.float32 and got.item() == pytest.approx(want, rel=1e-3)
    # in the generator's loss only, weighted 0.1
    m = models.build("ebgan", **TINY)
    fake = torch.randn(4, 1, 16, 16)
    ae = _fixed_autoencoder(torch.full((4,), 3.0))
    loss, logs = m.generator_loss(ae, fake)
    assert loss.item() == pytest.approx(3.0 + 0.1 * logs["pt"].item(), rel=1e-5)


def test_began_k_update_and_logs():
    torch.manual_seed(0)
    m = models.build("began", **TINY, embedding=8)
    assert m.k.item() == 0.0
    z = m.sample_z(1000, "cpu")
    assert z.min() >= -1 and z.max() <= 1 and z.mean().abs() < 0.05 and z.std() > 0.5  # U[-1, 1]
    real = torch.rand(8, 1, 16, 16) * 2 - 1
    fake = m.generator(m.sample_z(8, "cpu")).detach()
    with torch.no_grad():
        l_real = (real - m.critic(real)).abs().mean()
        l_fake = (fake - m.critic(fake)).abs().mean()
    k_t = m.k
    loss, logs = m.critic_loss(m.critic, real, fake)
    k1 = min(max(0.0, 0.001 * (0.5 * l_real.item() - l_fake.item())), 1.0)
    assert logs["k"].item() == pytest.approx(k1, abs=1e-7)
    assert m.k.item() == 0.0  # k_t moves after the step (the backward needs this step's k_t)
    assert loss.item() == pytest.approx(l_real.item(), rel=1e-5)  # k_0 = 0
    assert logs["convergence"].item() == pytest.approx(
        l_real.item() + abs(0.5 * l_real.item() - l_fake.item()), rel=1e-5)
    loss.backward()
    m.after_critic_step()
    assert m.k is k_t and m.k.item() == pytest.approx(k1, abs=1e-7)  # in place: a graph replays it
    logs_k = logs["k"].item()
    m.critic_loss(m.critic, real, fake)  # the logged k of a step is its own, not a shared buffer
    assert logs["k"].item() == logs_k


def test_began_learning_rate_halves_when_convergence_stalls():
    m = models.build("began", **TINY, embedding=8, lr_patience=100)
    opt_g, opt_d = m.build_optimizers()
    for step in range(50, 501, 50):  # M improves: no decay
        m.on_log(step, {"convergence": 1.0 / step})
    assert opt_g.param_groups[0]["lr"] == opt_d.param_groups[0]["lr"] == 1e-4
    m.on_log(550, {"convergence": 1.0})
    m.on_log(600, {"convergence": 1.0})  # 100 steps since the best M
    assert opt_g.param_groups[0]["lr"] == opt_d.param_groups[0]["lr"] == 5e-5
    state = m.extra_state()
    other = models.build("began", **TINY, embedding=8, lr_patience=100)
    other.load_extra_state(state)
    assert other.extra_state() == state
    # a log window whose M is NaN (an overflowed fp16 step) is no news: it neither decays the
    # rates nor becomes the best M, which no later M could then beat
    m.on_log(700, {"convergence": float("nan")})
    for step in range(750, 1001, 50):
        m.on_log(step, {"convergence": 1.0 / step})
    assert opt_g.param_groups[0]["lr"] == 5e-5 and m.extra_state()["best_step"] == 1000


def test_dragan_backpropagates_its_gan_loss():
    torch.manual_seed(0)
    m = models.build("dragan", **TINY)
    assert not any(isinstance(x, nn.BatchNorm2d) for x in m.critic.modules())
    real = torch.rand(8, 1, 16, 16) * 2 - 1
    fake = m.generator(m.sample_z(8, "cpu")).detach()
    loss, logs = m.critic_loss(m.critic, real, fake)
    assert loss.item() == pytest.approx(logs["loss/d_gan"].item() + logs["gp"].item(), rel=1e-5)
    # with the penalty off, the gradient is the standard GAN loss's (not zero, not the penalty's)
    m.config["gp_weight"] = 0.0
    loss, logs = m.critic_loss(m.critic, real, fake)
    params = list(m.critic.parameters())
    got = torch.autograd.grad(loss, params)
    d_real, d_fake = m.critic(real), m.critic(fake)
    gan = (nn.functional.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
           + nn.functional.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
    want = torch.autograd.grad(gan, params)
    assert any(g.abs().max() > 0 for g in got)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_cli_and_readme_list_every_model():
    from fastgan.cli import main
    import contextlib
    import io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["models"]) == 0
    text = out.getvalue()
    for name in models.names():
        assert re.search(rf"^{re.escape(name)}\s", text, re.M), name
        assert models.get(name).paper in text
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["models", "began", "wgan"]) == 0
    assert "gamma = 0.5" in out.getvalue() and "clip = 0.01" in out.getvalue()
    # the README's table is the catalog's, as `models.table()` prints it
    assert models.table() in README.read_text()


@pytest.mark.parametrize("name, key, value, message", [
    ("dcgan", "lr_g", 0, "lr_g must be a finite number > 0, got 0"),
    ("dcgan", "lr_d", "abc", "lr_d must be a finite number > 0, got 'abc'"),
    ("dcgan", "lr_d", float("nan"), "lr_d must be a finite number > 0, got nan"),
    ("dcgan", "betas", 0.5, "betas must be a pair [beta1, beta2] of numbers in [0, 1), got 0.5"),
    ("dcgan", "betas", (0.5,), "betas must be a pair"),
    ("dcgan", "betas", (1.0, 0.9), "betas must be a pair"),
    ("dcgan", "fused", "maybe", "fused must be true or false"),
    ("dcgan", "one_pass", 1, "one_pass must be true or false, got 1"),
    ("dcgan", "z_dim", 2.5, "z_dim must be a positive integer, got 2.5"),
    ("dcgan", "batch_size", True, "batch_size must be a positive integer, got True"),
    ("wgan", "clip", -1, "clip must be none (no clipping) or a finite number > 0, got -1"),
    ("wgan", "critic_boost", "yes", "critic_boost must be true or false"),
    ("wgan-gp", "gp_weight", -1, "gp_weight must be a finite number >= 0, got -1"),
    ("dragan", "perturb_scale", "big", "perturb_scale must be a finite number >= 0"),
    ("ebgan", "margin", 0, "margin must be a finite number > 0, got 0"),
    ("ebgan", "pt_weight", "abc", "pt_weight must be a finite number >= 0"),
    ("began", "gamma", 2, "gamma must be a number in [0, 1], got 2"),
    ("began", "k0", -0.1, "k0 must be a number in [0, 1], got -0.1"),
    ("began", "lambda_k", -1, "lambda_k must be a finite number >= 0"),
    ("began", "lr_decay", 0, "lr_decay must be a number in (0, 1], got 0"),
    ("began", "lr_patience", 0, "lr_patience must be a positive integer, got 0"),
    ("began", "embedding", 0, "embedding must be a positive integer, got 0"),
    ("lsgan", "a", "abc", "a must be a finite number, got 'abc'"),
])
def test_bad_hyperparameters_are_refused_by_name(name, key, value, message):
    with pytest.raises(ValueError, match=re.escape(f"model {name!r}: {message}")):
        models.build(name, **{**TINY, key: value})


def test_hyperparameters_are_normalized():
    m = models.build("dcgan", **TINY, betas=[0.5, 0.9], lr_g=1)
    assert m.config["betas"] == (0.5, 0.9) and isinstance(m.config["betas"], tuple)
    assert m.config["lr_g"] == 1.0 and isinstance(m.config["lr_g"], float)
    assert models.build("wgan", **TINY, clip=None).config["clip"] is None  # WGAN without the clip
    for name in models.names():  # every paper default passes its own checks unchanged
        m = models.build(name, **TINY)
        cls = models.get(name)
        assert all(m.config[k] == v for k, v in cls.defaults.items() if k not in TINY), name


def test_mlp_generator_batchnorm_default_follows_the_data():
    """arch "mlp": BatchNorm in the generator for images (mlp_batchnorm None -> True, saved as
    resolved), none for 2-D points; either can be forced; any other value is refused."""
    def bns(model):
        return sum(isinstance(m, nn.BatchNorm1d) for m in model.generator.modules())

    images = models.build("gan", **TINY, mlp_hidden=8, mlp_depth=2)
    assert images.config["mlp_batchnorm"] is True and bns(images) == 2
    points = models.build("gan", resolution=1, channels=2, z_dim=2, mlp_hidden=8, mlp_depth=2)
    assert points.config["mlp_batchnorm"] is False and bns(points) == 0
    assert bns(models.build("wgan", **TINY, arch="mlp", mlp_hidden=8, mlp_batchnorm=False)) == 0
    assert bns(models.build("gan", resolution=1, channels=2, mlp_hidden=8, mlp_batchnorm=True)) == 3
    for name in ("ebgan", "began"):  # the autoencoder critics never get it
        model = models.build(name, **TINY, arch="mlp", mlp_hidden=8)
        assert not any(isinstance(m, nn.BatchNorm1d) for m in model.critic.modules())
    with pytest.raises(ValueError, match="mlp_batchnorm must be true, false or none .* got 'on'"):
        models.build("gan", **TINY, mlp_batchnorm="on")
