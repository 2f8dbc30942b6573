"""What the source distribution holds, and the extension's check of the torch it was built
against (fastgan._ext.version_mismatch)."""
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile

import pytest

from fastgan import _ext

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("built, running, mismatch", [
    ("2.13.0", "2.13.0+cpu", False), ("2.13.0", "2.13.1", False), ("2.11.0+cu130", "2.11.0", False),
    ("2.11.0", "2.13.0", True), ("2.13.0", "3.13.0", True), (None, "2.13.0", False),
])
def test_an_extension_built_against_another_torch_release_is_named(built, running, mismatch):
    text = _ext.version_mismatch(built, running)
    assert (text is not None) == mismatch
    if mismatch:
        assert f"built against torch {built} and torch {running} is running" in text


@pytest.mark.skipif(not (ROOT / ".git").exists() or shutil.which("git") is None,
                    reason="needs the git checkout (the tracked files make the source tree)")
def test_the_sdist_holds_every_source_a_build_needs(tmp_path):
    """setuptools put into the sdist only the sources listed in ext_modules (none of the
    headers, no .cu with a CPU torch, no C++ without torch): a build from it failed on the
    first #include. MANIFEST.in grafts csrc/ and kernels/ and adds CMakeLists.txt."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    src = tmp_path / "src"
    for name in tracked:
        if (ROOT / name).is_file() and not (ROOT / name).is_symlink():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    os.symlink("../kernels", src / "fastgan" / "kernels")  # as in the checkout
    env = {**os.environ, "FASTGAN_BUILD_EXT": "0"}  # the sdist must not depend on the build settings
    r = subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path / "dist")], cwd=src,
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    (sdist,) = (tmp_path / "dist").glob("fastgan-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    needed = [n for n in tracked if n.startswith(("csrc/", "kernels/")) or n == "CMakeLists.txt"]
    assert len(needed) > 60
    missing = sorted(set(needed) - names)
    assert not missing, missing
    assert not [n for n in names if n.endswith((".so", ".o"))]
