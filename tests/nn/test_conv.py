"""fastgan.nn.Conv2d: nn.Conv2d's values at every order, without the double backward's pass
of zeros back through the layers before it."""
import collections
import copy

import pytest
import torch
from torch import nn

from fastgan.nn import DCGANCritic, ResNetCritic
from fastgan.nn.activation import LeakyReLU, ReLU
from fastgan.nn.conv import Conv2d, conv2d
from fastgan.ops import gradient_penalty

pytestmark = pytest.mark.usefixtures("one_thread")

CASES = [  # (in, out, kernel, stride, padding, dilation, groups, bias, input size): odd sizes too
    (3, 8, 4, 2, 1, 1, 1, False, (2, 3, 9, 7)),
    (4, 6, 3, 1, 1, 1, 2, True, (3, 4, 5, 6)),
    (2, 5, (3, 2), (2, 1), (0, 1), (2, 1), 1, True, (2, 2, 11, 5)),
    (3, 1, 4, 1, 0, 1, 1, True, (2, 3, 4, 4)),  # the critic's last layer: one score per sample
]


def _pair(stock_args, dtype=torch.float64, seed=0):
    c_in, c_out, k, s, p, d, g, bias, _ = stock_args
    torch.manual_seed(seed)
    stock = nn.Conv2d(c_in, c_out, k, s, p, d, g, bias=bias).to(dtype)
    ours = Conv2d(c_in, c_out, k, s, p, d, g, bias=bias).to(dtype)
    ours.load_state_dict(stock.state_dict())
    return stock, ours


@pytest.mark.parametrize("case", CASES, ids=["dcgan", "groups", "odd", "score"])
def test_values_and_gradients_equal_nn_conv2d(case):
    stock, ours = _pair(case)
    x = torch.randn(case[-1], dtype=torch.float64, requires_grad=True)
    ys, yo = stock(x), ours(x)
    torch.testing.assert_close(yo, ys, rtol=1e-12, atol=1e-12)
    dy = torch.randn_like(ys)
    gs = torch.autograd.grad(ys, [x, *stock.parameters()], dy)
    go = torch.autograd.grad(yo, [x, *ours.parameters()], dy)
    for a, b in zip(go, gs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=["dcgan", "groups", "odd", "score"])
def test_gradcheck_and_gradgradcheck(case):
    c_in, c_out, k, s, p, d, g, bias, size = case
    _, conv = _pair(case)
    x = torch.randn(size, dtype=torch.float64, requires_grad=True)
    w = conv.weight.detach().clone().requires_grad_(True)
    b = conv.bias.detach().clone().requires_grad_(True) if bias else None

    def f(x, w, *b):
        return conv2d(x, w, b[0] if b else None, conv.stride, conv.padding, conv.dilation, conv.groups)
    inputs = (x, w, b) if bias else (x, w)
    assert torch.autograd.gradcheck(f, inputs)
    assert torch.autograd.gradgradcheck(f, inputs)


class _Count(torch.utils._python_dispatch.TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def test_input_gradient_alone_computes_no_weight_gradient():
    _, conv = _pair(CASES[0])
    x = torch.randn(CASES[0][-1], dtype=torch.float64, requires_grad=True)
    y = conv(x)
    with _Count() as counted:
        torch.autograd.grad(y.sum(), x, create_graph=True)
    assert counted.ops["aten.convolution_backward"] == 0  # the weight half is not needed
    assert counted.ops["aten.convolution"] == 1           # dx = conv_transpose2d(dy, W)


def _stock_critic(ours):
    """The same critic with every fastgan.nn.Conv2d replaced by an nn.Conv2d (same weights)."""
    stock = copy.deepcopy(ours)
    for module in stock.modules():
        for name, child in list(module.named_children()):
            if type(child) is Conv2d:
                conv = nn.Conv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride,
                                 child.padding, child.dilation, child.groups, bias=child.bias is not None)
                conv.load_state_dict(child.state_dict())
                setattr(module, name, conv.to(child.weight.dtype))
    return stock


def _critic_step(critic, real, fake, watch):
    """Gradients of a WGAN-GP critic loss, and how many times a gradient reached the output
    of `watch` (a module of the critic) during its backward."""
    reached = []

    def on_forward(module, inputs, out):  # returns None: the output stays as it is
        if out.requires_grad:
            out.register_hook(reached.append)
    handle = watch.register_forward_hook(on_forward)
    try:
        critic.zero_grad(set_to_none=True)
        gen = torch.Generator().manual_seed(3)
        loss = critic(fake).mean() - critic(real).mean() + gradient_penalty(critic, real, fake, generator=gen)
        reached.clear()  # the penalty's own input gradient passed through: count the backward only
        loss.backward()
    finally:
        handle.remove()
    return [p.grad for p in critic.parameters()], reached


