"""The `fastgan` command line: entry points, help, info, one-line errors."""
import json
import shutil
import subprocess
import sys
import tempfile

import pytest


def _run(*args):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=300,
                          cwd=tempfile.gettempdir())  # not the checkout: test the installed package


@pytest.fixture(params=["script", "module"])
def fastgan_cmd(request):
    if request.param == "script":
        exe = shutil.which("fastgan")
        assert exe, "the fastgan console script is not on PATH"
        return [exe]
    return [sys.executable, "-m", "fastgan"]


def test_info_lists_every_backend(fastgan_cmd):
    r = _run(*fastgan_cmd, "info")
    assert r.returncode == 0, r.stderr
    for word in ("fastgan", "torch", "triton", "extension", "reference", "cpp", "cuda"):
        assert word in r.stdout


def test_info_json(fastgan_cmd):
    r = _run(*fastgan_cmd, "info", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["backends"]["reference"]["cpu"]["available"] is True


@pytest.mark.parametrize("args", [["--help"], ["info", "--help"]])
def test_help(fastgan_cmd, args):
    r = _run(*fastgan_cmd, *args)
    assert r.returncode == 0
    assert "usage: fastgan" in r.stdout


def test_version(fastgan_cmd):
    import fastgan

    r = _run(*fastgan_cmd, "--version")
    assert r.returncode == 0 and r.stdout.strip() == f"fastgan {fastgan.__version__}"


@pytest.mark.parametrize(("args", "words"), [
    ([], "required: COMMAND"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["info", "--colour"], "unrecognized arguments: --colour"),
])
def test_errors_are_one_line_and_nonzero(fastgan_cmd, args, words):
    r = _run(*fastgan_cmd, *args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert words in lines[0] and "--help" in lines[0]
