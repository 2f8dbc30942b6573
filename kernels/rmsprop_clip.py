"""Fused RMSprop + WGAN clip over a list of parameters: one launch per dtype.

The element math is csrc/rmsprop_math.h's: torch.optim.RMSprop's sequence with the
fmas torch's kernels make, written explicitly (tl.fma), in the order of torch's kernels on
the device the kernel runs on (CUDA_ORDER: on a GPU, CUDA's addcmul and addcdiv,
fma(s, b * c, a) and fma(s, b / c, a); under the interpreter the CPU's, as the C++ kernels,
fma(s * b, c, a) and a + (s * b) / c); IEEE square root and division
(sqrt_rn, div_rn: Triton's plain sqrt and / are approximate on NVIDIA GPUs).
Lists, in metadata order: params, grads, square_avgs, then momentum_bufs when
MOMENTUM, then grad_avgs when CENTERED. Loss scaling: UNSCALE divides the gradient by
*scale_ptr and stores the quotient (the step reads the stored value); SKIP masks every
load and store off when *found_inf_ptr != 0 (no branch on the host).
"""

import torch
import triton
import triton.language as tl

from ._launch import device_constant
from ._multi_tensor import TL_DTYPES, address, metadata, opmath, tensor_of_block
from ._math import div_ieee as _div, sqrt_ieee as _sqrt
from .clip_weights import bound, clip_value

BLOCK = 2048  # 4-5 lists in flight: keeps registers under control at 4 warps

@triton.jit
def rmsprop_clip_kernel(meta_ptr, lr_ptr, hyper_ptr, c_ptr, scale_ptr, found_inf_ptr, n_tensors,
                        N_LISTS: tl.constexpr, CENTERED: tl.constexpr, MOMENTUM: tl.constexpr,
                        MAXIMIZE: tl.constexpr, WEIGHT_DECAY: tl.constexpr, CLIP: tl.constexpr,
                        UNSCALE: tl.constexpr, SKIP: tl.constexpr, CUDA_ORDER: tl.constexpr,
                        DTYPE: tl.constexpr, COMPUTE: tl.constexpr, BLOCK: tl.constexpr):
    t, offs, mask = tensor_of_block(meta_ptr, n_tensors, N_LISTS, BLOCK)
    if SKIP:  # an overflow in the scaled gradients: this step writes nothing
        # (compared as a block: the interpreter cannot & a scalar flag into the mask)
        mask = mask & (tl.zeros([BLOCK], dtype=tl.float32) + tl.load(found_inf_ptr) == 0.0)
    p_ptr = address(meta_ptr, n_tensors, t, 0, DTYPE) + offs
    g_ptr = address(meta_ptr, n_tensors, t, 1, DTYPE) + offs
    v_ptr = address(meta_ptr, n_tensors, t, 2, DTYPE) + offs
    # hyper: [alpha, 1 - alpha, eps, weight_decay, momentum], rounded to COMPUTE on the host
    alpha = tl.load(hyper_ptr)
    one_minus_alpha = tl.load(hyper_ptr + 1)
    eps = tl.load(hyper_ptr + 2)
    lr = tl.load(lr_ptr).to(COMPUTE)

    p = tl.load(p_ptr, mask=mask).to(COMPUTE)
    g = tl.load(g_ptr, mask=mask).to(COMPUTE)
    if UNSCALE:
        g = _div(g, tl.load(scale_ptr).to(COMPUTE), COMPUTE).to(DTYPE)
        tl.store(g_ptr, g, mask=mask)
        g = g.to(COMPUTE)
    v = tl.load(v_ptr, mask=mask).to(COMPUTE)
    if MAXIMIZE:
        g = -g
    if WEIGHT_DECAY:
        g = tl.fma(p, tl.load(hyper_ptr + 3), g)
    if CUDA_ORDER:
        v = tl.fma(one_minus_alpha, g * g, v * alpha)
    else:
        v = tl.fma(one_minus_alpha * g, g, v * alpha)
    tl.store(v_ptr, v.to(DTYPE), mask=mask)
    if CENTERED:
        ga_ptr = address(meta_ptr, n_tensors, t, 3 + MOMENTUM, DTYPE) + offs
        ga = tl.load(ga_ptr, mask=mask).to(COMPUTE)
        # torch's lerp_(g, 1 - alpha), with its other formula for a weight >= 0.5 (csrc/rmsprop_math.h)
        ga = tl.where(one_minus_alpha < 0.5, tl.fma(one_minus_alpha, g - ga, ga),
                      tl.fma(one_minus_alpha - 1.0, g - ga, g))
        tl.store(ga_ptr, ga.to(DTYPE), mask=mask)
        if CUDA_ORDER:
            avg = _sqrt(v - ga * ga, COMPUTE) + eps
        else:
            avg = _sqrt(tl.fma(-ga, ga, v), COMPUTE) + eps
    else:
        avg = _sqrt(v, COMPUTE) + eps
    if MOMENTUM:
        b_ptr = address(meta_ptr, n_tensors, t, 3, DTYPE) + offs
        b = tl.load(b_ptr, mask=mask).to(COMPUTE)
        b = b * tl.load(hyper_ptr + 4) + _div(g, avg, COMPUTE)
        tl.store(b_ptr, b.to(DTYPE), mask=mask)
        p = tl.fma(b, -lr, p)
    elif CUDA_ORDER:
        p = tl.fma(-lr, _div(g, avg, COMPUTE), p)
    else:
        p = p + _div(-lr * g, avg, COMPUTE)
    p = p.to(DTYPE)
    if CLIP:  # the clip of clip_weights_, on the stored value
        p = clip_value(p.to(COMPUTE), tl.load(c_ptr).to(COMPUTE)).to(DTYPE)
    tl.store(p_ptr, p, mask=mask)


