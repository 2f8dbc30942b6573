"""fastgan.nn.mlp: MLP generator, critic and autoencoder for toy data and small digits."""
import math

import pytest
import torch
from torch import nn

from fastgan.nn.mlp import MLPAutoencoder, MLPCritic, MLPGenerator

SHAPES = [(2, 1, 1), (1, 16, 16), (3,), (2, 3, 5)]


def _gen(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _linears(net):
    return [(m.in_features, m.out_features) for m in net.modules() if isinstance(m, nn.Linear)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("tanh", [False, True])
def test_generator_shape_and_range(shape, tanh):
    torch.manual_seed(0)
    g = MLPGenerator(4, shape, hidden=8, depth=2, tanh=tanh)
    assert g.z_dim == 4
    assert g(_gen(3, 4)).shape == (3, *shape)
    with torch.no_grad():  # large pre-activations: only tanh keeps the output in [-1, 1]
        g.net[-3 if tanh else -2].weight.mul_(1000)
    assert (g(_gen(3, 4)).abs().max() <= 1) == tanh


def test_generator_layers():
    g = MLPGenerator(5, (2, 1, 1), hidden=7, depth=3)
    assert _linears(g) == [(5, 7), (7, 7), (7, 7), (7, 2)]
    assert sum(isinstance(m, nn.ReLU) for m in g.modules()) == 3
    assert _linears(MLPGenerator(5, (2, 1, 1), hidden=7, depth=1)) == [(5, 7), (7, 2)]


def test_generator_init_keeps_the_spread_over_z():
    """Without BatchNorm, WGAN-GP's toy init: ReLU layers He-uniform (bound sqrt(6 / fan_in)),
    the output layer Glorot-uniform (sqrt(6 / (fan_in + fan_out))), biases 0; with it the
    output's spread over z stays of the order of z's through three ReLU layers (PyTorch's
    default gives ~0.03)."""
    torch.manual_seed(0)
    g = MLPGenerator(64, (1, 16, 16), hidden=256, depth=3)
    linears = [m for m in g.modules() if isinstance(m, nn.Linear)]
    for m in linears:
        fan_out, fan_in = m.weight.shape
        bound = math.sqrt(6 / (fan_in + fan_out)) if m is linears[-1] else math.sqrt(6 / fan_in)
        assert m.weight.abs().max() <= bound and m.weight.abs().max() > 0.99 * bound
        assert torch.count_nonzero(m.bias) == 0
    with torch.no_grad():
        spread = g(_gen(2048, 64)).std(0).mean().item()
    assert 0.3 < spread < 3, spread
    torch.manual_seed(0)  # with BatchNorm: PyTorch's default init (uniform biases of the output)
    bn = MLPGenerator(64, (1, 16, 16), hidden=256, depth=3, batchnorm=True)
    assert torch.count_nonzero(bn.net[-2].bias) > 0 and bn.net[-2].weight.abs().max() <= 1 / 16


def test_generator_batchnorm():
    """batchnorm=True: Linear (no bias) -> BatchNorm1d -> ReLU per hidden layer; the output Linear
    keeps its bias. In training mode a sample's output depends on its batch, in eval mode not."""
    torch.manual_seed(0)
    g = MLPGenerator(5, (1, 4, 4), hidden=7, depth=2, tanh=True, batchnorm=True)
    kinds = [type(m).__name__ for m in g.net]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear", "Tanh",
                     "Unflatten"]
    assert [m.bias is None for m in g.modules() if isinstance(m, nn.Linear)] == [True, True, False]
    assert [m.num_features for m in g.modules() if isinstance(m, nn.BatchNorm1d)] == [7, 7]
    z = _gen(6, 5)
    assert not torch.allclose(g(z)[:3], g(z[:3]))  # batch statistics
    g.eval()
    torch.testing.assert_close(g(z)[:3], g(z[:3]))  # running statistics
    plain = MLPGenerator(5, (1, 4, 4), hidden=7, depth=2)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in plain.modules())
    with pytest.raises(ValueError, match="MLPGenerator: batchnorm must be True or False, got 'yes'"):
        MLPGenerator(5, (2,), batchnorm="yes")


@pytest.mark.parametrize("shape", SHAPES)
def test_critic_shape(shape):
    torch.manual_seed(0)
    c = MLPCritic(shape, hidden=8, depth=2)
    assert c(_gen(3, *shape)).shape == (3,)
    assert c(_gen(1, *shape)).shape == (1,)


