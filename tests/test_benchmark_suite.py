"""benchmarks/bench_*.py, the ops' pytest-benchmark suite, runs on a GPU machine only for
timing; here every entry this machine can run is executed once, untimed
(--benchmark-disable), so an entry that no longer runs is found in CI and not on a lent GPU.
"""
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_every_benchmark_entry_runs_once(tmp_path):
    # From tmp_path, so that `python -m pytest` does not put the checkout (whose fastgan has
    # no built extension when installed non-editable) ahead of the installed package.
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "benchmarks"), "--benchmark-disable", "-q",
           "-p", "no:cacheprovider", "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT)]
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900,
                       env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    lines = (r.stdout + r.stderr).splitlines()
    tail = "\n".join(lines[-30:])
    assert r.returncode == 0, tail
    summary = lines[-1]  # "N passed, M skipped, ... in Xs" (the -ra reasons above it may say anything)
    assert " passed" in summary and " failed" not in summary and " error" not in summary, tail
