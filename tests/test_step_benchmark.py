"""benchmarks/step_e2e.py, the end-to-end step benchmark (issue 9, items 3-5), on a CPU:
its small configuration end to end (every model, every implementation, the profiler
breakdown, the report and its JSON, the short table last), and the pieces the GPU run
relies on that a CPU can check: the kernel-name rule, the trace breakdown, the
device-resident loader.
"""
import importlib.util
import json
import math
import os
import pathlib
import re
import subprocess
import sys

import pytest
import torch

from fastgan import models

BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCH / "step_e2e.py"
IMPLS = ["eager-public", "eager-careful", "compile", "fastgan"]
CONFIG_MODELS = {"wgan-gp-dcgan": "wgan-gp", "dcgan": "dcgan", "wgan": "wgan", "wgan-gp-resnet": "wgan-gp",
                 "began": "began"}


def _script_module():
    spec = importlib.util.spec_from_file_location("step_e2e_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def step_e2e():
    return _script_module()


def test_small_configuration_end_to_end(tmp_path):
    out = tmp_path / "report"
    # the small configuration, fewer timed steps: this checks the path, not the speed
    cmd = [sys.executable, str(SCRIPT), "--small", "--device", "cpu", "--out", str(out), "--threads", "1",
           "--warmup", "1", "--steps", "1", "--repeats", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]

    mds, jsons = sorted(out.glob("*.md")), sorted(out.glob("*.json"))
    assert len(mds) == 1 and len(jsons) == 1, sorted(p.name for p in out.iterdir())
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}-cpu-step-b8\.md", mds[0].name), mds[0].name
    assert f"report: {mds[0]}" in proc.stdout
    assert jsons[0].stem == mds[0].stem
    result = json.loads(jsons[0].read_text())

    env = result["environment"]
    assert env["device"] == "cpu" and env["configuration"] == "small"
    assert env["torch"] == torch.__version__ and env["compile_backend"] == "aot_eager"
    assert [c["key"] for c in result["configs"]] == list(CONFIG_MODELS)
    for c in result["configs"]:
        assert (c["resolution"], c["batch"], c["width"]) == (16, 8, 16)
        n_critic = models.get(CONFIG_MODELS[c["key"]]).defaults["n_critic"]
        assert c["n_critic"] == n_critic
        assert [r["impl"] for r in c["rows"]] == IMPLS
        for r in c["rows"]:
            where = f"{c['label']} {r['impl']}"
            assert "error" not in r, f"{where}: {r.get('error')}"
            # one precision for (b), (c) and fastgan on a CPU: float32 (no emulated bf16)
            assert r["precision"] == "fp32", where
            its, imgs = r["gen_it_s"], r["images_s"]
            assert 0 < its["min"] <= its["q1"] <= its["median"] <= its["q3"] <= its["max"], where
            assert math.isclose(imgs["median"], its["median"] * n_critic * c["batch"], rel_tol=1e-9), where
            assert math.isclose(r["step_ms"], 1e3 / its["median"], rel_tol=1e-9), where
            assert all(math.isfinite(v) for v in r["losses"].values()) and set(r["losses"]) == {"d", "g"}, where
            assert r["param_change"]["generator"] > 0 and r["param_change"]["critic"] > 0, where
            prof = r["profile"]
            assert prof["ops"] > 10 and prof["conv_ms"] > 0 and prof["other_ms"] >= 0, where
            assert math.isclose(prof["step_over_conv"], r["step_ms"] / prof["conv_ms"], rel_tol=1e-9), where
        s = c["summary"]
        by = {r["impl"]: r["gen_it_s"]["median"] for r in c["rows"]}
        assert math.isclose(s["fastgan_vs_public"], by["fastgan"] / by["eager-public"], rel_tol=1e-9)
        assert math.isclose(s["fastgan_vs_best_plain"], by["fastgan"] / max(by["eager-careful"], by["compile"]),
                            rel_tol=1e-9)

    # the targets are computed from the measurements (here on the small stand-in configuration)
    targets = result["targets"]
    assert len(targets) == 4
    head = result["configs"][0]
    assert targets[0]["value"] == head["summary"]["fastgan_vs_public"]
    fg = head["rows"][IMPLS.index("fastgan")]
    assert targets[2]["value"] == fg["profile"]["step_over_conv"]
    # ... but not judged: neither the target's configuration nor a CUDA GPU
    assert all(t["met"] is None for t in targets)
    assert "not the target's configuration" in targets[0]["note"] and "CUDA" in targets[0]["note"]

    md = mds[0].read_text()
    assert "## Targets (issue 9)" in md and md.count("| not judged |") == 4
    for c in result["configs"]:
        assert f"## {c['label']}" in md
    # the short table is printed last: a header naming every implementation, one row per configuration
    lines = [line for line in proc.stdout.strip().splitlines() if line.strip()]
    rows = [line for line in lines if line.startswith("| ") and "16x16 batch 8" in line]
    assert len(rows) == len(CONFIG_MODELS) and lines[-1] == rows[-1]
    assert all(name in proc.stdout for name in IMPLS)


