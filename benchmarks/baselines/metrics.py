"""The metrics as the reference implementations compute them, for bench_fid.py's comparison.

* kid_numpy: KID (Bińkowski et al. 2018, arXiv:1801.01401) the way the paper's code and
  torch-fidelity compute it: NumPy on the CPU in float64, one subset at a time in a Python
  loop, each subset's three cubic-kernel matrices built in full.
* prdc_numpy: precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et
  al. 2020) the way the authors' `prdc` package computes them: the full real-real,
  fake-fake and real-fake distance matrices in memory (N x N each), the k-th neighbour by
  np.partition, strict "<" against the radii.

Both take torch tensors or arrays of features [N, D] and return what fastgan.metrics'
functions return, so tests/metrics/test_scores.py can check that the comparison
is of the same numbers.
"""
import numpy as np


def _array(x, dtype):
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def kid_numpy(features1, features2, *, num_subsets=100, subset_size=1000, seed=0):
    """{"kid", "kid_std", "kid_subset_size"}: the mean and standard deviation (ddof 0,
    np.std, as torch-fidelity) of the unbiased MMD^2 over subsets drawn without replacement."""
    x_all, y_all = _array(features1, np.float64), _array(features2, np.float64)
    m = min(subset_size, len(x_all), len(y_all))
    d = x_all.shape[1]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(num_subsets):
        x = x_all[rng.choice(len(x_all), m, replace=False)]
        y = y_all[rng.choice(len(y_all), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values.append(within - 2 * kxy.sum() / (m * m))
    values = np.array(values)
    std = float(values.std())
    return {"kid": float(values.mean()), "kid_std": std, "kid_subset_size": m}


def _distances(a, b):
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(sq, 0))


def _kth_neighbour(points, k):
    """Distance from each point to its k-th nearest other point (itself at distance 0 is the
    0-th, as the prdc package counts)."""
    return np.partition(_distances(points, points), k, axis=1)[:, k]


def prdc_numpy(real, fake, *, k_pr=3, k_dc=5, dtype=np.float32):
    """{"precision", "recall", "density", "coverage"} of fake [M, D] against real [N, D]."""
    x, y = _array(real, dtype), _array(fake, dtype)
    r_real_pr, r_real_dc = _kth_neighbour(x, k_pr), _kth_neighbour(x, k_dc)
    r_fake = _kth_neighbour(y, k_pr)
    d = _distances(x, y)                                  # [N, M]
    return {
        "precision": float((d < r_real_pr[:, None]).any(axis=0).mean()),
        "recall": float((d < r_fake[None, :]).any(axis=1).mean()),
        "density": float((d < r_real_dc[:, None]).sum(axis=0).mean() / k_dc),
        "coverage": float((d.min(axis=1) < r_real_dc).mean()),
    }