@pytest.mark.parametrize("arch", ["dcgan", "resnet"])
def test_wgan_gp_step_equals_stock_and_skips_the_zero_pass(arch):
    torch.manual_seed(0)
    if arch == "dcgan":
        ours = DCGANCritic(16, 3, 8).double()
        watch = lambda c: c[1]  # noqa: E731  (the first activation)
    else:
        ours = ResNetCritic(16, 3, 8).double()
        watch = lambda c: c.from_rgb  # noqa: E731
    stock = _stock_critic(ours)
    assert sum(type(m) is Conv2d for m in ours.modules()) > 0
    assert sum(type(m) is Conv2d for m in stock.modules()) == 0
    real, fake = torch.rand(2, 4, 3, 16, 16, dtype=torch.float64) * 2 - 1
    g_ours, reached_ours = _critic_step(ours, real, fake, watch(ours))
    g_stock, reached_stock = _critic_step(stock, real, fake, watch(stock))
    for a, b in zip(g_ours, g_stock):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    if arch == "dcgan":
        # D(fake), D(real): one gradient each. Stock PyTorch sends a third, all zeros, back
        # through the penalty's forward graph (the double backward of convolution_backward
        # returns zeros_like(input)); fastgan's Conv2d sends none.
        assert len(reached_ours) == 2
        assert len(reached_stock) == 3
        assert sorted(float(g.abs().max()) == 0.0 for g in reached_stock) == [False, False, True]
        assert all(float(g.abs().max()) > 0 for g in reached_ours)
    else:
        # The ResNet's normalizations have a genuine second derivative: the penalty's forward
        # graph gets a real gradient (the same one) in both.
        assert len(reached_ours) == len(reached_stock) == 3


