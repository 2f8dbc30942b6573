"""fastgan.accelerate leaves alone what it cannot fuse without changing what the model computes."""
import copy
import sys
import threading

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

import fastgan

TOL = dict(rtol=1e-4, atol=1e-4)


def _chain(conv=None, bn=None, act=None):
    return nn.Sequential(conv or nn.Conv2d(3, 4, 3, 1, 1), bn or nn.BatchNorm2d(4), act or nn.LeakyReLU(0.2))


def _same(model, x, calls=2):
    """model accelerated in place; its outputs (train and eval) equal a copy's from before."""
    torch.manual_seed(0)
    ref = copy.deepcopy(model)
    fastgan.accelerate(model)
    for mode in (True, False):
        model.train(mode), ref.train(mode)
        for _ in range(calls):
            torch.testing.assert_close(model(x), ref(x), **TOL)
    return model


class _FeatureCritic(nn.Module):
    """Keeps every layer's output (feature matching): the BatchNorm's input is used elsewhere."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(3, 8, 4, 2, 1), nn.BatchNorm2d(8), nn.LeakyReLU(0.2),
                                    nn.Conv2d(8, 1, 4, 1, 0))

    def forward(self, x):
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return torch.cat([f.flatten(1) for f in feats], 1)


class _PreActivation(nn.Module):
    """Calls the Sequential as a whole and its first two modules on their own."""

    def __init__(self):
        super().__init__()
        self.block = _chain()

    def forward(self, x):
        return self.block(x) + 2 * self.block[1](self.block[0](x))


@pytest.mark.parametrize("make", [_FeatureCritic, _PreActivation], ids=["features", "pre-activation"])
def test_accelerate_fuses_no_sequential_chain_the_trace_does_not_confirm(make, capsys):
    model = _same(make(), torch.randn(2, 3, 8, 8))
    assert model.fastgan_fused == []
    assert "the torch.fx trace" in capsys.readouterr().err


class _Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = _chain()

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
            return self.block(x) + self.block[1](self.block[0](x))
        return self.block(-x)


class _OwnForwardSequential(nn.Sequential):
    def forward(self, x):
        if x.sum() > 0:
            return self[2](self[1](self[0](x))) + self[0](x).mean()
        return super().forward(x)


def test_accelerate_untraceable_model_fuses_sequentials_in_their_own_forward(capsys):
    x = torch.randn(2, 3, 6, 6).abs()
    model = _same(_Untraceable(), x)
    assert len(model.fastgan_fused) == 1 and "could not trace" in capsys.readouterr().err
    assert type(model.block[0]) is nn.Conv2d and type(model.block[1]) is nn.BatchNorm2d  # run unfused alone
    fastgan.accelerate(model)
    assert "already fused" in capsys.readouterr().err
    model = _same(_OwnForwardSequential(*_chain()), x)
    assert model.fastgan_fused == [] and "its own forward" in capsys.readouterr().err


class _WSConv(nn.Conv2d):  # weight standardization
    def forward(self, x):
        w = self.weight - self.weight.mean((1, 2, 3), keepdim=True)
        return self._conv_forward(x, w, self.bias)


class _ScaledBN(nn.BatchNorm2d):
    def forward(self, x):
        return 2 * super().forward(x)


class _ShiftedReLU(nn.ReLU):
    def forward(self, x):
        return super().forward(x - 0.5)


class _Wrapped(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x) * 1.5


@pytest.mark.parametrize("chain", [lambda: _chain(conv=_WSConv(3, 4, 3, 1, 1)), lambda: _chain(bn=_ScaledBN(4)),
                                   lambda: _chain(act=_ShiftedReLU())], ids=["conv", "bn", "act"])
@pytest.mark.parametrize("wrap", [False, True], ids=["sequential", "named"])
def test_accelerate_leaves_subclasses_with_their_own_forward(chain, wrap, capsys):
    model = chain()
    if wrap:
        model = _Wrapped(model)
    model = _same(model, torch.randn(2, 3, 5, 5))
    assert model.fastgan_fused == [] and "its own forward" in capsys.readouterr().err


@pytest.mark.parametrize("lazy", ["conv", "bn"])
def test_accelerate_leaves_uninitialized_lazy_modules(lazy, capsys):
    model = _chain(conv=nn.LazyConv2d(4, 3, 1, 1) if lazy == "conv" else None,
                   bn=nn.LazyBatchNorm2d() if lazy == "bn" else None)
    fastgan.accelerate(model)
    err = capsys.readouterr().err
    x = torch.randn(2, 3, 5, 5)

    def want():  # conv -> bn (batch statistics) -> leaky_relu, functionally
        conv, bn = model[0], model[1]
        y = nn.functional.batch_norm(conv._conv_forward(x, conv.weight, conv.bias), None, None, bn.weight,
                                     bn.bias, training=True)
        return nn.functional.leaky_relu(y, 0.2)

    for _ in range(2):  # the first call initializes the lazy module and resets its class
        torch.testing.assert_close(model(x), want(), **TOL)
    assert model.fastgan_fused == [] and "run one forward first" in err
    fastgan.accelerate(model)  # initialized now
    assert len(model.fastgan_fused) == 1
    torch.testing.assert_close(model(x), want(), **TOL)


@pytest.mark.parametrize("where", ["conv-hook", "conv-pre-hook", "bn-hook", "bn-pre-hook", "act-pre-hook"])
def test_accelerate_leaves_hooked_chains(where, capsys):
    seen = {}

    def build():
        model = _chain()
        name, kind = where.split("-", 1)
        module = model[{"conv": 0, "bn": 1, "act": 2}[name]]
        if kind == "hook":
            module.register_forward_hook(lambda m, i, o: seen.setdefault(id(model), []).append(o.clone()))
        else:
            module.register_forward_pre_hook(lambda m, i: seen.setdefault(id(model), []).append(i[0].clone()))
        return model

    torch.manual_seed(0)
    model = build()
    torch.manual_seed(0)
    ref = build()
    fastgan.accelerate(model)
    x = torch.randn(2, 3, 5, 5)
    torch.testing.assert_close(model(x), ref(x), **TOL)
    torch.testing.assert_close(seen[id(model)], seen[id(ref)], **TOL)
    assert model.fastgan_fused == [] and "hook" in capsys.readouterr().err


class _OwnForward(nn.Module):
    """A chain called from a model's own forward (fused through the modules themselves)."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.act = nn.Conv2d(3, 4, 3, 1, 1), nn.BatchNorm2d(4), nn.LeakyReLU(0.2)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


