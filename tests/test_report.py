"""benchmarks/report.py (the kernel benchmarks' markdown report) and the benchmark suite's
up-front checks (benchmarks/conftest.py)."""
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("fastgan_bench_report", ROOT / "benchmarks" / "report.py")
report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(report)


def _bench(name, group, median, **params):
    return {"name": f"test_x[{name}]", "group": group, "params": params,
            "stats": {"median": median, "iqr": median / 10}, "extra_info": {}}


def _speeds(benchmarks):
    return {name: round(speed, 3) for _, name, _, _, _, speed, _, _ in report._rows({"benchmarks": benchmarks})}


def _vs_best(benchmarks):
    return {row[1]: None if row[-1] is None else round(row[-1], 3)
            for row in report._rows({"benchmarks": benchmarks})}


def test_a_row_is_measured_against_the_eager_row_with_its_other_parameters():
    """The committed H100 report's fault: a bf16 row against the slowest eager row, float32."""
    g = "wgan-gp critic step batch 256 cuda"
    speeds = _speeds([
        _bench("256-eager-float32", g, 16.0, batch=256, impl="eager", amp=False),
        _bench("256-eager-bf16-autocast", g, 14.0, batch=256, impl="eager", amp=True),
        _bench("256-fastgan-float32", g, 8.0, batch=256, impl="fastgan", amp=False),
        _bench("256-fastgan-bf16-autocast", g, 28.0, batch=256, impl="fastgan", amp=True),
    ])
    assert speeds == {"256-eager-float32": 1.0, "256-eager-bf16-autocast": 1.0,
                      "256-fastgan-float32": 2.0, "256-fastgan-bf16-autocast": 0.5}


def test_the_loop_baseline_is_preferred_and_a_group_without_eager_uses_its_slowest():
    g = "clip_weights dcgan float32 cuda"
    speeds = _speeds([
        _bench("eager-loop-fp32", g, 4.0, impl="eager-loop", dtype="float32"),
        _bench("eager-foreach-fp32", g, 1.0, impl="eager-foreach", dtype="float32"),
        _bench("fastgan-cuda-fp32", g, 0.5, impl="fastgan-cuda", dtype="float32"),
        _bench("eigh", "fid", 2.0, impl="eigh"),
        _bench("sqrtm", "fid", 6.0, impl="sqrtm"),
    ])
    assert speeds == {"eager-loop-fp32": 1.0, "eager-foreach-fp32": 4.0, "fastgan-cuda-fp32": 8.0,
                      "eigh": 3.0, "sqrtm": 1.0}
    rows = list(report._rows({"benchmarks": [_bench("eigh", "fid", 2.0, impl="eigh")]}))
    assert rows[0][-2] == " (vs slowest)"


def test_fastgan_rows_are_also_measured_against_the_fastest_plain_row():
    """The H100 report's "17.92x" of a clip that was 0.91x the foreach clamp: "vs eager" is
    against the Python loop, "vs best plain" against the fastest row that is not fastgan's."""
    g = "clip_weights dcgan float32 cuda"
    rows = [
        _bench("eager-loop-fp32", g, 3.4, impl="eager-loop", dtype="float32"),
        _bench("eager-foreach-fp32", g, 0.175, impl="eager-foreach", dtype="float32"),
        _bench("torch.compile-fp32", g, 0.25, impl="torch.compile", dtype="float32"),
        _bench("fastgan-cuda-fp32", g, 0.19, impl="fastgan-cuda", dtype="float32"),
        _bench("fastgan-cuda-bf16", g, 0.1, impl="fastgan-cuda", dtype="bfloat16"),
    ]
    assert _speeds(rows)["fastgan-cuda-fp32"] == round(3.4 / 0.19, 3)
    # bf16 has no plain row of its own parameters: the fastest plain row of any
    assert _vs_best(rows) == {"eager-loop-fp32": None, "eager-foreach-fp32": None, "torch.compile-fp32": None,
                              "fastgan-cuda-fp32": round(0.175 / 0.19, 3), "fastgan-cuda-bf16": 1.75}
    lines = report.table({"benchmarks": rows}).splitlines()
    assert lines[0].endswith("| vs eager | vs best plain |")
    assert f"| {g} | fastgan-cuda-fp32 | 190.0000 | 19.0000 |  | 17.89x | 0.92x |" in lines
    assert f"| {g} | eager-foreach-fp32 | 175.0000 | 17.5000 |  | 19.43x |  |" in lines