CUDA_KERNELS = [  # (kernel name as a CUDA trace shows it, is it convolution/GEMM)
    ("sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc_tilesize128x128x64", True),
    ("sm80_xmma_wgrad_implicit_gemm_indexed_tf32f32_tf32f32_f32_nhwckrsc_nhwc", True),
    ("void cudnn::detail::dgrad2d_alg1_1<float, 0, 6, 7, 5, 4, 5, true, true>(int, int, int)", True),
    ("void cutlass::Kernel2<cutlass_80_tensorop_s1688gemm_128x128_32x3_nn_align4>(Params)", True),
    ("nvjet_tst_128x64_64x6_1x2_h_bz_coopA_NNT", True),
    ("ampere_sgemm_64x32_sliced1x4_tn", True),
    ("void fft2d_r2c_32x32<float, false, 1u, false>(float2*, float const*, int)", True),
    ("triton_tem_fused_convolution_0", True),
    ("triton_poi_fused__native_batch_norm_legit_functional_convolution_0", False),
    ("triton_red_fused_convolution_backward_native_batch_norm_backward_1", False),
    ("void cudnn::ops::nchwToNhwcKernel<float, float, float, false, true, 0>(cudnn::ops::nchw2nhwc_params_t)", False),
    # cuDNN's layout conversions and helpers: named cudnn::, but no convolution's math
    ("void cudnn::engines_precompiled::nhwcToFoldedNhwcKernel<__nv_bfloat16>(cudnn::engines_precompiled::"
     "NhwcToFoldedNhwcParams)", False),
    ("void cudnn::engines_precompiled::foldedNhwcToNhwcKernel<__nv_bfloat16>(cudnn::engines_precompiled::"
     "FoldedNhwcToNhwcParams)", False),
    ("void cudnn::cnn::tensorTransformGeneric<float, float, float, true, false, false, (cudnnKernelDataType_t)0>"
     "(cudnnTensorTransformStruct, float const*, float*, float, float, float, float, float const*)", False),
    ("void cudnn::ops::scalePackedTensor_kernel<float, float>(cudnnTensor4dStruct, float*, float)", False),
    ("void cudnn::ops::nhwcAddTensor_kernel<__nv_bfloat16, float, float, 128, 1, 1, 32>(cudnnTensorStruct, "
     "__nv_bfloat16*, cudnnTensorStruct, __nv_bfloat16 const*, float, float)", False),
    ("void cudnn::bn_fw_tr_1C11_kernel_NCHW<float, float, int, 512, true, 1, true>(cudnnTensorStruct)", False),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>, std::array<char*, 1ul> >",
     False),
    ("void at::native::(anonymous namespace)::multi_tensor_apply_kernel<FusedAdamMathFunctor>", False),
    ("void fastgan::ew::flat_kernel<4, fastgan::GradXOp<float> >(fastgan::GradXOp<float>, long, bool)", False),
    ("_bias_leaky_relu_kernel", False),
    ("void at::native::unrolled_elementwise_kernel<direct_copy_kernel_cuda, convert_dtype>", False),
]


@pytest.mark.parametrize("name,expected", CUDA_KERNELS)
def test_kernel_rule(step_e2e, name, expected):
    assert step_e2e.is_math_kernel(name) is expected


