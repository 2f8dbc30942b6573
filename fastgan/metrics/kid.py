"""Kernel Inception Distance: the unbiased squared MMD with a cubic polynomial kernel.

Bińkowski et al. 2018 (arXiv:1801.01401, sec. 3): k(x, y) = (x . y / d + 1)^3 for d-dimensional
features, and the unbiased estimator of MMD^2 between two samples of size m,

    MMD^2_u = sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (m (m - 1))
              - 2 sum_{i, j} k(x_i, y_j) / m^2,

whose expectation is exactly 0 when both samples come from one distribution (it can be
negative). As in the paper's code and torch-fidelity, it is averaged over `num_subsets`
random subsets of `subset_size` from each set (defaults 100 and 1,000); the result is the
mean and the standard deviation over subsets (the population one, ddof 0: torch-fidelity's
np.std(mmds)). All subsets are evaluated at once as batched matrix products on the
features' device, in float64.
"""
import torch

__all__ = ["kid_from_features", "mmd2_unbiased"]


def mmd2_unbiased(x, y, degree=3, gamma=None, coef0=1.0):
    """The unbiased MMD^2 of samples x [..., m, d] and y [..., m, d] (batched over leading
    dims) under the polynomial kernel (gamma x.y + coef0)^degree, gamma = 1/d by default."""
    m, d = x.shape[-2], x.shape[-1]
    if y.shape[-2:] != (m, d):
        raise ValueError(f"x and y must both be [..., m, d], got {tuple(x.shape)} and {tuple(y.shape)}")
    if m < 2:
        raise ValueError(f"the unbiased MMD needs subsets of at least 2 samples, got {m}")
    gamma = 1.0 / d if gamma is None else gamma
    kxx = (x @ x.transpose(-1, -2) * gamma + coef0) ** degree
    kyy = (y @ y.transpose(-1, -2) * gamma + coef0) ** degree
    kxy = (x @ y.transpose(-1, -2) * gamma + coef0) ** degree
    off = lambda k: k.sum((-1, -2)) - k.diagonal(dim1=-2, dim2=-1).sum(-1)  # noqa: E731
    return (off(kxx) + off(kyy)) / (m * (m - 1)) - 2 * kxy.sum((-1, -2)) / (m * m)


def kid_from_features(features1, features2, *, num_subsets=100, subset_size=1000, seed=0,
                      chunk=10):
    """KID between feature sets [N1, D] and [N2, D]: {"kid": mean MMD^2 over subsets,
    "kid_std": the standard deviation over subsets (ddof 0, as torch-fidelity's),
    "kid_subset_size": the size used}.

    subset_size is capped at min(N1, N2) (the size used is reported); subsets are drawn
    without replacement within a subset, by a generator seeded with `seed`, so the value
    is reproducible. `chunk` subsets are evaluated per batched product (memory:
    3 * chunk * subset_size^2 float64)."""
    from fastgan.metrics.fid import _check_features, _integer
    features1 = _check_features(features1, "features1")
    features2 = _check_features(features2, "features2")
    if features1.shape[1] != features2.shape[1]:
        raise ValueError(f"features1 has {features1.shape[1]} dimensions and features2 "
                         f"{features2.shape[1]}: they must come from the same extractor")
    num_subsets = _integer("num_subsets", num_subsets)
    subset_size = _integer("subset_size", subset_size)
    chunk = _integer("chunk", chunk)
    seed = _integer("seed", seed, minimum=None)
    m = min(subset_size, features1.shape[0], features2.shape[0])
    dev = features1.device
    x_all, y_all = features1.double(), features2.to(dev, torch.float64)
    gen = torch.Generator().manual_seed(seed)
    values = []
    for start in range(0, num_subsets, chunk):
        n = min(chunk, num_subsets - start)
        pairs = [(torch.randperm(len(x_all), generator=gen)[:m], torch.randperm(len(y_all), generator=gen)[:m])
                 for _ in range(n)]  # drawn subset by subset: chunk does not change them
        ix = torch.stack([p[0] for p in pairs]).to(dev)
        iy = torch.stack([p[1] for p in pairs]).to(dev)
        values.append(mmd2_unbiased(x_all[ix], y_all[iy]))
    values = torch.cat(values)
    std = values.std(correction=0).item()  # np.std, as torch-fidelity (0 for one subset)
    return {"kid": values.mean().item(), "kid_std": std, "kid_subset_size": m}
