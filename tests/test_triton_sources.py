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
