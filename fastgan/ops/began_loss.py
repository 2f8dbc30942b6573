"""fastgan.ops.began_loss: BEGAN's losses, k_t update and convergence measure, fused.

BEGAN (Berthelot et al. 2017, "BEGAN: Boundary Equilibrium Generative Adversarial
Networks", sec. 3.3-3.4): the discriminator is an autoencoder, L(v) = mean |v - D(v)|,

    L_D = L(x) - k_t * L(G(z))          L_G = L(G(z))
    k_{t+1} = clamp(k_t + lambda_k * (gamma * L(x) - L(G(z))), 0, 1)
    M_global = L(x) + |gamma * L(x) - L(G(z))|

with gamma = 0.5 and lambda_k = 0.001 (the paper's). Both reconstruction errors come from
one fused reduction per pair and the four results from one finalize step, all on the
device: k_t and k_{t+1} are device tensors, nothing is read back, so a BEGAN step can be
captured in a CUDA graph. The backward is one fused pass per pair. The reference is the
formulas in plain PyTorch (sums in float32, float64 for float64 inputs).
"""
import functools

import torch

from fastgan import _backend, _ext, kernels
from fastgan.kernels._launch import on_tensors_device
from fastgan._autograd import Function
from fastgan.kernels._layout import copy_like, is_dense, same_walk
from fastgan.ops import _checks, _vmap
from fastgan.ops.penalty import compute_dtype

OP = _backend.Op("began_loss", auto={"cuda": ("cuda", "triton"), "cpu": ("cpp",)})
GAMMA = 0.5       # diversity ratio (Berthelot et al. 2017, sec. 3.3)
LAMBDA_K = 0.001  # proportional gain for k (sec. 3.4)


def began_loss_reference(real, real_recon, fake, fake_recon, k, gamma=GAMMA, lambda_k=LAMBDA_K):
    """(d_loss, g_loss, k_next, convergence) in plain PyTorch."""
    t = compute_dtype(real.dtype)
    l_real = (real.to(t) - real_recon.to(t)).abs().mean()
    l_fake = (fake.to(t) - fake_recon.to(t)).abs().mean()
    kt = k.detach().to(t).reshape(())
    d_loss = l_real - kt * l_fake
    with torch.no_grad():
        balance = gamma * l_real - l_fake
        k_next = (kt + lambda_k * balance).clamp(0, 1)
        convergence = l_real + balance.abs()
    return d_loss, l_fake, k_next, convergence


def _fake_forward(real, real_recon, fake, fake_recon, k, gamma, lambda_k):
    t = compute_dtype(real.dtype)
    return tuple(real.new_empty((), dtype=t) for _ in range(6))


def _fake_backward(real, real_recon, fake, fake_recon, k, d_dloss, d_gloss):
    return (torch.empty_like(real), torch.empty_like(real_recon), torch.empty_like(fake),
            torch.empty_like(fake_recon))


if _ext.has_op("began_loss"):
    torch.library.register_fake("fastgan::began_loss")(_fake_forward)
    torch.library.register_fake("fastgan::began_loss_backward")(_fake_backward)

if kernels.error() is None:
    @torch.library.custom_op("fastgan::began_loss_triton", mutates_args=())
    @on_tensors_device
    def _forward_triton(real: torch.Tensor, real_recon: torch.Tensor, fake: torch.Tensor,
                        fake_recon: torch.Tensor, k: torch.Tensor, gamma: float,
                        lambda_k: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                  torch.Tensor, torch.Tensor, torch.Tensor]:
        return kernels.began_loss.began_loss(real, real_recon, fake, fake_recon, k, gamma, lambda_k)

    @torch.library.custom_op("fastgan::began_loss_backward_triton", mutates_args=())
    @on_tensors_device
    def _backward_triton(real: torch.Tensor, real_recon: torch.Tensor, fake: torch.Tensor,
                         fake_recon: torch.Tensor, k: torch.Tensor, d_dloss: torch.Tensor,
                         d_gloss: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                         torch.Tensor]:
        return kernels.began_loss.began_loss_backward(real, real_recon, fake, fake_recon, k,
                                                      d_dloss, d_gloss)

    _forward_triton.register_fake(_fake_forward)
    _backward_triton.register_fake(_fake_backward)


def _ops(backend):
    ns = torch.ops.fastgan
    if backend == "triton":
        return ns.began_loss_triton, ns.began_loss_backward_triton
    return ns.began_loss, ns.began_loss_backward


# Batching rules: each vmapped slice has its own means (and k_t), which folding the slices
# into one tensor would mix: the ops run once per slice (exact; one launch each).
_vmap.register(("began_loss", "began_loss_backward"),
               (_forward_triton, _backward_triton) if kernels.error() is None else None,
               (_vmap.loop,) * 2)


