"""Precision and recall (Kynkäänniemi et al. 2019), density and coverage (Naeem et al. 2020)
of generated features against real ones, with k-nearest-neighbour balls.

Each real feature x_i gets a ball B(x_i, r_k(x_i)) whose radius is the distance to its k-th
nearest other real feature; likewise each fake feature y_j with the fakes.

* precision: the fraction of fakes inside at least one real ball (how many samples look
  real). Kynkäänniemi et al. 2019, arXiv:1904.06991, sec. 2, k = 3.
* recall: the fraction of reals inside at least one fake ball (how much of the real data
  the generator covers). Same paper, k = 3.
* density: sum over fakes of the number of real balls containing them, over k * M (about 1
  for a generator matching the data; can exceed 1). Naeem et al. 2020, arXiv:2002.09797,
  sec. 3, k = 5.
* coverage: the fraction of real balls that contain at least one fake. Same paper, k = 5.

So precision/recall use k = 3 and density/coverage k = 5, each paper's default.

Balls are closed: a point at exactly the radius is inside (distance <= radius), as in
Kynkäänniemi et al.'s code; the `prdc` package of Naeem et al. uses <, which differs only on
exact ties (duplicated images: a fake equal to a real point whose radius is 0).

Distances are computed in chunks of rows (`chunk` x N at a time), so 50,000 x 50,000 never
exists in memory; on a GPU each chunk is one matrix product. Squared distances use
|a|^2 + |b|^2 - 2 a.b in float32 (float64 on the CPU), clamped at 0; a point's own distance
is excluded from its radius by index, so duplicate points are still each other's
neighbours. Each of the three distance matrices (real-real, fake-fake, fake-real) is
computed once, serving both ks.
"""
import torch

__all__ = ["precision_recall", "knn_radii"]

K_PR = 3    # Kynkäänniemi et al. 2019
K_DC = 5    # Naeem et al. 2020


def _sq_dists(a, b, a2, b2):
    return (a2[:, None] + b2[None, :] - 2 * a @ b.T).clamp_min_(0)


def knn_radii(x, k, *, chunk=4096):
    """Squared distance from each row of x [N, D] to its k-th nearest other row: [N]. k may
    also be a tuple of ks: a tuple of [N] radii, from one pass over the distances."""
    single = not isinstance(k, (tuple, list))
    ks = (k,) if single else tuple(k)
    n = x.shape[0]
    for kk in ks:
        if not 1 <= kk < n:
            raise ValueError(f"k-nearest-neighbour radii need 1 <= k < N, got k={kk} with N={n}")
    x2 = (x * x).sum(1)
    out = [torch.empty(n, dtype=x.dtype, device=x.device) for _ in ks]
    for s in range(0, n, chunk):
        d = _sq_dists(x[s:s + chunk], x, x2[s:s + chunk], x2)
        rows = torch.arange(d.shape[0], device=x.device)
        d[rows, rows + s] = float("inf")                      # not its own neighbour
        nearest = d.topk(max(ks), dim=1, largest=False).values  # sorted, nearest first
        for o, kk in zip(out, ks):
            o[s:s + chunk] = nearest[:, kk - 1]
    return out[0] if single else tuple(out)


def _inside_counts(points, centers, radii, *, chunk):
    """For each row of points: in how many balls (centers, squared radii) it lies; and for
    each ball, whether any point lies in it. radii: a tuple of [N] radii, balls of each
    size counted from one pass over the distances; a (counts, hit) pair per entry."""
    p2, c2 = (points * points).sum(1), (centers * centers).sum(1)
    out = [(torch.zeros(points.shape[0], dtype=torch.long, device=points.device),
            torch.zeros(centers.shape[0], dtype=torch.bool, device=points.device)) for _ in radii]
    for s in range(0, points.shape[0], chunk):
        d = _sq_dists(points[s:s + chunk], centers, p2[s:s + chunk], c2)
        for (counts, hit), r in zip(out, radii):
            inside = d <= r[None, :]
            counts[s:s + chunk] = inside.sum(1)
            hit |= inside.any(0)
    return out


def precision_recall(real, fake, *, k_pr=K_PR, k_dc=K_DC, chunk=4096):
    """{"precision", "recall", "density", "coverage"} (floats) of fake features [M, D]
    against real features [N, D], computed on real's device."""
    from fastgan.metrics.fid import _check_features, _integer
    real = _check_features(real, "real")
    fake = _check_features(fake, "fake")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real has {real.shape[1]} dimensions and fake {fake.shape[1]}: "
                         "they must come from the same extractor")
    k_pr, k_dc, chunk = _integer("k_pr", k_pr), _integer("k_dc", k_dc), _integer("chunk", chunk)
    need = max(k_pr, k_dc) + 1
    if real.shape[0] < need or fake.shape[0] < k_pr + 1:
        raise ValueError(f"precision/recall with k = {k_pr} and {k_dc} needs at least {need} real "
                         f"and {k_pr + 1} fake samples, got {real.shape[0]} and {fake.shape[0]}")
    dtype = torch.float32 if real.is_cuda else torch.float64
    x = real.to(dtype)
    y = fake.to(x.device, dtype)
    # three distance matrices in all, each in chunks: real-real (both radii), fake-fake, and
    # fake-real (the balls of both radii)
    r_real_pr, r_real_dc = knn_radii(x, (k_pr, k_dc), chunk=chunk)
    r_fake = knn_radii(y, k_pr, chunk=chunk)
    (in_real_pr, _), (in_real_dc, covered) = _inside_counts(y, x, (r_real_pr, r_real_dc), chunk=chunk)
    ((in_fake, _),) = _inside_counts(x, y, (r_fake,), chunk=chunk)
    return {
        "precision": (in_real_pr > 0).double().mean().item(),
        "recall": (in_fake > 0).double().mean().item(),
        "density": in_real_dc.double().sum().item() / (k_dc * y.shape[0]),
        "coverage": covered.double().mean().item(),
    }
