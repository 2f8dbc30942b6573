"""FID, KID, IS and precision/recall/density/coverage on features with known answers.

No network is involved: the features are constructed (Gaussians with closed-form distances,
clusters with known overlaps) or random, and each score is compared with its closed form,
with scipy (FID's matrix square root the way pytorch-fid computes it) or with a direct
transcription of the paper's formula.
"""
import importlib.util
import math
import pathlib

import numpy as np
import pytest
import torch

from fastgan.metrics import fid as fidmod
from fastgan.metrics import kid as kidmod
from fastgan.metrics.fid import feature_stats, fid_from_features, fid_from_stats
from fastgan.metrics.inception_score import inception_score
from fastgan.metrics.kid import kid_from_features, mmd2_unbiased
from fastgan.metrics.prdc import knn_radii, precision_recall

# benchmarks/baselines/metrics.py: KID and PRDC the way the reference implementations compute
# them, bench_fid.py's baselines; here the oracles that say they compute fastgan's numbers
_PATH = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "baselines" / "metrics.py"
_spec = importlib.util.spec_from_file_location("metric_baselines", _PATH)
baselines = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(baselines)

pytestmark = pytest.mark.usefixtures("one_thread")


def _spd(d, gen, scale=1.0):
    a = torch.randn(d, d, generator=gen, dtype=torch.float64)
    return scale * (a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64))


def _gaussian(n, mu, sigma, gen):
    chol = torch.linalg.cholesky(sigma)
    return mu + torch.randn(n, len(mu), generator=gen, dtype=torch.float64) @ chol.T


# -- FID ---------------------------------------------------------------------------------
def test_fid_of_a_set_with_itself_is_zero():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(300, 40, generator=gen) * 3 + 1
    assert fid_from_features(x, x) == pytest.approx(0.0, abs=1e-8)
    assert fid_from_features(x, x.clone()) == pytest.approx(0.0, abs=1e-8)


def test_fid_one_dimension_closed_form():
    # N(0, 1) vs N(m, s^2): m^2 + (1 - s)^2
    for m, s in ((0.0, 2.0), (3.0, 1.0), (-1.5, 0.25)):
        got = fid_from_stats(torch.zeros(1), torch.ones(1, 1), torch.tensor([m]), torch.tensor([[s * s]]))
        assert got == pytest.approx(m * m + (1 - s) ** 2, rel=1e-10, abs=1e-12)


def test_fid_commuting_covariances_closed_form():
    # sigma1 = Q diag(a) Q^T, sigma2 = Q diag(b) Q^T: tr sqrt(s1 s2) = sum sqrt(a b), so
    # FID = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2.
    gen = torch.Generator().manual_seed(1)
    d = 37
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    a = torch.rand(d, generator=gen, dtype=torch.float64) * 4 + 0.01
    b = torch.rand(d, generator=gen, dtype=torch.float64) * 4 + 0.01
    mu1, mu2 = torch.randn(d, generator=gen, dtype=torch.float64), torch.randn(d, generator=gen, dtype=torch.float64)
    s1, s2 = q @ torch.diag(a) @ q.T, q @ torch.diag(b) @ q.T
    expect = float((mu1 - mu2).square().sum() + (a.sqrt() - b.sqrt()).square().sum())
    assert fid_from_stats(mu1, s1, mu2, s2) == pytest.approx(expect, rel=1e-9)


@pytest.mark.parametrize("d, n", [(64, 600), (256, 1200)])
def test_fid_agrees_with_scipy_sqrtm(d, n):
    # the bar: within 1e-3 relative of a scipy.linalg.sqrtm-based FID on the same features
    gen = torch.Generator().manual_seed(d)
    x = _gaussian(n, torch.zeros(d, dtype=torch.float64), _spd(d, gen), gen).float()
    y = _gaussian(n, torch.full((d,), 0.2, dtype=torch.float64), _spd(d, gen, 1.5), gen).float()
    ours = fid_from_features(x, y)
    ref = fid_from_features(x, y, method="scipy")
    assert ours > 1.0
    assert ours == pytest.approx(ref, rel=1e-3)
    # and the trace term alone, far tighter: both are exact float64 methods here
    _, s1 = feature_stats(x)
    _, s2 = feature_stats(y)
    t = fidmod.trace_sqrt_product(s1, s2)
    assert float(t) == pytest.approx(float(fidmod.trace_sqrt_product(s1, s2, "scipy")), rel=1e-8)


