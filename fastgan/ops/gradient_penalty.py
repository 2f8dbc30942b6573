"""fastgan.ops.gradient_penalty: WGAN-GP, DRAGAN and R1 in one call.

    mode       samples x                                          penalty
    "wgan-gp"  eps*real + (1-eps)*fake, eps ~ U[0,1) per sample    weight * mean (||grad||_2 - center)^2
               (Gulrajani et al. 2017, "Improved Training of Wasserstein GANs", Alg. 1; λ = 10)
    "dragan"   real + eps*(x_p - real), eps ~ U[0,1) per sample,  weight * mean (||grad||_2 - center)^2
               x_p = clamp(real + 0.5*std(real)*U[0,1), data_range) per element
               (Kodali et al. 2017, "On Convergence and Stability of GANs"; λ = 10; the
               points of the authors' code, github.com/kodalinaveen3/DRAGAN: a random
               interpolation, one alpha per sample, between x and X_p = x + 0.5*std(x)*U[0,1);
               the paper writes x + delta, delta ~ N(0, cI). The clamp of x_p is fastgan's
               own addition; the interpolation of two in-range points stays in range)
    "r1"       real                                               weight/2 * mean ||grad||_2^2
               (Mescheder et al. 2018, "Which Training Methods for GANs do actually
               Converge?", eq. 9; StyleGAN2's regularizer)

grad = d critic(x).sum() / dx, per sample over all of C*H*W. The sampling is
fastgan.ops.interpolate / perturb (random numbers on the device; dragan runs perturb, then
interpolate(x_p, real)), the penalty fastgan.ops.penalty_from_grad (fused, differentiable
twice), and the critic's own double backward is autograd's (convolutions on cuDNN;
fastgan's critic activations, fastgan.nn.BiasLeakyReLU, keep their second order fused).

Mixed precision: run it inside the caller's autocast region like the rest of the critic
loss; the norm accumulates in float32 whatever the critic computes in. With float16 and a
torch.amp.GradScaler, pass scaler=: the critic's output is scaled before the input
gradient is taken (so small fp16 gradients do not flush to zero) and the gradient is
unscaled on the device, before its norm, with the scaler's own scale tensor (no host
synchronization). A step whose gradient overflowed then yields a non-finite penalty, the
critic's parameter gradients are non-finite, and scaler.step() skips it and lowers the
scale, as it does for any overflowed step.
"""
import torch

from fastgan.ops.penalty import EPS, penalty_from_grad
from fastgan.ops.sampling import DRAGAN_SCALE, interpolate, perturb

MODES = ("wgan-gp", "dragan", "r1")
WEIGHT = 10.0  # λ of WGAN-GP (Gulrajani et al. 2017) and DRAGAN (Kodali et al. 2017); γ of R1
_CENTER = {"wgan-gp": 1.0, "dragan": 1.0, "r1": 0.0}


def _scale_of(scaler, device):
    """The scaler's scale as a device tensor (read on the device: no synchronization)."""
    if scaler is None:
        return None
    if not callable(getattr(scaler, "is_enabled", None)) or not hasattr(scaler, "_get_scale_async"):
        raise TypeError(f"gradient_penalty: scaler must be a torch.amp.GradScaler or None, got "
                        f"{type(scaler).__name__}")
    if not scaler.is_enabled():
        return None
    scale = scaler._get_scale_async()
    if scale is None:  # created lazily by the scaler's first scale() call
        scaler.scale(torch.zeros((), device=device))
        scale = scaler._get_scale_async()
    return scale