@pytest.mark.parametrize("container", ["own-forward", "sequential"])
@pytest.mark.parametrize("where", ["conv-hook", "bn-hook", "bn-pre-hook", "act-pre-hook"])
def test_a_hook_added_after_accelerate_sees_its_modules_own_tensors(container, where):
    def build():
        torch.manual_seed(0)
        return _OwnForward() if container == "own-forward" else _chain()

    model, ref = fastgan.accelerate(build(), verbose=False), build()
    assert len(model.fastgan_fused) == 1
    seen = {}
    name, kind = where.split("-", 1)
    for m in (model, ref):
        module = list(m.modules())[1:][{"conv": 0, "bn": 1, "act": 2}[name]]
        if kind == "hook":
            module.register_forward_hook(lambda mod, i, o, m=m: seen.setdefault(id(m), []).append(o.clone()))
        else:
            module.register_forward_pre_hook(lambda mod, i, m=m: seen.setdefault(id(m), []).append(i[0].clone()))
    x = torch.randn(2, 3, 5, 5)
    for mode in (True, False):
        model.train(mode), ref.train(mode)
        torch.testing.assert_close(model(x), ref(x), **TOL)
    assert len(seen[id(model)]) == 2
    torch.testing.assert_close(seen[id(model)], seen[id(ref)], **TOL)


