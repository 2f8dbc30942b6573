"""fastgan.ops.gradient_penalty against a plain-PyTorch WGAN-GP / DRAGAN / R1, and in
mixed precision.

The plain version is what the papers write, with torch.autograd.grad(create_graph=True):
the critic loss and every critic parameter's gradient must agree, for fastgan's critic
(fused bias + leaky ReLU) against the same network in stock modules.
"""
import pytest
import torch

import fastgan
from fastgan.nn import DCGANCritic
from fastgan.ops import (draw_seed, gradient_penalty, interpolate_reference, perturb,
                         perturb_reference)
from fastgan.ops.gradient_penalty import penalty_points

TOL = {torch.float64: dict(rtol=1e-9, atol=1e-10), torch.float32: dict(rtol=2e-4, atol=2e-5)}


def _critics(backend, dtype, device, width=4, resolution=16):
    """(fastgan critic, the same network in stock modules) with equal, nonzero parameters."""
    torch.manual_seed(0)
    fused = DCGANCritic(resolution, 3, width, fused=True, backend=backend).to(device, dtype)
    stock = DCGANCritic(resolution, 3, width, fused=False).to(device, dtype)
    with torch.no_grad():
        # Weights larger than DCGAN's N(0, 0.02), so that the input gradient's norm is O(1)
        # and the penalty's epsilon (1e-12 under the square root) is far below float64 noise.
        for conv in fused[0::2]:
            if isinstance(conv, torch.nn.Conv2d):
                conv.weight.normal_(0, 0.25)
        for i in range(0, len(fused) - 2, 2):
            fused[i + 1].bias.normal_(0, 0.05)
            stock[i].weight.copy_(fused[i].weight)
            stock[i].bias.copy_(fused[i + 1].bias)
        stock[-2].weight.copy_(fused[-2].weight)
        stock[-2].bias.copy_(fused[-2].bias)
    return fused, stock


def _grads_in_stock_order(fused):
    """fused's parameter gradients in the order of the stock critic's parameters."""
    out = []
    for i in range(0, len(fused) - 2, 2):
        out += [fused[i].weight.grad, fused[i + 1].bias.grad]
    return out + [fused[-2].weight.grad, fused[-2].bias.grad]


def _plain_penalty(critic, x, weight, center):
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    norm = g.flatten(1).norm(dim=1)
    if center == 0:
        return weight / 2 * (norm ** 2).mean()
    return weight * ((norm - center) ** 2).mean()