def test_kernel_breakdown_of_a_trace(step_e2e):
    events = [
        {"cat": "kernel", "name": CUDA_KERNELS[0][0], "dur": 300.0},
        {"cat": "kernel", "name": CUDA_KERNELS[2][0], "dur": 100.0},
        {"cat": "kernel", "name": "triton_poi_fused_convolution_0", "dur": 40.0},
        {"cat": "kernel", "name": "_bias_leaky_relu_kernel", "dur": 20.0},
        {"cat": "gpu_memset", "name": "Memset (Device)", "dur": 1.0},
        {"cat": "cuda_runtime", "name": "cudaLaunchKernel", "dur": 5.0},
        {"cat": "cuda_runtime", "name": "cudaLaunchKernelExC", "dur": 5.0},
        {"cat": "cuda_driver", "name": "cuLaunchKernelEx", "dur": 5.0},
        {"cat": "cuda_runtime", "name": "cudaGraphLaunch", "dur": 5.0},
        {"cat": "cuda_runtime", "name": "cudaStreamSynchronize", "dur": 5.0},
        {"cat": "cpu_op", "name": "aten::convolution", "dur": 900.0},
    ]
    b = step_e2e.kernel_breakdown(events, iterations=2)
    assert b["kernels"] == 2.0 and b["memcpy_memset"] == 0.5
    # host launches: the runtime's and driver's launch calls, a CUDA graph once (its kernels
    # run with no launch of their own), not a synchronization
    assert b["launches"] == 2.0 and b["graph_launches"] == 0.5
    assert math.isclose(b["conv_ms"], 0.2) and math.isclose(b["other_ms"], 0.03)
    assert b["top"][0]["math"] is True and b["top"][2]["math"] is False
    assert [r["name"] for r in b["top_other"]] == ["triton_poi_fused_convolution_0", "_bias_leaky_relu_kernel"]
    assert b["top_other"][0]["launches"] == 0.5 and math.isclose(b["top_other"][0]["ms"], 0.02)


def test_gpu_report_lists_fastgans_costliest_other_kernels(step_e2e):
    # The first GPU report (an H100, committed under benchmarks/results/) renders again, with
    # a "top_other" list as kernel_breakdown now records it in the fastgan row of each config.
    (path,) = sorted((BENCH / "results").glob("2026-11-22-NVIDIA-H100-80GB-HBM3-step.json"))
    result = json.loads(path.read_text())
    fg = next(r for r in result["configs"][0]["rows"] if r["impl"] == "fastgan")
    fg["profile"]["top_other"] = [{"name": "void reduce_kernel<a|b>", "ms": 1.29, "launches": 12.0,
                                   "math": False}]
    md = step_e2e.markdown(result)
    assert "## wgan-gp-dcgan 64x64 batch 64" in md and "| fastgan | 52.7 [52.7-53.3] |" in md
    assert md.count("costliest kernels other than convolution") == 1
    assert "| `void reduce_kernel<a/b>` | 1.29 | 12 |" in md


def test_report_notes_iterations_per_repeat_and_the_compile_cache(step_e2e):
    # the old report's JSON (no repeat_s, no precompile) renders as before; rows with fewer
    # iterations per repeat and a compile row with cache counts and a precompile get notes
    (path,) = sorted((BENCH / "results").glob("2026-11-22-NVIDIA-H100-80GB-HBM3-step.json"))
    result = json.loads(path.read_text())
    assert "it/repeat" not in step_e2e.markdown(result) and "cold compilation" not in step_e2e.markdown(result)
    resnet = next(c for c in result["configs"] if c["key"] == "wgan-gp-resnet" and c["batch"] == 64)
    rows = {r["impl"]: r for r in resnet["rows"]}
    rows["eager-public"]["steps_per_repeat"] = 2
    rows["fastgan"]["steps_per_repeat"] = result["environment"]["steps"]
    rows["compile"]["compile_cache"] = {"fx_hits": 9, "fx_misses": 1, "aot_hits": 6, "aot_misses": 0}
    result["precompile"] = {"jobs": 8, "compile_threads": 2, "wall_s": 131.0, "results": [
        {"key": "wgan-gp-resnet", "batch": 64, "label": "wgan-gp-resnet 64x64 batch 64", "compile_s": 98.4}]}
    lines = step_e2e.markdown(result).splitlines()
    start = lines.index("## wgan-gp-resnet 64x64 batch 64 (n_critic 5)")
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("## "))
    row = {line.split(" | ")[0][2:]: line for line in lines[start:end] if "peak" in line}
    assert row["eager-public"].endswith("; 2 it/repeat |") and "it/repeat" not in row["fastgan"]
    assert ("Inductor graphs: 9 cached, 1 compiled; AOTAutograd: 6 cached, 0 compiled; cold: 98.4 s in "
            "precompile |") in row["compile"]
    assert any(line.startswith("torch.compile's cold compilation ran first, in 8 parallel processes (131 s")
               for line in lines)
    result["precompile"]["results"][0] = {"key": "wgan-gp-resnet", "batch": 64, "error": "exit status 1: boom"}
    assert "precompile failed: exit status 1: boom |" in step_e2e.markdown(result)


