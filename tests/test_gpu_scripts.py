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


def test_start_refuses_while_a_runner_is_going(tmp_path):
    """A second `start` cleared $FGS under a runner still writing there (two jobs on one GPU,
    timed, and the first's results lost): it now refuses while the runner lives."""
    fgs = tmp_path / "fgs"
    fgs.mkdir()
    (fgs / "progress.log").write_text("10:00:00 start step (limit 570s)\n")
    runner = subprocess.Popen(["sleep", "60"])
    try:
        (fgs / "runner.pid").write_text(f"{runner.pid}\n")
        env = {"PATH": "/usr/bin:/bin", "FGS": str(fgs), "OUT": str(tmp_path)}
        r = subprocess.run(["bash", str(BENCH / "gpu_session.sh"), "start", "0"], capture_output=True,
                           text=True, timeout=60, env=env)
    finally:
        runner.kill()
        runner.wait()
    assert r.returncode == 3 and f"pid {runner.pid}) is still going" in r.stderr, (r.returncode, r.stderr)
    assert (fgs / "progress.log").exists() and "start step" in r.stdout  # nothing cleared; progress shown