def test_accelerate_leaves_parametrized_convolutions(capsys):
    model = _chain()
    weight_norm(model[0])
    model = _same(model, torch.randn(2, 3, 5, 5))
    assert model.fastgan_fused == [] and "parametriz" in capsys.readouterr().err
    parametrize.remove_parametrizations(model[0], "weight")
    assert type(model[0]) is nn.Conv2d


def _dcgan_pair():
    """An accelerated DCGAN critic with BatchNorm (fused in its constructor) and a stock copy."""
    fused = fastgan.nn.DCGANCritic(32, width=8, norm="batch")
    stock = fastgan.nn.DCGANCritic(32, width=8, norm="batch", fused=False)
    stock.load_state_dict(fused.state_dict())
    return fused.eval(), stock.eval()


def test_sequential_chains_are_fused_by_their_container_so_a_part_computes_what_it_did():
    """A slice of an accelerated nn.Sequential, or one of its modules called alone, computes
    what it did before (the chain runs fused in the container's forward only)."""
    fused, stock = _dcgan_pair()
    assert fused.fastgan_fused  # the chains are fused
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(fused(x), stock(x), **TOL)
    for k in range(1, len(stock)):
        torch.testing.assert_close(fused[:k](x), stock[:k](x), **TOL, msg=f"critic[:{k}]")
    h = stock[:2](x)
    torch.testing.assert_close(fused[2](h), stock[2](h), **TOL)  # the chain's convolution alone
    seen = []
    fused[2].register_forward_hook(lambda m, args, out: seen.append(out))  # a hook added later
    fused(x)
    torch.testing.assert_close(seen[0], stock[2](h), **TOL)


class _CustomForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.act = nn.Conv2d(3, 4, 3, 1, 1), nn.BatchNorm2d(4), nn.ReLU()
        self.head = nn.Conv2d(4, 1, 3, 1, 1)

    def forward(self, x):
        return self.head(self.act(self.bn(self.conv(x))))


@pytest.mark.parametrize("make", [lambda: _dcgan_pair()[0], _CustomForward], ids=["sequential", "custom-forward"])
def test_an_accelerated_model_pickles_and_deep_copies(make, tmp_path):
    import io
    model = make()
    if not getattr(model, "fastgan_fused", None):
        fastgan.accelerate(model, verbose=False)
    assert model.fastgan_fused
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    twin = copy.deepcopy(model)
    for other in (loaded, twin):
        assert type(other) is type(model)
        assert [type(m) for m in other.modules()] == [type(m) for m in model.modules()]
        torch.testing.assert_close(other(x), model(x), rtol=0, atol=0)