@pytest.mark.parametrize("name,expected", [
    ("aten::convolution", True), ("aten::convolution_backward", True), ("aten::mkldnn_convolution", True),
    ("aten::slow_conv_transpose2d", True), ("aten::addmm", True), ("aten::mm", True), ("aten::linear", True),
    ("aten::_convert_indices_from_coo_to_csr", False), ("aten::add_", False), ("aten::mmx", False),
    ("fastgan::bias_leaky_relu", False)])
def test_op_rule(step_e2e, name, expected):
    assert step_e2e.is_math_op(name) is expected


def test_device_loader(step_e2e):
    from baselines.data import DeviceLoader  # step_e2e put benchmarks/ on sys.path
    loader = DeviceLoader(3, (2, 5, 5), "cpu", batches=4, channels_last=True)
    assert loader.batch_size == 3 and len(loader) == 4
    first = list(loader)
    assert len(first) == 4
    images, labels = first[0]
    assert images.shape == (3, 2, 5, 5) and labels.shape == (3,) and labels.dtype == torch.long
    assert images.is_contiguous(memory_format=torch.channels_last)
    assert images.min() >= -1 and images.max() <= 1
    assert images.data_ptr() != first[1][0].data_ptr()  # different windows, views (no copies)
    assert images.untyped_storage().data_ptr() == loader.data.untyped_storage().data_ptr()
    second = [b for b, _ in loader]
    assert not torch.equal(second[0], images)  # the next epoch's window starts one image later
    assert torch.equal(second[0][:2], images[1:])
    state = loader.state_dict()
    other = DeviceLoader(3, (2, 5, 5), "cpu", batches=4, channels_last=True)
    other.load_state_dict(state)
    assert torch.equal(next(iter(other))[0], next(iter(loader))[0])
    with pytest.raises(ValueError, match="batch_size"):
        DeviceLoader(0, (2, 5, 5), "cpu")
    with pytest.raises(ValueError, match="shape"):
        DeviceLoader(2, (5, 5), "cpu")


def test_bad_arguments(step_e2e):
    with pytest.raises(SystemExit):
        step_e2e.parse_args(["--models", "stylegan"])
    with pytest.raises(SystemExit):
        step_e2e.parse_args(["--batches", "0"])
    with pytest.raises(SystemExit):
        step_e2e.parse_args(["--steps", "0"])


@pytest.mark.parametrize("argv", [
    ["--device", "foo"], ["--device", "cpu:x"], ["--threads", "-1"], ["--threads", "0"], ["--width", "-4"],
    ["--width", "0"], ["--budget-s", "-1"], ["--budget-s", "nan"], ["--repeat-s", "-0.5"], ["--repeat-s", "inf"],
    ["--precompile-jobs", "-1"], ["--precompile-worker", "stylegan:64"], ["--precompile-worker", "dcgan:0"],
    ["--fastgan-set", "bogus"],
    ["--fastgan-set", "cuda_graphs=maybe"], ["--fastgan-set", "nosuchkey=1"], ["--compile-backend", "bogus"]])
def test_bad_arguments_are_one_line_errors(step_e2e, capsys, argv):
    with pytest.raises(SystemExit) as exc:
        step_e2e.parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "error:" in err[-1] and "Traceback" not in "\n".join(err)
    assert argv[1] in err[-1]  # names the bad value


