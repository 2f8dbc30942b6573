"""fastgan.accelerate: fuse the Conv -> BatchNorm2d -> ReLU/LeakyReLU blocks of an existing model.

    model = fastgan.accelerate(model)     # in place; prints what it fused

Finds ConvTranspose2d/Conv2d -> BatchNorm2d -> ReLU/LeakyReLU chains and runs each with
fastgan's fused kernels (fastgan.nn.blocks). A chain of consecutive children of an
nn.Sequential (the common case) is run fused by that container's forward: its modules
keep their classes, so one called on its own, a slice of the container or a hook added
later runs as before. A chain called from a custom forward() is fused in its convolution,
the BatchNorm and the activation then passing their input through, but only while the
forward of the model the trace was taken of runs (the trace showed the convolution
called there once, its output going to the BatchNorm alone): called on its own, or
through a submodule's forward alone, each of the three runs as before, on any thread (the
model's class gets a mixin whose forward opens that scope on the thread it runs on).
Activation checkpointing of a part holding such a chain recomputes it in the backward,
after that forward: pass context_fn=checkpoint_context(part) (below) so the recomputation
runs fused or stock as the forward did.
Nothing is moved or renamed: the parameters are the same objects, the state_dict keys the
same, so checkpoints of the original model load into the accelerated one and back, and
the outputs are those of the original model (to rounding). An accelerated model pickles
whole (torch.save(model)).

Where it looks: the chains are read from a torch.fx trace of the model (nn.Sequential
containers and named submodules called from a custom forward() alike), and fused only
where the trace shows the convolution's output going to the BatchNorm alone and the
BatchNorm's to the activation alone, each module called once, in a trace in train mode and
one in eval mode alike (a forward branching on self.training). A module replaced after
accelerate (model.bn = ..., SyncBatchNorm.convert_sync_batchnorm, torch's conv-BN folding)
ends its chain's fusion: the others run as themselves. Where torch.fx cannot trace the model
(data-dependent control flow, ...) or the trace shows the forward keeping a tensor aside in
an attribute (self.feats.append(h), which the trace cannot follow), only the consecutive
children of nn.Sequential containers that keep nn.Sequential's forward are fused. What no
trace shows, a forward that reads a module's output other than through its return value
(a hook-free side channel), stays the user's to rule out.

Left alone, with a message saying why: a module used in more than one place; a chain
whose convolution or BatchNorm output is used elsewhere (kept as a feature, say); a
module whose class has its own forward() (a weight-standardized or equalized-lr
convolution, ...), a lazy module not yet initialized (run one forward first), a module
with forward or backward hooks, or a parametrized one (torch.nn.utils.parametrize); a
convolution that is not 2-D with zero padding mode, a BatchNorm whose channels differ or
whose momentum is outside [0, 1] or eps not positive, an activation with a negative slope.
An activation called functionally (F.relu) is not matched. A model with nothing to fuse is
returned unchanged.

    critic = fastgan.accelerate(critic, penalty=True)   # a critic a gradient penalty differentiates twice

penalty=True also makes every plain nn.Conv2d of the model (zero padding) a
fastgan.nn.Conv2d and every nn.LeakyReLU (slope >= 0) and nn.ReLU outside the fused
chains fastgan.nn.activation's LeakyReLU / ReLU: the same modules and parameters, whose
double backwards skip PyTorch's backward of zeros through the layers before them
(fastgan/nn/conv.py, fastgan.ops.bias_leaky_relu). Only for a critic differentiated
twice (WGAN-GP, DRAGAN, R1): elsewhere it gains nothing. One difference shows: a backward
of the penalty alone (a lazy-R1 step without the loss) leaves the biases whose only path
to the penalty is the skipped backward of zeros without a .grad (None), where PyTorch
gives zeros, so an optimizer with momentum (Adam) does not move them in that step;
with the loss in the same backward, as WGAN-GP's and DRAGAN's steps have it, nothing
differs.
"""
import collections
import functools
import sys
import threading

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.utils import parametrize

