"""fastgan.nn.resnet: the WGAN-GP ResNet generator and critic (Gulrajani et al. 2017)."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from fastgan import models
from fastgan.nn import blocks
from fastgan.nn.resnet import (DownBlock, ResNetCritic, ResNetGenerator, SampleNorm, UpBlock, _mean_over_view,
                               mean_pool2, pooled_kernel, upsample2, upsampled_kernel)
from fastgan.ops import batch_norm_act


def _gen(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# Generator channels, 4 x 4 first, at width 2: [w*m] + ..., the multiplier capped at 8.
PLANS = {16: [4, 4, 2], 32: [8, 8, 4, 2], 64: [16, 16, 8, 4, 2], 128: [16, 16, 16, 8, 4, 2]}


@pytest.mark.parametrize("resolution", [16, 32, 64, 128])
def test_generator_shape_range_and_channels(resolution):
    torch.manual_seed(0)
    g = ResNetGenerator(resolution, z_dim=7, out_channels=3, width=2)
    assert g.z_dim == 7
    y = g(_gen(3, 7))
    assert y.shape == (3, 3, resolution, resolution)
    assert y.abs().max() <= 1 and y.std() > 0
    plan = PLANS[resolution]
    assert g.linear.out_features == plan[0] * 16
    assert [(b.conv1.in_channels, b.conv2.out_channels) for b in g.blocks] == list(zip(plan[:-1], plan[1:]))
    assert g.to_rgb.in_channels == plan[-1] and g.to_rgb.kernel_size == (3, 3)


def test_paper_channels_at_64px():
    """Gulrajani et al. 2017, app. C: 8*64 at 4 x 4, halving to 64 at 64 x 64, and the mirror."""
    g, c = ResNetGenerator(), ResNetCritic()
    assert g.z_dim == 128 and g.linear.out_features == 512 * 16
    assert [b.conv2.out_channels for b in g.blocks] == [512, 256, 128, 64]
    assert c.from_rgb.out_channels == 64
    assert [b.conv2.out_channels for b in c.blocks] == [128, 256, 512, 512]
    assert c.linear.in_features == 512 * 16


@pytest.mark.parametrize("resolution", [16, 32, 64, 128])
def test_critic_shape_and_channels(resolution):
    torch.manual_seed(0)
    c = ResNetCritic(resolution, in_channels=3, width=2)
    out = c(_gen(3, 3, resolution, resolution))
    assert out.shape == (3,)
    plan = PLANS[resolution][::-1]
    assert [(b.conv1.in_channels, b.conv2.out_channels) for b in c.blocks] == list(zip(plan[:-1], plan[1:]))
    assert c.linear.in_features == plan[-1] * 16 and c.linear.out_features == 1


@pytest.mark.parametrize("channels", [1, 5])
def test_odd_channel_counts(channels):
    g = ResNetGenerator(16, z_dim=3, out_channels=channels, width=3)
    c = ResNetCritic(16, in_channels=channels, width=3)
    x = g(_gen(3, 3))
    assert x.shape == (3, channels, 16, 16)
    assert c(x).shape == (3,)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_generator_gradient_reaches_every_parameter(mode):
    """Also in train mode: the generator has no bias that its BatchNorms cancel."""
    torch.manual_seed(0)
    g = getattr(ResNetGenerator(16, z_dim=5, out_channels=3, width=3), mode)()
    g(_gen(3, 5)).sum().backward()
    for name, p in g.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 1e-4, name


def test_critic_gradient_reaches_every_parameter():
    torch.manual_seed(0)
    c = ResNetCritic(16, in_channels=3, width=3)
    c(_gen(3, 3, 16, 16)).sum().backward()
    for name, p in c.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 1e-4, name


def test_critic_has_layer_norm_not_batch_norm():
    c = ResNetCritic(32, width=2)
    kinds = [type(m) for m in c.modules()]
    assert not any(issubclass(k, nn.modules.batchnorm._NormBase) for k in kinds)
    norms = [m for m in c.modules() if isinstance(m, nn.GroupNorm)]
    assert len(norms) == 2 * len(c.blocks)
    assert all(m.num_groups == 1 and m.affine and m.weight.shape == (m.num_channels,) for m in norms)
    assert not any(isinstance(m, nn.Sigmoid) for m in c.modules())


def test_blocks_shortcut_paths():
    """With the residual branch's last convolution zeroed, a block is its shortcut alone:
    nearest upsampling then 1x1 conv (up), 2x2 mean pooling then 1x1 conv (down)."""
    torch.manual_seed(0)
    x = _gen(2, 3, 4, 6)
    up = UpBlock(3, 5)
    assert up.conv2.bias is None and up.shortcut.bias is None
    nn.init.zeros_(up.conv2.weight)
    x_up = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    torch.testing.assert_close(up(x), F.conv2d(x_up, up.shortcut.weight))
    down = DownBlock(3, 5)
    nn.init.zeros_(down.conv2.weight), nn.init.zeros_(down.conv2.bias)
    x_pool = x.reshape(2, 3, 2, 2, 3, 2).mean(dim=(3, 5))
    torch.testing.assert_close(down(x), F.conv2d(x_pool, down.shortcut.weight, down.shortcut.bias))
    # The residual branch is live otherwise (the shortcut is not the whole block).
    nn.init.normal_(up.conv2.weight)
    assert not torch.allclose(up(x), F.conv2d(x_up, up.shortcut.weight), atol=1e-3)


def _max_coupling(model, x, j):
    """How much sample j's perturbation moves the other samples' outputs and input gradients."""
    def out_grad(inp):
        inp = inp.detach().requires_grad_(True)
        out = model(inp)
        (g,) = torch.autograd.grad(out.sum(), inp)
        return out.detach(), g
    out1, g1 = out_grad(x)
    x2 = x.clone()
    x2[j] = x2[j] + _gen(*x.shape[1:], seed=9, dtype=x.dtype)
    out2, g2 = out_grad(x2)
    others = [i for i in range(x.shape[0]) if i != j]
    assert (out2[j] - out1[j]).abs() > 1e-6  # the perturbation does change sample j
    return max((out2[others] - out1[others]).abs().max().item(),
               (g2[others] - g1[others]).abs().max().item())


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_critic_samples_do_not_couple(mode):
    """The gradient penalty is per sample: sample i's score and input gradient must not depend
    on sample j. The same check does see BatchNorm's coupling (the control)."""
    torch.manual_seed(0)
    c = ResNetCritic(16, in_channels=3, width=2).double()
    getattr(c, mode)()
    x = _gen(3, 3, 16, 16, dtype=torch.float64)
    assert _max_coupling(c, x, j=1) < 1e-12
    control = nn.Sequential(nn.Conv2d(3, 2, 3, 1, 1), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(1),
                            nn.Linear(2 * 16 * 16, 1), nn.Flatten(0)).double().train()
    assert _max_coupling(control, x, j=1) > 1e-6


