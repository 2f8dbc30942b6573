"""The Inception Score (Salimans et al. 2016, arXiv:1606.03498, sec. 4):

    IS = exp(E_x KL(p(y | x) || p(y))),

computed, as in the paper's code, on `splits` equal parts of the samples (10 by default),
reporting the mean and standard deviation over the parts. p(y | x) is the softmax of the
Inception network's 1008 logits without the final layer's bias
(fastgan.metrics.inception.FIDInceptionV3 returns them so); p(y) is their mean over the part.
In float64, with log-probabilities from log_softmax (no log of a rounded-to-zero probability).
"""
import torch

__all__ = ["inception_score"]


def inception_score(logits, splits=10):
    """{"is": mean over splits, "is_std": standard deviation over splits} of logits [N, C]
    (N >= splits; the last N mod splits samples are dropped, as the reference code does)."""
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or not logits.is_floating_point():
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a floating-point tensor [N, classes], got {got}")
    if isinstance(splits, bool) or not isinstance(splits, int) or splits < 1:
        raise ValueError(f"splits must be a positive integer, got {splits!r}")
    n = logits.shape[0]
    if n < splits:
        raise ValueError(f"inception_score: {n} samples cannot be cut into {splits} splits")
    if not torch.isfinite(logits).all():
        raise ValueError("logits hold non-finite values (NaN or inf)")
    per = n // splits
    logp = torch.log_softmax(logits[: per * splits].double(), dim=1).view(splits, per, -1)
    log_marginal = torch.logsumexp(logp, dim=1, keepdim=True) - torch.log(
        torch.tensor(float(per), dtype=torch.float64, device=logp.device))
    kl = (logp.exp() * (logp - log_marginal)).sum(2).mean(1)       # [splits]
    scores = kl.exp()
    std = scores.std(unbiased=False).item() if splits > 1 else 0.0
    return {"is": scores.mean().item(), "is_std": std}