class _Block(nn.Module):
    """A chain in a custom forward, inside a container."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv, self.bn, self.act = nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


def _nested():
    """An nn.Sequential with a chain of its own children and a custom-forward block."""
    return nn.Sequential(nn.Conv2d(3, 4, 3, 1, 1), nn.BatchNorm2d(4), nn.LeakyReLU(0.2), _Block(4, 5),
                         nn.Conv2d(5, 1, 3, 1, 1))


def _counting(monkeypatch):
    acc = sys.modules["fastgan.accelerate"]  # the module (fastgan.accelerate is the function)
    calls = []

    def counted(*args, **kwargs):
        calls.append(args[0])
        return fused(*args, **kwargs)

    fused = acc.fused_conv_bn_act
    monkeypatch.setattr(acc, "fused_conv_bn_act", counted)
    return calls


@pytest.mark.parametrize("make", [_CustomForward, _nested], ids=["custom-forward", "nested"])
def test_a_custom_forward_chain_runs_fused_in_its_model_and_as_before_on_its_own(make, monkeypatch, capsys):
    """Inside the accelerated model's forward the chain runs fused; its convolution,
    BatchNorm or activation called on its own (or its block's forward alone) computes what
    the stock module does, running statistics included."""
    torch.manual_seed(0)
    stock = make()
    model = copy.deepcopy(stock)
    fastgan.accelerate(model, verbose=False)
    chains = len(model.fastgan_fused)
    assert chains == (1 if make is _CustomForward else 2)
    fastgan.accelerate(model)  # traced again through the forward that opens the scope
    assert f"its {chains} block(s) are already fused" in capsys.readouterr().err
    calls = _counting(monkeypatch)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(model(x), stock(x), **TOL)
    assert len(calls) == chains  # every chain fused in the model's forward

    calls.clear()
    block, ref = (model, stock) if make is _CustomForward else (model[3], stock[3])
    h = torch.randn(2, block.conv.in_channels, 8, 8)
    if make is _nested:
        torch.testing.assert_close(block(h), ref(h), **TOL)  # the block's forward alone
    for name in ("conv", "bn", "act"):
        inp = h if name == "conv" else ref.conv(h)
        torch.testing.assert_close(getattr(block, name)(inp), getattr(ref, name)(inp), **TOL, msg=name)
    assert not calls  # nothing above ran fused
    for key, value in ref.bn.state_dict().items():  # the BatchNorm alone updated its statistics
        torch.testing.assert_close(block.bn.state_dict()[key], value, **TOL, msg=key)
    torch.testing.assert_close(model(x), stock(x), **TOL)


def test_a_forward_that_raises_leaves_the_chain_unfused_outside_it():
    model = _CustomForward()
    fastgan.accelerate(model, verbose=False)
    with pytest.raises(RuntimeError):
        model(torch.randn(2, 5, 8, 8))  # 5 channels into a 3-channel convolution
    h = torch.randn(2, 3, 8, 8)
    assert model.conv(h).shape == (2, 4, 8, 8)
    torch.testing.assert_close(model.conv(h), nn.functional.conv2d(h, model.conv.weight, model.conv.bias,
                                                                      padding=1), rtol=0, atol=0)


def _replica(model, scale=2.0):
    """What torch.nn.parallel.replicate makes of `model` for a second GPU, on the CPU: each
    module's _replicate_for_data_parallel (a shallow copy), its children the replicas', its
    parameters and buffers copies (scale times the parameters: replicate broadcasts them)."""
    mods = list(model.modules())
    reps = [m._replicate_for_data_parallel() for m in mods]
    index = {id(m): i for i, m in enumerate(mods)}
    for m, r in zip(mods, reps):
        for key, child in m._modules.items():
            r._modules[key] = None if child is None else reps[index[id(child)]]
        for key, p in m._parameters.items():
            if p is not None:
                setattr(r, key, p.detach() * scale)  # replicate sets them as plain attributes
        for key, b in m._buffers.items():
            r._buffers[key] = None if b is None else b.clone()
    return reps[0]


@pytest.mark.parametrize("make", [_CustomForward, lambda: _chain()], ids=["custom-forward", "sequential"])
def test_a_data_parallel_replica_runs_its_own_modules(make, monkeypatch):
    """nn.DataParallel's replicas are shallow copies: a fused convolution's BatchNorm and
    activation, kept in its __dict__, were still the original's (on the first GPU: a device
    error on the second; found by reading, 2026-11-24). Replicas now run their modules
    stock: the replica's own weights and running statistics, nothing fused."""
    torch.manual_seed(0)
    plain = make()
    model = fastgan.accelerate(copy.deepcopy(plain), verbose=False)
    assert model.fastgan_fused
    stock, replica = _replica(plain), _replica(model)
    calls = _counting(monkeypatch)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        for mode in (True, False):
            replica.train(mode), stock.train(mode)
            torch.testing.assert_close(replica(x), stock(x), **TOL)
    assert not calls
    bn, orig = (replica.bn, model.bn) if hasattr(model, "bn") else (replica[1], model[1])
    assert not torch.equal(bn.running_mean, orig.running_mean)  # the replica's own statistics moved
    assert torch.equal(orig.running_mean, torch.zeros_like(orig.running_mean))