def _check_mode(mode, center):
    if mode not in MODES:
        raise ValueError(f"gradient_penalty: unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    if center is None:
        return _CENTER[mode]
    if mode == "r1" and center != 0:
        raise ValueError(f"gradient_penalty: mode 'r1' penalizes ||grad||^2 (center 0), got center={center}")
    return center


def penalty_points(real, fake=None, *, mode="wgan-gp", generator=None, data_range=(-1.0, 1.0),
                   perturb_scale=DRAGAN_SCALE, backend=None):
    """The samples the penalty is taken at (see gradient_penalty), as a new leaf that
    requires grad: interpolates of real and fake (wgan-gp), interpolates of real and the
    perturbed real (dragan) or the reals (r1).

    dragan: x_p = perturb(real) (clamped to data_range), then x = interpolate(x_p, real) =
    real + eps_b * (x_p - real), one eps_b ~ U[0, 1) per sample, as the authors' code does.
    Each op draws its own seed from `generator` on the device: perturb's first, then
    interpolate's (no host synchronization)."""
    _check_mode(mode, None)
    if not isinstance(real, torch.Tensor):
        raise TypeError(f"gradient_penalty: real must be a tensor, got {type(real).__name__}")
    try:
        x = _sample_points(real, fake, mode, generator, data_range, perturb_scale, backend)
    except (TypeError, ValueError) as exc:  # the sampling ops' messages, named as this call's
        msg = str(exc)
        raise type(exc)(msg if msg.startswith("gradient_penalty: ") else f"gradient_penalty: {msg}") from None
    return x.requires_grad_(True)


def _sample_points(real, fake, mode, generator, data_range, perturb_scale, backend):
    if mode == "wgan-gp":
        if fake is None:
            raise ValueError("gradient_penalty: mode 'wgan-gp' interpolates real and fake; pass fake")
        if isinstance(fake, torch.Tensor) and fake.dtype != real.dtype:
            if not fake.is_floating_point():
                raise TypeError(f"gradient_penalty: fake must be a floating-point tensor, got {fake.dtype}")
            fake = fake.detach().to(real.dtype)  # a generator's bf16/fp16 output under autocast
        x = interpolate(real, fake, generator=generator, backend=backend)
    elif fake is not None:
        raise ValueError(f"gradient_penalty: mode {mode!r} takes the penalty at (perturbed) real "
                         "samples only; fake must be None")
    elif mode == "dragan":
        # the authors' code: X_p = X + 0.5 * X.std() * U[0, 1) (clamped here: fastgan's own
        # addition), then X + alpha * (X_p - X) with one alpha ~ U[0, 1) per sample
        x_p = perturb(real, scale=perturb_scale, data_range=data_range, generator=generator,
                      backend=backend)
        x = interpolate(x_p, real, generator=generator, backend=backend)  # real + eps*(x_p - real)
    else:
        x = real.detach()  # a new leaf on real's storage: real itself is untouched
    return x


def penalty_at(x, scores, *, mode="wgan-gp", weight=WEIGHT, center=None, scaler=None, eps=EPS,
               backend=None):
    """The weighted penalty from the critic's `scores` at the points `x` (penalty_points'
    leaf): grad = d scores.sum() / dx, then the mode's penalty. `scores` may come from a
    forward over a larger batch that contains x (one critic pass over real, fake and x,
    split afterwards): the gradient still reaches x through the concatenation, exactly."""
    center = _check_mode(mode, center)
    if not isinstance(scores, torch.Tensor) or scores.dim() == 0 or scores.shape[0] != x.shape[0] \
            or scores.numel() != x.shape[0]:
        got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"gradient_penalty: critic must return one score per sample, shape "
                         f"({x.shape[0]},) or ({x.shape[0]}, 1); got {got}")
    scale = _scale_of(scaler, x.device)
    with torch.enable_grad():
        total = scores.float().sum()
        if scale is not None:
            # Each score's gradient is then scale / d, d the power of two >= the batch (>= 2):
            # about what the critic loss's own backward (a mean) sends it, and finite in
            # float16 (scale itself is not: 2^16, GradScaler's default, is float16's inf); a
            # power of two, so that unscaling is exact
            d = float(1 << (max(x.shape[0], 2) - 1).bit_length())
            total = total * (scale.reshape(()) / d)
        (grad,) = torch.autograd.grad(total, x, create_graph=True)
        if scale is not None:
            grad = grad * (d * scale.reshape(()).reciprocal())
        if mode == "r1":
            return penalty_from_grad(grad, weight=weight / 2, center=0.0, backend=backend)
        return penalty_from_grad(grad, weight=weight, center=center, eps=eps, backend=backend)


def gradient_penalty(critic, real, fake=None, *, mode="wgan-gp", weight=WEIGHT, center=None,
                     generator=None, scaler=None, data_range=(-1.0, 1.0),
                     perturb_scale=DRAGAN_SCALE, eps=EPS, backend=None):
    """The weighted gradient penalty of `critic`, ready to add to the critic loss.

    critic: a callable returning one score per sample (shape (B,) or (B, 1)); a module
        compiled with torch.compile(module) runs its eager module here (see below).
    real: the real batch; fake: the generated batch (mode "wgan-gp" only), detached: the
        penalty trains the critic, not the generator. Under autocast fake may be
        bf16/fp16; it is converted to real's dtype.
    mode: "wgan-gp", "dragan" or "r1" (see the module docstring).
    weight: λ (γ for R1, which uses weight / 2). center: the target norm; None takes
        the mode's (1, 1, 0). generator: a torch.Generator for the sampling.
    scaler: a torch.amp.GradScaler when training in float16 with loss scaling.
    data_range: DRAGAN's clamp of the perturbed samples x_p before the interpolation
        (None: none).

    The same in two parts, for a critic evaluated once over real, fake and the penalty's
    points: x = penalty_points(real, fake, ...), then penalty_at(x, scores_at_x, ...).

    Inside torch.compile the penalty runs eagerly, critic included: AOTAutograd cannot
    differentiate a compiled graph twice (traced, the penalty failed inside PyTorch with "a
    leaf Variable that requires grad is being used in an in-place operation"). Dynamo breaks
    the caller's graph at this call and compiles the rest of the step; fullgraph=True
    refuses it. The two-part form needs the critic's forward at x run outside torch.compile
    for the same reason.
    """
    if torch.compiler.is_compiling():
        return torch.compiler.disable(_gradient_penalty, recursive=True)(
            critic, real, fake, mode=mode, weight=weight, center=center, generator=generator,
            scaler=scaler, data_range=data_range, perturb_scale=perturb_scale, eps=eps, backend=backend)
    return _gradient_penalty(critic, real, fake, mode=mode, weight=weight, center=center,
                             generator=generator, scaler=scaler, data_range=data_range,
                             perturb_scale=perturb_scale, eps=eps, backend=backend)


def _gradient_penalty(critic, real, fake, *, mode, weight, center, generator, scaler, data_range,
                      perturb_scale, eps, backend):
    center = _check_mode(mode, center)
    # a torch.compile'd critic module: its eager module (the same parameters), since
    # AOTAutograd cannot differentiate the compiled graph twice
    if type(critic).__name__ == "OptimizedModule" and isinstance(getattr(critic, "_orig_mod", None),
                                                                torch.nn.Module):
        critic = critic._orig_mod
    x = penalty_points(real, fake, mode=mode, generator=generator, data_range=data_range,
                       perturb_scale=perturb_scale, backend=backend)
    with torch.enable_grad():
        out = critic(x)
    return penalty_at(x, out, mode=mode, weight=weight, center=center, scaler=scaler, eps=eps,
                      backend=backend)
