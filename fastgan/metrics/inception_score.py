"""The Inception Score (Salimans et al. 2016, arXiv:1606.03498, sec. 4):

    IS = exp(E_x KL(p(y | x) || p(y))),

computed, as in the paper's code (and torch-fidelity's), on `splits` parts of the samples
(10 by default), part i being samples i * N // splits to (i + 1) * N // splits - 1 (all N
used; the parts differ in size by at most one when splits does not divide N), reporting the
mean and the standard deviation (ddof 0, np.std) over the parts. torch-fidelity shuffles
the samples (a fixed seed) before splitting; fastgan's generated samples come in the order
of independent z, so it does not. p(y | x) is the softmax of the Inception network's 1008
logits without the final layer's bias (fastgan.metrics.inception.FIDInceptionV3 returns them
so); p(y) is their mean over the part. In float64, with log-probabilities from log_softmax
(no log of a rounded-to-zero probability).
"""
import math

import torch

__all__ = ["inception_score"]


def inception_score(logits, splits=10):
    """{"is": mean over splits, "is_std": standard deviation over splits} of logits [N, C]
    (a tensor or NumPy array; N >= splits; every sample is used, part i being rows
    i * N // splits to (i + 1) * N // splits, as in the reference code)."""
    from fastgan.metrics.fid import _integer, _numpy_as_tensor
    logits = _numpy_as_tensor(logits)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        got = f"shape {tuple(logits.shape)}" if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a floating-point tensor [N, classes], got {got}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be floating point, got {logits.dtype}")
    splits = _integer("splits", splits)
    n = logits.shape[0]
    if n < splits:
        raise ValueError(f"inception_score: {n} samples cannot be cut into {splits} splits")
    if not torch.isfinite(logits).all():
        raise ValueError("logits hold non-finite values (NaN or inf)")
    logp = torch.log_softmax(logits.double(), dim=1)
    scores = []
    for i in range(splits):
        part = logp[i * n // splits:(i + 1) * n // splits]                 # >= 1 row: n >= splits
        log_marginal = torch.logsumexp(part, dim=0) - math.log(part.shape[0])
        kl = (part.exp() * (part - log_marginal)).sum(1).mean()
        scores.append(kl.exp())
    scores = torch.stack(scores)
    return {"is": scores.mean().item(), "is_std": scores.std(correction=0).item()}
