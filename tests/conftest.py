"""Test-session setup shared by every test.

Triton: on a machine without a CUDA GPU the whole session runs Triton's kernels in
its interpreter, on CPU tensors. TRITON_INTERPRET must be set before fastgan's
kernels are defined, so it is set here, before any test module imports fastgan.
An explicit TRITON_INTERPRET=0 is respected (the Triton-on-CPU tests then skip).

GPU tests carry @pytest.mark.gpu and skip, with the reason, where no GPU is visible.

Under CI (CI=true, or FASTGAN_REQUIRE_EXT=1 as .ci/run sets) the C++ and Triton
(interpreter) backends must be available on CPU: a test that would skip for their
absence fails instead, so a broken build cannot pass as a row of skips.
"""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import fastgan  # noqa: E402  (after TRITON_INTERPRET)
from fastgan import _backend  # noqa: E402

HAS_GPU = torch.cuda.is_available()

# Under pytest-xdist (pytest -n N) the N worker processes share the cores: each takes its
# share of them for torch's intra-op threads, rather than all of them (N x oversubscribed).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(max(1, min(torch.get_num_threads(),
                                     _cores // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

_REQUIRED_ON_CI = {("cpp", "cpu"), ("triton", "cpu")}


def pytest_collection_modifyitems(config, items):
    if HAS_GPU:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU and none is visible; benchmarks/gpu_suite.sh "
                                   "runs these on a GPU machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def need_backend(backend, device_type):
    """Skips (or, under CI for the CPU backends, fails) when `backend` cannot run on `device_type`."""
    ok, why = _backend.status(backend, device_type)
    if ok:
        return
    msg = f"backend {backend!r} unavailable on {device_type}: {why}"
    # CI: what .ci/run sets (FASTGAN_REQUIRE_EXT=1), or a CI service's CI=true; Triton on
    # the CPU (its interpreter) only where no GPU makes the session use it
    ci = os.environ.get("CI") == "true" or os.environ.get("FASTGAN_REQUIRE_EXT") == "1"
    if ci and (backend, device_type) in _REQUIRED_ON_CI and not (backend == "triton" and HAS_GPU):
        pytest.fail(f"{msg} (required under CI)")
    pytest.skip(msg)


# Every (backend, device) pair an op test runs on; the GPU ones carry the gpu mark.
BACKEND_DEVICES = [
    pytest.param(("reference", "cpu"), id="reference-cpu"),
    pytest.param(("cpp", "cpu"), id="cpp-cpu"),
    pytest.param(("triton", "cpu"), id="triton-cpu"),
    pytest.param(("reference", "cuda"), id="reference-cuda", marks=pytest.mark.gpu),
    pytest.param(("cuda", "cuda"), id="cuda-cuda", marks=pytest.mark.gpu),
    pytest.param(("triton", "cuda"), id="triton-cuda", marks=pytest.mark.gpu),
]


@pytest.fixture(params=BACKEND_DEVICES)
def backend_device(request):
    """(backend, device) for op tests; skipped where that backend cannot run."""
    backend, device = request.param
    need_backend(backend, device)
    return backend, device


@pytest.fixture(params=[p for p in BACKEND_DEVICES if p.values[0][0] != "reference"])
def fused_backend_device(request):
    """backend_device without the reference: for tests whose oracle is the reference (the
    reference against itself could not fail; its own tests check it against torch)."""
    backend, device = request.param
    need_backend(backend, device)
    return backend, device


@pytest.fixture(autouse=True)
def _restore_default_backend():
    saved = fastgan.get_backend()
    yield
    fastgan.set_backend(saved)


@pytest.fixture
def require_backend():
    """need_backend, for tests that choose their backend themselves."""
    return need_backend


@pytest.fixture
def one_thread():
    """One intra-op thread for the test, restored after it. Tiny tensors through thousands of
    ops (gradgradcheck, a few training steps) gain nothing from threads and, on a loaded
    2-core machine, lose much to their synchronization (measured: a ResNet gradgradcheck
    took 33 s on 2 threads, 1 s on one)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _exact_cuda_math():
    """On a GPU every test compares float32 as float32, the same way each run: TF32 off for
    cuDNN's convolutions and cuBLAS (torch's default turns it on for cuDNN; the tests'
    tolerances are float32's: a c1024 block test failed at 2.5% relative with it, an H100,
    2026-11-22), cuDNN restricted to deterministic algorithms and not autotuning, so that a
    test compares two runs of the same algorithms. The trainer turns cudnn.benchmark on for
    its run; the four settings are restored after each test."""
    if not HAS_GPU:
        yield
        return
    cudnn = torch.backends.cudnn
    saved = cudnn.allow_tf32, cudnn.deterministic, cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32
    cudnn.allow_tf32, cudnn.deterministic, cudnn.benchmark = False, True, False
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    cudnn.allow_tf32, cudnn.deterministic, cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32 = saved