def test_critic_gradgradcheck(one_thread):
    """Second derivatives (the gradient penalty's double backward), x and the parameters alike."""
    torch.manual_seed(0)
    c = ResNetCritic(16, in_channels=1, width=2).double()
    names = ["from_rgb.weight", "blocks.0.norm1.weight", "blocks.1.conv2.weight", "linear.weight"]
    params = dict(c.named_parameters())
    x = _gen(2, 1, 16, 16, seed=3, dtype=torch.float64).requires_grad_(True)
    ps = [params[n].detach().clone().requires_grad_(True) for n in names]

    def f(x, *ps):
        return torch.func.functional_call(c, dict(zip(names, ps)), (x,))
    assert torch.autograd.gradgradcheck(f, (x, *ps), fast_mode=True)


@pytest.mark.parametrize("bad", [8, 48, 256, 64.0, "64"])
def test_resolution_validation(bad):
    for cls in (ResNetGenerator, ResNetCritic):
        with pytest.raises(ValueError, match=f"{cls.__name__}: resolution must be 16, 32, 64 or 128, got"):
            cls(bad)


def test_size_validation():
    with pytest.raises(ValueError, match="z_dim must be a positive int, got 0"):
        ResNetGenerator(z_dim=0)
    with pytest.raises(ValueError, match="width must be a positive int, got 0"):
        ResNetGenerator(width=0)
    with pytest.raises(ValueError, match="out_channels must be a positive int, got -1"):
        ResNetGenerator(out_channels=-1)
    with pytest.raises(ValueError, match="in_channels must be a positive int, got 2.5"):
        ResNetCritic(in_channels=2.5)


