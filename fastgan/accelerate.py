"""fastgan.accelerate: fuse the Conv -> BatchNorm2d -> ReLU/LeakyReLU blocks of an existing model.

    model = fastgan.accelerate(model)     # in place; prints what it fused

Finds ConvTranspose2d/Conv2d -> BatchNorm2d -> ReLU/LeakyReLU chains and makes the
convolution run all three with fastgan's fused kernels (fastgan.nn.blocks), the
BatchNorm and the activation then passing their input through. Nothing is moved or
renamed: the parameters are the same objects, the state_dict keys the same, so
checkpoints of the original model load into the accelerated one and back, and the
outputs are those of the original model (to rounding).

Where it looks:
  * nn.Sequential containers: consecutive children, in the order Sequential runs them;
  * named submodules called from a custom forward(): the chain is read from a torch.fx
    trace of the model, and fused only where the convolution's output goes to the
    BatchNorm alone and the BatchNorm's to the activation alone.
A module used in more than one place, a convolution that is not 2-D with zero padding
mode, a BatchNorm whose channels differ, or an activation called functionally
(F.relu) is left alone; a model with nothing to fuse is returned unchanged, with a
message saying why.

    critic = fastgan.accelerate(critic, penalty=True)   # a critic a gradient penalty differentiates twice

penalty=True also makes every plain nn.Conv2d of the model (zero padding) a
fastgan.nn.Conv2d and every nn.LeakyReLU (slope >= 0) and nn.ReLU outside the fused
chains fastgan.nn.activation's LeakyReLU / ReLU: the same modules and parameters, whose
double backwards skip PyTorch's backward of zeros through the layers before them
(fastgan/nn/conv.py, fastgan.ops.bias_leaky_relu). Only for a critic differentiated
twice (WGAN-GP, DRAGAN, R1): elsewhere it gains nothing.
"""
import collections
import sys

import torch
from torch import nn

from fastgan.nn.blocks import _ConvBNAct, act_slope, fused_conv_bn_act
from fastgan.nn.activation import LeakyReLU as PenaltyLeakyReLU, ReLU as PenaltyReLU
from fastgan.nn.conv import Conv2d as PenaltyConv2d

_CONVS = (nn.Conv2d, nn.ConvTranspose2d)
_ACTS = (nn.ReLU, nn.LeakyReLU)


class _FusedConvMixin:
    """Runs conv -> bn -> act fused; the bn and act modules are kept (unregistered) in __dict__."""

    def forward(self, x, output_size=None):
        if output_size is not None:
            raise ValueError("fastgan.accelerate: a fused ConvTranspose2d takes no output_size")
        d = self.__dict__
        return fused_conv_bn_act(self, d["_fastgan_bn"], act_slope(d["_fastgan_act"]), x,
                                 d["_fastgan_backend"])


class _PassThrough:
    """A BatchNorm or activation whose work the fused convolution before it does."""

    def forward(self, x):
        return x


_SUBCLASSES = {}


def _retype(module, mixin):
    base = type(module)
    key = (base, mixin)
    if key not in _SUBCLASSES:
        _SUBCLASSES[key] = type(f"Fused{base.__name__}", (mixin, base), {"__module__": __name__})
    module.__class__ = _SUBCLASSES[key]


def _why_not(conv, bn, act, uses):
    """None when the chain can be fused, else the reason."""
    if not isinstance(conv, _CONVS) or not isinstance(bn, nn.BatchNorm2d) or not isinstance(act, _ACTS):
        return "not a Conv -> BatchNorm2d -> ReLU/LeakyReLU chain"
    if isinstance(conv, (_FusedConvMixin,)) or isinstance(bn, _PassThrough):
        return "already fused"
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return f"padding {conv.padding!r} / mode {conv.padding_mode!r} is not supported"
    if conv.out_channels != bn.num_features:
        return f"the BatchNorm has {bn.num_features} channels, the convolution {conv.out_channels}"
    if act.negative_slope < 0 if isinstance(act, nn.LeakyReLU) else False:
        return "a negative slope"
    if any(uses[id(m)] > 1 for m in (conv, bn, act)):
        return "a module of the chain is used in more than one place"
    return None


def _fuse(conv, bn, act, backend):
    conv.__dict__.update(_fastgan_bn=bn, _fastgan_act=act, _fastgan_backend=backend)
    _retype(conv, _FusedConvMixin)
    _retype(bn, _PassThrough)
    _retype(act, _PassThrough)


def _sequential_chains(model):
    for prefix, seq in model.named_modules():
        if isinstance(seq, nn.Sequential) and not isinstance(seq, _ConvBNAct):  # those are fused
            items = list(seq._modules.items())
            for i in range(len(items) - 2):
                (n0, a), (_, b), (n2, c) = items[i:i + 3]
                yield f"{prefix + '.' if prefix else ''}{n0}..{n2}", a, b, c


def _traced_chains(model):
    """(name, conv, bn, act) for call_module chains in a torch.fx trace of the model."""
    graph = torch.fx.symbolic_trace(model).graph
    modules = dict(model.named_modules())
    calls = collections.Counter(n.target for n in graph.nodes if n.op == "call_module")
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), _CONVS):
            continue
        users = list(node.users)
        if len(users) != 1 or users[0].op != "call_module" or len(users[0].args) != 1:
            continue
        bn_node = users[0]
        after = list(bn_node.users)
        if len(after) != 1 or after[0].op != "call_module" or len(after[0].args) != 1:
            continue
        act_node = after[0]
        if any(calls[n.target] > 1 for n in (node, bn_node, act_node)):
            continue
        yield (f"{node.target} -> {bn_node.target} -> {act_node.target}", modules[node.target],
               modules[bn_node.target], modules[act_node.target])


def _penalty_modules(model):
    """Retypes the model's plain nn.Conv2d (zero padding), nn.LeakyReLU (slope >= 0) and
    nn.ReLU modules as fastgan's, in place; returns their names."""
    done = []
    for name, m in model.named_modules():
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
    uses = collections.Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))
    fused, notes = [], []
    if not isinstance(model, nn.Sequential) or any(
            not isinstance(m, nn.Sequential) and m is not model and list(m.children())
            for m in model.modules()):
        try:
            chains = list(_traced_chains(model))
        except Exception as exc:  # fx cannot trace data-dependent control flow, etc.
            chains = []
            notes.append(f"torch.fx could not trace the model ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}); only nn.Sequential "
                         "containers were searched")
    else:
        chains = []
    seen = set()
    already = sum(isinstance(m, _ConvBNAct) for m in model.modules())  # fastgan.nn blocks
    for name, conv, bn, act in chains + list(_sequential_chains(model)):
        if id(conv) in seen:
            continue
        why = _why_not(conv, bn, act, uses)
        if why is None:
            _fuse(conv, bn, act, backend)
            seen.add(id(conv))
            fused.append(f"{name} ({type(conv).__bases__[-1].__name__} {conv.in_channels}->"
                         f"{conv.out_channels}, BatchNorm2d, {type(act).__bases__[-1].__name__})")
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