@device_constant
def _hyper(alpha, eps, weight_decay, momentum, dtype, device):
    """[alpha, 1 - alpha, eps, weight_decay, momentum] in opmath on the device (cached)."""
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    return torch.tensor([alpha, 1.0 - alpha, eps, weight_decay, momentum], dtype=compute).to(device)


def rmsprop_clip_(params, grads, square_avgs, momentum_bufs, grad_avgs, lr, alpha, eps,
                  weight_decay, momentum, centered, maximize, clip, grad_scale=None, found_inf=None):
    """One RMSprop + clip step; lists as in fastgan.ops.rmsprop_clip_, all dense and
    identically strided (the caller checks), lr (and grad_scale, found_inf when given) a
    1-element float32 device tensor."""
    groups = {}
    for i, p in enumerate(params):
        if p.numel():
            groups.setdefault(p.dtype, []).append(i)
    use_momentum = momentum != 0.0
    for dtype, idx in groups.items():
        lists = [[params[i] for i in idx], [grads[i] for i in idx], [square_avgs[i] for i in idx]]
        if use_momentum:
            lists.append([momentum_bufs[i] for i in idx])
        if centered:
            lists.append([grad_avgs[i] for i in idx])
        meta, n_blocks = metadata(lists, BLOCK)
        device = params[idx[0]].device
        c_t = bound(clip if clip >= 0 else 0.0, dtype, device)
        rmsprop_clip_kernel[(n_blocks,)](
            meta, lr, _hyper(alpha, eps, weight_decay, momentum, dtype, device), c_t,
            lr if grad_scale is None else grad_scale, lr if found_inf is None else found_inf,
            len(idx), N_LISTS=len(lists), CENTERED=centered, MOMENTUM=use_momentum,
            MAXIMIZE=maximize, WEIGHT_DECAY=weight_decay != 0.0, CLIP=clip >= 0,
            UNSCALE=grad_scale is not None, SKIP=found_inf is not None,
            CUDA_ORDER=device.type == "cuda", DTYPE=TL_DTYPES[dtype],
            COMPUTE=opmath(dtype), BLOCK=BLOCK,
            enable_fp_fusion=False)  # only the fmas written (tl.fma), as the C++ build
