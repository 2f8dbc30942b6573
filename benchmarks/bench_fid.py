"""The metrics' heavy parts against what the standard implementations do.

* FID's matrix square root at D = 2048 (Inception's features): fastgan's two float64
  eigendecompositions on the device (fastgan.metrics.fid, method "eigh") vs
  scipy.linalg.sqrtm of the product on the CPU, as pytorch-fid and torch-fidelity compute it.
* KID: 100 subsets of 1,000 (the defaults) as batched products on the device vs a NumPy
  loop over the subsets on the CPU, as the paper's code and torch-fidelity compute it.
* precision/recall/density/coverage: chunked k-NN over 10,000 x 10,000 features on the
  device vs the prdc package's way, full NumPy distance matrices on the CPU.
The baselines are benchmarks/baselines/metrics.py (tests/metrics/test_scores.py:
the same numbers as fastgan's).

On a machine without a GPU the sizes shrink (D = 256, 2,000 samples, 10 KID subsets) so
that the file still runs; the numbers that matter are the GPU's. The end-to-end FID-50k is
benchmarks/fid50k.py.
"""
import pathlib
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # --import-mode=importlib: baselines/
from baselines.metrics import kid_numpy, prdc_numpy  # noqa: E402

from fastgan.metrics.fid import feature_stats, trace_sqrt_product  # noqa: E402
from fastgan.metrics.kid import kid_from_features  # noqa: E402
from fastgan.metrics.prdc import precision_recall  # noqa: E402

GPU = torch.cuda.is_available()
D = 2048 if GPU else 256
N = 10_000 if GPU else 2_000
KID_SUBSETS = 100 if GPU else 10


def _features(n, d, shift, seed):
    gen = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=gen) / d ** 0.5
    return (torch.randn(n, d, generator=gen) @ mix + shift).relu()    # correlated, like pool features


@pytest.fixture(scope="module")
def covariances():
    _, s1 = feature_stats(_features(2 * D, D, 0.0, 0))
    _, s2 = feature_stats(_features(2 * D, D, 0.1, 1))
    return s1, s2


@pytest.mark.parametrize("impl", ["fastgan-eigh", "scipy-sqrtm"])
def test_fid_sqrtm(benchmark, covariances, device, impl):
    s1, s2 = covariances
    if impl == "fastgan-eigh":
        a, b = s1.to(device), s2.to(device)
        fn = lambda: float(trace_sqrt_product(a, b))  # noqa: E731  (float(): waits for the device)
    else:
        fn = lambda: float(trace_sqrt_product(s1, s2, method="scipy"))  # noqa: E731
    benchmark.group = f"fid-trace-sqrt-D{D}"
    benchmark.extra_info["D"] = D
    # scipy's sqrtm: one round, as the NumPy baselines below (nothing to warm up; at D = 2048
    # its Schur decomposition takes seconds to tens of seconds on the CPU, of a short GPU lease)
    if impl == "scipy-sqrtm":
        benchmark.pedantic(fn, rounds=1, iterations=1, warmup_rounds=0)
    else:
        benchmark.pedantic(fn, rounds=10, iterations=1, warmup_rounds=1)


def _fastgan_vs_numpy(benchmark, device, impl, seeds, fastgan_fn, numpy_fn, rounds):
    """Times fastgan_fn(x, y) on the device (impl "fastgan-...": `rounds` rounds after a
    warm-up) or numpy_fn(x, y) (one round: NumPy has nothing to warm up) on a pair of
    N x D feature sets."""
    x = _features(N, D, 0.0, seeds[0])
    y = _features(N, D, 0.05, seeds[1])
    if impl.startswith("fastgan"):
        x, y = x.to(device), y.to(device)
        benchmark.pedantic(lambda: fastgan_fn(x, y), rounds=rounds, iterations=1, warmup_rounds=1)
    else:
        benchmark.pedantic(lambda: numpy_fn(x, y), rounds=1, iterations=1, warmup_rounds=0)


@pytest.mark.parametrize("impl", ["fastgan-batched", "numpy-loop"])
def test_kid(benchmark, device, impl):
    benchmark.group = f"kid-{KID_SUBSETS}x1000-D{D}"
    _fastgan_vs_numpy(benchmark, device, impl, (2, 3),
                      lambda x, y: kid_from_features(x, y, num_subsets=KID_SUBSETS),
                      lambda x, y: kid_numpy(x, y, num_subsets=KID_SUBSETS), rounds=5)


@pytest.mark.parametrize("impl", ["fastgan-chunked", "numpy-full"])
def test_precision_recall(benchmark, device, impl):
    benchmark.group = f"prdc-{N}x{N}-D{D}"
    # the features' float32 as the prdc package keeps it; without a GPU, float64 as fastgan
    # computes on the CPU (in the same dtype the two took about the same time there)
    dtype = np.float32 if GPU else np.float64
    _fastgan_vs_numpy(benchmark, device, impl, (4, 5), precision_recall,
                      lambda x, y: prdc_numpy(x, y, dtype=dtype), rounds=3)