def test_good_arguments_pass(step_e2e):
    args = step_e2e.parse_args(["--device", "cpu", "--threads", "2", "--width", "8", "--budget-s", "0",
                                "--fastgan-set", "cuda_graphs=false", "--fastgan-set", "n_critic=2",
                                "--compile-backend", "aot_eager", "--models", "dcgan"])
    assert args.threads == 2 and args.width == 8 and args.budget_s == 0
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            step_e2e.parse_args(["--device", "cuda"])


class _Clock:
    """A stand-in clock for time_steps: each step() advances it by `per_step` seconds."""

    def __init__(self, per_step):
        self.now, self.per_step, self.calls = 0.0, per_step, 0

    def step(self):
        self.now += self.per_step
        self.calls += 1


@pytest.mark.parametrize("per_step, repeat_s, expected", [
    (0.3, 1.0, 4),    # ceil(1.0 / 0.3) iterations fill a repeat
    (2.0, 1.0, 1),    # slower than a repeat: one iteration each
    (0.01, 1.0, 10),  # fast: capped at --steps
    (0.3, 0.0, 10),   # 0: always --steps, no calibration iteration
])
def test_each_repeat_holds_about_repeat_s(step_e2e, per_step, repeat_s, expected):
    clock = _Clock(per_step)
    warm, per, n = step_e2e.time_steps(clock.step, lambda: None, warmup=2, steps=10, repeats=3,
                                       repeat_s=repeat_s, clock=lambda: clock.now)
    assert n == expected
    assert warm == pytest.approx(2 * per_step) and per == pytest.approx([per_step] * 3)
    assert clock.calls == 2 + (1 if repeat_s else 0) + 3 * expected


def test_precompile_runs_only_for_compile_with_inductor_on_cuda(step_e2e):
    def jobs(argv, device, batches=(64, 256)):
        return step_e2e.precompile_jobs(step_e2e.parse_args(argv), torch.device(device), list(batches))
    assert jobs([], "cpu") == 0                                        # aot_eager or CPU: no on-disk graphs worth it
    assert jobs(["--precompile-jobs", "3"], "cpu") == 3                 # asked for
    assert jobs(["--precompile-jobs", "3", "--impls", "fastgan,eager-public"], "cpu") == 0  # nothing to compile
    assert jobs(["--compile-backend", "aot_eager"], "cuda") == 0
    n = jobs([], "cuda")
    assert 1 <= n <= min(10, 8)
    assert jobs(["--models", "dcgan"], "cuda", batches=(64,)) == 1     # one (configuration, batch)


def test_a_failed_or_late_precompile_worker_is_an_error_record(step_e2e, tmp_path):
    import time

    def job(code, name):
        out = tmp_path / name
        with open(out.with_suffix(".out"), "w") as fo, open(out.with_suffix(".err"), "w") as fe:
            proc = subprocess.Popen([sys.executable, "-c", code], stdout=fo, stderr=fe)
        return proc, "dcgan", 64, out, time.perf_counter()
    ok = step_e2e._precompiled(job('print("noise"); print(\'{"compile_s": 2.5}\')', "ok"), "dcgan 64x64 batch 64")
    assert ok["compile_s"] == 2.5 and ok["label"] == "dcgan 64x64 batch 64" and "error" not in ok
    failed = step_e2e._precompiled(job("import sys; sys.exit('boom')", "failed"), "x")
    assert failed["error"] == "exit status 1: boom"
    slow = job("import time; time.sleep(60)", "slow")
    late = step_e2e._precompiled(slow, "x", timeout=0.5)
    assert late["error"] == "timed out after 0.5 s" and slow[0].returncode is not None