class _Pausing(_CustomForward):
    """Waits inside its forward, after the chain, while `pause` holds (entered, release) events."""
    pause = None

    def forward(self, x):
        y = super().forward(x)
        if self.pause is not None:
            entered, release = self.pause
            entered.set()
            assert release.wait(timeout=60), "the test never released the forward"
        return y


def test_a_chain_called_alone_on_another_thread_runs_stock_while_the_model_runs():
    """The scope is per thread: the model's forward, paused on one thread with the scope
    open, does not make the chain's convolution fused for a call on another thread."""
    torch.manual_seed(0)
    stock = _Pausing().eval()
    model = fastgan.accelerate(copy.deepcopy(stock), verbose=False)
    assert model.fastgan_fused
    x, h = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    entered, release = threading.Event(), threading.Event()
    model.pause = (entered, release)
    out, errors = [], []

    def run():
        try:
            out.append(model(x))
        except BaseException as e:  # noqa: BLE001 -- reported by the main thread
            errors.append(e)
            entered.set()

    worker = threading.Thread(target=run)
    worker.start()
    try:
        assert entered.wait(timeout=60)
        alone = model.conv(h)  # the model's forward is running, on the other thread
    finally:
        release.set()
        worker.join(timeout=60)
    assert not errors, errors
    torch.testing.assert_close(alone, nn.functional.conv2d(h, model.conv.weight, model.conv.bias, padding=1),
                               rtol=0, atol=0)
    model.pause = None
    torch.testing.assert_close(out[0], stock(x), **TOL)


def test_a_nested_accelerated_model_pickles_with_both_mixins(tmp_path):
    import io
    model = _nested().eval()
    fastgan.accelerate(model, verbose=False)
    x = torch.randn(2, 3, 8, 8)
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    for other in (loaded, copy.deepcopy(model)):
        assert [type(m) for m in other.modules()] == [type(m) for m in model.modules()]
        torch.testing.assert_close(other(x), model(x), rtol=0, atol=0)
        h = torch.randn(2, 4, 8, 8)
        torch.testing.assert_close(other[3].conv(h), model[3].conv(h), rtol=0, atol=0)
        assert other[3].conv(h).shape == (2, 5, 8, 8)


def test_an_accelerated_custom_forward_compiles():
    torch.manual_seed(0)
    stock = _CustomForward().eval()
    model = fastgan.accelerate(copy.deepcopy(stock), verbose=False)
    x = torch.randn(2, 3, 8, 8)
    compiled = torch.compile(model, backend="eager", fullgraph=False)
    torch.testing.assert_close(compiled(x), stock(x), **TOL)
    h = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(model.conv(h), stock.conv(h), **TOL)


class _KeepsTheBatchNormOutput(_CustomForward):
    def forward(self, x):
        h = self.bn(self.conv(x))
        return self.head(self.act(h)), h


def test_a_chain_in_a_custom_forward_whose_output_is_kept_is_named_with_the_reason(capsys):
    model = _KeepsTheBatchNormOutput()
    x = torch.randn(2, 3, 8, 8)
    before = [t.detach().clone() for t in model.eval()(x)]
    fastgan.accelerate(model)
    assert model.fastgan_fused == []
    assert "conv -> bn -> act: left alone: the torch.fx trace shows" in capsys.readouterr().err
    for a, b in zip(model(x), before):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


class _CheckpointsASequential(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = _chain(act=nn.ReLU())
        self.head = nn.Conv2d(4, 1, 3, 1, 1)

    def forward(self, x):
        from torch.utils.checkpoint import checkpoint
        return self.head(checkpoint(self.block, x, use_reentrant=False))


def test_an_activation_checkpointed_sequential_chain_recomputes_fused():
    """The README's way to checkpoint a fused chain: an nn.Sequential (fused in its own
    forward, so its recomputation in the backward runs the same fused chain)."""
    torch.manual_seed(0)
    stock = _CheckpointsASequential()
    model = fastgan.accelerate(copy.deepcopy(stock), verbose=False)
    assert model.fastgan_fused
    grads = []
    for net in (model, stock):
        x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1), requires_grad=True)
        net(x).square().sum().backward()
        grads.append((x.grad, net.block[0].weight.grad))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, **TOL)