def test_fid_singular_covariances():
    # fewer samples than dimensions: rank-deficient covariances; still finite, >= 0, near scipy's
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(20, 50, generator=gen)
    y = torch.randn(20, 50, generator=gen) + 0.5
    ours = fid_from_features(x, y)
    assert math.isfinite(ours) and ours > 0
    assert ours == pytest.approx(fid_from_features(x, y, method="scipy"), rel=1e-3)


def test_feature_stats_match_numpy():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(50, 7, generator=gen)
    mu, sigma = feature_stats(x)
    assert mu.dtype == sigma.dtype == torch.float64
    np.testing.assert_allclose(mu.numpy(), x.double().numpy().mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma.numpy(), np.cov(x.double().numpy(), rowvar=False), rtol=1e-10)


def test_fid_from_features_tracks_a_shift():
    # large samples of N(0, I) and N(m, I): FID ~ |m|^2 (sampling error shrinks with N)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(20000, 4, generator=gen)
    y = torch.randn(20000, 4, generator=gen) + torch.tensor([1.0, 0.0, 2.0, 0.0])
    assert fid_from_features(x, y) == pytest.approx(5.0, rel=0.02)


def test_fid_errors():
    x = torch.randn(10, 4)
    with pytest.raises(ValueError, match="same extractor"):
        fid_from_features(x, torch.randn(10, 5))
    with pytest.raises(ValueError, match="at least 2 samples"):
        fid_from_features(x, torch.randn(1, 4))
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        fid_from_features(torch.randn(10), x)
    with pytest.raises(ValueError, match="non-finite"):
        fid_from_features(x, torch.full((10, 4), float("nan")))
    with pytest.raises(TypeError, match="floating point"):
        fid_from_features(x, torch.ones(10, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="method"):
        fid_from_features(x, x, method="newton")
    with pytest.raises(ValueError, match="do not match"):
        fid_from_stats(torch.zeros(3), torch.eye(3), torch.zeros(4), torch.eye(4))
    with pytest.raises(TypeError, match="features1 must be a torch.Tensor or NumPy array"):
        fid_from_features([[0.0, 1.0], [1.0, 0.0]], x)


def test_feature_sets_may_be_numpy_arrays():
    """As fid_from_stats takes NumPy statistics: the same values as from tensors."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(60, 5, generator=gen, dtype=torch.float64), torch.randn(50, 5, generator=gen,
                                                                             dtype=torch.float64) + 0.3
    assert fid_from_features(a.numpy(), b.numpy()) == fid_from_features(a, b)
    assert kid_from_features(a.numpy(), b.numpy(), num_subsets=4, subset_size=20) == \
        kid_from_features(a, b, num_subsets=4, subset_size=20)
    assert precision_recall(a.numpy(), b.numpy(), k_pr=3, k_dc=3) == precision_recall(a, b, k_pr=3, k_dc=3)


@pytest.mark.gpu
def test_fid_on_gpu_matches_cpu():
    gen = torch.Generator().manual_seed(6)
    d = 2048
    x = torch.randn(4096, d, generator=gen)
    y = torch.randn(4096, d, generator=gen) * 1.1 + 0.05
    cpu = fid_from_features(x, y)
    gpu = fid_from_features(x.cuda(), y.cuda())
    assert gpu == pytest.approx(cpu, rel=1e-6)


# -- KID ---------------------------------------------------------------------------------
def _mmd2_loops(x, y):
    """The paper's estimator, written as sums over index pairs."""
    m, d = x.shape
    k = lambda a, b: (float(a @ b) / d + 1.0) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_mmd2_matches_the_pairwise_sums():
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(9, 5, generator=gen, dtype=torch.float64)
    y = torch.randn(9, 5, generator=gen, dtype=torch.float64) + 0.3
    assert float(mmd2_unbiased(x, y)) == pytest.approx(_mmd2_loops(x, y), rel=1e-12)
    batched = mmd2_unbiased(torch.stack([x, y]), torch.stack([y, x]))
    assert batched.shape == (2,)
    torch.testing.assert_close(batched[0], batched[1])


def test_kid_is_unbiased():
    # two samples of one distribution: E[MMD^2_u] = 0. 4,000 independent small experiments;
    # the estimator that keeps the diagonal (biased) is clearly positive on the same data.
    gen = torch.Generator().manual_seed(8)
    trials, m, d = 4000, 12, 6
    x = torch.randn(trials, m, d, generator=gen, dtype=torch.float64)
    y = torch.randn(trials, m, d, generator=gen, dtype=torch.float64)
    values = mmd2_unbiased(x, y)
    sem = values.std() / math.sqrt(trials)
    assert abs(float(values.mean())) < 3 * float(sem)
    kxx = (x @ x.transpose(1, 2) / d + 1) ** 3
    kyy = (y @ y.transpose(1, 2) / d + 1) ** 3
    kxy = (x @ y.transpose(1, 2) / d + 1) ** 3
    biased = (kxx.mean((1, 2)) + kyy.mean((1, 2)) - 2 * kxy.mean((1, 2)))
    assert float(biased.mean()) > 10 * float(biased.std() / math.sqrt(trials))


def test_kid_from_features():
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(400, 16, generator=gen)
    same = kid_from_features(x[:200], x[200:], num_subsets=20, subset_size=100)
    shifted = kid_from_features(x[:200], x[200:] + 1.0, num_subsets=20, subset_size=100)
    assert same["kid_subset_size"] == 100
    assert abs(same["kid"]) < 3 * same["kid_std"] / math.sqrt(20) + 1e-3
    assert shifted["kid"] > 0.3 and shifted["kid"] > 20 * same["kid_std"]
    again = kid_from_features(x[:200], x[200:] + 1.0, num_subsets=20, subset_size=100)
    assert again == shifted                                              # seeded subsets
    other = kid_from_features(x[:200], x[200:] + 1.0, num_subsets=20, subset_size=100, seed=1)
    assert other["kid"] != shifted["kid"]
    capped = kid_from_features(x[:50], x[50:80], num_subsets=3, subset_size=1000, chunk=2)
    assert capped["kid_subset_size"] == 30


def test_kid_chunking_does_not_change_the_value():
    gen = torch.Generator().manual_seed(10)
    x, y = torch.randn(60, 8, generator=gen), torch.randn(70, 8, generator=gen) + 0.5
    a = kid_from_features(x, y, num_subsets=7, subset_size=20, chunk=7)
    b = kid_from_features(x, y, num_subsets=7, subset_size=20, chunk=3)
    assert a["kid"] == pytest.approx(b["kid"], rel=1e-12)


def test_kid_errors():
    x = torch.randn(10, 4)
    for bad in ({"num_subsets": 0}, {"subset_size": -1}, {"chunk": 1.5}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            kid_from_features(x, x, **bad)
    with pytest.raises(ValueError, match="same extractor"):
        kid_from_features(x, torch.randn(10, 3))
    with pytest.raises(ValueError, match="at least 2"):
        kidmod.mmd2_unbiased(torch.randn(1, 3), torch.randn(1, 3))


# -- IS ----------------------------------------------------------------------------------
def _is_reference(probs, splits):
    """Salimans et al.'s code, transcribed: exp(mean KL(p(y|x) || p(y))) per split."""
    scores = []
    for part in np.array_split(probs, splits):
        py = part.mean(0, keepdims=True)
        kl = (part * (np.log(part) - np.log(py))).sum(1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


def test_inception_score_extremes():
    classes, splits = 10, 5
    labels = torch.arange(100) % classes
    confident = torch.nn.functional.one_hot(labels, classes).double() * 60.0   # near one-hot
    got = inception_score(confident, splits=splits)
    assert got["is"] == pytest.approx(classes, rel=1e-6) and got["is_std"] < 1e-6
    constant = torch.randn(1, classes).expand(100, classes).contiguous()
    assert inception_score(constant, splits=splits)["is"] == pytest.approx(1.0, abs=1e-9)
    half = torch.nn.functional.one_hot(torch.arange(100) % 2, classes).double() * 60.0
    assert inception_score(half, splits=splits)["is"] == pytest.approx(2.0, rel=1e-6)


def test_inception_score_matches_the_reference_formula():
    gen = torch.Generator().manual_seed(11)
    logits = torch.randn(200, 1008, generator=gen) * 3
    probs = torch.softmax(logits.double(), 1).numpy()
    mean, std = _is_reference(probs, 10)
    got = inception_score(logits, splits=10)
    assert got["is"] == pytest.approx(mean, rel=1e-9)
    assert got["is_std"] == pytest.approx(std, rel=1e-6)


def test_inception_score_errors():
    with pytest.raises(ValueError, match="splits"):
        inception_score(torch.randn(5, 3), splits=10)
    with pytest.raises(ValueError, match="splits"):
        inception_score(torch.randn(5, 3), splits=0)
    with pytest.raises(ValueError, match=r"logits must be"):
        inception_score(torch.randn(5))
    with pytest.raises(ValueError, match="non-finite"):
        inception_score(torch.full((10, 3), float("inf")), splits=2)


# -- precision / recall / density / coverage ---------------------------------------------
def test_knn_radii_brute_force_and_duplicates():
    gen = torch.Generator().manual_seed(12)
    x = torch.randn(50, 3, generator=gen, dtype=torch.float64)
    x[10] = x[11]                                              # a duplicate: radius-1 is 0
    d = torch.cdist(x, x).square()
    d.fill_diagonal_(float("inf"))
    for k in (1, 3):
        torch.testing.assert_close(knn_radii(x, k, chunk=7), d.sort(1).values[:, k - 1],
                                   rtol=1e-9, atol=1e-12)
    assert knn_radii(x, 1)[10] == 0
    torch.testing.assert_close(knn_radii(x, np.int64(3)), knn_radii(x, 3), rtol=0, atol=0)
    both = knn_radii(x, (3, 5), chunk=7)                      # two radii from one pass
    assert isinstance(both, tuple) and len(both) == 2
    for k, r in zip((3, 5), both):
        torch.testing.assert_close(r, d.sort(1).values[:, k - 1], rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="k < N"):
        knn_radii(x[:3], 3)
    with pytest.raises(ValueError, match="got k=3 with N=3"):
        knn_radii(x[:3], (1, 3))


def test_prdc_matches_brute_force_with_chunks():
    gen = torch.Generator().manual_seed(13)
    real = torch.randn(120, 6, generator=gen)
    fake = torch.randn(90, 6, generator=gen) * 1.3 + 0.4
    got = precision_recall(real, fake, chunk=17)
    ref = baselines.prdc_numpy(real, fake, dtype=np.float64)  # full distance matrices, as the prdc package
    for key in ref:
        assert got[key] == pytest.approx(ref[key], abs=1e-12), key
    assert 0 < got["precision"] < 1 and 0 < got["recall"] < 1


def test_prdc_constructed_cases():
    gen = torch.Generator().manual_seed(14)
    centers = torch.tensor([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0], [20.0, 20.0]])
    real = (centers[:, None] + torch.randn(4, 100, 2, generator=gen)).reshape(-1, 2)
    same = precision_recall(real, real.clone())
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    assert same["density"] >= 1.0
    far = precision_recall(real, real + 1000.0)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    # a generator that covers two of the four clusters: real-looking, half the recall
    half = (centers[:2, None] + torch.randn(2, 200, 2, generator=gen)).reshape(-1, 2)
    got = precision_recall(real, half)
    assert got["precision"] > 0.9
    assert 0.4 < got["recall"] < 0.55
    assert 0.4 < got["coverage"] <= 0.5
    # a collapsed generator (one point): precise, no recall to speak of
    collapsed = precision_recall(real, centers[:1].repeat(50, 1) + 1e-3 * torch.randn(50, 2, generator=gen))
    assert collapsed["precision"] == 1.0 and collapsed["recall"] < 0.02


def test_prdc_errors():
    x = torch.randn(10, 3)
    with pytest.raises(ValueError, match="needs at least 6 real"):
        precision_recall(x[:5], x)
    with pytest.raises(ValueError, match="same extractor"):
        precision_recall(x, torch.randn(10, 4))
    with pytest.raises(ValueError, match="k_pr"):
        precision_recall(x, x, k_pr=0)


@pytest.mark.gpu
def test_prdc_on_gpu_matches_cpu():
    gen = torch.Generator().manual_seed(15)
    real = torch.randn(3000, 64, generator=gen)
    fake = torch.randn(2500, 64, generator=gen) * 1.2
    cpu = precision_recall(real, fake, chunk=1000)
    gpu = precision_recall(real.cuda(), fake.cuda(), chunk=1000)
    for key in cpu:  # float32 distances on the GPU: a point or two may sit on a ball's edge
        assert gpu[key] == pytest.approx(cpu[key], abs=2e-3), key


@pytest.mark.gpu
def test_kid_on_gpu_matches_cpu():
    gen = torch.Generator().manual_seed(16)
    x, y = torch.randn(2000, 2048, generator=gen), torch.randn(2000, 2048, generator=gen) + 0.01
    cpu = kid_from_features(x, y, num_subsets=10)
    gpu = kid_from_features(x.cuda(), y.cuda(), num_subsets=10)
    assert gpu["kid"] == pytest.approx(cpu["kid"], rel=1e-9, abs=1e-12)


# ---------------------------------------------------------------- bench_fid's baselines

def _tie_free_features(n, d, shift, seed):
    # no exact ties (the prdc package counts a point on a ball's boundary out, fastgan in)
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen, dtype=torch.float64) + shift


@pytest.mark.parametrize("n1, n2, d", [(37, 41, 5), (60, 60, 17)])
def test_kid_numpy_is_fastgans_kid(n1, n2, d):
    x, y = _tie_free_features(n1, d, 0.0, 0), _tie_free_features(n2, d, 0.3, 1)
    # subsets of every sample: the value does not depend on which permutation is drawn
    m = min(n1, n2)
    if n1 == n2:
        want = kid_from_features(x, y, num_subsets=3, subset_size=m)
        got = baselines.kid_numpy(x, y, num_subsets=3, subset_size=m)
        assert got["kid_subset_size"] == want["kid_subset_size"] == m
        assert got["kid"] == pytest.approx(want["kid"], rel=1e-12, abs=1e-15)
        assert got["kid_std"] == pytest.approx(0.0, abs=1e-12)
    # random subsets: each library draws its own, so the means agree within the spread
    want = kid_from_features(x, y, num_subsets=400, subset_size=m // 2)
    got = baselines.kid_numpy(x, y, num_subsets=400, subset_size=m // 2)
    assert got["kid_subset_size"] == want["kid_subset_size"] == m // 2
    se = want["kid_std"] / 400 ** 0.5
    assert abs(got["kid"] - want["kid"]) < 6 * se
    assert got["kid_std"] == pytest.approx(want["kid_std"], rel=0.25)


@pytest.mark.parametrize("n, m, d", [(50, 50, 4), (83, 61, 9)])
def test_prdc_numpy_is_fastgans_precision_recall(n, m, d):
    real, fake = _tie_free_features(n, d, 0.0, 2), _tie_free_features(m, d, 0.4, 3)
    want = precision_recall(real, fake)  # float64 on the CPU
    got = baselines.prdc_numpy(real, fake, dtype=np.float64)
    assert got == pytest.approx(want, rel=1e-12)
    assert 0 < want["precision"] < 1 and 0 < want["coverage"] < 1  # the case separates them


# ------------------------------------------------------------------ review: defects fixed

def _trace_sqrt_low_rank(x, y):
    """tr((sigma1 sigma2)^(1/2)) exactly, for centered Xc [n1, D], Yc [n2, D] with
    sigma1 = Xc^T Xc / (n1 - 1), sigma2 = Yc^T Yc / (n2 - 1): the nonzero eigenvalues of
    sigma1 sigma2 are those of M M^T / c with M = Xc Yc^T [n1, n2] and c = (n1 - 1)(n2 - 1),
    so the trace is the sum of M's singular values over sqrt(c) (the nuclear norm of an
    n1 x n2 matrix: well conditioned when n << D, where sigma1 and sigma2 are singular)."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    c = (x.shape[0] - 1) * (y.shape[0] - 1)
    return float(torch.linalg.svdvals(xc @ yc.T).sum() / math.sqrt(c))


@pytest.mark.parametrize("n1, n2, d", [(40, 40, 400), (60, 25, 300), (300, 30, 200)])
def test_fid_exact_on_rank_deficient_covariances(n1, n2, d):
    """Fewer samples than dimensions (an evaluation with --num below 2,048): the
    covariances have rank n - 1 and D - n + 1 exactly-zero eigenvalues, which eigh returns
    as +-1e-16 * |sigma|. Their square roots, ~1e-8 * |sigma|^(1/2) each, summed over the
    hundreds of null directions, biased tr((sigma1 sigma2)^(1/2)) by ~1e-6 of the trace (FID
    of a set against a copy of itself shifted by 1e-3: 3% off). Eigenvalues below
    max |lambda| * D * eps (numpy.linalg.matrix_rank's tolerance) are zero."""
    gen = torch.Generator().manual_seed(n1 + d)
    x = torch.relu(torch.randn(n1, d, generator=gen, dtype=torch.float64)) * 2 + 0.5
    y = torch.relu(torch.randn(n2, d, generator=gen, dtype=torch.float64)) * 2 + 0.5
    y[: min(n1, n2)] = x[: min(n1, n2)] + 1e-3 * torch.randn(min(n1, n2), d, generator=gen,
                                                             dtype=torch.float64)
    _, s1 = feature_stats(x)
    _, s2 = feature_stats(y)
    exact = _trace_sqrt_low_rank(x, y)
    scale = float(s1.trace() + s2.trace())
    assert abs(float(fidmod.trace_sqrt_product(s1, s2)) - exact) < 1e-11 * scale
    assert abs(float(fidmod.trace_sqrt_product(s2, s1)) - exact) < 1e-11 * scale
    # a set against itself: tr(sigma) exactly, so the FID (before max(., 0)) is 0 to rounding
    assert abs(float(fidmod.trace_sqrt_product(s1, s1)) - float(s1.trace())) < 1e-11 * scale


def _is_salimans(probs, splits):
    """Salimans et al.'s inception_score.py (and torch-fidelity's isc_features_to_metric,
    without its shuffle), transcribed: part i is preds[i * N // splits : (i + 1) * N // splits]
    (every sample used, parts differing by at most one), IS_i = exp(mean_x KL(p(y|x) || p(y))),
    and (mean, np.std) over the parts."""
    n = probs.shape[0]
    scores = []
    for i in range(splits):
        part = probs[i * n // splits:(i + 1) * n // splits]
        kl = (part * (np.log(part) - np.log(part.mean(0, keepdims=True)))).sum(1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


@pytest.mark.parametrize("n, splits", [(205, 10), (23, 4), (11, 10)])
def test_inception_score_uses_every_sample_as_the_reference_does(n, splits):
    """N not a multiple of splits: the reference code splits at i * N // splits and uses all
    N samples; fastgan dropped the last N mod splits (a different number, and a docstring
    that said the reference drops them)."""
    gen = torch.Generator().manual_seed(n)
    logits = torch.randn(n, 50, generator=gen, dtype=torch.float64) * 4
    mean, std = _is_salimans(torch.softmax(logits, 1).numpy(), splits)
    got = inception_score(logits, splits=splits)
    assert got["is"] == pytest.approx(mean, rel=1e-12)
    assert got["is_std"] == pytest.approx(std, rel=1e-9, abs=1e-12)
    # the samples past the last whole part count: changing one changes the score
    changed = logits.clone()
    changed[-1] = torch.randn(50, generator=gen, dtype=torch.float64) * 4
    assert inception_score(changed, splits=splits)["is"] != got["is"]


def test_kid_std_is_the_population_std_of_the_subsets():
    """torch-fidelity's kid_features_to_metric reports np.std(mmds) (ddof 0), as fastgan's IS
    reports np.std of the splits; fastgan's KID reported torch.std (ddof 1), sqrt(n / (n - 1))
    larger (41% at 2 subsets). The per-subset values are recovered from the means over the
    first i subsets (the subsets are drawn one after another from one seeded generator):
    v_i = i * mean_i - (i - 1) * mean_(i-1)."""
    gen = torch.Generator().manual_seed(17)
    x, y = torch.randn(50, 6, generator=gen), torch.randn(45, 6, generator=gen) + 0.3
    means = [kid_from_features(x, y, num_subsets=i, subset_size=20)["kid"] for i in range(1, 6)]
    values = np.array([means[0]] + [(i + 1) * means[i] - i * means[i - 1] for i in range(1, 5)])
    got = kid_from_features(x, y, num_subsets=5, subset_size=20)
    assert got["kid"] == pytest.approx(values.mean(), rel=1e-9)
    assert got["kid_std"] == pytest.approx(float(np.std(values)), rel=1e-6)
    assert got["kid_std"] > 0
    two = kid_from_features(x, y, num_subsets=2, subset_size=20)
    assert two["kid_std"] == pytest.approx(abs(values[0] - values[1]) / 2, rel=1e-6)


def test_zero_dimensional_features_are_refused_clearly():
    """[N, 0] features: FID said 0.0 and KID raised ZeroDivisionError (gamma = 1 / d)."""
    z = torch.zeros(10, 0)
    for fn in (fid_from_features, kid_from_features, precision_recall):
        with pytest.raises(ValueError, match=r"features1 has no feature dimensions|real has no feature"):
            fn(z, z)


def test_numpy_integer_arguments_and_arrays_are_accepted():
    """Counts and ks given as NumPy integers (from an array, a config) are integers:
    'k_pr must be a positive integer, got np.int64(3)' was the error. inception_score takes
    NumPy logits as the other scores take NumPy features; an integer dtype is named as such
    (the error quoted the shape, which was right)."""
    gen = torch.Generator().manual_seed(18)
    a, b = torch.randn(40, 5, generator=gen, dtype=torch.float64), torch.randn(30, 5, generator=gen,
                                                                             dtype=torch.float64)
    assert precision_recall(a, b, k_pr=np.int64(3), k_dc=np.int32(5)) == precision_recall(a, b)
    assert kid_from_features(a, b, num_subsets=np.int64(3), subset_size=np.int64(10), seed=np.int64(2)) == \
        kid_from_features(a, b, num_subsets=3, subset_size=10, seed=2)
    logits = torch.randn(30, 7, generator=gen, dtype=torch.float64)
    assert inception_score(logits.numpy(), splits=np.int64(3)) == inception_score(logits, splits=3)
    with pytest.raises(TypeError, match="floating point.*int64"):
        inception_score(torch.zeros(20, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="seed must be an integer"):
        kid_from_features(a, b, seed=None)
    with pytest.raises(ValueError, match="k_pr must be a positive integer"):
        precision_recall(a, b, k_pr=np.float64(3.0))


def test_fid_from_stats_refuses_what_is_not_a_covariance():
    """sigma = -I against I gave FID 0.0 (tr(-I) + tr(I) - 2 * 0: the negative eigenvalues
    clamped away), and a non-symmetric sigma was silently replaced by its symmetric part.
    Both now raise. A covariance stored in float32 (pytorch-fid's .npz files) is symmetric to
    its rounding and passes, giving the float64 value to float32's precision."""
    d = 6
    zero, eye = np.zeros(d), np.eye(d)
    with pytest.raises(ValueError, match="sigma1 .*negative variance.*not a covariance"):
        fid_from_stats(zero, -eye, zero, eye)
    skew = eye + np.triu(np.ones((d, d)), 1)
    with pytest.raises(ValueError, match="sigma2 is not symmetric.*not a covariance"):
        fid_from_stats(zero, eye, zero, skew)
    gen = torch.Generator().manual_seed(19)
    x, y = torch.randn(300, d, generator=gen, dtype=torch.float64), torch.randn(200, d, generator=gen,
                                                                             dtype=torch.float64) * 1.2
    (m1, s1), (m2, s2) = feature_stats(x), feature_stats(y)
    exact = fid_from_stats(m1, s1, m2, s2)
    stored = fid_from_stats(m1.float().numpy(), s1.float().numpy(), m2.float().numpy(), s2.float().numpy())
    assert stored == pytest.approx(exact, rel=1e-5)