def _batch(shape, dtype, device, seed, channels_last):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1).to(dtype).to(device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("mode", ["wgan-gp", "dragan", "r1"])
@pytest.mark.parametrize("batch,channels_last", [(3, False), (1, False), (3, True)],
                         ids=["b3", "b1", "b3-channels_last"])
def test_critic_loss_and_every_gradient_match_plain_pytorch(backend_device, mode, dtype, batch,
                                                            channels_last):
    backend, device = backend_device
    fused, stock = _critics(backend, dtype, device)
    real = _batch((batch, 3, 16, 16), dtype, device, 1, channels_last)
    fake = _batch((batch, 3, 16, 16), dtype, device, 2, channels_last)
    gen_device = "cpu" if device == "cpu" else "cuda"

    # fastgan: the penalty's samples come from a generator seeded 123.
    gp = gradient_penalty(fused, real, fake if mode == "wgan-gp" else None, mode=mode,
                          generator=torch.Generator(gen_device).manual_seed(123), backend=backend)
    loss = fused(fake).mean() - fused(real).mean() + gp
    loss.backward()

    # plain PyTorch at the same samples (the reference sampling, the same seeds in the same
    # order: dragan draws perturb's seed, then interpolate's).
    gen = torch.Generator(gen_device).manual_seed(123)
    seed = draw_seed(device, gen)
    if mode == "wgan-gp":
        x = interpolate_reference(real, fake, seed)
    elif mode == "dragan":  # the authors' code: x_p = x + 0.5 std(x) U[0,1), x + alpha (x_p - x)
        wide = real if dtype == torch.float64 else real.float()
        sigma = (torch.std(wide, correction=0).float() * 0.5).reshape(1)
        x_p = perturb_reference(real, sigma, seed, -1.0, 1.0)
        x = interpolate_reference(x_p, real, draw_seed(device, gen))  # real + eps (x_p - real)
    else:
        x = real
    plain_gp = _plain_penalty(stock, x, 10.0, 0.0 if mode == "r1" else 1.0)
    plain_loss = stock(fake).mean() - stock(real).mean() + plain_gp
    plain_loss.backward()

    assert gp.item() > 0
    torch.testing.assert_close(gp.detach(), plain_gp.detach(), **TOL[dtype])
    torch.testing.assert_close(loss.detach(), plain_loss.detach(), **TOL[dtype])
    for got, want in zip(_grads_in_stock_order(fused), [p.grad for p in stock.parameters()]):
        torch.testing.assert_close(got, want, **TOL[dtype])


def test_dragan_points_interpolate_per_sample_between_real_and_perturbed(backend_device):
    """The authors' code (github.com/kodalinaveen3/DRAGAN): X_p = X + 0.5 X.std() U[0, 1),
    then X + alpha (X_p - X), one alpha ~ U[0, 1) per sample. So x_hat - real is
    eps_b * (x_p - real): per sample one ratio over all elements, in [0, 1), and differing
    between samples (x_hat = x_p itself, ratio 1, is not it)."""
    backend, device = backend_device
    gen_device = "cpu" if device == "cpu" else "cuda"
    real = _batch((16, 3, 8, 8), torch.float64, device, 4, False) * 0.9
    x_hat = penalty_points(real, mode="dragan", backend=backend,
                           generator=torch.Generator(gen_device).manual_seed(7))
    assert x_hat.requires_grad and x_hat.is_leaf
    x_hat = x_hat.detach()
    # perturb draws the first seed from the generator: the same x_p from the same seed
    x_p = perturb(real, generator=torch.Generator(gen_device).manual_seed(7), backend=backend)
    d_p, d_hat = (x_p - real).flatten(1), (x_hat - real).flatten(1)
    assert (d_p > 0).float().mean() > 0.9  # the noise moved (almost) every element
    eps = (d_hat * d_p).sum(1) / (d_p * d_p).sum(1)  # least squares, per sample
    torch.testing.assert_close(d_hat, eps[:, None] * d_p, rtol=0, atol=1e-12)
    moved = d_p.abs() > 1e-3
    ratio = torch.where(moved, d_hat / d_p.where(moved, torch.ones_like(d_p)), eps[:, None])
    torch.testing.assert_close(ratio, eps[:, None].expand_as(ratio), rtol=0, atol=1e-9)
    assert (eps >= 0).all() and (eps < 1).all(), eps
    assert eps.max() - eps.min() > 0.3, eps  # one eps per sample, 16 of them: they differ
    assert x_hat.min() >= -1 and x_hat.max() <= 1  # between two in-range points


def test_the_generator_gets_no_gradient_from_the_penalty(backend_device):
    backend, device = backend_device
    fused, _ = _critics(backend, torch.float32, device)
    z = torch.randn(2, 3, 16, 16, device=device, requires_grad=True)
    fake = torch.tanh(z)
    real = _batch((2, 3, 16, 16), torch.float32, device, 3, False)
    gradient_penalty(fused, real, fake, backend=backend).backward()
    assert z.grad is None
    # The input gradient is a product of weights and leaky-ReLU masks: every weight gets a
    # gradient from the penalty (biases only move the masks, whose derivative is 0).
    weights = [m.weight for m in fused if isinstance(m, torch.nn.Conv2d)]
    assert all(w.grad is not None and w.grad.any() for w in weights)


def _tiny_wgan_gp_steps(device, dtype, steps, scaler=None, backend=None):
    """A tiny WGAN-GP (DCGAN critic at 16 px, MLP generator) under autocast; returns the
    losses and the final parameters."""
    torch.manual_seed(0)
    critic = DCGANCritic(16, 3, 4, backend=backend).to(device)
    gen = torch.nn.Sequential(torch.nn.Linear(8, 3 * 16 * 16), torch.nn.Tanh(),
                              torch.nn.Unflatten(1, (3, 16, 16))).to(device)
    opt_d = torch.optim.Adam(critic.parameters(), lr=1e-4, betas=(0.0, 0.9))
    opt_g = torch.optim.Adam(gen.parameters(), lr=1e-4, betas=(0.0, 0.9))
    data = torch.rand(64, 3, 16, 16, device=device) * 2 - 1
    losses = []
    rng = torch.Generator(device).manual_seed(1)
    for step in range(steps):
        real = data[torch.randint(0, 64, (8,), device=device, generator=rng)]
        with torch.autocast(torch.device(device).type, dtype=dtype):
            fake = gen(torch.randn(8, 8, device=device, generator=rng))
            d_loss = critic(fake.detach()).float().mean() - critic(real).float().mean()
            gp = gradient_penalty(critic, real, fake, generator=rng, scaler=scaler, backend=backend)
            loss = d_loss + gp
        opt_d.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            opt_d.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt_d)
            scaler.update()
        losses.append(loss.detach())
        if step % 5 == 4:
            with torch.autocast(torch.device(device).type, dtype=dtype):
                g_loss = -critic(gen(torch.randn(8, 8, device=device, generator=rng))).float().mean()
            opt_g.zero_grad(set_to_none=True)
            if scaler is None:
                g_loss.backward()
                opt_g.step()
            else:
                scaler.scale(g_loss).backward()
                scaler.step(opt_g)
                scaler.update()
    return torch.stack(losses), list(critic.parameters()) + list(gen.parameters())


