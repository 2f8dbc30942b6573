"""RMSpropClip: torch.optim.RMSprop and WGAN's weight clip as one fused step.

WGAN (Arjovsky et al. 2017, Algorithm 1): RMSprop with lr = 5e-5 on the critic,
every critic parameter clipped to [-c, c], c = 0.01, after each update. The
remaining hyperparameters are torch.optim.RMSprop's defaults (alpha 0.99, eps
1e-8); the paper names none.

The state (step, square_avg, momentum_buffer, grad_avg) has torch.optim.RMSprop's
keys, so state dicts move between the two. A group's "clip" is its bound, None
for no clip (see clip_param_groups to exclude parameters by name).

Speed: each step is one fastgan.ops.rmsprop_clip_ call per (device, dtype) of a
group: one multi-tensor kernel on a GPU. On a module flattened with
fastgan.optim.flatten_parameters, when one param group holds every parameter of a flat
buffer, the kernel runs over the flat buffers (those parameters' states are then flat
too), and zero_grad zeroes the flat gradient buffer. An optimizer holding only part of
a flattened module (two optimizers sharing it) steps its parameters tensor by tensor,
with states of its own parameters only; so does one over a module whose flattening is
stale (moved with .to() or copied after flatten_parameters: FlatParameters.is_current).
Capturable: the learning rate lives in a device tensor, so a CUDA graph of the
step replays with the current lr; a Tensor lr is used as given.

Loss scaling without a host synchronization: like torch's fused Adam, RMSpropClip
declares _step_supports_amp_scaling, so torch.amp.GradScaler.step hands it the scale
and the overflow flag as device tensors (optimizer.grad_scale, optimizer.found_inf)
instead of reading the flag on the host. The kernel unscales the gradients (leaving
the unscaled ones in .grad, as GradScaler.unscale_ would) and, when the flag is set,
writes nothing; the step count advances only on steps taken. A float16 run's
critic step thus stays capturable in a CUDA graph.
"""
import fnmatch
import math
import numbers
import weakref

import torch

from fastgan import _backend
from fastgan.ops import _checks
from fastgan.ops.rmsprop_clip import check_hyper, rmsprop_clip_

_STATE_KEYS = ("square_avg", "momentum_buffer", "grad_avg")


def _real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_hyper(lr, alpha, eps, weight_decay, momentum, clip):
    if not isinstance(lr, torch.Tensor) and not (_real(lr) and math.isfinite(lr) and lr >= 0):
        raise ValueError(f"RMSpropClip: lr must be >= 0, got {lr!r}")
    check_hyper("RMSpropClip", alpha, eps, weight_decay, momentum)
    if clip is not None and not (_real(clip) and math.isfinite(clip) and clip >= 0):
        raise ValueError(f"RMSpropClip: clip must be None or a finite number >= 0, got {clip!r}")


def _check_group(group, index, dtypes=None):
    """A param group's hyperparameters, and its clip within every parameter's dtype (the
    dtypes in `dtypes` when given: a step passes those it found, with no second loop over
    the parameters)."""
    _check_hyper(group["lr"], group["alpha"], group["eps"], group["weight_decay"],
                 group["momentum"], group["clip"])
    for dtype in {p.dtype for p in group["params"]} if dtypes is None else dtypes:
        if dtype not in _checks.FINITE_MAX:  # complex or integer parameters
            raise TypeError(f"RMSpropClip: param_groups[{index}] holds a {dtype} parameter; RMSpropClip "
                            "takes float32, float16, bfloat16 and float64 ones")
    clip = group["clip"]
    if clip is None:
        return
    if dtypes is None:
        _checks.bound_fits("RMSpropClip", "clip", clip, group["params"],
                           label=f"param_groups[{index}]['params']")
        return
    for dtype in dtypes:
        if clip > _checks.FINITE_MAX[dtype]:
            raise ValueError(f"RMSpropClip: clip = {clip} exceeds the largest finite {dtype} "
                             f"({_checks.FINITE_MAX[dtype]}) of a parameter of param_groups[{index}]")