def test_precompile_fills_the_cache_the_compile_row_loads(tmp_path):
    # (c) with Inductor on a CPU, one configuration: compiled cold in a precompile process,
    # then the timed run's compile row compiles nothing (every graph from the on-disk cache)
    out = tmp_path / "report"
    cmd = [sys.executable, str(SCRIPT), "--small", "--device", "cpu", "--out", str(out), "--threads", "1",
           "--models", "dcgan", "--impls", "compile", "--compile-backend", "inductor", "--precompile-jobs", "1",
           "--warmup", "1", "--steps", "1", "--repeats", "2", "--profile-steps", "0"]
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor-cache"))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(next(out.glob("*.json")).read_text())
    pre = result["precompile"]
    assert pre["jobs"] == 1 and [r["label"] for r in pre["results"]] == ["dcgan 16x16 batch 8"]
    job = pre["results"][0]
    assert "error" not in job, job
    assert job["compile_cache"]["fx_misses"] > 0 and job["compile_s"] > 0  # the worker compiled them
    (row,) = result["configs"][0]["rows"]
    assert "error" not in row, row
    cache = row["compile_cache"]
    assert cache["fx_misses"] == 0 and cache["fx_hits"] == job["compile_cache"]["fx_misses"], (cache, job)
    assert cache["aot_misses"] == 0 and cache["aot_hits"] > 0, cache
    md = next(out.glob("*.md")).read_text()
    assert "cold compilation ran first, in 1 parallel process (" in md
    assert f"Inductor graphs: {cache['fx_hits']} cached, 0 compiled" in md


def _config(step_e2e, key, batch, resolution=64, vs_public=None, vs_best=None, step_over_conv=None):
    rows = [{"impl": "fastgan", "profile": {"step_over_conv": step_over_conv}}]
    return {"key": key, "resolution": resolution, "batch": batch, "label": f"{key} {resolution}x{resolution} batch {batch}",
            "rows": rows, "summary": {"fastgan_vs_public": vs_public, "fastgan_vs_best_plain": vs_best}}


def test_targets_are_judged_on_the_targets_configuration_on_cuda_only(step_e2e):
    target = _config(step_e2e, "wgan-gp-dcgan", 64, vs_public=2.0, vs_best=3.0, step_over_conv=1.1)
    judged = step_e2e.evaluate_targets([target], cuda=True)
    assert [t["met"] for t in judged[:3]] == [False, True, True]
    off_cuda = step_e2e.evaluate_targets([target], cuda=False)
    assert [t["met"] for t in off_cuda] == [None] * 4 and "CUDA" in off_cuda[0]["note"]
    for other in (_config(step_e2e, "wgan-gp-dcgan", 8, 16, 2.0, 3.0, 1.1),
                  _config(step_e2e, "wgan-gp-dcgan", 256, 64, 2.0, 3.0, 1.1)):
        out = step_e2e.evaluate_targets([other], cuda=True)
        assert [t["met"] for t in out[:3]] == [None] * 3
        assert "not the target's configuration" in out[0]["note"]
        assert out[0]["value"] == 2.0  # still shown
    md = step_e2e.markdown({"environment": {"device": "cpu", "date": "2026-01-01 00:00 UTC"},
                            "targets": off_cuda, "configs": []})
    assert md.count("| not judged |") == 4 and "| no |" not in md


def test_other_configurations_target_lists_unmeasured_apart(step_e2e):
    target = _config(step_e2e, "wgan-gp-dcgan", 64, 64, 4.0, 2.0, 1.1)
    fast, slow = _config(step_e2e, "dcgan", 64, 64, 3.0, 1.5), _config(step_e2e, "wgan", 64, 64, 1.0, 0.9)
    skipped, failed = _config(step_e2e, "began", 64), _config(step_e2e, "wgan-gp-resnet", 64)

    def last(configs, cuda=True):
        return step_e2e.evaluate_targets(configs, cuda=cuda)[-1]
    t = last([target, fast, skipped, failed])  # not judged while some are unmeasured
    assert t["met"] is None and "slower" not in t["note"]
    assert "not measured (skipped/error) in: began 64x64 batch 64, wgan-gp-resnet 64x64 batch 64" in t["note"]
    assert last([target, fast])["met"] is True
    t = last([target, fast, slow, skipped])
    assert t["met"] is False and "slower in: wgan 64x64 batch 64;" in t["note"]
    assert "began" not in t["note"].split(";")[0]
    assert last([target, skipped])["met"] is None
    assert last([target, fast], cuda=False)["met"] is None