class _BEGANLoss(Function):
    # forward without ctx, setup_context apart: the form torch.func transforms (grad, vjp) take;
    # vmap runs forward and backward under vmap, through the ops' batching rules
    generate_vmap_rule = True

    @staticmethod
    def forward(real, real_recon, fake, fake_recon, k, gamma, lambda_k, backend):
        d_loss, g_loss, k_next, convergence, _, _ = _ops(backend)[0](
            real, real_recon, fake, fake_recon, k, gamma, lambda_k)
        return d_loss, g_loss, k_next, convergence

    @staticmethod
    def setup_context(ctx, inputs, outputs):
        real, real_recon, fake, fake_recon, k, _, _, backend = inputs
        ctx.save_for_backward(real, real_recon, fake, fake_recon, k)
        ctx.backend = backend
        ctx.mark_non_differentiable(outputs[2], outputs[3])

    @staticmethod
    def backward(ctx, d_dloss, d_gloss, _k, _m):
        real, real_recon, fake, fake_recon, k = ctx.saved_tensors
        t = compute_dtype(real.dtype)
        d_dloss = torch.zeros((), dtype=t, device=real.device) if d_dloss is None else d_dloss.to(t)
        d_gloss = torch.zeros((), dtype=t, device=real.device) if d_gloss is None else d_gloss.to(t)
        d_dloss, d_gloss = d_dloss.reshape(()), d_gloss.reshape(())
        if torch.is_grad_enabled():  # create_graph=True: the gradients' own graph is wanted
            return (*_differentiable_backward(real, real_recon, fake, fake_recon, k, d_dloss, d_gloss),
                    None, None, None, None)
        grads = _ops(ctx.backend)[1](real, real_recon, fake, fake_recon, k, d_dloss, d_gloss)
        return (*grads, None, None, None, None)


def _differentiable_backward(real, real_recon, fake, fake_recon, k, d_dloss, d_gloss):
    """The backward in differentiable PyTorch ops, for a backward that builds a graph. The
    gradients are linear in the incoming d_dloss and d_gloss, and sign(.) / N in the inputs,
    whose derivative is zero: a second derivative is nonzero only through the incoming
    gradients (the fused backward, an op, would make it silently zero there)."""
    t = compute_dtype(real.dtype)
    kt = k.detach().to(t).reshape(())
    s_real = torch.sign(real.detach().to(t) - real_recon.detach().to(t)) / real.numel()
    s_fake = torch.sign(fake.detach().to(t) - fake_recon.detach().to(t)) / fake.numel()
    g_real, g_fake = s_real * d_dloss, s_fake * (d_gloss - kt * d_dloss)
    return (g_real.to(real.dtype), (-g_real).to(real_recon.dtype), g_fake.to(fake.dtype),
            (-g_fake).to(fake_recon.dtype))


def _check(real, real_recon, fake, fake_recon, k, gamma, lambda_k):
    op = "began_loss"
    tensors = {"real": real, "real_recon": real_recon, "fake": fake, "fake_recon": fake_recon}
    for name, v in tensors.items():
        if not isinstance(v, torch.Tensor) or v.dtype not in _checks.FINITE_MAX:
            raise TypeError(f"{op}: {name} must be a float32/float16/bfloat16/float64 tensor")
        if v.numel() == 0:
            raise ValueError(f"{op}: {name} is empty")
        if v.device != real.device:
            raise ValueError(f"{op}: {name} is on {v.device}; real is on {real.device}")
    for a, b in (("real", "real_recon"), ("fake", "fake_recon")):
        if tensors[a].shape != tensors[b].shape:
            raise ValueError(f"{op}: {b} has shape {tuple(tensors[b].shape)} but {a} has "
                             f"{tuple(tensors[a].shape)}")
    if not (isinstance(k, torch.Tensor) and k.numel() == 1 and k.is_floating_point()
            and k.device == real.device):
        raise TypeError(f"{op}: k must be a 1-element floating tensor on {real.device} (k_t lives "
                        "on the device: no host synchronization)")
    gamma = _checks.nonnegative(op, "gamma", gamma)
    if gamma > 1:
        raise ValueError(f"{op}: gamma must be in [0, 1], got {gamma}")
    return gamma, _checks.nonnegative(op, "lambda_k", lambda_k)


def _walked_together(x, recon):
    """x dense and recon walked in x's memory order (the kernels walk both together)."""
    if not is_dense(x):
        x = x.contiguous()
    if not same_walk(recon, x):
        recon = copy_like(recon, x, dtype=recon.dtype)
    return x, recon


def began_loss(real, real_recon, fake, fake_recon, k, *, gamma=GAMMA, lambda_k=LAMBDA_K, backend=None):
    """(d_loss, g_loss, k_next, convergence), 0-dim tensors on the inputs' device.

    real_recon = D(real), fake_recon = D(fake) for BEGAN's autoencoder D; k: k_t, a
    1-element tensor on the device (start at 0). d_loss and g_loss are differentiable
    (L_D = L(x) - k_t L(G(z)), L_G = L(G(z))); k_next and convergence are not. Detach fake
    for the discriminator's step, as usual. Inputs of different floating dtypes (under
    autocast: bfloat16 reconstructions of float32 images) are computed in the widest of them.
    """
    gamma, lambda_k = _check(real, real_recon, fake, fake_recon, k, gamma, lambda_k)
    dtype = functools.reduce(torch.promote_types, (t.dtype for t in (real, real_recon, fake, fake_recon)))
    real, real_recon, fake, fake_recon = (t.to(dtype) for t in (real, real_recon, fake, fake_recon))
    chosen = OP.resolve(real.device, backend)
    if chosen == "reference":
        return began_loss_reference(real, real_recon, fake, fake_recon, k, gamma, lambda_k)
    real, real_recon = _walked_together(real, real_recon)
    fake, fake_recon = _walked_together(fake, fake_recon)
    return _BEGANLoss.apply(real, real_recon, fake, fake_recon, k, gamma, lambda_k, chosen)