class RMSpropClip(torch.optim.Optimizer):
    """RMSprop followed by the WGAN clip of every parameter, fused (see the module doc).

    params: parameters or param groups (a group may set its own "clip", None for none).
    backend: the fastgan backend for the fused kernel (None: fastgan's default).
    foreach, capturable: taken for torch.optim.RMSprop's keywords and not needed: the step
    is always one fused multi-tensor kernel per device and dtype, and always capturable in
    a CUDA graph (the learning rate lives on the device). differentiable=True is refused.

    A group's hyperparameters are checked when it is added (a clip beyond the largest
    finite value of one of its parameters' dtypes raises there) and again, for every group,
    at each step before anything is written: a step that raises on them changes no
    parameter and no state. A parameter's step count advances after its update.
    """

    # torch.amp.GradScaler: pass grad_scale / found_inf as attributes, no host-side check
    _step_supports_amp_scaling = True

    def __init__(self, params, lr=5e-5, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False, maximize=False, clip=0.01, *, backend=None, foreach=None,
                 capturable=True, differentiable=False):
        if differentiable:
            raise ValueError("RMSpropClip: differentiable=True is not supported: the step is a fused "
                             "in-place kernel (use torch.optim.RMSprop(differentiable=True) and clamp_)")
        _check_hyper(lr, alpha, eps, weight_decay, momentum, clip)
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                        centered=centered, maximize=maximize, clip=clip)
        super().__init__(params, defaults)  # checks each group (add_param_group)
        self.backend = _backend.check_choice(backend, "RMSpropClip")
        self._lr = {}  # (group index, device) -> 1-element float32 tensor on that device
        # FlatGroup -> {state key: flat state buffer}; weak, so that a group dropped by a
        # re-flattening takes its buffers with it and never lends them to a newer one
        self._flat = weakref.WeakKeyDictionary()

    def add_param_group(self, param_group):
        super().add_param_group(param_group)
        try:
            _check_group(self.param_groups[-1], len(self.param_groups) - 1)
        except (TypeError, ValueError):
            self.param_groups.pop()
            raise

    def __getstate__(self):
        state = super().__getstate__()
        state["backend"] = self.backend
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        # a copy (copy.deepcopy, pickle) has none of these; load_state_dict keeps them
        self.__dict__.setdefault("backend", None)
        self.__dict__.setdefault("_lr", {})
        self.__dict__.setdefault("_flat", weakref.WeakKeyDictionary())
        # a group without a clip (pickled by a version before it) takes the default clip
        for group in self.param_groups:
            group.setdefault("clip", self.defaults.get("clip"))

    def load_state_dict(self, state_dict):
        """torch.optim.Optimizer.load_state_dict. A torch.optim.RMSprop state dict has no
        clip: each of its groups keeps the clip this optimizer's group had (a WGAN critic's
        optimizer built with clip=0.01 keeps clipping, and a group excluded from the clip,
        clip None, stays unclipped)."""
        own = [group.get("clip", self.defaults.get("clip")) for group in self.param_groups]
        groups = state_dict.get("param_groups") if isinstance(state_dict, dict) else None
        without = [isinstance(g, dict) and "clip" not in g for g in groups] if isinstance(groups, list) else []
        super().load_state_dict(state_dict)
        for group, clip, missing in zip(self.param_groups, own, without):
            if missing:
                group["clip"] = clip
        self._flat.clear()  # the loaded state tensors are not views of the flat buffers

    def _lr_tensor(self, index, group, device):
        lr = group["lr"]
        if isinstance(lr, torch.Tensor):
            return lr.to(device=device, dtype=torch.float32).reshape(1)
        cached = self._lr.get((index, device))
        if cached is None or cached[0] != lr:
            t = cached[1] if cached is not None else torch.empty(1, dtype=torch.float32, device=device)
            t.fill_(lr)  # a device write, no host sync
            self._lr[(index, device)] = cached = (lr, t)
        return cached[1]

    def _init_state(self, group, params):
        """Creates the missing states of `params` (one param group's, of one device and
        dtype). Returns the state keys, and the FlatGroup that `params` are exactly (every
        parameter of a current flat buffer, in its order), else None."""
        keys = ["square_avg"] + (["momentum_buffer"] if group["momentum"] != 0 else []) \
            + (["grad_avg"] if group["centered"] else [])
        for p in params:
            state = self.state[p]
            where = p.device if p.is_cuda else torch.device("cpu")
            if "step" not in state:
                state["step"] = torch.zeros((), dtype=torch.float32, device=where)
            elif state["step"].device != where:  # e.g. loaded from torch's RMSprop (CPU steps)
                state["step"] = state["step"].to(dtype=torch.float32, device=where)
        flat = getattr(params[0], "_fastgan_flat", None)
        if not (flat is not None and len(params) == len(flat.params)
                and all(a is b for a, b in zip(params, flat.params)) and flat.is_current()):
            flat = None  # part of a flat buffer, or a stale one: per-tensor states
        if flat is not None:
            self._adopt_flat_state(flat, keys)
        for p in params:
            for key in keys:
                if key not in self.state[p]:
                    self.state[p][key] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return keys, flat

    def _adopt_flat_state(self, flat, keys):
        """Makes the states of a flat group's parameters, all of them this optimizer's (see
        _init_state), views of flat state buffers, copying any state already there (from
        load_state_dict, or from before the flattening). Runs once per group and state key:
        load_state_dict forgets the buffers, so they are rebuilt from the loaded tensors on
        the next step."""
        buffers = self._flat.setdefault(flat, {})
        for key in keys:
            if key in buffers:
                continue
            buf = torch.zeros_like(flat.data)
            for p, view in zip(flat.params, flat.views(buf)):
                old = self.state[p].get(key)
                if old is not None:
                    view.copy_(old)
                self.state[p][key] = view
            buffers[key] = buf

    def _lists(self, params, keys, flat):
        """(params, grads, states...) lists for the op: the flat buffers when `params` are
        exactly the flat group `flat` (from _init_state) and its gradients are still views,
        else per tensor."""
        if flat is not None and flat.grads_are_views():
            buffers = self._flat[flat]
            return [flat.data], [flat.grad], {k: [buffers[k]] for k in keys}
        return params, [p.grad for p in params], {k: [self.state[p][k] for p in params] for k in keys}

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # set by torch.amp.GradScaler.step (see _step_supports_amp_scaling), else absent
        grad_scale = getattr(self, "grad_scale", None)
        found_inf = getattr(self, "found_inf", None)
        plan = []  # every group checked before any is stepped: a bad one changes nothing
        for index, group in enumerate(self.param_groups):
            by_kind = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("RMSpropClip does not support sparse gradients")
                by_kind.setdefault((p.device, p.dtype), []).append(p)
            if by_kind:
                # the dtypes may have changed since the group was added (module.half())
                _check_group(group, index, {dtype for _, dtype in by_kind})
                plan.append((index, group, by_kind))
        for index, group, by_kind in plan:
            for (device, _), params in by_kind.items():
                keys, flat = self._init_state(group, params)
                scale, inf = _on(grad_scale, device), _on(found_inf, device)
                ps, gs, states = self._lists(params, keys, flat)
                rmsprop_clip_(ps, gs, states["square_avg"], states.get("momentum_buffer", []),
                              states.get("grad_avg", []), self._lr_tensor(index, group, device),
                              alpha=group["alpha"], eps=group["eps"],
                              weight_decay=group["weight_decay"], momentum=group["momentum"],
                              centered=group["centered"], maximize=group["maximize"],
                              clip=group["clip"], grad_scale=scale, found_inf=inf,
                              backend=self.backend)
                steps = [self.state[p]["step"] for p in params]  # after the update: it happened
                if inf is None:
                    torch._foreach_add_(steps, 1)
                else:  # + 1 for a step taken, + 0 for one skipped (decided on the device)
                    step_device = steps[0].device
                    torch._foreach_add_(steps, (inf.to(step_device).reshape(()) == 0).to(torch.float32))
        return loss

    def zero_grad(self, set_to_none=True):
        """As torch's, except that gradients which are views of a flat gradient buffer
        (flatten_parameters) stay views: that buffer is zeroed, one kernel (only this
        optimizer's views of it when it also holds another optimizer's gradients)."""
        views = {}  # id(FlatGroup) -> (group, its gradients are still views): one check per group
        owned = {}  # id(FlatGroup) -> this optimizer's parameters of it
        for group in self.param_groups:
            for p in group["params"]:
                flat = getattr(p, "_fastgan_flat", None)
                if flat is not None and id(flat) not in views:
                    views[id(flat)] = (flat, flat.grads_are_views())
                if flat is not None and views[id(flat)][1]:
                    owned.setdefault(id(flat), {})[id(p)] = p
                    continue
                if p.grad is not None:
                    if set_to_none:
                        p.grad = None
                    else:
                        p.grad.detach_().requires_grad_(False).zero_()
        for key, (flat, are_views) in views.items():
            if not are_views:
                continue
            mine = owned.get(key, {})
            if len(mine) == len(flat.params):
                flat.grad.zero_()  # every gradient of the buffer is this optimizer's: one kernel
            else:  # the buffer also holds other optimizers' gradients: only this one's views
                torch._foreach_zero_([p.grad for p in mine.values()])


