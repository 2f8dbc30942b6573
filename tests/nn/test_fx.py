"""torch.fx.symbolic_trace of every model's networks, fused and stock: the traced module
computes what the network does, in training and in eval mode, and a gradient penalty's
double backward through it gives the same gradients (the tools built on fx: feature
extractors for a feature-matching loss, graph rewrites). fastgan's ops defer to
__torch_function__ as torch.nn.functional's do, so a trace records each as one call."""
import copy

import pytest
import torch
import torch.fx
from torch import nn

import fastgan
from fastgan import models
from fastgan.nn.activation import BiasLeakyReLU
from fastgan.nn.autoencoder import Autoencoder
from fastgan.nn.conv import conv2d
from fastgan.nn.resnet import mean_pool2, sample_norm
from fastgan.ops import batch_norm_act, bias_leaky_relu, sample_norm_act

pytestmark = pytest.mark.usefixtures("one_thread")

TOL = dict(rtol=1e-5, atol=1e-6)
SMALL = dict(resolution=16, g_width=8, d_width=8, z_dim=6, mlp_hidden=16, mlp_depth=2,
             embedding=4)


def _cases():
    for name in models.names():
        for arch in models.get(name).archs:
            for fused in (True, False):
                yield pytest.param(name, arch, fused, id=f"{name}-{arch}-{'fused' if fused else 'stock'}")


def _build(name, arch, fused):
    cls = models.get(name)
    small = {k: v for k, v in SMALL.items() if k in cls.defaults or k in models.COMMON}
    torch.manual_seed(0)
    return models.build(name, arch=arch, fused=fused, **small).to(torch.float64)


def _trace(net):
    concrete = {"return_code": False} if isinstance(net, Autoencoder) else None
    return torch.fx.symbolic_trace(copy.deepcopy(net), concrete_args=concrete)


def _same_in_both_modes(net, traced, x):
    for mode in (True, False):  # BatchNorm's train/eval choice is the traced module's, at run time
        net.train(mode), traced.train(mode)
        for _ in range(2):  # running statistics move alike
            torch.testing.assert_close(traced(x), net(x), **TOL)
    torch.testing.assert_close(traced.state_dict(), net.state_dict(), **TOL)


@pytest.mark.parametrize("name,arch,fused", list(_cases()))
def test_traced_networks_compute_the_same(name, arch, fused):
    model = _build(name, arch, fused)
    torch.manual_seed(1)
    z = model.sample_z(5, "cpu").to(torch.float64)
    _same_in_both_modes(model.generator, _trace(model.generator), z)
    x = model.generator(z).detach()
    _same_in_both_modes(model.critic, _trace(model.critic), x)


@pytest.mark.parametrize("name,arch", [("wgan-gp", "dcgan"), ("wgan-gp", "resnet"), ("dragan", "dcgan")])
def test_penalty_through_a_traced_critic(name, arch):
    """A gradient penalty's double backward through the traced fused critic: the critic's
    gradients equal the eager critic's."""
    model = _build(name, arch, fused=True)
    critic = model.critic.train()
    traced = _trace(critic).train()
    torch.manual_seed(2)
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64)

    def grads(net):
        net.zero_grad()
        xi = x.clone().requires_grad_()
        out = net(xi)
        (g,) = torch.autograd.grad(out.sum(), xi, create_graph=True)
        (out.mean() + 10 * ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()).backward()
        return {n: p.grad.clone() for n, p in net.named_parameters()}

    want, got = grads(critic), grads(traced)
    assert got.keys() == want.keys()
    torch.testing.assert_close(got, want, **TOL)


def _targets(graph_module):
    return {n.target for n in graph_module.graph.nodes if n.op == "call_function"}