def test_critic_layers():
    c = MLPCritic((1, 4, 4), hidden=6, depth=3)
    assert _linears(c) == [(16, 6), (6, 6), (6, 6), (6, 1)]
    acts = [m for m in c.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(acts) == 3 and all(m.negative_slope == 0.2 for m in acts)
    assert not any(isinstance(m, (nn.Sigmoid, nn.ReLU)) for m in c.modules())


def test_critic_gradgradcheck(one_thread):
    """Second derivatives in x and the parameters (the gradient penalty's double backward)."""
    torch.manual_seed(0)
    c = MLPCritic((2, 1, 1), hidden=4, depth=2).double()
    names, params = zip(*c.named_parameters())
    x = _gen(3, 2, 1, 1, seed=2, dtype=torch.float64).requires_grad_(True)
    ps = [p.detach().clone().requires_grad_(True) for p in params]

    def f(x, *ps):
        return torch.func.functional_call(c, dict(zip(names, ps)), (x,))
    assert torch.autograd.gradgradcheck(f, (x, *ps))


def test_critic_samples_do_not_couple():
    torch.manual_seed(0)
    c = MLPCritic((2, 1, 1), hidden=8, depth=2).double()
    x = _gen(4, 2, 1, 1, dtype=torch.float64)
    x2 = x.clone()
    x2[2] += 1.0
    x.requires_grad_(True), x2.requires_grad_(True)
    out1, out2 = c(x), c(x2)
    (g1,), (g2,) = torch.autograd.grad(out1.sum(), x), torch.autograd.grad(out2.sum(), x2)
    keep = [0, 1, 3]
    assert torch.equal(out1[keep], out2[keep]) and torch.equal(g1[keep], g2[keep])
    assert out1[2] != out2[2]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("code_dim", [None, 3])
def test_autoencoder_shapes(shape, code_dim):
    torch.manual_seed(0)
    ae = MLPAutoencoder(shape, hidden=8, depth=2, code_dim=code_dim)
    x = _gen(3, *shape)
    recon, code = ae(x, return_code=True)
    assert recon.shape == x.shape
    assert code.shape == (3, 8 if code_dim is None else code_dim) and ae.code_dim == code.shape[1]
    torch.testing.assert_close(ae(x), recon)
    torch.testing.assert_close(ae.encode(x), code)
    torch.testing.assert_close(ae.decode(code), recon)


def test_autoencoder_layers():
    """Encoder to hidden, a Linear to the code, the decoder its mirror; no output activation."""
    ae = MLPAutoencoder((1, 4, 4), hidden=6, depth=2, code_dim=3)
    assert _linears(ae.encoder) == [(16, 6), (6, 6), (6, 3)]
    assert _linears(ae.decoder) == [(3, 6), (6, 6), (6, 16)]
    assert sum(isinstance(m, nn.LeakyReLU) for m in ae.modules()) == 4
    assert isinstance(ae.encoder[-1], nn.Linear) and isinstance(ae.decoder[-2], nn.Linear)
    assert isinstance(ae.decoder[-1], nn.Unflatten)


@pytest.mark.parametrize("make", [
    lambda: MLPGenerator(3, (2, 1, 1), hidden=5, depth=2, tanh=True),
    lambda: MLPGenerator(3, (2, 1, 1), hidden=5, depth=2, tanh=True, batchnorm=True),
    lambda: MLPCritic((2, 1, 1), hidden=5, depth=2),
    lambda: MLPAutoencoder((2, 1, 1), hidden=5, depth=2, code_dim=3)], ids=["gen", "gen-bn", "critic", "ae"])
def test_gradient_reaches_every_parameter(make):
    torch.manual_seed(0)
    net = make()
    x = _gen(6, 3) if isinstance(net, MLPGenerator) else _gen(6, 2, 1, 1)
    net(x).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 0, name


@pytest.mark.parametrize("bad", [(), (2, 0, 1), (2, -1), [2.0, 1], "21", 2, None, (True, 2)])
def test_shape_validation(bad):
    with pytest.raises(ValueError, match="MLPGenerator: out_shape must be a non-empty tuple of positive ints"):
        MLPGenerator(2, bad)
    with pytest.raises(ValueError, match="MLPCritic: in_shape must be a non-empty tuple of positive ints"):
        MLPCritic(bad)
    with pytest.raises(ValueError, match="MLPAutoencoder: in_shape must be a non-empty tuple of positive ints"):
        MLPAutoencoder(bad)


def test_size_validation():
    with pytest.raises(ValueError, match="z_dim must be a positive int, got 0"):
        MLPGenerator(0, (2,))
    with pytest.raises(ValueError, match="depth must be a positive int, got 0"):
        MLPCritic((2,), depth=0)
    with pytest.raises(ValueError, match="hidden must be a positive int, got 2.5"):
        MLPCritic((2,), hidden=2.5)
    with pytest.raises(ValueError, match="code_dim must be a positive int, got 0"):
        MLPAutoencoder((2,), code_dim=0)
    assert MLPGenerator(2, [2, 1, 1]).out_shape == (2, 1, 1)  # a list is accepted, kept as a tuple