def test_bf16_autocast_stays_finite():
    losses, params = _tiny_wgan_gp_steps("cpu", torch.bfloat16, 200)
    assert torch.isfinite(losses).all()
    assert all(torch.isfinite(p).all() for p in params)
    assert losses[-50:].mean() < losses[:10].mean()  # the critic learned something


def test_fp16_autocast_with_grad_scaler_stays_finite():
    scaler = torch.amp.GradScaler("cpu")
    losses, params = _tiny_wgan_gp_steps("cpu", torch.float16, 200, scaler=scaler)
    assert all(torch.isfinite(p).all() for p in params)
    # at GradScaler's default scale from the first step: no overflow to skip (the penalty's
    # inner gradient once carried the whole scale, 2^16, float16's inf: every step at that
    # scale was NaN and skipped)
    assert torch.isfinite(losses).all()


def test_fp16_penalty_at_grad_scalers_default_scale_is_finite():
    torch.manual_seed(0)
    critic = DCGANCritic(16, 3, 8)
    real = torch.rand(6, 3, 16, 16) * 2 - 1
    fake = torch.rand(6, 3, 16, 16) * 2 - 1
    with torch.autocast("cpu", dtype=torch.float16):
        want = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(1))
        got = [gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(1),
                                scaler=torch.amp.GradScaler("cpu", init_scale=s)) for s in (2.0 ** 16, 2.0 ** 17)]
    assert torch.isfinite(want)
    for g in got:
        torch.testing.assert_close(g, want, rtol=2e-3, atol=0)


def test_an_overflowed_fp16_step_is_skipped_like_any_other():
    # A scale of 2^40 overflows float16 in the critic's input gradient: the penalty is not
    # finite, so are the parameter gradients, and GradScaler skips the step and backs off.
    torch.manual_seed(0)
    critic = DCGANCritic(16, 3, 8)
    before = [p.detach().clone() for p in critic.parameters()]
    opt = torch.optim.Adam(critic.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 40)
    real = torch.rand(4, 3, 16, 16) * 2 - 1
    fake = torch.rand(4, 3, 16, 16) * 2 - 1
    with torch.autocast("cpu", dtype=torch.float16):
        gp = gradient_penalty(critic, real, fake, scaler=scaler)
        loss = critic(fake).float().mean() - critic(real).float().mean() + gp
    assert not torch.isfinite(gp)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    assert scaler.get_scale() < 2.0 ** 40
    assert all(torch.equal(a, b) for a, b in zip(before, critic.parameters()))
    # With the scale backed off to something sane, the next step is taken and finite.
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    opt.zero_grad()
    with torch.autocast("cpu", dtype=torch.float16):
        gp = gradient_penalty(critic, real, fake, scaler=scaler)
        loss = critic(fake).float().mean() - critic(real).float().mean() + gp
    assert torch.isfinite(gp)
    scaler.scale(loss).backward()
    scaler.step(opt)
    assert not all(torch.equal(a, b) for a, b in zip(before, critic.parameters()))


def test_scaled_penalty_equals_unscaled():
    torch.manual_seed(0)
    critic = DCGANCritic(16, 3, 8).double()
    real = torch.rand(3, 3, 16, 16, dtype=torch.float64)
    fake = torch.rand(3, 3, 16, 16, dtype=torch.float64)
    a = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(1))
    b = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(1),
                         scaler=torch.amp.GradScaler("cpu", init_scale=1024.0))
    torch.testing.assert_close(a, b, rtol=1e-12, atol=0)