def _on(t, device):
    """GradScaler's 0-dim float32 tensor as the op takes it: 1 element on `device`."""
    if t is None:
        return None
    return t.to(device=device, dtype=torch.float32, non_blocking=True).reshape(1)


def clip_param_groups(module, clip=0.01, exclude=()):
    """Param groups for RMSpropClip that clip every parameter of `module` except those whose
    name matches a pattern of `exclude` (fnmatch, e.g. "fc.*" or "*.bias"). WGAN clips every
    critic parameter, BatchNorm's affine ones included; buffers (running statistics) are
    never parameters and so never clipped. A pattern that matches no parameter is refused
    (a misspelled name would otherwise clip what it meant to exclude)."""
    patterns = [exclude] if isinstance(exclude, str) else list(exclude)
    clipped, kept, used, names = [], [], set(), []
    for name, p in module.named_parameters():
        names.append(name)
        hits = [pat for pat in patterns if fnmatch.fnmatchcase(name, pat)]
        used.update(hits)
        (kept if hits else clipped).append(p)
    unused = [pat for pat in patterns if pat not in used]
    if unused:
        shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
        raise ValueError(f"clip_param_groups: exclude pattern(s) {', '.join(map(repr, unused))} match no "
                         f"parameter name; the names are {shown or 'none'}")
    groups = [{"params": clipped, "clip": clip}] if clipped else []
    if kept:
        groups.append({"params": kept, "clip": None})
    return groups
