"""Shared benchmark fixtures: the device, and a timer that records GB/s."""
import os

import pytest
import torch
from torch import nn

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def pytest_configure(config):
    """Refuses, before anything is timed, a bad FASTGAN_BACKEND and a --benchmark-json whose
    folder does not exist (pytest-benchmark would find it only after every run)."""
    from fastgan import _backend
    try:
        _backend.get_backend()
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    path = getattr(config.option, "benchmark_json", None)  # a pathlib.Path
    if path:
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise pytest.UsageError(f"--benchmark-json {path}: the folder {folder} does not exist")


def pytest_benchmark_update_machine_info(config, machine_info):
    """What the run measured with, for benchmarks/report.py's header."""
    import fastgan
    from fastgan._info import _version
    versions = {"fastgan": fastgan.__version__, "torch": torch.__version__,
                "triton": _version("triton") or "not installed"}
    if DEVICE == "cuda":
        versions["cuda"] = torch.version.cuda
        versions["device"] = torch.cuda.get_device_name()
    else:
        versions["device"] = f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    versions["backend"] = os.environ.get("FASTGAN_BACKEND", "auto")
    machine_info["fastgan"] = versions


@pytest.fixture
def device():
    """The device benchmarks run on: the GPU when there is one."""
    return DEVICE


@pytest.fixture
def measure(benchmark):
    """measure(fn, nbytes, group): times fn, then records bytes and GB/s (nbytes / median)
    beside it (nbytes=None: a whole training step, where GB/s means nothing).

    On a GPU a round is `iterations` calls back to back and one synchronization after the
    last, so the time per call is the op's throughput in a stream of launches, as in a
    training step; a synchronization after every call (the 2026-11-22 H100 report's way)
    timed launch latency plus a host round trip instead, flat across sizes for small ops."""
    def run(fn, nbytes, group, rounds=50, iterations=5):
        fn()  # warm-up: compilation, autotuning, metadata caches
        if DEVICE == "cuda":
            torch.cuda.synchronize()
            calls = [0]

            def timed():
                fn()
                calls[0] += 1
                if calls[0] % iterations == 0:  # the last call of a round (warm-up rounds too)
                    torch.cuda.synchronize()
        else:
            timed = fn
        benchmark.group = group
        benchmark.pedantic(timed, rounds=rounds, iterations=iterations, warmup_rounds=3)
        if nbytes is not None and benchmark.stats is not None:  # None under --benchmark-disable
            benchmark.extra_info["bytes"] = nbytes
            benchmark.extra_info["GB/s"] = round(nbytes / benchmark.stats.stats.median / 1e9, 2)
    return run


def _dcgan_critic(ndf=64):
    """The DCGAN 64x64 discriminator (Radford et al. 2015): 11 parameter tensors,
    2,765,568 parameters at ndf = 64."""
    return nn.Sequential(
        nn.Conv2d(3, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2),
        nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2),
        nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False))


@pytest.fixture
def dcgan_critic():
    """A factory of the DCGAN 64x64 critic (the benchmarks' parameter set)."""
    return _dcgan_critic


@pytest.fixture
def skip_unavailable():
    """skip_unavailable(impl, device): skips a "fastgan-<backend>" implementation whose
    backend cannot run here, and the Triton interpreter (a test vehicle, not a backend to time)."""
    from fastgan import _backend

    def check(impl, device):
        if not impl.startswith("fastgan-"):
            return
        backend = impl.split("-")[1]
        ok, why = _backend.status(backend, device)
        if not ok:
            pytest.skip(f"{backend} backend unavailable on {device}: {why}")
        if backend == "triton" and device == "cpu":
            pytest.skip("the Triton interpreter is a test vehicle, not a performance backend")
    return check
