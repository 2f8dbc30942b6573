"""The Triton kernels compile for a GPU (sm_90), on any machine with triton (no GPU needed).

The test session runs the kernels in Triton's interpreter, which accepts code the GPU
compiler refuses (a non-constexpr module global read inside a kernel passed the interpreter
and failed on sm_90). tests/triton_aot_check.py compiles every kernel variant the ops
launch, from a fresh cache: about 30 seconds on 2 cores.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fastgan import kernels

SCRIPT = Path(__file__).resolve().parent / "triton_aot_check.py"


@pytest.mark.skipif(kernels.error() is not None, reason="triton is not usable here")
@pytest.mark.skipif(torch.cuda.is_available(),
                    reason="a GPU machine compiles the kernels for real in the GPU tests")
def test_every_triton_kernel_compiles_for_sm90(tmp_path):
    env = dict(os.environ, TRITON_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("TRITON_INTERPRET", None)
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert "compiled" in proc.stdout and "for sm_90" in proc.stdout


@pytest.mark.skipif(kernels.error() is not None, reason="triton is not usable here")
def test_device_constants_are_never_evicted():
    """A CUDA graph captured with the Triton backend reads the launchers' device tensors of
    hyperparameters by address at every replay. They were LRU caches of 64 entries: past
    64 keys one was freed and its memory reused under the graph. Every such cache is now
    unbounded (kernels._launch.device_constant), and hands out the same tensor for a key."""
    import importlib
    names = {"batch_norm_act": "_hyper", "began_loss": "_hyper", "bias_leaky_relu": "_slope",
             "clip_weights": "bound", "penalty": "_hyper", "penalty_sampling": "_bounds",
             "rmsprop_clip": "_hyper", "sample_norm_act": "_hyper"}
    for module, name in names.items():
        fn = getattr(importlib.import_module(f"fastgan.kernels.{module}"), name)
        assert fn.cache_info().maxsize is None, f"{module}.{name}"
    slope = importlib.import_module("fastgan.kernels.bias_leaky_relu")._slope
    first = slope(0.123, torch.float32, torch.device("cpu"))
    for k in range(200):
        slope(0.5 + k, torch.float32, torch.device("cpu"))
    assert slope(0.123, torch.float32, torch.device("cpu")) is first
    src = "".join(p.read_text() for p in (Path(kernels.__file__).parent).glob("*.py"))
    assert src.count("@device_constant") == len(names)  # the list above is all of them