CL = torch.channels_last


def _layouts(x):
    return {"nchw": x.contiguous(), "channels_last": x.contiguous(memory_format=CL)}


@pytest.mark.parametrize("pool", [mean_pool2, _mean_over_view], ids=["mean_pool2", "over_view"])
@pytest.mark.parametrize("shape", [(3, 5, 8, 6), (2, 1, 4, 4), (1, 7, 2, 10)])
def test_mean_pool2_is_avg_pool2d_and_keeps_the_layout(shape, pool):
    # mean_pool2 on the CPU is avg_pool2d itself; _mean_over_view is its CUDA path, run here
    x = _gen(*shape, dtype=torch.float64)
    for name, t in _layouts(x).items():
        t = t.clone(memory_format=torch.preserve_format).requires_grad_(True)
        y = pool(t)
        torch.testing.assert_close(y, F.avg_pool2d(x, 2), rtol=1e-15, atol=1e-15)
        assert y.is_contiguous(memory_format=CL if name == "channels_last" else torch.contiguous_format), name
        (g,) = torch.autograd.grad(y, t, grad_outputs=_gen(*y.shape, seed=1, dtype=x.dtype))
        (ref,) = torch.autograd.grad(F.avg_pool2d(t, 2), t, grad_outputs=_gen(*y.shape, seed=1, dtype=x.dtype))
        torch.testing.assert_close(g, ref, rtol=0, atol=0)
    odd = _gen(2, 3, 5, 7)  # odd sizes: avg_pool2d's floor, through avg_pool2d itself
    torch.testing.assert_close(mean_pool2(odd), F.avg_pool2d(odd, 2), rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(3, 5, 7, 9), (2, 1, 4, 4), (4, 3, 1, 1)])
def test_sample_norm_is_group_norm_one_group_in_every_layout(shape):
    norm = SampleNorm(shape[1]).double()
    with torch.no_grad():
        norm.weight.copy_(_gen(shape[1], seed=2, dtype=torch.float64))
        norm.bias.copy_(_gen(shape[1], seed=3, dtype=torch.float64))
    x = _gen(*shape, dtype=torch.float64) * 3 + 1
    ref = F.group_norm(x, 1, norm.weight, norm.bias, norm.eps)
    for name, t in _layouts(x).items():
        y = norm(t)
        torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
        if name == "channels_last" and shape[2] * shape[3] > 1 and shape[1] > 1:
            assert y.is_contiguous(memory_format=CL) and not y.is_contiguous()
    assert isinstance(norm, nn.GroupNorm) and norm.num_groups == 1
    assert list(norm.state_dict()) == list(nn.GroupNorm(1, shape[1]).state_dict())


def test_sample_norm_channels_last_gradgradcheck():
    x = _gen(2, 3, 4, 5, seed=4, dtype=torch.float64).contiguous(memory_format=CL).requires_grad_(True)
    w = _gen(3, seed=5, dtype=torch.float64).requires_grad_(True)
    b = _gen(3, seed=6, dtype=torch.float64).requires_grad_(True)
    norm = SampleNorm(3).double()

    def f(x, w, b):
        return torch.func.functional_call(norm, {"weight": w, "bias": b}, (x,))
    assert torch.autograd.gradcheck(f, (x, w, b))
    assert torch.autograd.gradgradcheck(f, (x, w, b))


def _penalty(critic, x, score_weight=0.0):
    """(scores, input gradients, every parameter's gradient, None where unused) of the
    penalty ((||grad_x D(x)|| - 1)^2).mean() + score_weight * D(x).mean(), double backward
    included."""
    inp = x.clone(memory_format=torch.preserve_format).requires_grad_(True)
    out = critic(inp)
    (g,) = torch.autograd.grad(out.sum(), inp, create_graph=True)
    loss = ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()
    if score_weight:
        loss = loss + score_weight * out.mean()
    return out.detach(), g.detach(), torch.autograd.grad(loss, list(critic.parameters()), allow_unused=True)


