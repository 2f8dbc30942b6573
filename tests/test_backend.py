"""The backend selector, fastgan.info(), and the no-extension fallback."""
import os
import subprocess
import sys
import tempfile
import textwrap

import pytest
import torch

import fastgan
from fastgan import _backend
from fastgan.ops.clip_weights import OP


def _python(code, **env):
    """Runs code in a fresh interpreter (import-time behaviour) and returns the result."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("FASTGAN_", "TRITON_"))}
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env,
                          capture_output=True, text=True, timeout=300,
                          cwd=tempfile.gettempdir())  # not the checkout: test the installed package


def test_set_backend_validates_and_round_trips():
    fastgan.set_backend("reference")
    assert fastgan.get_backend() == "reference"
    with pytest.raises(ValueError, match="unknown backend 'fast'.*auto, triton, cuda, cpp, reference"):
        fastgan.set_backend("fast")
    assert fastgan.get_backend() == "reference"


@pytest.mark.parametrize("make,who", [
    (lambda b: fastgan.nn.activation.BiasLeakyReLU(4, backend=b), "BiasLeakyReLU"),
    (lambda b: fastgan.nn.ConvBNLeakyReLU(3, 4, 3, backend=b), "ConvBNLeakyReLU"),
    (lambda b: fastgan.nn.DCGANGenerator(16, backend=b), "ConvTransposeBNReLU"),
    (lambda b: fastgan.optim.RMSpropClip([torch.nn.Parameter(torch.zeros(2))], lr=1e-3, backend=b),
     "RMSpropClip"),
    (lambda b: fastgan.accelerate(torch.nn.Linear(2, 2), backend=b, verbose=False), "fastgan.accelerate"),
], ids=["BiasLeakyReLU", "ConvBNLeakyReLU", "DCGANGenerator", "RMSpropClip", "accelerate"])
def test_a_misspelled_backend_is_refused_at_construction(make, who):
    """Not at the first forward or step, possibly hours into a run."""
    with pytest.raises(ValueError, match=f"^{who}: unknown backend 'cpu'; expected one of auto, "):
        make("cpu")
    assert make("reference") is not None and make(None) is not None


def test_default_backend_applies_to_ops(require_backend):
    require_backend("cpp", "cpu")
    fastgan.set_backend("reference")
    assert OP.resolve(torch.device("cpu")) == "reference"
    fastgan.set_backend("auto")
    assert OP.resolve(torch.device("cpu")) == "cpp"
    assert OP.resolve(torch.device("cpu"), "reference") == "reference"  # per call wins


def test_explicit_backend_never_falls_back_silently():
    with pytest.raises(fastgan.BackendUnavailable, match="'cuda' cannot run on cpu tensors"):
        OP.resolve(torch.device("cpu"), "cuda")
    with pytest.raises(ValueError, match="unknown backend"):
        OP.resolve(torch.device("cpu"), "gpu")


def test_auto_falls_back_to_reference_on_other_devices():
    assert OP.resolve(torch.device("meta"), "auto") == "reference"


def test_an_op_without_a_backend_says_so():
    op = _backend.Op("demo", auto={"cpu": ("cpp",)})
    with pytest.raises(fastgan.BackendUnavailable, match="demo: has no 'triton' backend"):
        op.resolve(torch.device("cpu"), "triton")


def test_an_extension_without_the_op_is_not_its_cpp_backend(require_backend):
    """An extension built from older sources (no torch.ops.fastgan.<ext_op>): "auto" passes
    over its backends, naming cpp says why."""
    require_backend("cpp", "cpu")
    op = _backend.Op("demo", auto={"cpu": ("cpp",)}, ext_op="no_such_op")
    assert op.resolve(torch.device("cpu"), "auto") == "reference"
    with pytest.raises(fastgan.BackendUnavailable, match="has no op fastgan::no_such_op; rebuild it"):
        op.resolve(torch.device("cpu"), "cpp")
    assert _backend.Op("demo", auto={"cpu": ("cpp",)}, ext_op="clip_weights_").resolve(
        torch.device("cpu"), "auto") == "cpp"


def test_environment_variable_sets_the_default():
    r = _python("import fastgan; print(fastgan.get_backend())", FASTGAN_BACKEND="reference")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "reference"
    # a bad value fails where it is used, with one line naming it; importing fastgan (and so
    # its CLI) still works
    r = _python("""
        import torch, fastgan
        try:
            fastgan.ops.clip_weights_([torch.zeros(2)], 0.1)
        except ValueError as exc:
            print(exc)
        """, FASTGAN_BACKEND="fastest")
    assert r.returncode == 0, r.stderr
    assert "FASTGAN_BACKEND: unknown backend 'fastest'" in r.stdout
    r = _python("from fastgan.cli import main; raise SystemExit(main(['info']))", FASTGAN_BACKEND="fastest")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "fastgan info: error: FASTGAN_BACKEND: unknown backend 'fastest'; expected one of auto, "
        "triton, cuda, cpp, reference"], r.stderr


def test_triton_on_cpu_needs_the_interpreter():
    r = _python("""
        import torch, fastgan
        from fastgan.ops.clip_weights import OP
        try:
            OP.resolve(torch.device("cpu"), "triton")
        except fastgan.BackendUnavailable as e:
            print(e)
    """)
    assert r.returncode == 0, r.stderr
    assert "TRITON_INTERPRET=1" in r.stdout


def test_import_without_the_extension_warns_once_and_falls_back():
    r = _python("""
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import torch, fastgan
        print(sum("compiled extension is not loaded" in str(w.message) for w in caught))
        from fastgan.ops.clip_weights import OP
        print(OP.resolve(torch.device("cpu"), "auto"))
        t = torch.linspace(-1, 1, 11)
        fastgan.ops.clip_weights_([t], 0.5)
        print(t.abs().max().item())
        try:
            fastgan.ops.clip_weights_([t], 0.5, backend="cpp")
        except fastgan.BackendUnavailable as e:
            print(e)
        print(fastgan.info()["backends"]["cpp"]["cpu"])
    """, FASTGAN_NO_EXT="1")
    assert r.returncode == 0, r.stderr
    warned, chosen, max_abs, error, cpp = r.stdout.strip().splitlines()
    assert warned == "1"
    assert chosen == "reference"
    assert float(max_abs) == 0.5
    assert "backend 'cpp' cannot run on cpu tensors: disabled by FASTGAN_NO_EXT=1" in error
    assert "'available': False" in cpp


def test_require_ext_turns_a_missing_extension_into_an_error():
    # A missing module is simulated by a None entry in sys.modules, which makes
    # `from fastgan import _C` raise ImportError as a failed build would.
    r = _python("""
        import sys
        sys.modules["fastgan._C"] = None
        import fastgan
    """, FASTGAN_REQUIRE_EXT="1")
    assert r.returncode != 0
    assert "FASTGAN_REQUIRE_EXT=1 forbids the fallback" in r.stderr


def test_info_reports_versions_and_backends(require_backend):
    require_backend("cpp", "cpu")
    d = fastgan.info()
    assert d["fastgan"] == fastgan.__version__
    assert d["torch"] == torch.__version__
    assert d["extension"]["loaded"] is True
    assert d["backends"]["cpp"]["cpu"]["available"] is True
    assert d["backends"]["reference"]["cpu"] == {"available": True, "reason": "plain PyTorch"}
    assert set(d["backends"]) == {"triton", "cuda", "cpp", "reference"}


def test_triton_kernels_are_installed_as_fastgan_kernels(require_backend):
    require_backend("triton", "cpu")
    import fastgan.kernels.clip_weights as k

    assert k.__name__ == "fastgan.kernels.clip_weights"
    assert callable(k.clip_weights_)
