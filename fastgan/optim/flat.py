"""flatten_parameters: a module's parameters (and gradients) in one buffer per dtype.

After flattening, every parameter is a view into one contiguous buffer per
(device, dtype), and so is its gradient; fused optimizers and the weight clip then
run one kernel over the buffer, whatever the number of tensors, and the buffers'
addresses never change (CUDA graphs replay on fixed addresses). The module is
otherwise untouched: same Parameter objects, same state_dict keys, shapes and
values, and load_state_dict copies into the buffer.

Call it after the module has its final device, dtype and memory format: .to() or
.cuda() afterwards replaces the parameters' storage and undoes the flattening.
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


class FlatGroup:
    """The parameters of one (device, dtype): `params`, their element `offsets` into
    `data` (the parameter buffer) and `grad` (the gradient buffer)."""

    def __init__(self, params, offsets, data, grad):
        self.params, self.offsets, self.data, self.grad = params, offsets, data, grad

    def views(self, buffer):
        """Views of `buffer` (shaped like `data`) laid out as the parameters are."""
        return [buffer.as_strided(p.shape, p.stride(), o) for p, o in zip(self.params, self.offsets)]

    def grads_are_views(self):
        """True while every parameter's .grad is still its view of `grad`."""
        base, size = self.grad.data_ptr(), self.grad.element_size()
        return all(p.grad is not None and p.grad.data_ptr() == base + o * size
                   and p.grad.stride() == p.stride() for p, o in zip(self.params, self.offsets))


class FlatParameters:
    """What flatten_parameters did: one FlatGroup per (device, dtype)."""

    def __init__(self, groups):
        self.groups = groups

    def zero_grad_(self):
        """Zeroes every gradient buffer (one kernel each)."""
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
    also kept as module.flat_parameters. Flattening twice is a no-op."""
    existing = getattr(module, "flat_parameters", None)
    if isinstance(existing, FlatParameters):
        return existing
    by_kind = {}
    for name, p in module.named_parameters():
        if not p.requires_grad:  # frozen: no gradient to hold, nothing for an optimizer to step
            continue
        if not is_dense(p):
            raise ValueError(f"flatten_parameters: parameter {name!r} is not dense "
                             f"(shape {tuple(p.shape)}, stride {p.stride()}); make it contiguous first")
        if getattr(p, "_fastgan_flat", None) is not None:
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