def test_critic_in_channels_last_computes_the_same_scores_and_penalty_gradients(one_thread):
    """The trainer runs the critic channels_last on CUDA: the same function, its input
    gradient and the penalty's parameter gradients as in NCHW (float64)."""
    torch.manual_seed(0)
    nchw = ResNetCritic(16, in_channels=3, width=2).double()
    cl = ResNetCritic(16, in_channels=3, width=2).double()
    cl.load_state_dict(nchw.state_dict())
    cl.to(memory_format=CL)
    x = _gen(3, 3, 16, 16, seed=7, dtype=torch.float64)
    # None among the gradients: biases added after the last normalization (the input
    # gradient has none of them)
    a, b = _penalty(nchw, x), _penalty(cl, x.contiguous(memory_format=CL))
    torch.testing.assert_close(b[0], a[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(b[1], a[1], rtol=1e-10, atol=1e-12)
    assert [g is None for g in a[2]] == [g is None for g in b[2]]
    for ga, gb in zip(a[2], b[2]):
        if ga is not None:
            torch.testing.assert_close(gb, ga, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("size", [(2, 2), (4, 4), (7, 9), (6, 5)])
def test_pooled_kernel_is_the_convolution_then_the_mean_pool(size):
    """conv2d(x, pooled_kernel(w), b, stride 2, padding 1) == avg_pool2d(conv2d(x, w, b,
    padding 1), 2) in float64, odd sizes too (both drop the last row or column)."""
    x = _gen(2, 3, *size, dtype=torch.float64)
    w, b = _gen(5, 3, 3, 3, seed=1, dtype=torch.float64), _gen(5, seed=2, dtype=torch.float64)
    want = F.avg_pool2d(F.conv2d(x, w, b, padding=1), 2)
    got = F.conv2d(x, pooled_kernel(w), b, stride=2, padding=1)
    assert pooled_kernel(w).shape == (5, 3, 4, 4)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (4, 4), (5, 2)])
def test_upsampled_kernel_is_the_upsampling_then_the_convolution(size):
    x = _gen(2, 5, *size, dtype=torch.float64)
    w = _gen(3, 5, 3, 3, seed=1, dtype=torch.float64)  # (c_out, c_in): conv1's layout
    want = F.conv2d(upsample2(x), w, padding=1)
    got = F.conv_transpose2d(x, upsampled_kernel(w), stride=2, padding=1)
    assert upsampled_kernel(w).shape == (5, 3, 4, 4)  # conv_transpose2d's (c_in, c_out)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def _fused_and_stock(cls, *args):
    torch.manual_seed(0)
    fused, stock = cls(*args, fused=True).double(), cls(*args, fused=False).double()
    stock.load_state_dict(fused.state_dict())
    for net in (fused, stock):  # non-trivial affine parameters
        for mod in net.modules():
            if isinstance(mod, (nn.BatchNorm2d, nn.GroupNorm)):
                with torch.no_grad():
                    mod.weight.copy_(_gen(mod.weight.numel(), seed=3, dtype=torch.float64) * 0.3 + 1)
                    mod.bias.copy_(_gen(mod.bias.numel(), seed=4, dtype=torch.float64))
    return fused, stock


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_fused_critic_is_the_stock_critic_with_its_penalty(layout, device):
    """ResNetCritic(fused=True) (pooled_kernel in every down-block) against fused=False (the
    convolution, then mean_pool2) from the same state: scores, input gradients and every
    parameter's gradient through the penalty's double backward, float64."""
    fused, stock = _fused_and_stock(ResNetCritic, 16, 3, 2)
    fused, stock = fused.to(device), stock.to(device)
    x = _gen(3, 3, 16, 16, seed=7, dtype=torch.float64).to(device)
    if layout == "channels_last":
        x = x.contiguous(memory_format=CL)
        fused.to(memory_format=CL), stock.to(memory_format=CL)

    a, b = _penalty(stock, x, 1.0), _penalty(fused, x, 1.0)  # with the scores: every parameter has a gradient
    assert all(g is not None for g in a[2] + b[2])
    assert all(isinstance(m, DownBlock) and m.fused for m in fused.blocks)
    torch.testing.assert_close(b[0], a[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(b[1], a[1], rtol=1e-10, atol=1e-12)
    for (name, _), ga, gb in zip(stock.named_parameters(), a[2], b[2]):
        torch.testing.assert_close(gb, ga, rtol=1e-9, atol=1e-12, msg=name)
    if layout == "channels_last":
        h = fused.blocks[0](fused.from_rgb(x))
        assert h.is_contiguous(memory_format=CL) and not h.is_contiguous()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_fused_generator_is_the_stock_generator(mode, device, monkeypatch):
    """ResNetGenerator(fused=True) (upsampled_kernel, the shortcut before the upsampling,
    BatchNorm + ReLU as batch_norm_act) against fused=False from the same state: images,
    every parameter's gradient and the BatchNorms' running statistics, float64."""
    fused, stock = _fused_and_stock(ResNetGenerator, 16, 6, 3, 3)
    fused, stock = getattr(fused, mode)().to(device), getattr(stock, mode)().to(device)
    z = _gen(4, 6, seed=5, dtype=torch.float64).to(device)
    calls = []
    monkeypatch.setattr(blocks, "batch_norm_act", lambda *a, **k: calls.append(1) or batch_norm_act(*a, **k))
    out = [net(z) for net in (stock, fused)]
    # every BatchNorm of the fused generator in training: 2 per block and the last one
    assert len(calls) == (2 * len(fused.blocks) + 1 if mode == "train" else 0)
    torch.testing.assert_close(out[1], out[0], rtol=1e-10, atol=1e-12)
    grads = [torch.autograd.grad((o * _gen(*o.shape, seed=6, dtype=torch.float64).to(device)).sum(),
                                 list(net.parameters())) for o, net in zip(out, (stock, fused))]
    for (name, _), ga, gb in zip(stock.named_parameters(), *grads):
        torch.testing.assert_close(gb, ga, rtol=1e-9, atol=1e-12, msg=name)
    for (name, ra), rb in zip(stock.named_buffers(), fused.buffers()):
        torch.testing.assert_close(rb, ra, rtol=1e-12, atol=1e-12, msg=name)
    assert all(isinstance(m, UpBlock) and m.fused for m in fused.blocks)


def test_fused_down_block_gradgradcheck():
    """Through the strided convolution and pooled_kernel (the block's other layers are
    stock modules, checked elsewhere): x, conv2's weight and bias, twice."""
    block = DownBlock(1, 2, fused=True).double()
    x = _gen(1, 1, 4, 5, seed=8, dtype=torch.float64).requires_grad_(True)
    w, b = (p.detach().clone().requires_grad_(True) for p in (block.conv2.weight, block.conv2.bias))

    def f(x, w, b):
        return torch.func.functional_call(block, {"conv2.weight": w, "conv2.bias": b}, (x,), strict=False)
    assert torch.autograd.gradcheck(f, (x, w, b))
    assert torch.autograd.gradgradcheck(f, (x, w, b))


def test_the_wgan_gp_model_builds_fused_and_stock_resnets():
    for fused in (True, False):
        m = models.build("wgan-gp", arch="resnet", resolution=16, channels=3, g_width=2, d_width=2,
                         z_dim=4, fused=fused)
        found = list(m.generator.blocks) + list(m.critic.blocks)
        assert found and all(b.fused is fused for b in found)


@pytest.mark.gpu
def test_fused_resnet_under_bf16_autocast_channels_last_on_a_gpu():
    """The trainer's CUDA setting: channels_last, bf16 autocast. The fused networks against
    the stock ones from the same state (bf16 rounding apart), a finite penalty step."""
    torch.manual_seed(0)
    out = {}
    for fused in (True, False):
        torch.manual_seed(0)
        g = ResNetGenerator(32, z_dim=16, width=8, fused=fused).cuda().to(memory_format=CL)
        d = ResNetCritic(32, width=8, fused=fused).cuda().to(memory_format=CL)
        z = _gen(8, 16, seed=1).cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            img = g(z)
            x = img.detach().float().contiguous(memory_format=CL).requires_grad_(True)
            score = d(x)
            (gx,) = torch.autograd.grad(score.float().sum(), x, create_graph=True)
        loss = ((gx.flatten(1).norm(dim=1) - 1) ** 2).mean() + score.float().mean()
        loss.backward()
        assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in d.parameters())
        out[fused] = (img.float(), score.float())
    for a, b in zip(out[True], out[False]):
        torch.testing.assert_close(a, b, rtol=0.05, atol=0.05)
