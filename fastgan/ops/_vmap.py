"""Batching rules: how torch.func.vmap runs fastgan's custom ops.

torch.func.vmap runs an autograd Function with generate_vmap_rule = True by running its
forward and backward under vmap, so every op those call needs a batching rule; without one
PyTorch falls back to calling the op once per vmapped slice, with a performance warning.
The rules are registered with torch.library.register_vmap, which takes both the ops whose
schema is defined in C++ (csrc/ops.cpp: it registers a Python kernel for the fastgan
namespace's FuncTorchBatched key) and the Triton torch.library.custom_ops.

A rule receives the physical tensors (the vmapped dim where in_dims says, None for an
unbatched argument) and returns the physical result with its out_dims. Elementwise ops fold
the vmapped dim into the batch dim (dim 0) when every per-channel vector is unbatched, else
into the channel dim (dim 1), repeating unbatched vectors: one launch either way, the bits of
a loop over the slices. Batch statistics fold into the channel dim too (each slice its own
statistics), their sums taken in the kernels' order for the folded shape: a few ulps from a
loop's. Ops that reduce a slice to scalars (the penalty, BEGAN's losses) run once per slice:
exact, but one launch each.
"""
import torch

from fastgan.kernels._layout import copy_like, is_dense, same_walk


def dense(t):
    return t if is_dense(t) else t.contiguous()


def first(t, bdim, size):
    """t with its vmapped dim first; an unbatched t expanded to `size` slices (no copy)."""
    if bdim is None:
        return t.unsqueeze(0).expand(size, *t.shape)
    return t.movedim(bdim, 0)


def fold_batch(t):
    """(V, N, ...) -> (V * N, ...), dense."""
    return dense(t.reshape((t.shape[0] * t.shape[1],) + t.shape[2:]))


def fold_channels(t):
    """(V, N, C, ...) -> (N, V * C, ...), dense: channel v * C + c is slice v's channel c,
    so per-channel work (a bias, batch statistics) stays per slice."""
    v, n, c = t.shape[:3]
    return dense(t.movedim(0, 1).reshape((n, v * c) + t.shape[3:]))


def unfold_channels(t, size):
    """The inverse of fold_channels: (N, V * C, ...) -> (V, N, C, ...)."""
    n, vc = t.shape[:2]
    return t.reshape((n, size, vc // size) + t.shape[2:]).movedim(1, 0)


def flat_channels(t, bdim, size):
    """A (C,) vector, batched or not, as the contiguous (V * C,) vector of fold_channels."""
    return None if t is None else first(t, bdim, size).reshape(-1).contiguous()


def like(t, ref):
    """t (ref's shape) in ref's dtype, walked with ref in memory order (the kernels walk
    such pairs together): copied into ref's strides if not."""
    if t.dtype == ref.dtype and same_walk(t, ref):
        return t
    return copy_like(t, ref)


def loop(op):
    """The rule that runs op once per vmapped slice and stacks the results (dim 0): for
    ops that reduce a slice to scalars, where folding the slices would mix them."""
    def rule(info, in_dims, *args):
        outs = []
        for i in range(info.batch_size):
            outs.append(op(*(a if d is None else a.select(d, i) for a, d in zip(args, in_dims))))
        if isinstance(outs[0], torch.Tensor):
            return torch.stack(outs), 0
        stacked = tuple(torch.stack(o) for o in zip(*outs))
        return stacked, (0,) * len(stacked)
    return rule


def register(ext_names, triton_ops, rules):
    """Registers rules[i](op) as the batching rule of the i-th op of each backend: the C++
    op fastgan::ext_names[i] when the loaded extension has it, and the Triton custom op
    triton_ops[i] (triton_ops is None when Triton did not load)."""
    from fastgan import _ext
    for name, make in zip(ext_names, rules):
        if _ext.has_op(name):
            torch.library.register_vmap(f"fastgan::{name}", make(getattr(torch.ops.fastgan, name).default))
    for op, make in zip(triton_ops or (), rules):
        torch.library.register_vmap(op, make(op))