from fastgan import _backend
from fastgan.nn.blocks import _ConvBNAct, act_slope, bn_refused, fused_conv_bn_act, hooked as _hooked
from fastgan.nn.activation import LeakyReLU as PenaltyLeakyReLU, ReLU as PenaltyReLU
from fastgan.nn.conv import Conv2d as PenaltyConv2d

_CONVS = (nn.Conv2d, nn.ConvTranspose2d)
_ACTS = (nn.ReLU, nn.LeakyReLU)
# The classes whose forward the fused kernels replace: a subclass must keep it.
_BASES = (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.LeakyReLU, nn.ReLU)
_UNCONFIRMED = ("the torch.fx trace shows a module of it called more than once or an output "
                "used elsewhere (kept as a feature, say)")


def _rebuild(base, mixins):
    """An empty instance of the retyped class (mixins..., base), for unpickling and deepcopy."""
    if not isinstance(mixins, tuple):  # pickled by an older fastgan: one mixin
        mixins = (mixins,)
    return object.__new__(_subclass(base, mixins))


class _Retyped:
    """Pickles a retyped module as its base class and mixins: the class itself is made at
    run time (_subclass), so pickle could not find it by name."""

    def __reduce_ex__(self, protocol):
        *mixins, base = type(self).__bases__
        return _rebuild, (base, tuple(mixins)), self.__dict__


class _Scope:
    """How many forwards of an accelerated model are running on the calling thread: a chain
    traced in its custom forward() runs fused only inside one. Counted per thread, so a
    chain's convolution called on its own on one thread runs stock while the model's forward
    runs on another (and nn.DataParallel's replicas, one thread each, each open their own;
    they run stock, see _fused_here).
    Pickled and copied empty: a count belongs to a running forward, not to the model."""

    def __init__(self):
        self._threads = threading.local()

    @property
    def active(self):
        return getattr(self._threads, "active", 0)

    def enter(self):
        self._threads.active = self.active + 1

    def exit(self):
        self._threads.active = self.active - 1

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self.__init__()


def _in_scope(m):
    scope = m.__dict__.get("_fastgan_scope")
    return scope is None or scope.active > 0  # None: retyped by an older fastgan, always fused


def _fused_here(m):
    """Whether a chain's convolution, BatchNorm or activation runs fused (the convolution doing
    all three) rather than as itself: inside its model's forward, and not in an
    nn.DataParallel replica. A replica is a shallow copy whose __dict__ still holds the
    original's BatchNorm and activation (on the first GPU, not the replica's), so replicas run
    their modules stock: the same values, unfused (DistributedDataParallel keeps the fusion)."""
    return _in_scope(m) and not getattr(m, "_is_replica", False)


def _chain_fused(m):
    """Whether the chain of m (its convolution, BatchNorm or activation) runs fused now:
    _fused_here, none of the three hooked since accelerate fused them (a hook must see its
    module's own input and output) and each still the module its model holds where the
    trace found it (one replaced, by hand or by SyncBatchNorm.convert_sync_batchnorm, say,
    leaves the others to run as themselves)."""
    d = m.__dict__
    return (_fused_here(m) and not any(_hooked(x) for x in d.get("_fastgan_chain", ()))
            and all(parent._modules.get(name) is x
                    for (parent, name), x in zip(d.get("_fastgan_slots", ()), d.get("_fastgan_chain", ()))))


class _ScopedRoot(_Retyped):
    """The model accelerate traced: its forward opens the scope of the chains fused in it."""

    def forward(self, *args, **kwargs):
        scope = self.__dict__["_fastgan_scope"]
        scope.enter()
        try:
            return super().forward(*args, **kwargs)
        finally:
            scope.exit()


class _FusedConvMixin(_Retyped):
    """Runs conv -> bn -> act fused inside its model's forward; the bn and act modules are
    kept (unregistered) in __dict__. Called on its own: the convolution alone."""

    def forward(self, x, output_size=None):
        if not _chain_fused(self) or isinstance(x, torch.fx.Proxy):  # alone, hooked, or in a torch.fx trace
            return super().forward(x) if output_size is None else super().forward(x, output_size)
        if output_size is not None:
            raise ValueError("fastgan.accelerate: a fused ConvTranspose2d takes no output_size")
        d = self.__dict__
        return fused_conv_bn_act(self, d["_fastgan_bn"], act_slope(d["_fastgan_act"]), x,
                                 d["_fastgan_backend"])


