"""The metrics' heavy parts against what the standard implementations do.

* FID's matrix square root at D = 2048 (Inception's features): fastgan's two float64
  eigendecompositions on the device (fastgan.metrics.fid, method "eigh") vs
  scipy.linalg.sqrtm of the product on the CPU, as pytorch-fid and torch-fidelity compute it.
* KID: 100 subsets of 1,000 (the defaults) as batched products on the device.
* precision/recall/density/coverage: chunked k-NN over 10,000 x 10,000 features.

On a machine without a GPU the sizes shrink (D = 256, 2,000 samples) so that the file still
runs; the numbers that matter are the GPU's. The end-to-end FID-50k is benchmarks/fid50k.py.
"""
import pytest
import torch

from fastgan.metrics.fid import feature_stats, trace_sqrt_product
from fastgan.metrics.kid import kid_from_features
from fastgan.metrics.prdc import precision_recall

GPU = torch.cuda.is_available()
D = 2048 if GPU else 256
N = 10_000 if GPU else 2_000


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
    benchmark.pedantic(fn, rounds=3 if impl == "scipy-sqrtm" else 10, iterations=1, warmup_rounds=1)


def test_kid(benchmark, device):
    x = _features(N, D, 0.0, 2).to(device)
    y = _features(N, D, 0.05, 3).to(device)
    benchmark.group = f"kid-100x1000-D{D}"
    benchmark.pedantic(lambda: kid_from_features(x, y), rounds=5, iterations=1, warmup_rounds=1)


def test_precision_recall(benchmark, device):
    x = _features(N, D, 0.0, 4).to(device)
    y = _features(N, D, 0.05, 5).to(device)
    benchmark.group = f"prdc-{N}x{N}-D{D}"
    benchmark.pedantic(lambda: precision_recall(x, y), rounds=3, iterations=1, warmup_rounds=1)
