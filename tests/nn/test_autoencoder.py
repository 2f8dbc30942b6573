"""fastgan.nn.autoencoder: EBGAN's and BEGAN's autoencoder discriminators."""
import re

import pytest
import torch
from torch import nn

from fastgan.nn import ConvBNLeakyReLU, ConvTransposeBNReLU
from fastgan.nn.autoencoder import BEGANAutoencoder, BEGANDecoder, BEGANEncoder, EBGANDiscriminator

NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def _gen(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _all_grads_nonzero(model, out):
    out.sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 1e-6, name


# EBGAN


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("resolution,channels", [(8, 3), (16, 1), (24, 3), (64, 5)])
def test_ebgan_shapes(fused, resolution, channels):
    torch.manual_seed(0)
    d = EBGANDiscriminator(resolution, channels, width=3, fused=fused)
    x = _gen(3, channels, resolution, resolution)
    recon, code = d(x, return_code=True)
    assert recon.shape == x.shape
    assert code.shape == (3, 12, resolution // 8, resolution // 8)
    torch.testing.assert_close(d(x), recon)
    torch.testing.assert_close(d.encode(x), code)
    torch.testing.assert_close(d.decode(code), recon)
    assert code.min() < 0 < code.max()  # LeakyReLU code, not ReLU


def test_ebgan_layers():
    """Appendix layout: BN on neither the first encoder nor the last decoder layer."""
    d = EBGANDiscriminator(16, 3, width=4, fused=False)
    convs = [m for m in d.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert [(type(m), m.in_channels, m.out_channels, m.kernel_size, m.stride) for m in convs] == [
        (nn.Conv2d, 3, 4, (4, 4), (2, 2)), (nn.Conv2d, 4, 8, (4, 4), (2, 2)),
        (nn.Conv2d, 8, 16, (4, 4), (2, 2)), (nn.ConvTranspose2d, 16, 8, (4, 4), (2, 2)),
        (nn.ConvTranspose2d, 8, 4, (4, 4), (2, 2)), (nn.ConvTranspose2d, 4, 3, (4, 4), (2, 2))]
    assert [m.bias is not None for m in convs] == [True, False, False, False, False, True]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d.modules()) == 4
    assert isinstance(d.encoder[1], nn.LeakyReLU) and d.encoder[1].negative_slope == 0.2
    assert isinstance(d.decoder[-1], nn.ConvTranspose2d)


def test_ebgan_dcgan_init():
    d = EBGANDiscriminator(16, 3, width=16)
    w = d.decoder[0][0].weight  # 64 x 32 x 4 x 4
    assert abs(w.std().item() - 0.02) < 0.002 and abs(w.mean().item()) < 0.002
    assert torch.all(d.encoder[0].bias == 0) and torch.all(d.decoder[-1].bias == 0)
    bn = d.encoder[2][1]
    assert abs(bn.weight.mean().item() - 1) < 0.02 and torch.all(bn.bias == 0)


def test_ebgan_fused_matches_unfused():
    """Same state_dict keys; the same outputs, gradients and running statistics over three
    training steps, then the same eval output."""
    torch.manual_seed(0)
    fused = EBGANDiscriminator(16, 3, width=4, fused=True)
    stock = EBGANDiscriminator(16, 3, width=4, fused=False)
    assert isinstance(fused.encoder[2], ConvBNLeakyReLU) and isinstance(fused.decoder[0], ConvTransposeBNReLU)
    assert not isinstance(stock.encoder[2], ConvBNLeakyReLU)
    assert not isinstance(stock.decoder[0], ConvTransposeBNReLU)
    assert list(fused.state_dict()) == list(stock.state_dict())
    with torch.no_grad():  # non-trivial BN affine parameters
        for m in stock.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    fused.load_state_dict(stock.state_dict())
    tol = dict(rtol=1e-5, atol=1e-5)
    for step in range(3):
        x = _gen(3, 3, 16, 16, seed=step)
        outs = []
        for model in (fused, stock):
            model.train().zero_grad()
            recon, code = model(x, return_code=True)
            (recon.square().mean() + code.mean()).backward()
            outs.append((recon.detach(), code.detach(), [p.grad for p in model.parameters()]))
        torch.testing.assert_close(outs[0][0], outs[1][0], **tol)
        torch.testing.assert_close(outs[0][1], outs[1][1], **tol)
        for gf, gs in zip(outs[0][2], outs[1][2]):
            torch.testing.assert_close(gf, gs, **tol)
    for (k, a), b in zip(fused.state_dict().items(), stock.state_dict().values()):
        torch.testing.assert_close(a, b, **tol, msg=k)
    x = _gen(3, 3, 16, 16, seed=7)
    with torch.no_grad():
        torch.testing.assert_close(fused.eval()(x), stock.eval()(x), **tol)


@pytest.mark.parametrize("fused", [True, False])
def test_ebgan_gradient_reaches_every_parameter(fused):
    torch.manual_seed(0)
    d = EBGANDiscriminator(16, 3, width=3, fused=fused)
    recon = d(_gen(3, 3, 16, 16))
    _all_grads_nonzero(d, recon * _gen(*recon.shape, seed=5))  # a weighted sum: BN keeps sum ~0


@pytest.mark.parametrize("bad", [0, 4, 12, 30, 16.0, "64"])
def test_ebgan_resolution_validation(bad):
    with pytest.raises(ValueError, match="EBGANDiscriminator: resolution must be a multiple of 8 and >= 8, got"):
        EBGANDiscriminator(bad)


def test_ebgan_size_validation():
    with pytest.raises(ValueError, match="channels must be a positive int, got 0"):
        EBGANDiscriminator(channels=0)
    with pytest.raises(ValueError, match="width must be a positive int, got None"):
        EBGANDiscriminator(width=None)


# BEGAN


@pytest.mark.parametrize("resolution,channels", [(8, 3), (16, 1), (32, 3), (64, 5)])
def test_began_shapes(resolution, channels):
    torch.manual_seed(0)
    ae = BEGANAutoencoder(resolution, channels, width=3, h=5)
    x = _gen(3, channels, resolution, resolution)
    recon, code = ae(x, return_code=True)
    assert recon.shape == x.shape and code.shape == (3, 5)
    torch.testing.assert_close(ae(x), recon)
    torch.testing.assert_close(ae.decode(ae.encode(x)), recon)
    g = BEGANDecoder(resolution, h=7, channels=channels, width=3)
    assert g.z_dim == 7
    assert g(_gen(3, 7)).shape == (3, channels, resolution, resolution)


def test_began_decoder_layers():
    """Berthelot et al. 2017, fig. 1: h -> 8x8xn, [conv, conv, upsample] ..., conv, conv, conv to C."""
    dec = BEGANDecoder(32, h=5, channels=3, width=4)
    assert dec.linear.in_features == 5 and dec.linear.out_features == 4 * 8 * 8
    kinds = ["up" if isinstance(m, nn.Upsample) else "conv" for m in dec.convs
             if isinstance(m, (nn.Conv2d, nn.Upsample))]
    assert kinds == ["conv", "conv", "up", "conv", "conv", "up", "conv", "conv", "conv"]
    convs = [m for m in dec.convs if isinstance(m, nn.Conv2d)]
    assert all(m.kernel_size == (3, 3) and m.stride == (1, 1) for m in convs)
    assert [m.out_channels for m in convs] == [4] * 6 + [3]
    assert all(m.mode == "nearest" for m in dec.convs if isinstance(m, nn.Upsample))
    assert isinstance(dec.convs[-1], nn.Conv2d)  # no output activation


def test_began_encoder_layers():
    """Channels grow linearly (w, 2w, 3w, 4w at 64 px), stride-2 convs sub-sample, 8 x 8 at the end."""
    enc = BEGANEncoder(64, h=5, channels=3, width=2)
    convs = [m for m in enc.convs if isinstance(m, nn.Conv2d)]
    assert [(m.in_channels, m.out_channels, m.stride[0]) for m in convs] == [
        (3, 2, 1), (2, 2, 1), (2, 2, 1), (2, 4, 2), (4, 4, 1), (4, 4, 1), (4, 6, 2), (6, 6, 1),
        (6, 6, 1), (6, 8, 2), (8, 8, 1), (8, 8, 1)]
    assert enc.convs(_gen(1, 3, 64, 64)).shape == (1, 8, 8, 8)
    assert enc.linear.in_features == 8 * 8 * 8 and enc.linear.out_features == 5


@pytest.mark.parametrize("cls", [BEGANAutoencoder, BEGANDecoder, BEGANEncoder])
def test_began_no_norm_elu_everywhere(cls):
    net = cls(16, width=2)
    mods = list(net.modules())
    assert not any(isinstance(m, NORMS) for m in mods)
    assert not any(isinstance(m, (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid)) for m in mods)
    n_conv = sum(isinstance(m, nn.Conv2d) for m in mods)
    n_out = 0 if cls is BEGANEncoder else 1  # the decoder's output conv has no activation
    assert sum(isinstance(m, nn.ELU) for m in mods) == n_conv - n_out


def test_began_gradient_reaches_every_parameter():
    torch.manual_seed(0)
    ae = BEGANAutoencoder(16, 3, width=3, h=4)
    _all_grads_nonzero(ae, ae(_gen(3, 3, 16, 16)))


def _began_pair(resolution, channels_last, device="cpu"):
    """A fused BEGAN autoencoder and one with fused=False holding its state_dict, float64."""
    torch.manual_seed(0)
    fused = BEGANAutoencoder(resolution, 3, width=3, h=5).to(device, torch.float64)
    stock = BEGANAutoencoder(resolution, 3, width=3, h=5, fused=False).to(device, torch.float64)
    stock.load_state_dict(fused.state_dict())
    assert fused.decoder.fused and not stock.decoder.fused
    if channels_last:
        fused, stock = (m.to(memory_format=torch.channels_last) for m in (fused, stock))
    return fused, stock


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("resolution", [8, 16, 32])
def test_began_fused_decoder_computes_the_modules_as_written(resolution, channels_last, device):
    # each upsampling + 3 x 3 convolution as one 4 x 4 transposed convolution (fused=True):
    # in float64 the same reconstruction, input gradient and parameter gradients as the
    # modules as written, for the autoencoder and for the decoder alone as the generator
    fused, stock = _began_pair(resolution, channels_last, device)
    x = _gen(4, 3, resolution, resolution).to(device, torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = _gen(4, 3, resolution, resolution, seed=1).to(device, torch.float64)
    z = _gen(4, 5, seed=2).to(device, torch.float64)
    got = {}
    for name, net in (("fused", fused), ("stock", stock)):
        xi, zi = x.clone().requires_grad_(True), z.clone().requires_grad_(True)
        recon, image = net(xi), net.decoder(zi)
        ((recon * weight).sum() + (image * weight).sum()).backward()
        got[name] = [recon, image, xi.grad, zi.grad] + [p.grad for p in net.parameters()]
    for a, b in zip(got["fused"], got["stock"]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_began_fused_decoder_never_upsamples(monkeypatch):
    fused, stock = _began_pair(32, channels_last=False)

    def refuse(self, x):
        raise AssertionError("nn.Upsample ran")
    monkeypatch.setattr(nn.Upsample, "forward", refuse)
    x = _gen(2, 3, 32, 32).double()
    assert fused(x).shape == x.shape
    with pytest.raises(AssertionError, match="nn.Upsample ran"):
        stock(x)


@pytest.mark.parametrize("bad", [0, 4, 12, 48, 32.0, "64"])
@pytest.mark.parametrize("cls", [BEGANAutoencoder, BEGANDecoder, BEGANEncoder])
def test_began_resolution_validation(cls, bad):
    with pytest.raises(ValueError, match=f"{cls.__name__}: resolution must be a power of two >= 8, got"):
        cls(bad)


def test_began_size_validation():
    with pytest.raises(ValueError, match="BEGANAutoencoder: h must be a positive int, got 0"):
        BEGANAutoencoder(h=0)
    with pytest.raises(ValueError, match="BEGANDecoder: width must be a positive int, got -2"):
        BEGANDecoder(width=-2)
    with pytest.raises(ValueError, match="BEGANEncoder: channels must be a positive int, got 1.5"):
        BEGANEncoder(channels=1.5)


# both, and the MLP autoencoder of the 2-D problems


def _autoencoders():
    from fastgan.nn.mlp import MLPAutoencoder
    return {"ebgan": lambda: EBGANDiscriminator(16, 3, width=4),
            "ebgan-stock": lambda: EBGANDiscriminator(16, 3, width=4, fused=False),
            "began": lambda: BEGANAutoencoder(16, 3, width=3, h=4),
            "mlp": lambda: MLPAutoencoder((3, 16, 16), hidden=8, depth=2, code_dim=5)}


@pytest.mark.parametrize("name", list(_autoencoders()))
def test_an_unbatched_sample_is_reconstructed_unbatched_and_a_bad_shape_named(name):
    torch.manual_seed(0)
    ae = _autoencoders()[name]().eval()  # eval: EBGAN's BatchNorm, so a batch of one equals a row
    x = _gen(2, 3, 16, 16)
    recon, code = ae(x, return_code=True)
    assert recon.shape == x.shape
    one, one_code = ae(x[1], return_code=True)
    assert one.shape == (3, 16, 16) and one_code.shape == code.shape[1:]
    torch.testing.assert_close(one, recon[1])
    torch.testing.assert_close(one_code, code[1])
    torch.testing.assert_close(ae(x[1]), recon[1])
    cls = type(ae).__name__
    for bad in [(2, 3, 16, 8), (2, 1, 16, 16), (3, 16), (2, 768), (1, 2, 3, 16, 16)]:
        with pytest.raises(ValueError, match=re.escape(
                f"{cls}: x must have shape (B, 3, 16, 16) or (3, 16, 16), got {bad}")):
            ae(torch.randn(bad))
    with pytest.raises(TypeError, match=f"{cls}: x must be a tensor, got list"):
        ae([0.0])