class _PassThrough(_Retyped):
    """A BatchNorm or activation whose work the fused convolution before it does inside the
    model's forward; called on its own it runs as before."""

    def forward(self, x):
        # in a torch.fx trace the module as it is, like the convolution before it
        return x if _chain_fused(self) and not isinstance(x, torch.fx.Proxy) else super().forward(x)


class _FusedSequential(_Retyped):
    """An nn.Sequential running the chains of its children
    listed in __dict__["_fastgan_chains"] ({index: (conv, bn, act, backend)}) fused; the
    modules keep their classes, so called on their own they run as before."""

    def forward(self, input):
        if isinstance(input, torch.fx.Proxy):  # traced (accelerate again): the modules as they are
            return nn.Sequential.forward(self, input)
        chains = self.__dict__.get("_fastgan_chains", {})
        mods = list(self._modules.values())
        i = 0
        while i < len(mods):
            chain = chains.get(i)
            if (chain is not None and len(mods) >= i + 3 and all(a is b for a, b in zip(mods[i:i + 3], chain))
                    and not any(_hooked(m) for m in chain[:3])):  # not replaced or hooked since
                input = fused_conv_bn_act(chain[0], chain[1], act_slope(chain[2]), input, chain[3])
                i += 3
            else:
                input = mods[i](input)
                i += 1
        return input


_SUBCLASSES = {}


def _subclass(base, mixins):
    key = (base, mixins)
    if key not in _SUBCLASSES:
        # reported under its base's module: torch.fx's default tracer keeps a retyped torch.nn
        # module a leaf (one call_module node, run as it is by the traced module), as before
        body = {"__module__": base.__module__}
        if _ScopedRoot in mixins:  # the model's forward keeps its signature (torch.fx reads it)
            def forward(self, *args, **kwargs):
                return _ScopedRoot.forward(self, *args, **kwargs)
            body["forward"] = functools.wraps(base.forward)(forward)
        _SUBCLASSES[key] = type(f"Fused{base.__name__}", (*mixins, base), body)
    return _SUBCLASSES[key]


def _base(m):
    """m's class before accelerate retyped it."""
    return type(m).__bases__[-1] if isinstance(m, _Retyped) else type(m)


def _retype(module, mixin):
    """Makes module an instance of (mixin, ...the mixins it has, its class), _ScopedRoot
    first: its forward opens the scope, then calls the others'."""
    mixins = (mixin, *(type(module).__bases__[:-1] if isinstance(module, _Retyped) else ()))
    mixins = tuple(sorted(mixins, key=lambda m: m is not _ScopedRoot))
    module.__class__ = _subclass(_base(module), mixins)


def _own_forward(m):
    """The name of m's class when it overrides the forward of the torch class it extends."""
    base = next((b for b in _BASES if isinstance(m, b)), None)
    return None if base is None or type(m).forward is base.forward else type(m).__name__


def _container_of(conv, bn, act, containers):
    """(seq, i) when conv, bn, act are the children i, i + 1, i + 2 of the nn.Sequential seq
    (containers: id(child i) -> (seq, i, the three children)), else (None, None)."""
    seq, i, children = containers.get(id(conv), (None, None, ()))
    same = len(children) == 3 and all(a is b for a, b in zip(children, (conv, bn, act)))
    return (seq, i) if same else (None, None)


def _in_fused_container(conv, bn, act, containers):
    seq, i = _container_of(conv, bn, act, containers)
    chain = seq.__dict__.get("_fastgan_chains", {}).get(i) if isinstance(seq, _FusedSequential) else None
    return chain is not None and all(a is b for a, b in zip(chain, (conv, bn, act)))