def test_report_names_are_descriptive_and_never_overwrite(step_e2e, tmp_path):
    env = {"date": "2026-11-22 10:00 UTC", "device": "NVIDIA H100 80GB HBM3"}
    result = {"environment": {**env, "configuration": "full"}, "configs": [], "targets": []}
    first = step_e2e.report_stem(tmp_path, env, [64], step_e2e.CONFIG_KEYS)
    assert first.name == "2026-11-22-NVIDIA-H100-80GB-HBM3-step-b64"
    step_e2e.write_report(result, first)
    second = step_e2e.report_stem(tmp_path, env, [64], step_e2e.CONFIG_KEYS)
    assert second.name == "2026-11-22-NVIDIA-H100-80GB-HBM3-step-b64-2"
    step_e2e.write_report(result, second)
    assert step_e2e.report_stem(tmp_path, env, [64], None).name.endswith("-b64-3")
    assert step_e2e.report_stem(tmp_path, env, [256], None).name.endswith("-step-b256")
    assert step_e2e.report_stem(tmp_path, env, [64, 256], ["wgan", "dcgan"]).name.endswith("-step-b64-256-dcgan+wgan")
    assert len(list(tmp_path.iterdir())) == 4  # two .md, two .json


def test_default_out_is_the_checkout_on_cuda_only(step_e2e):
    import tempfile
    args = step_e2e.parse_args([])
    step_e2e.resolve_args(args, torch.device("cpu"))
    assert pathlib.Path(args.out) == pathlib.Path(tempfile.gettempdir()) / "fastgan-step"
    args = step_e2e.parse_args([])
    step_e2e.resolve_args(args, torch.device("cuda"))
    assert pathlib.Path(args.out) == BENCH / "results"
    args = step_e2e.parse_args(["--out", "/somewhere"])
    step_e2e.resolve_args(args, torch.device("cpu"))
    assert args.out == "/somewhere"


def test_precision_is_bf16_on_cuda_only(step_e2e):
    from baselines import StepSpec
    assert step_e2e.trainer_settings("cpu", "/tmp", 0)["amp"] is False
    assert step_e2e.trainer_settings("cuda", "/tmp", 0)["amp"] is True
    assert step_e2e.trainer_settings("cpu", "/tmp", 0, {"amp": True})["amp"] is True
    spec = StepSpec("dcgan", "dcgan", 16, 4, g_width=8, d_width=8)
    args = step_e2e.parse_args(["--device", "cpu"])
    assert args.impls == [n for n in step_e2e.IMPLEMENTATIONS if n != step_e2e.GRAPHED]
    for name in args.impls:
        if name == "compile":
            continue
        impl = step_e2e.IMPLEMENTATIONS[name](spec, torch.device("cpu"), args)
        try:
            assert impl.precision == "fp32", name
        finally:
            if hasattr(impl, "close"):
                impl.close()
    fg = step_e2e.FastganStep(spec, "cpu")
    try:
        assert fg.trainer.cfg["amp"] is False
    finally:
        fg.close()


def test_a_failed_row_makes_a_nonzero_exit_after_the_report(step_e2e, tmp_path, monkeypatch, capsys):
    def broken(spec, device, args):
        raise RuntimeError("this implementation is broken")
    monkeypatch.setitem(step_e2e.IMPLEMENTATIONS, "broken", broken)
    code = step_e2e.main(["--device", "cpu", "--models", "dcgan", "--impls", "broken", "--out", str(tmp_path)])
    assert code == 1
    assert len(list(tmp_path.glob("*.md"))) == 1 and len(list(tmp_path.glob("*.json"))) == 1
    err = capsys.readouterr().err
    assert "1 row(s) ended in an error: dcgan 16x16 batch 8 broken" in err


def test_the_first_configuration_runs_whatever_the_budget(step_e2e, tmp_path, monkeypatch):
    """--budget-s skips the configurations that would start after it, but never the first
    (the target's): precompiling (c) counts against the budget, and a slow one must not
    leave the run with no row at all."""
    ran = []

    def stand_in(spec, device, args):  # its row is an error, which shows it ran
        ran.append(spec.model)
        raise RuntimeError("the stand-in ran")
    monkeypatch.setitem(step_e2e.IMPLEMENTATIONS, "stand-in", stand_in)
    step_e2e.main(["--device", "cpu", "--models", "wgan-gp-dcgan,dcgan", "--impls", "stand-in",
                   "--budget-s", "1e-9", "--out", str(tmp_path)])
    assert ran == ["wgan-gp"]
    (report,) = tmp_path.glob("*.json")
    configs = json.loads(report.read_text())["configs"]
    assert [c["key"] for c in configs] == ["wgan-gp-dcgan", "dcgan"]
    assert "the stand-in ran" in configs[0]["rows"][0]["error"]
    assert configs[1]["rows"][0]["error"].startswith("skipped: the run passed its time budget")