@pytest.mark.parametrize("kwargs,error,words", [
    (dict(mode="wgan"), ValueError, "unknown mode 'wgan'"),
    (dict(fake=None), ValueError, "mode 'wgan-gp' interpolates real and fake; pass fake"),
    (dict(mode="r1"), ValueError, "takes the penalty at \\(perturbed\\) real samples only"),
    (dict(mode="r1", fake=None, center=1.0), ValueError, "mode 'r1' penalizes"),
    (dict(critic=lambda x: x), ValueError, "critic must return one score per sample"),
    (dict(real=[1.0]), TypeError, "real must be a tensor"),
    (dict(fake=torch.zeros(2, 3, 16, 16, dtype=torch.uint8)), TypeError,
     "fake must be a floating-point tensor, got torch.uint8"),
    (dict(generator=42), TypeError, "generator must be a torch.Generator or None, got int"),
    # the sampling ops' refusals, named as gradient_penalty's
    (dict(fake=torch.rand(3, 3, 16, 16)), ValueError,
     r"^gradient_penalty: interpolate: fake must match real \(torch.float32 \(2, 3, 16, 16\)"),
    (dict(mode="dragan", fake=None, data_range=(1.0, -1.0)), ValueError,
     r"^gradient_penalty: perturb: data_range \(1.0, -1.0\) is empty"),
    (dict(scaler=2.0), TypeError, "^gradient_penalty: scaler must be a torch.amp.GradScaler or None, got float"),
])
def test_bad_input_names_the_problem(kwargs, error, words):
    critic = DCGANCritic(16, 3, 4)
    args = dict(critic=critic, real=torch.rand(2, 3, 16, 16), fake=torch.rand(2, 3, 16, 16)) | kwargs
    with pytest.raises(error, match=words):
        gradient_penalty(args.pop("critic"), args.pop("real"), args.pop("fake"), **args)


def test_dcgan_critic_shapes_and_init():
    for res in (16, 32, 64):
        c = DCGANCritic(res, 3, 4)
        assert c(torch.rand(2, 3, res, res)).shape == (2,)
    c = DCGANCritic(64, 3, 64)
    assert sum(p.numel() for p in c.parameters()) == sum(p.numel() for p in DCGANCritic(64, fused=False).parameters())
    assert abs(c[0].weight.std().item() - 0.02) < 0.002  # N(0, 0.02), Radford et al. 2015
    bn = DCGANCritic(64, norm="batch")
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in bn) == 3  # none on the first layer
    with pytest.raises(ValueError, match="resolution must be 16, 32, 64 or 128"):
        DCGANCritic(48)
    for fused in (True, False):  # images of another size: an error, not 25 scores per sample
        with pytest.raises(ValueError, match="built for 32x32 images, but its last convolution gave 5x5"):
            DCGANCritic(32, 3, 4, fused=fused)(torch.rand(2, 3, 64, 64))
    assert fastgan.nn.DCGANCritic is DCGANCritic


@pytest.mark.parametrize("norm", [None, "batch"])
def test_dcgan_critic_scores_an_unbatched_image_as_a_batch_of_one(norm):
    torch.manual_seed(0)
    fused = DCGANCritic(16, 3, 4, norm=norm).eval()
    plain = DCGANCritic(16, 3, 4, norm=norm, fused=False).eval()
    plain.load_state_dict(fused.state_dict())  # the biases move between the two layouts
    image = torch.rand(3, 16, 16) * 2 - 1
    want = plain(image[None])
    assert want.shape == (1,)
    for critic in (fused, plain):
        torch.testing.assert_close(critic(image), want)
        torch.testing.assert_close(critic(input=image), want)  # by keyword, as nn.Sequential names it


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_penalty_step_captures_in_a_cuda_graph(backend):
    # No host synchronization anywhere in the step, and the seed is drawn on the device by
    # the graph-safe generator: the captured step replays with fresh samples each time.
    torch.manual_seed(0)
    critic = DCGANCritic(16, 3, 8, backend=backend).cuda()
    params = list(critic.parameters())
    real = torch.rand(4, 3, 16, 16, device="cuda") * 2 - 1
    fake = torch.rand(4, 3, 16, 16, device="cuda") * 2 - 1

    def step():
        gp = gradient_penalty(critic, real, fake, backend=backend)
        return (gp, *torch.autograd.grad(gp, params[0]))

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # warm-up: compilation, allocator pools
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = step()
    values = []
    for _ in range(3):
        graph.replay()
        values.append(out[0].clone())
    torch.cuda.synchronize()
    assert all(torch.isfinite(v) for v in values)
    assert len({v.item() for v in values}) == 3  # a fresh eps per replay