def _why_not(conv, bn, act, uses, containers=None):
    """None when the chain can be fused, else the reason."""
    chain = (conv, bn, act)
    # A lazy module is matched as the class it becomes (LazyBatchNorm2d is no BatchNorm2d).
    kind = [m.cls_to_become if isinstance(m, LazyModuleMixin) and getattr(m, "cls_to_become", None)
            else type(m) for m in chain]
    if not issubclass(kind[0], _CONVS) or not issubclass(kind[1], nn.BatchNorm2d) or not issubclass(kind[2], _ACTS):
        return "not a Conv -> BatchNorm2d -> ReLU/LeakyReLU chain"
    if (isinstance(conv, (_FusedConvMixin,)) or isinstance(bn, _PassThrough)
            or _in_fused_container(conv, bn, act, containers or {})):
        return "already fused"
    if any(isinstance(m, LazyModuleMixin) for m in chain):
        return "a lazy module is not initialized yet: run one forward first"
    own = next((n for n in map(_own_forward, chain) if n), None)
    if own:
        return f"{own} has its own forward(), which the fused kernels would skip"
    if any(parametrize.is_parametrized(m) for m in chain):
        return "a module of the chain is parametrized (torch.nn.utils.parametrize)"
    if any(_hooked(m) for m in chain):
        return "a module of the chain has forward or backward hooks, which would see other tensors fused"
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return f"padding {conv.padding!r} / mode {conv.padding_mode!r} is not supported"
    if conv.out_channels != bn.num_features:
        return f"the BatchNorm has {bn.num_features} channels, the convolution {conv.out_channels}"
    if act.negative_slope < 0 if isinstance(act, nn.LeakyReLU) else False:
        return "a negative slope"
    if bn_refused(bn):
        return bn_refused(bn)
    if any(uses[id(m)] > 1 for m in chain):
        return "a module of the chain is used in more than one place"
    return None


def _scope_of(model):
    """The scope model's forward opens (made, and model retyped, on first use)."""
    if not isinstance(model, _ScopedRoot):
        model.__dict__["_fastgan_scope"] = _Scope()
        _retype(model, _ScopedRoot)
    return model.__dict__["_fastgan_scope"]


def _fuse(conv, bn, act, backend, scope, slots=()):
    """slots: (parent module, attribute name) of conv, bn and act in the model."""
    conv.__dict__.update(_fastgan_bn=bn, _fastgan_act=act, _fastgan_backend=backend)
    for m in (conv, bn, act):
        m.__dict__["_fastgan_scope"] = scope
        m.__dict__["_fastgan_chain"] = (conv, bn, act)
        m.__dict__["_fastgan_slots"] = tuple(slots)
    _retype(conv, _FusedConvMixin)
    _retype(bn, _PassThrough)
    _retype(act, _PassThrough)


def _plain_sequential(seq):
    return isinstance(seq, _FusedSequential) or _base(seq).forward is nn.Sequential.forward


def _fuse_in_container(seq, i, conv, bn, act, backend):
    seq.__dict__.setdefault("_fastgan_chains", {})[i] = (conv, bn, act, backend)
    if not isinstance(seq, _FusedSequential):
        _retype(seq, _FusedSequential)


def _sequential_chains(model):
    """(name, seq, index, a, b, c) for three consecutive children of each nn.Sequential."""
    for prefix, seq in model.named_modules():
        if isinstance(seq, nn.Sequential) and not isinstance(seq, _ConvBNAct):  # those are fused
            items = list(seq._modules.items())
            for i in range(len(items) - 2):
                (n0, a), (_, b), (n2, c) = items[i:i + 3]
                yield f"{prefix + '.' if prefix else ''}{n0}..{n2}", seq, i, a, b, c


class _Tracer(torch.fx.Tracer):
    """Keeps the modules a chain is made of (subclasses and lazy ones too), and fastgan's
    own modules without submodules (their ops take no fx Proxy), as calls."""

    def is_leaf_module(self, m, qualname):
        return (isinstance(m, _CONVS + _ACTS + (nn.modules.batchnorm._BatchNorm, LazyModuleMixin, _ConvBNAct))
                or (type(m).__module__.startswith("fastgan.") and not m._modules)
                or super().is_leaf_module(m, qualname))