def test_the_header_names_the_versions(tmp_path, capsys):
    data = {"benchmarks": [_bench("eager", "g", 1.0, impl="eager")], "datetime": "2026-11-23",
            "machine_info": {"fastgan": {"fastgan": "0.1.0", "torch": "2.13.0", "device": "cpu (2 cores)"}}}
    path = tmp_path / "b.json"
    path.write_text(json.dumps(data))
    assert report.main([str(path), "--out", str(tmp_path / "r.md")]) == 0
    assert "- fastgan 0.1.0, torch 2.13.0, device cpu (2 cores)" in (tmp_path / "r.md").read_text()


def test_several_files_make_one_report(tmp_path, capsys):
    """benchmarks/gpu_session.sh writes one JSON per benchmark file (a file cut off by its
    time limit loses only its own results); the report joins them, header from the first."""
    first = {"benchmarks": [_bench("eager", "g1", 1.0, impl="eager"), _bench("fastgan-cuda", "g1", 0.5, impl="fastgan-cuda")],
             "machine_info": {"fastgan": {"device": "first"}}}
    second = {"benchmarks": [_bench("eager", "g2", 3.0, impl="eager")], "machine_info": {"fastgan": {"device": "second"}}}
    paths = []
    for i, data in enumerate((first, second)):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(data))
    assert report.main([str(p) for p in paths] + ["--out", str(tmp_path / "r.md")]) == 0
    text = (tmp_path / "r.md").read_text()
    assert "| g1 | fastgan-cuda | 500.0000 |" in text and "| g2 | eager | 3000.0000 |" in text
    assert "device first" in text and "device second" not in text
    with pytest.raises(SystemExit, match="cannot read"):
        report.main([str(paths[0]), str(tmp_path / "missing.json")])


@pytest.mark.parametrize("case, message", [
    ("missing", "cannot read {p}: No such file or directory"),
    ("not-json", "{p} is not JSON"),
    ("step-json", "{p} is not a pytest-benchmark JSON file"),
    ("empty", "{p} holds no benchmark results"),
    ("notes", "cannot read the notes file"),
    ("out", "cannot write"),
])
def test_bad_input_is_one_line_naming_it(tmp_path, case, message):
    path = tmp_path / "b.json"
    contents = {"not-json": "x", "step-json": json.dumps({"configs": []}), "empty": json.dumps({"benchmarks": []})}
    good = json.dumps({"benchmarks": [_bench("eager", "g", 1.0, impl="eager")]})
    if case != "missing":
        path.write_text(contents.get(case, good))
    extra = {"notes": ["--notes", str(tmp_path / "none.txt")],
             "out": ["--out", str(tmp_path / "no" / "r.md")]}.get(case, [])
    with pytest.raises(SystemExit) as exc:
        report.main([str(path), *extra])
    text = str(exc.value)
    assert text.startswith("report.py: ") and "\n" not in text
    assert message.format(p=path) in text


@pytest.mark.parametrize("case", ["backend", "json-folder"])
def test_the_suite_refuses_bad_settings_before_timing_anything(tmp_path, case):
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    args = []
    if case == "backend":
        env["FASTGAN_BACKEND"] = "bogus"
    else:
        args = ["--benchmark-json", str(tmp_path / "no" / "out.json")]
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "benchmarks" / "bench_began_loss.py"), "-q",
           "-p", "no:cacheprovider", "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT), *args]
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    out = r.stdout + r.stderr
    assert r.returncode == 4, out  # pytest's usage error
    assert ("FASTGAN_BACKEND: unknown backend 'bogus'" if case == "backend"
            else f"the folder {tmp_path / 'no'} does not exist") in out
    assert "passed" not in out and "Traceback" not in out