@pytest.mark.parametrize("amp_dtype", [torch.bfloat16, torch.float16], ids=str)
def test_critic_step_under_autocast_matches_plain_pytorch(backend_device, amp_dtype):
    # Both networks compute in the 16-bit dtype under autocast; they differ only in where
    # they round (fastgan's bias + activation round once, eager's conv-with-bias and
    # leaky_relu twice), so they agree to the 16-bit dtype's precision.
    backend, device = backend_device
    fused, stock = _critics(backend, torch.float32, device)
    real = _batch((3, 3, 16, 16), torch.float32, device, 1, False)
    fake = _batch((3, 3, 16, 16), torch.float32, device, 2, False)
    gen_device = "cpu" if device == "cpu" else "cuda"
    device_type = torch.device(device).type
    with torch.autocast(device_type, dtype=amp_dtype):
        gp = gradient_penalty(fused, real, fake, generator=torch.Generator(gen_device).manual_seed(7),
                              backend=backend)
        loss = fused(fake).float().mean() - fused(real).float().mean() + gp
    loss.backward()
    x = interpolate_reference(real, fake, draw_seed(device, torch.Generator(gen_device).manual_seed(7)))
    with torch.autocast(device_type, dtype=amp_dtype):
        plain_gp = _plain_penalty(stock, x, 10.0, 1.0)
        plain_loss = stock(fake).float().mean() - stock(real).float().mean() + plain_gp
    plain_loss.backward()
    assert gp.dtype == torch.float32 and torch.isfinite(gp)
    tol = dict(rtol=3e-2, atol=3e-2 * plain_gp.abs().item())
    torch.testing.assert_close(gp.detach(), plain_gp.detach().float(), **tol)
    for got, want in zip(_grads_in_stock_order(fused), [p.grad for p in stock.parameters()]):
        scale = want.abs().max().item()
        torch.testing.assert_close(got, want, rtol=0, atol=5e-2 * scale + 1e-6)


@pytest.mark.parametrize("mode", ["wgan-gp", "dragan"])
def test_inside_torch_compile_the_penalty_runs_eagerly_and_agrees(mode):
    """A user's torch.compile'd critic step calling gradient_penalty: compiled, the critic's
    double backward failed inside AOTAutograd ("a leaf Variable ... in-place"); the penalty
    now runs eagerly within the compiled step, and loss and gradients equal the eager step's."""
    fused, _ = _critics(None, torch.float32, "cpu")
    real = _batch((3, 3, 16, 16), torch.float32, "cpu", 1, False)
    fake = _batch((3, 3, 16, 16), torch.float32, "cpu", 2, False)

    def step(real, fake, seed):
        gen = torch.Generator().manual_seed(seed)
        loss = fused(fake).mean() - fused(real).mean()
        return loss + gradient_penalty(fused, real, fake if mode == "wgan-gp" else None, mode=mode,
                                       generator=gen)

    results = []
    for fn in (step, torch.compile(step, backend="aot_eager")):
        fused.zero_grad(set_to_none=True)
        loss = fn(real, fake, 7)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in fused.parameters()]))
    (eager_loss, eager_grads), (comp_loss, comp_grads) = results
    torch.testing.assert_close(comp_loss, eager_loss, **TOL[torch.float32])
    for a, b in zip(comp_grads, eager_grads):
        torch.testing.assert_close(a, b, **TOL[torch.float32])


def test_a_compiled_critic_module_takes_its_penalty_through_its_eager_module():
    """gradient_penalty(torch.compile(critic), ...): the compiled graph cannot be
    differentiated twice (AOTAutograd); the penalty runs the eager module, the same
    parameters, and equals the eager critic's penalty and gradients."""
    critic, _ = _critics(None, torch.float32, "cpu")
    compiled = torch.compile(critic, backend="aot_eager")
    real = _batch((3, 3, 16, 16), torch.float32, "cpu", 1, False)
    fake = _batch((3, 3, 16, 16), torch.float32, "cpu", 2, False)
    results = []
    for net in (critic, compiled):
        critic.zero_grad(set_to_none=True)
        gp = gradient_penalty(net, real, fake, generator=torch.Generator().manual_seed(3))
        gp.backward()
        results.append((gp.detach(), [None if p.grad is None else p.grad.clone() for p in critic.parameters()]))
    (want, want_grads), (got, got_grads) = results
    assert any(g is not None and g.abs().max() > 0 for g in got_grads)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
