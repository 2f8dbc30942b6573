"""The Fréchet distance between two sets of features (FID when they are Inception's).

Heusel et al. 2017 (arXiv:1706.08500, eq. 6): with each set modelled as a Gaussian (mean mu,
covariance sigma),

    d^2 = |mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2)).

The trace of the matrix square root is where implementations differ. pytorch-fid and
torch-fidelity call `scipy.linalg.sqrtm` on the (non-symmetric) product on the CPU, which
takes seconds at 2048 x 2048 and can return a complex or inaccurate root when the
covariances are singular (fewer samples than dimensions). fastgan uses that sigma1 sigma2 is
similar to the symmetric positive semi-definite A sigma2 A with A = sigma1^(1/2):

    tr((sigma1 sigma2)^(1/2)) = sum_i sqrt(lambda_i(A sigma2 A)),

two symmetric eigendecompositions (`torch.linalg.eigh`) in float64, on whatever device the
features are (the GPU's cuSOLVER when they are on one). The exact eigenvalues are >= 0, and
with fewer samples than dimensions (N < D) D - N + 1 of them are exactly 0; eigh returns
those as rounding noise of either sign, ~eps |sigma|, whose square roots (~1e-8 |sigma|^(1/2)
each, summed over hundreds of null directions) would bias the trace. So eigenvalues at or
below max|lambda| * D * eps (numpy.linalg.matrix_rank's tolerance) are taken as 0, and the
result is exact to rounding on singular covariances. `method="scipy"` computes the same
quantity the way pytorch-fid does (`scipy.linalg.sqrtm` of the product, with its small
diagonal offset when the product is singular), as a reference for tests.

Statistics are accumulated in float64 (features are float32): a 50,000-sample covariance
summed in float32 loses digits FID needs.
"""
import math
import numbers

import torch

__all__ = ["feature_stats", "fid_from_stats", "fid_from_features", "trace_sqrt_product"]


def _numpy_as_tensor(x):
    """x, a NumPy array taken as a tensor (NumPy itself not imported to tell)."""
    if type(x).__module__ == "numpy" and type(x).__name__ == "ndarray":
        return torch.from_numpy(x)
    return x