def test_autocast_casts_as_autocast_does():
    torch.manual_seed(0)
    stock, ours = _pair(CASES[0], dtype=torch.float32)
    x = torch.randn(CASES[0][-1], requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ys, yo = stock(x), ours(x)
    assert yo.dtype == ys.dtype == torch.bfloat16
    torch.testing.assert_close(yo, ys, rtol=0, atol=0)
    gs = torch.autograd.grad(ys.float().sum(), [x, stock.weight])
    go = torch.autograd.grad(yo.float().sum(), [x, ours.weight])
    for a, b in zip(go, gs):
        assert a.dtype == b.dtype == torch.float32  # gradients in the parameters' dtype
        torch.testing.assert_close(a, b, rtol=1e-2, atol=1e-2)
    stock64, ours64 = _pair(CASES[0])
    x64 = torch.randn(CASES[0][-1], dtype=torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast leaves float64 alone
        assert ours64(x64).dtype == stock64(x64).dtype == torch.float64


@pytest.mark.parametrize("kwargs", [dict(padding="same"), dict(padding=1, padding_mode="reflect")],
                         ids=["padding-same", "reflect"])
def test_other_configurations_run_nn_conv2d(kwargs):
    torch.manual_seed(0)
    stock = nn.Conv2d(3, 4, 3, **kwargs).double()
    ours = Conv2d(3, 4, 3, **kwargs).double()
    ours.load_state_dict(stock.state_dict())
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    torch.testing.assert_close(ours(x), stock(x), rtol=0, atol=0)


def test_state_dict_is_nn_conv2ds():
    stock, ours = _pair(CASES[1])
    assert list(ours.state_dict()) == list(stock.state_dict())
    assert isinstance(ours, nn.Conv2d)


def test_accelerate_penalty_makes_a_stock_critic_skip_the_zero_pass(capsys):
    """A user's WGAN-GP critic in stock modules: accelerate(penalty=True) retypes its convolutions
    and activations in place (same parameters and state_dict), and its penalty step no longer
    sends zeros back."""
    import fastgan
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Conv2d(3, 8, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(8, 16, 4, 2, 1),
                           nn.LeakyReLU(0.2), nn.Conv2d(16, 1, 4, 1, 0), nn.Flatten(0)).double()
    reflect = nn.Conv2d(3, 3, 3, padding=1, padding_mode="reflect")
    stock = copy.deepcopy(critic)
    params = list(critic.parameters())
    keys = list(critic.state_dict())
    assert fastgan.accelerate(critic, penalty=True) is critic
    err = capsys.readouterr().err
    assert "5 module(s) made fastgan's" in err and "nothing fused" in err
    assert critic.fastgan_penalty_modules == ["0", "1", "2", "3", "4"]
    assert [type(m) for m in critic if isinstance(m, nn.Conv2d)] == [Conv2d] * 3
    assert [type(m) for m in critic if isinstance(m, nn.LeakyReLU)] == [LeakyReLU] * 2
    assert list(critic.parameters()) == params and list(critic.state_dict()) == keys
    fastgan.accelerate(nn.Sequential(reflect), penalty=True, verbose=False)
    assert type(reflect) is nn.Conv2d  # reflect padding: left as it is
    real, fake = torch.rand(2, 4, 3, 16, 16, dtype=torch.float64) * 2 - 1
    g_ours, reached_ours = _critic_step(critic, real, fake, critic[1])
    g_stock, reached_stock = _critic_step(stock, real, fake, stock[1])
    for a, b in zip(g_ours, g_stock):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert len(reached_ours) == 2 and len(reached_stock) == 3


@pytest.mark.parametrize("module", [LeakyReLU(0.2), LeakyReLU(0.0), ReLU()], ids=["leaky", "slope0", "relu"])
def test_activations_equal_torchs_without_second_order_zeros(module):
    stock = nn.ReLU() if isinstance(module, ReLU) else nn.LeakyReLU(module.negative_slope)
    x = torch.randn(3, 4, 5, 2, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(module(x), stock(x), rtol=0, atol=0)
    assert torch.autograd.gradgradcheck(module, (x,))
    y = module(x)
    dy = torch.ones_like(y, requires_grad=True)
    (dx,) = torch.autograd.grad(y, x, grad_outputs=dy, create_graph=True)
    assert torch.autograd.grad(dx.sum(), x, allow_unused=True)[0] is None  # nothing sent back


@pytest.mark.parametrize("norm", [None, "batch"])
def test_critic_checkpoints_load_across_fused(norm):
    # fused=True keeps a layer's bias in the BiasLeakyReLU after its convolution, fused=False
    # in the convolution: a state_dict of either loads (strictly) into the other
    from fastgan.nn import DCGANCritic
    x = torch.randn(3, 1, 16, 16)
    for src_fused in (True, False):
        torch.manual_seed(0)
        src = DCGANCritic(16, 1, 4, norm=norm, fused=src_fused)
        with torch.no_grad():
            for p in src.parameters():
                p.add_(torch.randn_like(p) * 0.1)  # biases non-zero, so a lost one shows
        dst = DCGANCritic(16, 1, 4, norm=norm, fused=not src_fused)
        assert set(dst.state_dict()) != set(src.state_dict())
        dst.load_state_dict(src.state_dict())
        torch.testing.assert_close(dst.eval()(x), src.eval()(x), rtol=1e-5, atol=1e-6)


def test_torch_func_gradient_penalty_through_the_fused_critic():
    # torch.func.grad needs autograd Functions written with setup_context: a functorch-style
    # gradient penalty (grad of grad) through fastgan's Conv2d and BiasLeakyReLU equals the
    # stock critic's, parameter for parameter
    torch.manual_seed(0)
    fused = DCGANCritic(16, 1, 4).double()
    stock = DCGANCritic(16, 1, 4, fused=False).double()
    stock.load_state_dict(fused.state_dict())
    x = torch.randn(3, 1, 16, 16, dtype=torch.float64)

    def penalty(model, params):
        g = torch.func.grad(lambda x: torch.func.functional_call(model, params, (x,)).sum())(x)
        return ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()
    a = torch.func.grad(lambda p: penalty(fused, p))(dict(fused.named_parameters()))
    b = torch.func.grad(lambda p: penalty(stock, p))(dict(stock.named_parameters()))
    assert set(a) != set(b)  # the biases live in other modules (see the state_dict hook)
    mapped = {k: v for k, v in a.items()}
    for i in (0, 2):  # fused i+1.bias is stock i.bias
        mapped[f"{i}.bias"] = mapped.pop(f"{i + 1}.bias")
    assert set(mapped) == set(b)
    for k in b:
        torch.testing.assert_close(mapped[k], b[k], rtol=1e-10, atol=1e-12)
