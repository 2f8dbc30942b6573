"""benchmarks/baselines/metrics.py computes what fastgan.metrics computes, the way the
reference implementations do (bench_fid.py times the two side by side): the same numbers,
so the benchmark compares the cost of one computation."""
import importlib.util
import pathlib

import numpy as np
import pytest
import torch

from fastgan.metrics.kid import kid_from_features
from fastgan.metrics.prdc import precision_recall

_PATH = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "baselines" / "metrics.py"
_spec = importlib.util.spec_from_file_location("metric_baselines", _PATH)
baselines = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(baselines)

pytestmark = pytest.mark.usefixtures("one_thread")


def _features(n, d, shift, seed):
    # no exact ties (the prdc package counts a point on a ball's boundary out, fastgan in)
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen, dtype=torch.float64) + shift


@pytest.mark.parametrize("n1, n2, d", [(37, 41, 5), (60, 60, 17)])
def test_kid_numpy_is_fastgans_kid(n1, n2, d):
    x, y = _features(n1, d, 0.0, 0), _features(n2, d, 0.3, 1)
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
    real, fake = _features(n, d, 0.0, 2), _features(m, d, 0.4, 3)
    want = precision_recall(real, fake)  # float64 on the CPU
    got = baselines.prdc_numpy(real, fake, dtype=np.float64)
    assert got == pytest.approx(want, rel=1e-12)
    assert 0 < want["precision"] < 1 and 0 < want["coverage"] < 1  # the case separates them