def test_a_public_loop_faster_than_the_careful_ones_is_said(step_e2e):
    # (b) and (c) are meant to be the better plain loops; on the 2026-11-22 H100 run (a) beat
    # both for WGAN-GP, so "1.7x the faster of (b) and (c)" compared with a slower loop
    def row(impl, it_s):
        return {"impl": impl, "gen_it_s": {"median": it_s}}
    rows = [row(step_e2e.FASTGAN, 52.7), row(step_e2e.BASELINE, 21.5), row(step_e2e.CAREFUL, 16.2),
            row(step_e2e.COMPILED, 15.5)]
    s = step_e2e.config_summary(rows)
    assert s["public_fastest"] and s["best_plain"] == step_e2e.CAREFUL
    assert math.isclose(s["fastgan_vs_best_plain"], 52.7 / 16.2)
    target = {"key": "wgan-gp-dcgan", "resolution": 64, "batch": 64, "label": "wgan-gp-dcgan 64x64 batch 64",
              "rows": rows, "summary": s}
    t = step_e2e.evaluate_targets([target], cuda=True)[1]
    assert t["met"] is True and "eager-public (a) is faster than both (b) and (c) here" in t["note"]
    assert "fastgan is 2.45x" in t["note"]
    rows[1]["gen_it_s"]["median"] = 10.0
    assert not step_e2e.config_summary(rows)["public_fastest"]


def test_the_summary_splits_the_speedup_with_the_graphed_careful_loop(step_e2e):
    """fastgan's rows replay CUDA graphs; (b) replayed from graphs (not one of the issue's
    baselines) says how much of the speedup graphs alone give plain PyTorch, and the fastest
    plain loop of all is named, whichever it is."""
    def row(impl, it_s):
        return {"impl": impl, "gen_it_s": {"median": it_s}}
    rows = [row(step_e2e.FASTGAN, 52.7), row(step_e2e.BASELINE, 21.5), row(step_e2e.CAREFUL, 16.2),
            row(step_e2e.GRAPHED, 40.0), row(step_e2e.COMPILED, 15.5)]
    s = step_e2e.config_summary(rows)
    assert math.isclose(s["fastgan_vs_best_plain"], 52.7 / 16.2)  # the target: (b), (c) only
    assert math.isclose(s["fastgan_vs_graphed"], 52.7 / 40.0)
    assert s["fastest_plain"] == step_e2e.GRAPHED and math.isclose(s["fastgan_vs_fastest_plain"], 52.7 / 40.0)
    rows[3] = {"impl": step_e2e.GRAPHED, "error": "RuntimeError: capture failed"}
    s = step_e2e.config_summary(rows)
    assert s["fastgan_vs_graphed"] is None and s["fastest_plain"] == step_e2e.BASELINE
    assert math.isclose(s["fastgan_vs_fastest_plain"], 52.7 / 21.5)
    config = {"label": "wgan-gp-dcgan 64x64 batch 64", "rows": rows, "summary": s}
    table = step_e2e.short_table({"configs": [config]})
    assert "| vs fastest plain |" in table and "| error | 15.5 | 52.7 | 2.45 | 3.25 | 2.45 |" in table


def test_the_graphed_careful_loop_is_cuda_only(step_e2e):
    from baselines import CarefulGraphed, StepSpec
    with pytest.raises(SystemExit):
        step_e2e.parse_args(["--device", "cpu", "--impls", step_e2e.GRAPHED])
    with pytest.raises(RuntimeError, match="needs a CUDA device"):
        CarefulGraphed(StepSpec("dcgan", "dcgan", 16, 4, g_width=8, d_width=8), "cpu")