class _CheckpointsACustomChain(_CustomForward):
    """A chain called from a custom forward(), activation-checkpointed there."""

    def __init__(self, context=None):
        super().__init__()
        self.context = context  # None: checkpoint's own context; True: checkpoint_context's;
                                # a function: checkpoint_context's combined with it

    def _block(self, x):
        return self.act(self.bn(self.conv(x)))

    def forward(self, x):
        from torch.utils.checkpoint import checkpoint
        from fastgan.accelerate import checkpoint_context
        extra = {} if self.context is None else {"context_fn": checkpoint_context(
            self, context_fn=None if self.context is True else self.context)}
        return self.head(checkpoint(self._block, x, use_reentrant=False, **extra))


def _grads(net, x):
    x = x.detach().clone().requires_grad_()
    net(x).square().sum().backward()
    return [x.grad] + [p.grad for p in net.parameters()]


def test_a_checkpointed_chain_of_a_custom_forward_needs_checkpoint_context():
    """Without checkpoint_context the recomputation (in the backward, after the model's
    forward has closed the scope) runs the stock chain, and PyTorch refuses it; with it the
    recomputation runs fused like the forward, and the gradients are the stock model's."""
    from torch.utils.checkpoint import CheckpointError
    torch.manual_seed(0)
    stock = _CheckpointsACustomChain()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    bare = fastgan.accelerate(copy.deepcopy(stock), verbose=False)
    assert bare.fastgan_fused == ["conv -> bn -> act (Conv2d 3->4, BatchNorm2d, ReLU)"]
    with pytest.raises(CheckpointError):
        _grads(bare, x)
    model = copy.deepcopy(bare)
    model.context = True
    for a, b in zip(_grads(model, x), _grads(stock, x)):
        torch.testing.assert_close(a, b, **TOL)
    # a second backward through a kept graph recomputes again, inside the scope again
    x2 = x.detach().clone().requires_grad_()
    y = model(x2).square().sum()
    first = torch.autograd.grad(y, x2, retain_graph=True)[0]
    torch.testing.assert_close(torch.autograd.grad(y, x2)[0], first, rtol=0, atol=0)


def test_checkpoint_context_recomputes_stock_what_ran_stock():
    """The chain's part checkpointed from outside the model's forward ran stock (the scope was
    closed): its recomputation runs stock too, whatever module the context was made from."""
    torch.manual_seed(0)
    stock = _CustomForward()
    model = fastgan.accelerate(copy.deepcopy(stock), verbose=False)
    assert model.fastgan_fused
    from torch.utils.checkpoint import checkpoint
    from fastgan.accelerate import checkpoint_context
    grads = []
    for net, fn in ((model, checkpoint_context(model)), (stock, None)):
        x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1), requires_grad=True)
        kw = {"context_fn": fn} if fn else {}
        checkpoint(lambda t: net.act(net.bn(net.conv(t))), x, use_reentrant=False, **kw).square().sum().backward()
        grads.append((x.grad, net.conv.weight.grad, net.bn.weight.grad))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, **TOL)