def test_a_trace_records_fastgan_functions_as_one_call_each():
    fused_dcgan = _trace(_build("wgan-gp", "dcgan", True).critic)
    assert bias_leaky_relu in _targets(fused_dcgan)   # BiasLeakyReLU: the op with its bias attribute
    assert conv2d in _targets(fused_dcgan)            # fastgan.nn.Conv2d's own backward kept
    resnet = _trace(_build("wgan-gp", "resnet", True).critic)
    assert {conv2d, mean_pool2, sample_norm_act} <= _targets(resnet)  # the fused SampleNorm + ReLU
    assert sample_norm in _targets(_trace(_build("wgan-gp", "resnet", False).critic))  # as written
    # a fused Conv -> BatchNorm -> ReLU block traces as its three modules, as nn.Sequential does
    generator = _trace(_build("dcgan", "dcgan", True).generator)
    modules = dict(generator.named_modules())
    called = [type(modules[n.target]) for n in generator.graph.nodes if n.op == "call_module"]
    i = called.index(nn.ConvTranspose2d)
    assert called[i:i + 3] == [nn.ConvTranspose2d, nn.BatchNorm2d, nn.ReLU]


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.rand(3) + 0.5), nn.Parameter(torch.randn(3))
        self.register_buffer("mean", torch.zeros(3))
        self.register_buffer("var", torch.ones(3))

    def forward(self, x):
        y = batch_norm_act(x, self.weight, self.bias, self.mean, self.var, negative_slope=0.2)
        return bias_leaky_relu(y, self.bias, 0.1)


def test_ops_in_a_users_module_trace_as_calls():
    torch.manual_seed(3)
    block = _Block().double()
    traced = torch.fx.symbolic_trace(copy.deepcopy(block))
    assert {batch_norm_act, bias_leaky_relu} <= _targets(traced)
    x = torch.randn(4, 3, 5, 7, dtype=torch.float64)  # odd sizes
    torch.testing.assert_close(traced(x), block(x), **TOL)
    torch.testing.assert_close(traced.state_dict(), block.state_dict(), **TOL)  # running stats


class _Tagged(torch.Tensor):
    """A tensor subclass with torch.Tensor's default __torch_function__."""


def test_ops_keep_a_tensor_subclass():
    torch.manual_seed(4)
    x, bias = torch.randn(3, 4, 5, 6), torch.randn(4)
    cases = [
        (lambda t: bias_leaky_relu(t, bias, 0.2), torch.nn.functional.leaky_relu(x + bias.view(4, 1, 1), 0.2)),
        (lambda t: batch_norm_act(t), torch.relu(torch.nn.functional.batch_norm(x, None, None, training=True))),
        (lambda t: conv2d(t, torch.ones(2, 4, 3, 3)), torch.nn.functional.conv2d(x, torch.ones(2, 4, 3, 3))),
    ]
    for op, want in cases:
        out = op(x.as_subclass(_Tagged))
        assert type(out) is _Tagged
        torch.testing.assert_close(out.as_subclass(torch.Tensor), want, rtol=1e-5, atol=1e-5)


def test_autoencoder_trace_names_concrete_args():
    critic = _build("began", "began", True).critic
    with pytest.raises(TypeError, match=r"concrete_args=\{'return_code': False\}"):
        torch.fx.symbolic_trace(critic)
    traced = torch.fx.symbolic_trace(copy.deepcopy(critic), concrete_args={"return_code": True})
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    got, want = traced(x, True), critic(x, return_code=True)  # fx renames a concrete argument
    assert len(got) == len(want) == 2
    for got, want in zip(got, want):
        torch.testing.assert_close(got, want, **TOL)


def test_accelerated_custom_forward_traces_as_the_stock_model():
    """A chain accelerate fused from a custom forward() (the convolution runs it, the
    BatchNorm and activation pass through) traces as the three modules, each a leaf as
    before (the traced module runs them stock, BatchNorm's mode chosen at run time)."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn, self.act = nn.Conv2d(3, 4, 3, 1, 1), nn.BatchNorm2d(4), nn.LeakyReLU(0.2)
            self.head = BiasLeakyReLU(4)

        def forward(self, x):
            return self.head(self.act(self.bn(self.conv(x))))

    torch.manual_seed(5)
    net = Net().double()
    ref = copy.deepcopy(net)
    fastgan.accelerate(net, verbose=False)
    assert net.fastgan_fused
    traced = torch.fx.symbolic_trace(copy.deepcopy(net))
    assert [n.target for n in traced.graph.nodes if n.op == "call_module"] == ["conv", "bn", "act"]
    assert bias_leaky_relu in _targets(traced)
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    ref2 = copy.deepcopy(ref)
    for mode in (True, False):  # each called once in each mode: their running statistics move alike
        for m in (traced, net, ref, ref2):
            m.train(mode)
        torch.testing.assert_close(traced(x), ref(x), **TOL)
        torch.testing.assert_close(net(x), ref2(x), **TOL)