def _single_input(node):
    return len(node.args) == 1 and not node.kwargs


def _traced_chains(model):
    """(name, conv, bn, act, why) for the call_module chains conv -> BatchNorm -> activation
    in a torch.fx trace of the model: why is None where the trace shows each module called
    once, on one input, and each output going to the next module alone, else the reason
    the chain cannot be fused."""
    graph = _Tracer().trace(model)
    modules = dict(model.named_modules())
    calls = collections.Counter(n.target for n in graph.nodes if n.op == "call_module")

    def called(node, kinds):
        return [u for u in node.users if u.op == "call_module" and isinstance(modules.get(u.target), kinds)]

    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), _CONVS):
            continue
        bns = called(node, nn.modules.batchnorm._BatchNorm)
        acts = called(bns[0], _ACTS) if len(bns) == 1 else []
        if len(acts) != 1:
            continue
        bn_node, act_node = bns[0], acts[0]
        nodes = (node, bn_node, act_node)
        confirmed = (len(node.users) == 1 and len(bn_node.users) == 1 and all(map(_single_input, nodes))
                     and all(calls[n.target] == 1 for n in nodes))
        yield (f"{node.target} -> {bn_node.target} -> {act_node.target}", modules[node.target],
               modules[bn_node.target], modules[act_node.target], None if confirmed else _UNCONFIRMED,
               tuple(n.target for n in nodes))


def _proxy_left(model):
    """The name of a module attribute where the torch.fx trace left a Proxy (the forward kept
    an intermediate tensor aside, a feature list say: uses the trace cannot see), or None."""
    def has_proxy(value, depth=0):
        if isinstance(value, torch.fx.Proxy):
            return True
        if depth < 2 and isinstance(value, (list, tuple)):
            return any(has_proxy(v, depth + 1) for v in value)
        if depth < 2 and isinstance(value, dict):
            return any(has_proxy(v, depth + 1) for v in value.values())
        return False
    for prefix, m in model.named_modules():
        for key, value in vars(m).items():
            if not key.startswith("_") and has_proxy(value):
                return f"{prefix + '.' if prefix else ''}{key}"
    return None


def _chains_in_both_modes(model):
    """_traced_chains of the model as it is, keeping the chains the trace in the other mode
    (train/eval) also shows, as they are (a forward that branches on self.training, say);
    the others come back with the reason. Every module's mode is restored."""
    modes = {m: m.training for m in model.modules()}
    try:
        first = list(_traced_chains(model))
        where = _proxy_left(model)
        model.train(not model.training)
        other = {c[0]: c[4] for c in _traced_chains(model)}
        where = where or _proxy_left(model)
    finally:
        for m, mode in modes.items():
            m.training = mode
    if where:
        raise RuntimeError(f"the forward keeps an intermediate tensor in {where}, which the trace "
                           "cannot follow")
    return [c if c[0] in other and other[c[0]] == c[4] else
            (*c[:4], "the torch.fx traces in train and eval mode differ", c[5]) for c in first]


def _penalty_modules(model):
    """Retypes the model's plain nn.Conv2d (zero padding), nn.LeakyReLU (slope >= 0) and
    nn.ReLU modules as fastgan's, in place; returns their names."""
    done = []
    in_chains = {id(m) for seq in model.modules() if isinstance(seq, _FusedSequential)
                 for chain in seq.__dict__.get("_fastgan_chains", {}).values() for m in chain[:3]}
    for name, m in model.named_modules():
        if id(m) in in_chains:  # run fused by their container
            continue
        if type(m) is nn.Conv2d and m.padding_mode == "zeros" and not isinstance(m.padding, str):
            m.__class__ = PenaltyConv2d
        elif type(m) is nn.LeakyReLU and m.negative_slope >= 0:
            m.__class__ = PenaltyLeakyReLU
        elif type(m) is nn.ReLU:
            m.__class__ = PenaltyReLU
        else:
            continue
        done.append(name or "(the model)")
    return done


