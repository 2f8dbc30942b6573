"""The GPU machine's scripts (benchmarks/gpu_suite.sh, gpu_session.sh) run only on a lent GPU,
where a syntax error costs a lease: here they are parsed, and their argument errors checked."""
import pathlib
import shutil
import subprocess

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = ["gpu_suite.sh", "gpu_session.sh"]
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


@pytest.mark.parametrize("script", SCRIPTS)
def test_parses(script):
    r = subprocess.run(["bash", "-n", str(BENCH / script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("script, words", [("gpu_suite.sh", "unknown stage nope"),
                                           ("gpu_session.sh", "unknown command nope")])
def test_an_unknown_stage_or_command_is_refused(script, words):
    r = subprocess.run(["bash", str(BENCH / script), "nope"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and words in r.stderr, (r.returncode, r.stderr)


def test_collect_with_nothing_to_collect(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "FGS": str(tmp_path / "none"), "OUT": str(tmp_path)}
    r = subprocess.run(["bash", str(BENCH / "gpu_session.sh"), "collect"], capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode == 0 and "nothing under" in r.stdout
    assert not (tmp_path / "fgs.tgz").exists()
