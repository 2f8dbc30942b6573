"""flatten_parameters: a module's parameters (and gradients) in one buffer per dtype.

After flattening, every parameter is a view into one contiguous buffer per
(device, dtype), and so is its gradient; fused optimizers and the weight clip then
run one kernel over the buffer, whatever the number of tensors, and the buffers'
addresses never change (CUDA graphs replay on fixed addresses). The module is
otherwise untouched: same Parameter objects, same state_dict keys, shapes and
values, and load_state_dict copies into the buffer.

Call it after the module has its final device, dtype and memory format: .to(),
.cuda(), .half() afterwards replace the parameters' storage and undo the flattening,
as do copy.deepcopy and pickling of the module (the copy's parameters are not views of
the copy's buffers). The FlatParameters is then stale (is_current() is False):
fastgan's optimizers treat its parameters as unflattened, its zero_grad_ raises, and
flatten_parameters(module) flattens the module afresh.
Gradients stay views as long as nobody sets them to None: fastgan's optimizers
zero the flat gradient buffer instead (one kernel; only their own parameters' views
when the buffer also holds another optimizer's), and torch's
zero_grad(set_to_none=False) keeps them too.

Frozen parameters (requires_grad False when flattening) are left out. Every flattened
parameter always has a gradient, zero where none flowed, so an optimizer steps (and
fastgan's clips) even a parameter the loss did not use, as torch's optimizers do a
parameter whose gradient was zeroed rather than set to None: with momentum or weight
decay such a parameter still moves. A GAN's critic uses all of its parameters every
step; a module with parameters that sit out some steps is better left unflattened.
"""
import torch

from fastgan.kernels._layout import is_dense

# Each parameter starts on a 64-byte boundary, so vectorized loads stay aligned in
# every view; the padding (zeros, with zero gradients) is inert under clip and RMSprop.
ALIGN_BYTES = 64


def _is_view(t, buffer, offset, stride=None):
    """True when tensor `t` starts `offset` elements into `buffer`, with its dtype and
    device (and, when given, `stride`)."""
    return (t is not None and t.device == buffer.device and t.dtype == buffer.dtype
            and t.data_ptr() == buffer.data_ptr() + offset * buffer.element_size()
            and (stride is None or t.stride() == stride))


class FlatGroup:
    """The parameters of one (device, dtype): `params`, their element `offsets` into
    `data` (the parameter buffer) and `grad` (the gradient buffer)."""

    def __init__(self, params, offsets, data, grad):
        self.params, self.offsets, self.data, self.grad = params, offsets, data, grad

    def views(self, buffer):
        """Views of `buffer` (shaped like `data`) laid out as the parameters are."""
        return [buffer.as_strided(p.shape, p.stride(), o) for p, o in zip(self.params, self.offsets)]

    def current_params(self):
        """The parameters that are still their views of `data` (a list)."""
        return [p for p, o in zip(self.params, self.offsets) if _is_view(p, self.data, o)]

    def is_current(self):
        """True while every parameter is still its view of `data` (same storage, offset,
        dtype and device): False once .to(), .cuda(), .half() or a copy of the module has
        given them storage of their own."""
        return all(_is_view(p, self.data, o) for p, o in zip(self.params, self.offsets))

    def grads_are_views(self):
        """True while every parameter's .grad is still its view of `grad`."""
        return all(_is_view(p.grad, self.grad, o, p.stride()) for p, o in zip(self.params, self.offsets))


class FlatParameters:
    """What flatten_parameters did: one FlatGroup per (device, dtype)."""

    def __init__(self, groups):
        self.groups = groups

    def is_current(self):
        """True while every flattened parameter is still its view of its group's buffer. A
        stale FlatParameters (after .to(), .cuda(), .half(), copy.deepcopy or pickling of the
        module) holds buffers that no parameter uses: flatten_parameters(module) replaces it."""
        return all(g.is_current() for g in self.groups)

    def zero_grad_(self):
        """Zeroes every gradient buffer (one kernel each). Raises when stale (is_current)."""
        if not self.is_current():
            raise RuntimeError("FlatParameters.zero_grad_: stale flat parameters: the module's "
                               "parameters are no longer views of these buffers (moved with "
                               ".to()/.cuda()/.half(), or a copy of the module); call "
                               "flatten_parameters(module) again")
        for g in self.groups:
            g.grad.zero_()

    def __repr__(self):
        parts = [f"{len(g.params)} tensors, {g.data.numel()} x {g.data.dtype} on {g.data.device}"
                 for g in self.groups]
        return f"FlatParameters({'; '.join(parts)})"


def flatten_parameters(module):
    """Moves every trainable parameter of `module` (and its gradient) into one contiguous
    buffer per (device, dtype), in place, each parameter becoming a view (frozen ones,
    requires_grad False, are left as they are). Returns a FlatParameters,
    also kept as module.flat_parameters. Flattening twice is a no-op; flattening a module
    whose FlatParameters is stale (see FlatParameters.is_current: moved with .to() or
    .cuda(), copied, unpickled, or its parameters replaced) replaces it."""
    existing = getattr(module, "flat_parameters", None)
    if isinstance(existing, FlatParameters):
        if existing.is_current() and _all_in(existing, module):
            return existing
        stale = {id(g) for g in existing.groups}
    else:
        stale = set()
    held = {}  # id(FlatGroup) -> ids of its parameters still views of it: another module's
    by_kind = {}
    for name, p in module.named_parameters():
        if not p.requires_grad:  # frozen: no gradient to hold, nothing for an optimizer to step
            continue
        if not is_dense(p):
            raise ValueError(f"flatten_parameters: parameter {name!r} is not dense "
                             f"(shape {tuple(p.shape)}, stride {p.stride()}); make it contiguous first")
        other = getattr(p, "_fastgan_flat", None)
        if other is not None and id(other) not in stale and id(other) not in held:
            held[id(other)] = {id(q) for q in other.current_params()}
        if other is not None and id(p) in held.get(id(other), ()):
            raise ValueError(f"flatten_parameters: parameter {name!r} already belongs to another "
                             "flattened module")
        by_kind.setdefault((p.device, p.dtype), []).append(p)
    groups = []
    with torch.no_grad():
        for (device, dtype), params in by_kind.items():
            step = max(1, ALIGN_BYTES // torch.empty((), dtype=dtype).element_size())
            offsets, total = [], 0
            for p in params:
                offsets.append(total)
                total += -(-p.numel() // step) * step
            data = torch.zeros(total, dtype=dtype, device=device)
            grad = torch.zeros(total, dtype=dtype, device=device)
            group = FlatGroup(params, offsets, data, grad)
            for p, view, gview in zip(params, group.views(data), group.views(grad)):
                view.copy_(p)
                if p.grad is not None:
                    gview.copy_(p.grad)
                p.data = view
                p.grad = gview
                p._fastgan_flat = group
            groups.append(group)
    flat = FlatParameters(groups)
    module.flat_parameters = flat
    return flat


def _all_in(flat, module):
    """True when every parameter of `flat` is still one of `module`'s (load_state_dict(...,
    assign=True) and to_empty() put new Parameter objects in their places)."""
    own = {id(p) for p in module.parameters()}
    return all(id(p) in own for g in flat.groups for p in g.params)