def accelerate(model, *, backend=None, penalty=False, verbose=True):
    """Fuses model's Conv -> BatchNorm2d -> ReLU/LeakyReLU chains in place; returns model.

    backend: the fused ops' backend (None: fastgan's default). penalty: also retype its
    plain Conv2d, LeakyReLU and ReLU modules as fastgan's (a critic a gradient penalty
    differentiates twice; see the module doc). verbose: print what was done, or why
    nothing was, to stderr. The list of fused chains is also kept in model.fastgan_fused,
    the retyped modules in model.fastgan_penalty_modules.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"fastgan.accelerate: expected an nn.Module, got {type(model).__name__}")
    _backend.check_choice(backend, "fastgan.accelerate")
    uses = collections.Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))
    fused, notes = [], []
    already = sum(isinstance(m, _ConvBNAct) for m in model.modules())  # fastgan.nn blocks

    def describe(name, conv, act):
        return (f"{name} ({_base(conv).__name__} {conv.in_channels}->{conv.out_channels}, BatchNorm2d, "
                f"{_base(act).__name__})")

    try:
        chains = _chains_in_both_modes(model)
    except Exception as exc:  # fx cannot trace data-dependent control flow, etc.
        chains = None
        notes.append(f"torch.fx could not trace the model ({type(exc).__name__}: "
                     f"{str(exc).splitlines()[0] if str(exc) else ''}); only nn.Sequential "
                     "containers were searched, their chains fused in the container's forward")
    if chains is not None:
        # The trace says how each module is used: fuse only the chains it shows, in their
        # nn.Sequential container where they are consecutive children of one
        containers = {id(a): (seq, i, (a, b, c)) for _, seq, i, a, b, c in _sequential_chains(model)}
        traced = set()
        for name, conv, bn, act, unconfirmed, targets in chains:
            if id(conv) in traced:  # a convolution called twice: one chain per call, one note
                continue
            traced.add(id(conv))
            why = _why_not(conv, bn, act, uses, containers) or unconfirmed
            seq, i = _container_of(conv, bn, act, containers)
            if why is None and seq is not None and _plain_sequential(seq):
                _fuse_in_container(seq, i, conv, bn, act, backend)
                fused.append(describe(name, conv, act))
            elif why is None:
                slots = [(model.get_submodule(t.rpartition(".")[0]), t.rpartition(".")[2]) for t in targets]
                _fuse(conv, bn, act, backend, _scope_of(model), slots)
                fused.append(describe(name, conv, act))
            elif why == "already fused":
                already += 1
            elif why != "not a Conv -> BatchNorm2d -> ReLU/LeakyReLU chain":
                notes.append(f"{name}: left alone: {why}")
        for name, _, _, conv, bn, act in _sequential_chains(model):
            if id(conv) in traced:
                continue
            why = _why_not(conv, bn, act, uses, containers)
            if why == "already fused":
                already += 1
            elif why != "not a Conv -> BatchNorm2d -> ReLU/LeakyReLU chain":
                notes.append(f"{name}: left alone: {why or _UNCONFIRMED}")
    else:
        taken = set()
        for name, seq, i, conv, bn, act in _sequential_chains(model):
            done = seq.__dict__.get("_fastgan_chains", {}) if isinstance(seq, _FusedSequential) else {}
            if id(conv) in taken:
                continue
            if i in done and all(a is b for a, b in zip(done[i], (conv, bn, act))):
                why = "already fused"
            else:
                why = _why_not(conv, bn, act, uses)
            if why is None and not _plain_sequential(seq):
                why = f"its container {type(seq).__name__} has its own forward()"
            if why is None:
                _fuse_in_container(seq, i, conv, bn, act, backend)
                taken.add(id(conv))
                fused.append(describe(name, conv, act))
            elif why == "already fused":
                already += 1
            elif why != "not a Conv -> BatchNorm2d -> ReLU/LeakyReLU chain":
                notes.append(f"{name}: left alone: {why}")
    model.__dict__["fastgan_fused"] = fused
    retyped = _penalty_modules(model) if penalty else []
    model.__dict__["fastgan_penalty_modules"] = retyped
    if verbose:
        if retyped:
            print(f"fastgan.accelerate: {len(retyped)} module(s) made fastgan's for the penalty's double "
                  "backward: " + ", ".join(retyped), file=sys.stderr)
        if fused:
            print(f"fastgan.accelerate: fused {len(fused)} block(s): " + "; ".join(fused), file=sys.stderr)
        elif already:
            print(f"fastgan.accelerate: {'nothing fused' if retyped else 'model unchanged'}: its "
                  f"{already} block(s) are already fused", file=sys.stderr)
        else:
            print(f"fastgan.accelerate: {'nothing fused' if retyped else 'model unchanged'}: no "
                  "ConvTranspose2d/Conv2d -> BatchNorm2d -> ReLU/LeakyReLU chain that can be fused",
                  file=sys.stderr)
        for note in notes:
            print(f"fastgan.accelerate: {note}", file=sys.stderr)
    return model


class _ScopesAsInForward:
    """Opens, around a recomputation, the scopes that were open when the forward ran (on the
    thread the recomputation runs on: the backward's). Reusable: a graph kept with
    retain_graph=True is recomputed at each backward."""

    def __init__(self, scopes, was_open):
        self._scopes, self._was_open = scopes, was_open

    def __enter__(self):
        self._entered = [s for s, on in zip(self._scopes, self._was_open) if on]
        for scope in self._entered:
            scope.enter()

    def __exit__(self, *exc):
        for scope in self._entered:
            scope.exit()
        return False


class _RecordScopes:
    """Notes, as the checkpointed forward starts, which scopes are open on its thread."""

    def __init__(self, scopes, was_open):
        self._scopes, self._was_open = scopes, was_open

    def __enter__(self):
        self._was_open[:] = [s.active > 0 for s in self._scopes]

    def __exit__(self, *exc):
        return False


def checkpoint_context(module, context_fn=None):
    """A context_fn for torch.utils.checkpoint.checkpoint (use_reentrant=False) of a part of an
    accelerated model that holds a chain fused in a custom forward():

        checkpoint(self.block, x, use_reentrant=False, context_fn=checkpoint_context(self.block))

    Such a chain runs fused only while its model's forward runs (the module doc); the
    recomputation runs later, in the backward, and without this computes the stock chain,
    which PyTorch rejects (CheckpointError). With it the recomputation runs fused or stock as
    the forward did. module: the checkpointed part, or any module holding it (the model
    itself); context_fn: another context_fn to combine with (selective checkpointing's, say).
    Chains fused in an nn.Sequential need none of this: its own forward fuses them.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"fastgan.accelerate.checkpoint_context: expected an nn.Module, got "
                        f"{type(module).__name__}")
    if context_fn is not None and not callable(context_fn):
        raise TypeError("fastgan.accelerate.checkpoint_context: context_fn must be callable (returning "
                        f"two context managers), got {type(context_fn).__name__}")
    scopes = list({id(s): s for s in (m.__dict__.get("_fastgan_scope") for m in module.modules())
                   if s is not None}.values())

    def make():
        was_open = []
        ours = (_RecordScopes(scopes, was_open), _ScopesAsInForward(scopes, was_open))
        if context_fn is None:
            return ours
        theirs = context_fn()
        return _Both(ours[0], theirs[0]), _Both(ours[1], theirs[1])

    return make


class _Both:
    """Two context managers entered in order and left in reverse (reusable if both are)."""

    def __init__(self, first, second):
        self._first, self._second = first, second

    def __enter__(self):
        self._first.__enter__()
        try:
            self._second.__enter__()
        except BaseException:
            self._first.__exit__(*sys.exc_info())
            raise

    def __exit__(self, *exc):
        suppressed = False
        try:
            suppressed = bool(self._second.__exit__(*exc))
        finally:
            self._first.__exit__(*((None, None, None) if suppressed else exc))
        return suppressed
