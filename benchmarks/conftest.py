"""Shared benchmark fixtures: the device, and a timer that syncs and records GB/s."""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture
def device():
    """The device benchmarks run on: the GPU when there is one."""
    return DEVICE


@pytest.fixture
def measure(benchmark):
    """measure(fn, nbytes, group): times fn (synchronizing a GPU after each call, so the
    time covers its work), then records bytes and GB/s (nbytes / median) beside it."""
    def run(fn, nbytes, group, rounds=50, iterations=5):
        fn()  # warm-up: compilation, autotuning, metadata caches
        if DEVICE == "cuda":
            timed = lambda: (fn(), torch.cuda.synchronize())  # noqa: E731
        else:
            timed = fn
        benchmark.group = group
        benchmark.pedantic(timed, rounds=rounds, iterations=iterations, warmup_rounds=3)
        benchmark.extra_info["bytes"] = nbytes
        benchmark.extra_info["GB/s"] = round(nbytes / benchmark.stats.stats.median / 1e9, 2)
    return run
