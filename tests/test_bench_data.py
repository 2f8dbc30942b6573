"""benchmarks/bench_data.py, the data backends' images/s (issue 6, item 7), on a CPU: a small
run of every backend this machine has, its JSON, and the nvJPEG probe's bookkeeping (with a
stand-in for torchvision's decode_jpeg, which needs a GPU)."""
import importlib.util
import json
import pathlib
import sys
import types

import pytest
import torch

from fastgan.data import _dali

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "bench_data.py"


@pytest.fixture(scope="module")
def bench_data():
    spec = importlib.util.spec_from_file_location("bench_data_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_small_run_of_every_backend(bench_data, tmp_path, monkeypatch, capsys):
    n = 2 * bench_data.BATCH
    monkeypatch.setenv("FASTGAN_BENCH_N", str(n))
    monkeypatch.setenv("FASTGAN_BENCH_DATA", str(tmp_path / "set"))
    out = tmp_path / "data.json"
    assert bench_data.main(["--backends", "plain,cpu,dali,cache", "--workers", "1", "--json", str(out)]) == 0
    assert len(list((tmp_path / "set").glob("*.jpg"))) == n

    results = json.loads(out.read_text())
    expected = {"plain", "cpu", "cache"} | ({"dali"} if _dali.available() else set())
    assert set(results["images_per_s"]) == expected
    assert all(rate > 0 for rate in results["images_per_s"].values()), results
    assert (results["images"], results["batch"], results["resolution"], results["workers"]) == (n, 128, 64, 1)
    printed = capsys.readouterr().out
    for backend in expected:
        assert f"{backend:7s}" in printed
    if _dali.available():
        assert "dali / cpu: " in printed and "dali / plain: " in printed
    assert "cpu / plain: " in printed


def test_bad_epochs_is_refused(bench_data):
    with pytest.raises(SystemExit):
        bench_data.main(["--epochs", "0"])
    with pytest.raises(SystemExit):
        bench_data.main(["--rounds", "0"])


def test_nvjpeg_ahead_suffix(bench_data, tmp_path, monkeypatch, capsys):
    from fastgan.data import _nvjpeg
    for bad in ("cpu:2", "nvjpeg:0", "nvjpeg:x", "nvjpeg:"):
        with pytest.raises(SystemExit):
            bench_data.main(["--backends", bad])
        assert "only nvjpeg takes a suffix" in capsys.readouterr().err
    seen = []

    def make_loader(path, **kw):  # records what the backend is built with; an empty epoch
        seen.append((kw["backend"], _nvjpeg.AHEAD))
        return []

    monkeypatch.setattr(bench_data, "make_loader", make_loader)
    default = _nvjpeg.AHEAD
    bench_data.measure(tmp_path, "nvjpeg:3", torch.device("cpu"), 1)
    bench_data.measure(tmp_path, "nvjpeg", torch.device("cpu"), 1)
    assert seen == [("nvjpeg", 3), ("nvjpeg", default)] and _nvjpeg.AHEAD == default


def test_rounds_report_medians_and_per_round_ratios(bench_data, tmp_path, monkeypatch, capsys):
    """Rounds measure the backends in turn; a backend's rate is the median of its rounds and
    a ratio the median of each round's ratio (here a stand-in measure with known rates)."""
    monkeypatch.setenv("FASTGAN_BENCH_N", "4")
    monkeypatch.setenv("FASTGAN_BENCH_DATA", str(tmp_path / "set"))
    rates = {"plain": iter([100.0, 50.0, 90.0]), "cpu": iter([200.0, 80.0, 120.0])}
    order = []

    def measure(path, backend, device, workers, epochs=1):
        order.append(backend)
        return next(rates[backend])

    monkeypatch.setattr(bench_data, "measure", measure)
    out = tmp_path / "r.json"
    assert bench_data.main(["--backends", "plain,cpu", "--rounds", "3", "--json", str(out)]) == 0
    assert order == ["plain", "cpu"] * 3
    results = json.loads(out.read_text())
    assert results["images_per_s"] == {"plain": 90, "cpu": 120}
    assert results["rounds"] == {"plain": [100, 50, 90], "cpu": [200, 80, 120]}
    printed = capsys.readouterr().out
    # ratios 2.0, 1.6, 1.33: median 1.60, not 1.33 = 120 / 90, the ratio of the medians
    assert "cpu / plain: 1.60x (median of 3 rounds, 1.33-2.00)" in printed
    assert "round 2: plain 50, cpu 80" in printed


def test_nvjpeg_probe_threads_and_jpegs_per_call(bench_data, tmp_path, monkeypatch):
    calls = []

    def decode_jpeg(data, device=None):
        assert all(d.dtype == torch.uint8 and d.dim() == 1 for d in data)
        calls.append(len(data))
        return [torch.zeros(3, 218, 178, dtype=torch.uint8) for _ in data]

    io_module = types.ModuleType("torchvision.io")
    io_module.decode_jpeg = decode_jpeg
    monkeypatch.setitem(sys.modules, "torchvision", types.ModuleType("torchvision"))
    monkeypatch.setitem(sys.modules, "torchvision.io", io_module)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    batch = bench_data.BATCH
    root = bench_data.make_set(tmp_path / "set", 4 * batch)

    probe = bench_data.probe_nvjpeg(root, "cpu", batches=4, threads=(1, 2), per_call=(batch, 4 * batch))
    assert set(probe) == {"threads", "per_call"}
    assert set(probe["threads"]) == {1, 2} and set(probe["per_call"]) == {batch, 4 * batch}
    assert all(r > 0 for part in probe.values() for r in part.values())
    # warm-up; 4 lists per thread count; 4 lists of BATCH, then 1 of 4 x BATCH
    assert calls == [batch] + [batch] * 8 + [batch] * 4 + [4 * batch]


def test_plain_baseline_computes_what_the_cpu_backend_does(bench_data, tmp_path):
    # the public-style loader is a fair reference only if it does the same work: the same
    # pixels as fastgan's cpu backend (no flip, files in order; both cut the crop out of
    # PIL's decoding and resize it with the antialiased bilinear filter, PIL's there and
    # torch's here, a level of rounding apart), in the same range and shape
    from baselines.pil_loader import PlainImageFolder
    from fastgan.data import make_loader
    root = bench_data.make_set(tmp_path / "set", 6)
    plain = torch.stack([PlainImageFolder(root)[i][0] for i in range(6)])
    ours, _ = next(iter(make_loader(root, resolution=64, batch_size=6, backend="cpu", shuffle=False,
                                    num_workers=0, verbose=False)))
    assert plain.shape == ours.shape == (6, 3, 64, 64) and plain.dtype == ours.dtype == torch.float32
    d = ((plain - ours) * 127.5).abs()
    assert d.max() < 1 + 1e-4 and (d > 0.5).float().mean() < 0.01