def test_checkpoint_context_combines_with_another_context_fn_and_names_bad_arguments():
    from fastgan.accelerate import checkpoint_context
    calls = []

    class Note:
        def __init__(self, name):
            self.name = name

        def __enter__(self):
            calls.append(("enter", self.name))

        def __exit__(self, *exc):
            calls.append(("exit", self.name))

    torch.manual_seed(0)
    stock = _CheckpointsACustomChain()
    model = fastgan.accelerate(copy.deepcopy(stock), verbose=False)
    model.context = lambda: (Note("forward"), Note("recompute"))
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    for a, b in zip(_grads(model, x), _grads(stock, x)):
        torch.testing.assert_close(a, b, **TOL)
    assert calls == [("enter", "forward"), ("exit", "forward"), ("enter", "recompute"), ("exit", "recompute")]
    with pytest.raises(TypeError, match="expected an nn.Module, got function"):
        checkpoint_context(lambda t: t)
    with pytest.raises(TypeError, match="context_fn must be callable"):
        checkpoint_context(model, context_fn=(Note("a"), Note("b")))


def _replace(model, what):
    if what == "bn-identity":
        model.bn = nn.Identity()
    elif what == "bn-new":
        model.bn = nn.BatchNorm2d(4)
    elif what == "conv-new":
        model.conv = nn.Conv2d(3, 4, 3, 1, 1)
    elif what == "act-tanh":
        model.act = nn.Tanh()
    elif what == "fold-for-inference":  # torch's own conv-BN folding, then an Identity
        model.eval()
        model.conv = torch.nn.utils.fusion.fuse_conv_bn_eval(model.conv, model.bn)
        model.bn = nn.Identity()
    return model


@pytest.mark.parametrize("what", ["bn-identity", "bn-new", "conv-new", "act-tanh", "fold-for-inference"])
def test_a_module_replaced_after_accelerate_runs_as_what_the_model_holds(what):
    """The fused convolution kept its BatchNorm and activation and the others passed through
    whatever the model then held: a replaced module gave silently wrong outputs (the ReLU
    dropped after torch's own conv-BN folding, 0.85 off)."""
    torch.manual_seed(0)
    stock = _CustomForward()
    model = copy.deepcopy(stock)
    fastgan.accelerate(model, verbose=False)
    assert model.fastgan_fused
    torch.manual_seed(1)
    _replace(stock, what)
    torch.manual_seed(1)
    _replace(model, what)
    x = torch.randn(2, 3, 8, 8)
    for _ in range(2):
        torch.testing.assert_close(model(x), stock(x), **TOL)


class _StashesFeatures(_CustomForward):
    """Keeps the BatchNorm's output aside (feature matching), which a trace cannot see."""

    def forward(self, x):
        self.feats = [self.bn(self.conv(x))]
        return self.head(self.act(self.feats[0]))


class _BranchesOnMode(_CustomForward):
    def forward(self, x):
        h = self.bn(self.conv(x))
        return self.head(self.act(h) if self.training else h)


@pytest.mark.parametrize("make", [_StashesFeatures, _BranchesOnMode], ids=["stash", "train-eval-branch"])
def test_uses_a_trace_cannot_see_leave_the_chain_unfused(make, capsys):
    """A forward keeping an intermediate aside got the activated tensor there (2.8 off), and
    one branching on self.training was fused as the trace's mode showed it (2.0 off in the
    other mode)."""
    torch.manual_seed(0)
    stock = make()
    model = copy.deepcopy(stock)
    fastgan.accelerate(model)
    err = capsys.readouterr().err
    assert not model.fastgan_fused, err
    assert ("keeps an intermediate tensor in feats" if make is _StashesFeatures
            else "the torch.fx traces in train and eval mode differ") in err
    x = torch.randn(2, 3, 8, 8)
    for mode in (True, False):
        model.train(mode), stock.train(mode)
        torch.testing.assert_close(model(x), stock(x), **TOL)
        if make is _StashesFeatures:
            torch.testing.assert_close(model.feats[0], stock.feats[0], **TOL)


def test_accelerate_restores_every_modules_mode():
    torch.manual_seed(0)
    model = _CustomForward()
    model.bn.eval()  # a frozen BatchNorm inside a model in training
    fastgan.accelerate(model, verbose=False)
    assert model.training and model.conv.training and not model.bn.training