def _check_features(x, what):
    """x as a tensor (a NumPy array is taken as one, as fid_from_stats takes its statistics),
    checked: 2-D, floating, finite, at least 2 samples."""
    x = _numpy_as_tensor(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor or NumPy array [N, D], got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{what} must be a 2-D tensor [N, D] of features, got shape {tuple(x.shape)}")
    if x.shape[0] < 2:
        raise ValueError(f"{what} needs at least 2 samples for a covariance, got {x.shape[0]}")
    if x.shape[1] < 1:
        raise ValueError(f"{what} has no feature dimensions: shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{what} must be floating point, got {x.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{what} holds non-finite values (NaN or inf)")
    return x


def _integer(name, v, minimum=1):
    """v as a Python int (NumPy integers included, bools not), >= minimum (None: any);
    else ValueError naming it."""
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or (minimum is not None and v < minimum):
        what = ("an integer" if minimum is None else "a positive integer" if minimum == 1
                else f"an integer >= {minimum}")
        raise ValueError(f"{name} must be {what}, got {v!r}")
    return int(v)


def feature_stats(features):
    """(mean [D], covariance [D, D]) of features [N, D], in float64 on their device; the
    covariance is the unbiased one (N - 1), as numpy.cov and the standard FID code use."""
    x = _check_features(features, "features").double()
    mu = x.mean(0)
    xc = x - mu
    sigma = xc.T @ xc / (x.shape[0] - 1)
    return mu, sigma


def _nonnegative(vals):
    """Eigenvalues of a symmetric PSD matrix as computed, with those indistinguishable from 0
    (<= max |lambda| * D * eps, rounding noise of either sign) set to 0."""
    if vals.numel() == 0:
        return vals
    tol = vals.abs().max() * vals.shape[-1] * torch.finfo(vals.dtype).eps
    return torch.where(vals > tol, vals, torch.zeros_like(vals))


def _sym_sqrt(m):
    vals, vecs = torch.linalg.eigh(m)
    return (vecs * _nonnegative(vals).sqrt()) @ vecs.T


def trace_sqrt_product(sigma1, sigma2, method="eigh"):
    """tr((sigma1 sigma2)^(1/2)) for symmetric PSD sigma1, sigma2 (float64 result).
    method: "eigh" (default; any device) or "scipy" (pytorch-fid's sqrtm; CPU, slow)."""
    if method == "eigh":
        s1 = sigma1.double()
        s2 = sigma2.to(device=s1.device, dtype=torch.float64)
        a = _sym_sqrt((s1 + s1.T) / 2)
        m = a @ s2 @ a
        vals = torch.linalg.eigvalsh((m + m.T) / 2)
        return _nonnegative(vals).sqrt().sum()
    if method == "scipy":
        import numpy as np
        from scipy import linalg
        s1 = sigma1.detach().double().cpu().numpy()
        s2 = sigma2.detach().double().cpu().numpy()
        root = linalg.sqrtm(s1 @ s2)
        if not np.isfinite(root).all():  # singular product: pytorch-fid's offset
            offset = np.eye(s1.shape[0]) * 1e-6
            root = linalg.sqrtm((s1 + offset) @ (s2 + offset))
        if np.iscomplexobj(root):
            root = root.real
        return torch.tensor(float(np.trace(root)), dtype=torch.float64)
    raise ValueError(f"method must be 'eigh' or 'scipy', got {method!r}")


def fid_from_stats(mu1, sigma1, mu2, sigma2, method="eigh"):
    """The Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), a Python float.
    Shapes must agree ([D] and [D, D]); the sigmas must be covariances (symmetric to 1e-6 of
    their largest entry, no negative variance: else ValueError); a tiny negative result of
    rounding is returned as 0."""
    mu1, mu2 = torch.as_tensor(mu1), torch.as_tensor(mu2)
    sigma1, sigma2 = torch.as_tensor(sigma1), torch.as_tensor(sigma2)
    d = mu1.shape[-1] if mu1.dim() == 1 else None
    if d is None or d < 1 or mu2.shape != mu1.shape or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"statistics do not match: mu1 {tuple(mu1.shape)}, sigma1 {tuple(sigma1.shape)}, "
                         f"mu2 {tuple(mu2.shape)}, sigma2 {tuple(sigma2.shape)} (expected [D] and [D, D])")
    dev = sigma1.device
    mu1, sigma1 = mu1.double().to(dev), sigma1.double()
    mu2, sigma2 = mu2.to(dev, torch.float64), sigma2.to(dev, torch.float64)
    for name, t in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} holds non-finite values (NaN or inf)")
    for name, s in (("sigma1", sigma1), ("sigma2", sigma2)):
        # what the trace of the root would otherwise hide: a non-PSD matrix's negative
        # eigenvalues are clamped to 0, a non-symmetric one is replaced by its symmetric part.
        # 1e-6: float32 storage (pytorch-fid's files) is symmetric to ~6e-8 of the largest entry
        if bool((s.diagonal() < 0).any()):
            raise ValueError(f"{name} has a negative variance on its diagonal: not a covariance matrix")
        if float((s - s.T).abs().max()) > 1e-6 * float(s.abs().max()):
            raise ValueError(f"{name} is not symmetric (largest |sigma - sigma^T| "
                             f"{float((s - s.T).abs().max()):.3g}): not a covariance matrix")
    diff = mu1 - mu2
    value = (diff @ diff + sigma1.trace() + sigma2.trace()
             - 2 * trace_sqrt_product(sigma1, sigma2, method).to(dev))
    value = float(value)
    if not math.isfinite(value):
        raise ValueError("the Fréchet distance is not finite")
    return max(value, 0.0)


def fid_from_features(features1, features2, method="eigh"):
    """The Fréchet distance between two feature sets [N1, D] and [N2, D] (FID when they are
    Inception pool features), a Python float. Computed on features1's device."""
    features1 = _check_features(features1, "features1")
    features2 = _check_features(features2, "features2")
    if features1.shape[1] != features2.shape[1]:
        raise ValueError(f"features1 has {features1.shape[1]} dimensions and features2 "
                         f"{features2.shape[1]}: they must come from the same extractor")
    mu1, s1 = feature_stats(features1)
    mu2, s2 = feature_stats(features2.to(features1.device))
    return fid_from_stats(mu1, s1, mu2, s2, method)
