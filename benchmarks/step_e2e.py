"""The end-to-end GAN step benchmark (issue 9, items 3-5): generator iterations per second
and images per second of fastgan's trainer step against plain PyTorch, side by side in one
run, with a profiler breakdown of where each step's time goes.

    python benchmarks/step_e2e.py                  # full configuration on a GPU, small on a CPU
    python benchmarks/step_e2e.py --small --out /tmp/r
    bash benchmarks/gpu_suite.sh step              # on a GPU machine: build, then this

Configurations (full): DCGAN (Radford et al. 2015, arXiv:1511.06434), WGAN with weight
clipping (Arjovsky et al. 2017, arXiv:1701.07875), WGAN-GP (Gulrajani et al. 2017,
arXiv:1704.00028) with the DCGAN and the ResNet architecture, BEGAN (Berthelot et al. 2017,
arXiv:1703.10717); 64x64 RGB, batch 64 and 256; every hyperparameter is the model's paper
default (fastgan.models.get(name).defaults: n_critic, optimizer, lr, betas, clip, lambda...).
Small (the default without a GPU, and what tests/test_step_benchmark.py runs): 16x16 RGB,
batch 8, widths 16, a few steps: it tests the code path, its numbers mean little.

Implementations (IMPLEMENTATIONS below), each reading real batches from a device-resident
loader (benchmarks/baselines/data.py), so what is compared is the step:
    eager-public   (a) benchmarks/baselines/public.py: fp32, Python-loop clip, autograd.grad
                   penalty, .item() every step
    eager-careful  (b) benchmarks/baselines/careful.py: bf16 autocast (on CUDA), channels_last,
                   cudnn.benchmark, fused/foreach optimizers, no host syncs
    eager-careful-graphs  (b) with its critic step and generator step replayed from CUDA
                   graphs as fastgan's trainer replays its own (CUDA only; not one of the
                   issue's baselines: it splits fastgan's speedup into what graphs alone give
                   plain PyTorch and what fastgan's kernels add)
    compile        (c) (b) with torch.compile on everything first-order (penalty eager)
    fastgan        fastgan.Trainer(model, loader, {"amp": True on CUDA}).train_step(), set up once
Precision: (b), (c) and fastgan use bf16 autocast on CUDA and float32 on a CPU (where a CPU
without bf16 hardware emulates bf16, several times slower: a CPU comparison in bf16 measures
the emulation); (a) is float32 everywhere. Each row of the report records its precision.
Another variant is one more entry: a factory (spec, device, args) -> an object with
step(), losses(), networks(), n_critic and cudnn_benchmark (optionally min_warmup and
close()). A trainer option (e.g. whole-step CUDA graphs, issue 9 item 1, on or off) is
`FastganStep(..., trainer_config={...})`, or from the command line
`--fastgan-set cuda_graphs=false`.

Measurements. One generator iteration = the model's n_critic critic steps (each on a fresh
real batch) + one generator step; images/s counts real images through the critic
(n_critic * batch per iteration). Per (configuration, implementation): `--warmup`
iterations (compilation and cuDNN autotuning happen here; their time is reported), then
`--repeats` repeats of `--steps` timed iterations, each repeat between
torch.cuda.synchronize() calls (time.perf_counter on a CPU); the report gives the median
over repeats and the spread (min-max; the JSON also has the quartiles). With `--repeat-s`
(full: 0.5) a repeat holds as many iterations as fill about that many seconds, at most
`--steps` (time_steps: one more iteration after the warm-up judges it): the configurations
slower than 50 ms per iteration (the WGAN-GP ResNet, batch 256) are timed over as many
repeats with fewer iterations each; the row's note gives its iterations per repeat.

Where the time goes (item 4): `--profile-steps` more iterations under torch.profiler. On
CUDA, every kernel of the trace is classified by is_math_kernel() (the rule is its
docstring) as convolution/GEMM or other; reported per iteration: conv+GEMM kernel time,
other kernel time, kernels run and host launches (the runtime's launch calls: a CUDA graph
counts once however many kernels it replays), and step time / conv+GEMM time, where the
step time is the timed median (the profiler's own overhead is left out). On a CPU the same
code runs with CPU activities only: dispatcher ops (aten::, fastgan:: ...) called from
Python or autograd (no op above them) are counted instead of kernels, and conv+GEMM time
is the inclusive time of the outermost convolution-family and matrix-multiply aten ops
(aten_breakdown()).

Time budget of the full GPU run (issue 9, item 5: under 8 minutes). Measured on an H100
(2026-11-22, benchmarks/results/2026-11-22-NVIDIA-H100-80GB-HBM3-step.md): the five batch-64
configurations alone took ~480 s. An iteration costs 3-19 ms for fastgan and 13-65 ms for the
eager loops, except the WGAN-GP ResNet (290-430 ms; 71 ms of convolution/GEMM kernels per
iteration against 11 ms for WGAN-GP DCGAN); torch.compile's warm-up (compilation, cold cache,
16 cores) took 19-59 s per DCGAN-sized configuration (BEGAN the 59) and 113 s for the
ResNet, one after another: more than half of those 480 s. Two things cut the run's time since:
  - (c)'s cold compilation runs first, in parallel (precompile(): one process per
    configuration and batch, up to 8 at a time, `--precompile-jobs`), filling Inductor's
    on-disk caches; each compile row's warm-up then loads its graphs from there. Its note
    gives the graphs loaded and compiled and the cold time; nothing is timed while the
    precompile processes run. By default on CUDA with Inductor only: a CPU's default
    backend (aot_eager) has no on-disk cache.
  - `--repeat-s` (above) shortens the slow configurations' repeats, and a slow
    configuration is profiled over the iterations of one repeat.
Whether the full run now fits 8 minutes is for the next GPU run to show. `--budget-s`
(default 420 on a GPU, counted from the start, precompilation included) is the guard: a
configuration that starts after that is recorded as skipped (configurations run batch 64
first, WGAN-GP DCGAN first, so the target's row always runs; one that starts runs all its
implementations), and the report is written after every configuration, so a cut-off run
leaves one. `--models` and `--batches` choose a part: e.g. `--batches 256` in a second
call.

Output: OUT/<date>-<device>-step-b<batches>.md and .json, e.g. 2026-11-22-cpu-step-b8.md
(report_stem: the configurations are added when --models chose some, e.g. -b64-dcgan+wgan,
and -2, -3 ... where that name is taken: a second call, e.g. `--batches 256`, never
overwrites the first's report). OUT: --out, default benchmarks/results on CUDA and
<temp dir>/fastgan-step on a CPU (the small run stays out of the checkout). Then the
report's path and a short table on stdout, the table last. Exit status 1 when a row ended in
an error (the report is written first; skipped rows are no error), 2 for bad arguments. The
report states the issue's targets and whether the measurements meet them (computed, never
written in); they are judged on a CUDA GPU only, and the first three on the target's
configuration only ("not judged" otherwise).
"""
import argparse
import datetime
import gc
import importlib.metadata
import json
import math
import os
import pathlib
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

_HERE = pathlib.Path(__file__).resolve().parent
if str(_HERE) not in sys.path:  # `python -P`, importlib imports: baselines/ sits beside this file
    sys.path.insert(0, str(_HERE))

import torch  # noqa: E402

import fastgan  # noqa: E402
from fastgan._devices import check_device  # noqa: E402

from baselines import LOOPS, StepSpec  # noqa: E402
from baselines.data import DeviceLoader  # noqa: E402

# (configuration key, model, arch), the target's configuration first
CONFIGS = [("wgan-gp-dcgan", "wgan-gp", "dcgan"), ("dcgan", "dcgan", "dcgan"), ("wgan", "wgan", "dcgan"),
           ("wgan-gp-resnet", "wgan-gp", "resnet"), ("began", "began", "began")]
CONFIG_KEYS = [c[0] for c in CONFIGS]

FULL = {"resolution": 64, "batches": [64, 256], "width": 64, "warmup": 5, "steps": 10, "repeats": 5,
        "repeat_s": 0.5, "profile_steps": 2, "budget_s": 420.0}
SMALL = {"resolution": 16, "batches": [8], "width": 16, "warmup": 2, "steps": 2, "repeats": 3,
         "repeat_s": 0.0, "profile_steps": 1, "budget_s": 0.0}

# torch.compile's backend on a CPU: Dynamo + AOTAutograd (the graph capture that can fail or
# break, forward and backward graphs) without Inductor's C++ code generation, which took
# 18-55 s per configuration on this repository's 2-core CI machine at 16x16 (measured;
# aot_eager: 2-8 s). --compile-backend inductor times Inductor on a CPU; a GPU uses Inductor.
CPU_COMPILE_BACKEND = "aot_eager"

# Issue 9's targets, on WGAN-GP with the DCGAN architecture at 64x64, batch 64.
TARGET = {"config": "wgan-gp-dcgan", "resolution": 64, "batch": 64,
          "vs_public": 3.0, "vs_best_plain": 1.7, "step_over_conv": 1.25}

BASELINE, CAREFUL, COMPILED, FASTGAN = "eager-public", "eager-careful", "compile", "fastgan"
GRAPHED = "eager-careful-graphs"
CUDA_ONLY = {GRAPHED}


# -- fastgan's own step ----------------------------------------------------------------------

class FastganStep:
    """fastgan.Trainer's step: the trainer set up once (as fit() does), then train_step(),
    with whatever the trainer does by default (bf16 autocast as amp=True, channels_last on
    CUDA, the model's fused networks; CUDA graphs where the trainer has and enables them).
    The real batches come from a DeviceLoader. losses() runs one more step as a log step
    (measure_norms=True: eager, counted) and returns its losses from the trainer's device
    sums. model_overrides / trainer_config: extra model hyperparameters and trainer
    settings (e.g. {"cuda_graphs": False} to compare a trainer option)."""
    name = FASTGAN
    cudnn_benchmark = None  # the trainer sets no global switch: the process default stays

    def __init__(self, spec, device, *, seed=0, model_overrides=None, trainer_config=None):
        import fastgan
        self.device = torch.device(device)
        torch.manual_seed(seed)
        self.model = spec.build(fused=True, **(model_overrides or {}))
        self.n_critic = self.model.n_critic
        # the trainer's eager steps before a CUDA-graph capture (where it has them) belong to the warm-up
        self.min_warmup = 0
        if self.device.type == "cuda":
            try:
                from fastgan.train.graphs import WARMUP_STEPS
                self.min_warmup = WARMUP_STEPS + 2
            except ImportError:
                pass
        channels_last = self.device.type == "cuda"
        loader = DeviceLoader(spec.batch, (spec.channels, spec.resolution, spec.resolution), self.device,
                              channels_last=channels_last, seed=seed)
        self._dir = tempfile.mkdtemp(prefix="fastgan-step-")
        cfg = trainer_settings(self.device, self._dir, seed, trainer_config)
        self.precision = "bf16-autocast" if cfg["amp"] else "fp32"
        self.trainer = fastgan.Trainer(self.model, loader, cfg)
        _setup_trainer(self.trainer)
        for attr in ("_sums", "_counts", "_norms"):  # fit() sets them up (the trainer's __init__, lately)
            if getattr(self.trainer, attr, None) is None:
                setattr(self.trainer, attr, {})

    def step(self):
        self.trainer.train_step()

    def graphed(self):
        """Whether the steps replay CUDA graphs (after the warm-up: the capture's time; a
        capture that failed leaves the trainer eager, with one line on stderr)."""
        return self.trainer._graphs is not None

    def losses(self):
        t = self.trainer
        keys = ("loss/d", "loss/g")
        before = {k: (t._sums[k].detach().clone() if k in t._sums else 0.0, t._counts.get(k, 0)) for k in keys}
        t.train_step(measure_norms=True)
        out = {}
        for k in keys:
            total, count = before[k]
            out[k[-1]] = float(t._sums[k] - total) / (t._counts[k] - count)
        return out

    def networks(self):
        return self.model.generator, self.model.critic

    def close(self):
        self.trainer.logger.close()
        shutil.rmtree(self._dir, ignore_errors=True)


def trainer_settings(device, out, seed, trainer_config=None):
    """The trainer config FastganStep runs with: amp (bf16 autocast) on CUDA only, as (b) and
    (c) use it (the module doc's Precision), then trainer_config on top."""
    never = 1 << 40
    return {"steps": never, "amp": torch.device(device).type == "cuda", "device": str(device), "out": out,
            "seed": seed, "tensorboard": False, "progress": False, "log_every": never, "sample_every": never,
            "ckpt_every": never, **(trainer_config or {})}


def _setup_trainer(trainer):
    """trainer._setup(), which writes the run's config.yaml; where PyYAML is missing (a bare
    GPU machine) that file is written as JSON instead: the benchmark never reads it."""
    import importlib.util
    if importlib.util.find_spec("yaml") is None:
        from fastgan.train import trainer as module
        saved = module.save_config
        module.save_config = lambda config, path: pathlib.Path(path).write_text(json.dumps(config, default=str))
        try:
            return trainer._setup()
        finally:
            module.save_config = saved
    return trainer._setup()


def _plain(name):
    def build(spec, device, args):
        kw = {}
        if name == COMPILED:
            kw = {"backend": args.compile_backend, "mode": args.compile_mode}
        loop = LOOPS[name](spec, device, seed=args.seed, **kw)
        loop.precision = "fp32"
        if hasattr(loop, "amp_dtype"):  # (b) and (c): bf16 autocast on CUDA only (module doc, Precision)
            device_type = torch.device(device).type
            if device_type == "cuda":
                loop.precision = "bf16-autocast"
            else:
                loop.autocast = lambda: torch.autocast(device_type, enabled=False)
        return loop
    return build


def fastgan_settings(spec, items):
    """--fastgan-set KEY=VALUE items -> (model overrides, trainer config) for `spec`, split by
    the model's keys; ValueError naming a malformed item (fastgan's parse_set)."""
    from fastgan.train.config import parse_set
    extra = parse_set(items)
    model_keys = set(spec.build(fused=True).config)
    return ({k: v for k, v in extra.items() if k in model_keys},
            {k: v for k, v in extra.items() if k not in model_keys})


def check_fastgan_set(items, config_keys, device="cpu"):
    """The checks the fastgan implementation makes of --fastgan-set as it sets up (parse_set,
    the model's build, fastgan.Trainer's own checks of its settings), made up front on a
    small stand-in of each configuration (no data, nothing written); ValueError (or
    TypeError) naming the bad item."""
    if not items:
        return
    for key, model, arch in CONFIGS:
        if key not in config_keys:
            continue
        spec = StepSpec(model, arch, SMALL["resolution"], SMALL["batches"][0],
                        g_width=SMALL["width"], d_width=SMALL["width"])
        model_overrides, trainer_config = fastgan_settings(spec, items)
        built = spec.build(fused=True, **model_overrides)
        fastgan.Trainer(built, None, trainer_settings(device, tempfile.gettempdir(), 0, trainer_config))


def _fastgan(spec, device, args):
    model_overrides, trainer_config = fastgan_settings(spec, args.fastgan_set)
    return FastganStep(spec, device, seed=args.seed, model_overrides=model_overrides, trainer_config=trainer_config)


#: implementation name -> factory(spec, device, args), in the report's order
IMPLEMENTATIONS = {BASELINE: _plain(BASELINE), CAREFUL: _plain(CAREFUL), GRAPHED: _plain(GRAPHED),
                   COMPILED: _plain(COMPILED), FASTGAN: _fastgan}


# -- timing ----------------------------------------------------------------------------------

def _sync(device):
    if device.type == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def time_steps(step, sync, *, warmup, steps, repeats, repeat_s=0.0, clock=time.perf_counter):
    """(warm-up seconds, [seconds per iteration of each repeat], iterations per repeat).
    repeat_s 0: `steps` iterations per repeat. repeat_s > 0: as many as fill about repeat_s
    seconds, at least 1 and at most `steps`, judged by one more iteration after the warm-up
    (synchronized, not counted in the warm-up or the repeats): a slow configuration (the
    WGAN-GP ResNet, 0.3-0.4 s per iteration at batch 64 on an H100) is timed over as many
    repeats in a fraction of the time, a fast one is timed as before."""
    t0 = clock()
    for _ in range(warmup):
        step()
    sync()
    warm = clock() - t0
    n = steps
    if repeat_s > 0:
        t = clock()
        step()
        sync()
        n = min(steps, max(1, math.ceil(repeat_s / max(clock() - t, 1e-9))))
    per = []
    for _ in range(repeats):
        sync()
        t = clock()
        for _ in range(n):
            step()
        sync()
        per.append((clock() - t) / n)
    return warm, per, n


def _quantile(sorted_values, q):
    pos = (len(sorted_values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(values):
    """{median, q1, q3, min, max} of a list of numbers."""
    s = sorted(values)
    return {"median": _quantile(s, 0.5), "q1": _quantile(s, 0.25), "q3": _quantile(s, 0.75),
            "min": s[0], "max": s[-1]}


# -- where the time goes ---------------------------------------------------------------------

# A kernel is convolution/GEMM when its name matches _MATH and not _NOT_MATH (case-insensitive):
#   _MATH: cuDNN and cuBLAS/cuBLASLt/CUTLASS kernels by their name parts: conv (not convert),
#     gemm/gemv, cutlass, xmma, cudnn, wgrad/dgrad/fprop, implicit (implicit GEMM), winograd,
#     fft (cuDNN's FFT algorithms), im2col/col2im, splitK (cuBLAS's split-K reduction),
#     nvjet (cuBLASLt on Hopper), and the architecture prefixes sm80_, sm90_, sm100_ ... of
#     cuDNN's precompiled engines; Inductor's template kernels (triton_tem_*, conv/mm templates).
#   _NOT_MATH (checked first): Inductor's generated pointwise/reduction kernels (triton_poi_,
#     triton_red_, triton_per_ ...: their names list the aten ops they fuse, "convolution"
#     among them), cuDNN's layout conversions and helpers (nchwToNhwc, nhwcToNchw,
#     nhwcToFoldedNhwc, foldedNhwcToNhwc, tensorTransformGeneric, scalePackedTensor,
#     nhwcAddTensor: named cudnn::... but no convolution's math) and BatchNorm kernels (bn_fw,
#     bn_bw), and fastgan's own kernels (never a convolution).
_MATH = re.compile(r"conv(?!ert)|gem[mv]|cutlass|xmma|cudnn|wgrad|dgrad|fprop|implicit|winograd|fft|"
                   r"im2col|col2im|splitk|nvjet|cublas|(?:^|\W|_)sm\d{2,3}a?_|^triton_tem_", re.I)
_NOT_MATH = re.compile(r"^triton_(?!tem_)|nchwtonhwc|nhwctonchw|(?:folded)?nhwcto(?:folded)?nhwc|tensortransform|"
                       r"scalepackedtensor|addtensor|bn_fw|bn_bw|batch_?norm|fastgan", re.I)


def is_math_kernel(name):
    """Whether a CUDA kernel name is a convolution or matrix multiply (see the rule above)."""
    return bool(_MATH.search(name)) and not _NOT_MATH.search(name)


# The CUDA runtime and driver calls that launch work from the host: a kernel each, or a whole
# CUDA graph (whose kernels then run with no launch of their own).
_HOST_LAUNCH = re.compile(r"^(?:cudaLaunch(?:Kernel|Cooperative)\w*|cuLaunch(?:Kernel|Cooperative)\w*|"
                          r"cudaGraphLaunch\w*|cuGraphLaunch\w*)$")


def kernel_breakdown(trace_events, iterations):
    """Per iteration, from a Chrome trace's events (torch.profiler's export): kernels run
    ("kernels"), host launches ("launches": the runtime's kernel and graph launch calls, so a
    CUDA graph counts once however many kernels it holds; "graph_launches" of them), conv/GEMM
    kernel ms, other kernel ms, memcpy/memset count; "top": the ten kernel names with the most
    total time (each marked math or not), "top_other": the ten non-math ones (the time a step
    spends beyond its convolutions), each with how many times it ran."""
    math_us = other_us = 0.0
    n = copies = host = graphs = 0
    by_name = {}  # name: [total us, launches]
    for e in trace_events:
        cat = e.get("cat", "")
        if cat in ("gpu_memcpy", "gpu_memset"):
            copies += 1
        if cat in ("cuda_runtime", "cuda_driver") and _HOST_LAUNCH.match(e.get("name", "")):
            host += 1
            graphs += "Graph" in e["name"]
        if cat != "kernel":
            continue
        n += 1
        dur = float(e.get("dur", 0.0))
        name = e.get("name", "")
        entry = by_name.setdefault(name, [0.0, 0])
        entry[0] += dur
        entry[1] += 1
        if is_math_kernel(name):
            math_us += dur
        else:
            other_us += dur
    ranked = sorted(by_name.items(), key=lambda kv: -kv[1][0])

    def rows(items):
        return [{"name": k[:200], "ms": us / 1e3 / iterations, "launches": calls / iterations,
                 "math": is_math_kernel(k)} for k, (us, calls) in items[:10]]
    return {"kernels": n / iterations, "launches": host / iterations, "graph_launches": graphs / iterations,
            "conv_ms": math_us / 1e3 / iterations,
            "other_ms": other_us / 1e3 / iterations, "memcpy_memset": copies / iterations,
            "top": rows(ranked), "top_other": rows([kv for kv in ranked if not is_math_kernel(kv[0])])}


_ATEN_MATH = re.compile(r"^aten::(\w*conv(?!ert)\w*|mm|addmm|bmm|baddbmm|addbmm|matmul|linear|_addmm_activation)$")


def is_math_op(name):
    """Whether an aten op is a convolution (any aten::*conv* op: conv2d, convolution,
    convolution_backward, mkldnn_convolution, slow_conv_transpose2d ...) or a matrix
    multiply (mm, addmm, bmm, matmul, linear)."""
    return bool(_ATEN_MATH.match(name))


_OP = re.compile(r"^(?!autograd::|torch::)[A-Za-z_]\w*::")


def aten_breakdown(events, iterations):
    """Per iteration, from torch.profiler's events (FunctionEvent: name, cpu_parent,
    cpu_time_total in us): dispatcher ops (aten::*, fastgan::* ..., not autograd::/torch::
    records) called from Python or autograd, i.e. with no op above them ("ops", the CPU's
    count of launches); the inclusive time of the outermost convolution/matmul aten ops
    (conv_ms) and of the other outermost ops (other_ms)."""
    n = 0
    math_us = other_us = 0.0
    for e in events:
        if not _OP.match(e.name):
            continue
        parent, under_op, under_math = e.cpu_parent, False, False
        while parent is not None:
            if _OP.match(parent.name):
                under_op = True
                if is_math_op(parent.name):
                    under_math = True
                    break
            parent = parent.cpu_parent
        if is_math_op(e.name) and not under_math:
            math_us += e.cpu_time_total
        if not under_op:
            n += 1
            if not is_math_op(e.name):
                other_us += e.cpu_time_total
    return {"ops": n / iterations, "conv_ms": math_us / 1e3 / iterations,
            "other_ms": other_us / 1e3 / iterations}


def profile_steps(step, device, iterations):
    """The where-the-time-goes breakdown of `iterations` generator iterations."""
    from torch.profiler import ProfilerActivity, profile
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    sync = _sync(device)
    sync()
    t = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(iterations):
            step()
        sync()
    out = {"iterations": iterations, "profiled_ms": (time.perf_counter() - t) * 1e3 / iterations}
    out.update(aten_breakdown(prof.events(), iterations))
    if cuda:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "trace.json")
            prof.export_chrome_trace(path)
            with open(path) as f:
                events = json.load(f).get("traceEvents", [])
        host = {"ops": out["ops"], "cpu_conv_ms": out["conv_ms"], "cpu_other_ms": out["other_ms"]}
        out = {"iterations": iterations, "profiled_ms": out["profiled_ms"], **host,
               **kernel_breakdown(events, iterations)}
    return out


# -- one measurement -------------------------------------------------------------------------

def _snapshot(nets):
    return [[p.detach().clone() for p in net.parameters()] for net in nets]


def _max_change(before, nets):
    return [max((float((p.detach().float() - q.float()).abs().max()) for p, q in zip(net.parameters(), old)),
                default=0.0) for net, old in zip(nets, before)]


def _compile_cache_counts():
    """torch.compile's cache counters so far in this process: Inductor's FX graph cache and
    AOTAutograd's cache, hits and misses (a miss is a graph compiled)."""
    from torch._dynamo.utils import counters
    return {"fx_hits": counters["inductor"]["fxgraph_cache_hit"],
            "fx_misses": counters["inductor"]["fxgraph_cache_miss"],
            "aot_hits": counters["aot_autograd"]["autograd_cache_hit"],
            "aot_misses": counters["aot_autograd"]["autograd_cache_miss"]}


def measure(name, spec, device, args):
    """One implementation on one configuration: a row of the report."""
    row = {"impl": name}
    impl = None
    sync = _sync(device)
    cudnn_default = torch.backends.cudnn.benchmark
    try:
        t0 = time.perf_counter()
        impl = IMPLEMENTATIONS[name](spec, device, args)
        row["setup_s"] = time.perf_counter() - t0
        if impl.cudnn_benchmark is not None:
            torch.backends.cudnn.benchmark = impl.cudnn_benchmark
        row["n_critic"] = impl.n_critic
        row["precision"] = getattr(impl, "precision", None)
        row["cudnn_benchmark"] = torch.backends.cudnn.benchmark
        nets = impl.networks()
        before = _snapshot(nets)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        warmup = max(args.warmup, getattr(impl, "min_warmup", 0))
        cache = _compile_cache_counts()
        warm, per, n = time_steps(impl.step, sync, warmup=warmup, steps=args.steps, repeats=args.repeats,
                                  repeat_s=args.repeat_s)
        row["warmup_s"], row["warmup_steps"], row["steps_per_repeat"] = warm, warmup, n
        if hasattr(impl, "graphed"):
            row["cuda_graphs"] = impl.graphed()
        if name == COMPILED:  # graphs compiled in the warm-up (misses) or loaded from the cache (hits)
            row["compile_cache"] = {k: v - cache[k] for k, v in _compile_cache_counts().items()}
        its = [1.0 / s for s in per]
        images = impl.n_critic * spec.batch
        row["gen_it_s"] = summarize(its)
        row["images_s"] = summarize([i * images for i in its])
        row["step_ms"] = 1e3 / row["gen_it_s"]["median"]
        if args.profile_steps:  # no more iterations than a repeat holds (one of a slow configuration)
            prof = profile_steps(impl.step, device, min(args.profile_steps, n))
            if prof.get("conv_ms"):
                prof["step_over_conv"] = row["step_ms"] / prof["conv_ms"]
            row["profile"] = prof
        if device.type == "cuda":
            row["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        row["losses"] = impl.losses()
        row["param_change"] = dict(zip(("generator", "critic"), _max_change(before, nets)))
    except Exception as e:  # noqa: BLE001 (a failed implementation is a row, not a crashed run)
        msg = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        row["error"] = msg[:300]
        print(f"step_e2e: {spec.label} {name} failed: {msg}", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
    finally:
        torch.backends.cudnn.benchmark = cudnn_default
        if impl is not None and hasattr(impl, "close"):
            impl.close()
        del impl
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


def _speed(row):
    if row is None or "error" in row or "gen_it_s" not in row:
        return None
    return row["gen_it_s"]["median"]


def config_summary(rows):
    """Speedups of fastgan by gen it/s medians: vs (a), vs the faster of (b) and (c) (the
    issue's targets), vs (b) replayed from CUDA graphs, and vs the fastest plain loop of all
    (fastest_plain names it)."""
    by = {r["impl"]: r for r in rows}
    fg, public = _speed(by.get(FASTGAN)), _speed(by.get(BASELINE))
    plain = [s for s in (_speed(by.get(CAREFUL)), _speed(by.get(COMPILED))) if s is not None]
    graphed = _speed(by.get(GRAPHED))
    every = {n: _speed(by.get(n)) for n in IMPLEMENTATIONS if n != FASTGAN}
    every = {n: v for n, v in every.items() if v is not None}
    fastest = max(every, key=every.get) if every else None
    out = {"fastgan_vs_public": fg / public if fg and public else None,
           "fastgan_vs_best_plain": fg / max(plain) if fg and plain else None,
           "fastgan_vs_graphed": fg / graphed if fg and graphed else None,
           "fastgan_vs_fastest_plain": fg / every[fastest] if fg and fastest else None,
           "fastest_plain": fastest,
           "best_plain": None, "public_fastest": bool(public and plain and public > max(plain))}
    if plain:
        out["best_plain"] = max((CAREFUL, COMPILED), key=lambda n: _speed(by.get(n)) or -1.0)
    return out


def evaluate_targets(configs, *, cuda=False):
    """Issue 9's targets against the measurements: a list of {target, config, value, threshold,
    met, note}; met is True/False only where the target is judged, None ("not judged", the
    note says why) otherwise. The targets are for a CUDA GPU (an H100/H200): off CUDA (`cuda`
    False) nothing is judged; the first three are judged on the target's configuration only
    (WGAN-GP DCGAN, 64x64, batch 64: another is shown to exercise the computation), the
    fourth on the measured other configurations (skipped or failed ones are listed apart)."""
    exact = [c for c in configs if (c["key"], c["resolution"], c["batch"]) ==
             (TARGET["config"], TARGET["resolution"], TARGET["batch"])]
    off_cuda = "judged on a CUDA GPU only (the targets are for an H100/H200)"
    if exact:
        head = exact[0]
        note = "" if cuda else off_cuda
    else:
        candidates = sorted((c for c in configs if c["key"] == TARGET["config"]), key=lambda c: c["batch"])
        head = candidates[0] if candidates else None
        note = ("not the target's configuration (64x64, batch 64): shown to exercise the computation, "
                "not judged" + ("" if cuda else f"; {off_cuda}"))
    judged = cuda and bool(exact)
    out = []

    def add(target, value, threshold, at_most=False):
        met = None
        if value is not None and judged:
            met = value <= threshold if at_most else value >= threshold
        why = note if head else "not measured"
        if head and value is None:
            why = "not measured" + (f"; {note}" if note else "")
        out.append({"target": target, "config": head["label"] if head else None, "value": value,
                    "threshold": threshold, "met": met, "note": why})

    s = head["summary"] if head else {}
    add("fastgan gen it/s >= 3x eager-public (a)", s.get("fastgan_vs_public"), TARGET["vs_public"])
    add("fastgan gen it/s >= 1.7x the faster of eager-careful (b) and compile (c)",
        s.get("fastgan_vs_best_plain"), TARGET["vs_best_plain"])
    if s.get("public_fastest"):  # (b) and (c) are meant to be the better plain loops: say when they are not
        out[-1]["note"] = "; ".join(x for x in (out[-1]["note"], (
            "eager-public (a) is faster than both (b) and (c) here: vs the fastest plain loop, (a), "
            f"fastgan is {_fmt(s['fastgan_vs_public'])}x")) if x)
    fg = next((r for r in head["rows"] if r["impl"] == FASTGAN), None) if head else None
    ratio = fg.get("profile", {}).get("step_over_conv") if fg and "error" not in fg else None
    add("fastgan step time <= 1.25x its convolution/GEMM time", ratio, TARGET["step_over_conv"], at_most=True)

    others = [c for c in configs if c is not head]
    measured = [c for c in others if c["summary"]["fastgan_vs_best_plain"] is not None]
    slower = [c["label"] for c in measured if c["summary"]["fastgan_vs_best_plain"] <= 1.0]
    unmeasured = [c["label"] for c in others if c["summary"]["fastgan_vs_best_plain"] is None]
    # met only when every other configuration was measured and none is slower
    met = (False if slower else (True if measured and not unmeasured else None)) if cuda else None
    notes = []
    if slower:
        notes.append("slower in: " + ", ".join(slower))
    if unmeasured:
        notes.append("not measured (skipped/error) in: " + ", ".join(unmeasured))
    if not cuda:
        notes.append(off_cuda)
    out.append({"target": "every other configuration: fastgan faster than (b) and (c)",
                "config": f"{len(measured)} of {len(others)} configuration(s) measured", "value": None,
                "threshold": None, "met": met, "note": "; ".join(notes)})
    return out


# -- torch.compile's cold compilation, in parallel --------------------------------------------

def precompile_jobs(args, device, batches):
    """How many processes precompile (c): --precompile-jobs, or by default, on CUDA with
    Inductor (the backend with an on-disk cache) and 'compile' among the implementations,
    one per (configuration, batch) up to half the CPU cores and at most 8; 0 otherwise (and
    always without 'compile')."""
    if COMPILED not in args.impls:
        return 0
    if args.precompile_jobs is not None:
        return args.precompile_jobs
    if device.type != "cuda" or (args.compile_backend or "inductor") != "inductor":
        return 0
    return min(len(args.models) * len(batches), 8, max(1, (os.cpu_count() or 2) // 2))


def precompile(args, device, resolution, width, batches, jobs):
    """torch.compile's cold compilation of every (configuration, batch) of (c), each in a
    process of its own, `jobs` at a time, before anything is timed: Inductor writes what it
    compiles to its on-disk caches (FX graphs, AOTAutograd, Triton kernels), where the timed
    run's compile rows then load it. Cold compilation is mostly single-threaded Python
    (Dynamo, AOTAutograd, Inductor's lowering) and took 19-113 s per configuration on an H100
    machine's 16 cores (2026-11-22), one after another; in parallel the run waits about as
    long as the slowest. Each worker runs two iterations of (c) on `device` (compilation
    happens in the first; the two optimizers' steps are two graphs of one function) and
    reports its time. TORCHINDUCTOR_COMPILE_THREADS shares the cores among the workers
    (Inductor leaves it out of its cache keys). Returns the report's record: per job its
    label, compile_s (the worker's two iterations) or error, and the wall time of it all."""
    order = sorted(((k, b) for b in batches for k in CONFIG_KEYS if k in args.models),
                   key=lambda kb: (kb[0] != "wgan-gp-resnet", kb[0] != "began", -kb[1]))  # the slowest first
    threads = max(1, (os.cpu_count() or 2) // max(1, jobs))
    env = dict(os.environ, TORCHINDUCTOR_COMPILE_THREADS=str(threads))
    common = ["--device", str(device), "--resolution", str(resolution), "--width", str(width),
              "--seed", str(args.seed)]
    for flag, value in (("--compile-backend", args.compile_backend), ("--compile-mode", args.compile_mode),
                        ("--threads", args.threads)):
        if value is not None:
            common += [flag, str(value)]
    timeout = args.budget_s or 900.0
    results, running, t0 = [], [], time.perf_counter()
    script = [sys.executable, *(["-P"] if sys.flags.safe_path else []), str(pathlib.Path(__file__).resolve())]
    with tempfile.TemporaryDirectory(prefix="fastgan-precompile-") as tmp:
        pending = list(order)
        try:
            while pending or running:
                while pending and len(running) < jobs:
                    key, batch = pending.pop(0)
                    out = pathlib.Path(tmp) / f"{key}-{batch}"
                    with open(out.with_suffix(".out"), "w") as fo, open(out.with_suffix(".err"), "w") as fe:
                        proc = subprocess.Popen(script + ["--precompile-worker", f"{key}:{batch}", *common],
                                                stdout=fo, stderr=fe, env=env, cwd=tmp)
                    running.append((proc, key, batch, out, time.perf_counter()))
                time.sleep(0.2)
                for job in list(running):
                    late = time.perf_counter() - job[4] > timeout
                    if job[0].poll() is None and not late:
                        continue
                    running.remove(job)
                    results.append(_precompiled(job, f"{job[1]} {resolution}x{resolution} batch {job[2]}",
                                                timeout if late else None))
        finally:  # an interrupted run leaves no worker behind
            for proc, *_ in running:
                proc.kill()
                proc.wait()
    results.sort(key=lambda r: (batches.index(r["batch"]), CONFIG_KEYS.index(r["key"])))
    return {"jobs": jobs, "compile_threads": threads, "wall_s": time.perf_counter() - t0, "results": results}


def _precompiled(job, label, timeout=None):
    """A precompile worker's record: its JSON line, or an error (killed when `timeout`, the
    seconds it was given, ran out)."""
    proc, key, batch, out, started = job
    if timeout is not None and proc.poll() is None:
        proc.kill()
    proc.wait()
    record = {"key": key, "batch": batch, "label": label, "wall_s": time.perf_counter() - started}
    lines = out.with_suffix(".out").read_text().strip().splitlines()
    try:
        return {**record, **json.loads(lines[-1])}
    except (IndexError, ValueError):
        err = out.with_suffix(".err").read_text().strip().splitlines()
        why = f"timed out after {timeout:g} s" if timeout is not None else f"exit status {proc.returncode}"
        record["error"] = (why + (f": {err[-1]}" if err else ""))[:300]
        print(f"step_e2e: precompiling {label} failed ({record['error']}); its compile row compiles cold",
              file=sys.stderr)
        return record


def precompile_worker(args, device, resolution, width):
    """One precompile job (the hidden --precompile-worker KEY:BATCH): (c) built as the timed
    run builds it, two iterations, then one JSON line on stdout. Inductor's runtime choices
    among a kernel's launch configurations are timed here beside the other workers, so they
    are not written to the cache (autotune_local_cache off; a setting Inductor leaves out of
    its cache keys): the timed run makes its own, as a cold run does."""
    from torch._inductor import config as inductor_config
    inductor_config.autotune_local_cache = False
    key, batch = args.precompile_worker.rsplit(":", 1)
    model, arch = next((m, a) for k, m, a in CONFIGS if k == key)
    spec = StepSpec(model, arch, resolution, int(batch), g_width=width, d_width=width)
    loop = IMPLEMENTATIONS[COMPILED](spec, device, args)
    if loop.cudnn_benchmark is not None:
        torch.backends.cudnn.benchmark = loop.cudnn_benchmark
    sync = _sync(device)
    t = time.perf_counter()
    for _ in range(2):
        loop.step()
    sync()
    print(json.dumps({"compile_s": time.perf_counter() - t, "compile_cache": _compile_cache_counts()}))
    return 0


# -- the report ------------------------------------------------------------------------------

def _version(dist):
    for d in ([dist] if dist != "triton" else ["triton", "pytorch-triton"]):
        try:
            return importlib.metadata.version(d)
        except importlib.metadata.PackageNotFoundError:
            pass
    return None


def environment(device, args, small):
    env = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "device": "cpu", "torch": torch.__version__, "triton": _version("triton"),
           "fastgan": fastgan.__version__, "python": platform.python_version(),
           "platform": platform.platform(), "cpu_count": os.cpu_count(),
           "threads": torch.get_num_threads(), "configuration": "small" if small else "full",
           "warmup": args.warmup, "steps": args.steps, "repeats": args.repeats, "repeat_s": args.repeat_s,
           "profile_steps": args.profile_steps, "compile_backend": args.compile_backend or "inductor",
           "compile_mode": args.compile_mode or "default", "fastgan_set": list(args.fastgan_set or [])}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        env.update(device=p.name, capability=f"sm_{p.major}{p.minor}",
                   memory_gib=round(p.total_memory / 2**30, 1), cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version(), driver=_driver())
    return env


def _driver():
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        v = torch._C._cuda_getDriverVersion()
        return f"CUDA driver API {v // 1000}.{v % 1000 // 10} (nvidia-smi unavailable)"
    except Exception:  # noqa: BLE001
        return None


def _fmt(x, digits=3):
    if x is None:
        return "-"
    return f"{x:.{digits}g}" if abs(x) < 10 ** digits else f"{x:.0f}"


def _spread(s):
    return f"{_fmt(s['median'])} [{_fmt(s['min'])}-{_fmt(s['max'])}]"


def markdown(result):
    env, cuda = result["environment"], result["environment"]["device"] != "cpu"
    lines = [f"# fastgan step benchmark: {env['device']}, {env['date']}", ""]
    keys = ["device", "capability", "memory_gib", "driver", "cuda", "cudnn", "torch", "triton", "fastgan",
            "python", "platform", "cpu_count", "threads", "configuration", "warmup", "steps", "repeats",
            "repeat_s", "profile_steps", "compile_backend", "compile_mode", "fastgan_set"]
    lines += [f"- {k}: {env[k]}" for k in keys if k in env]
    lines += ["", "One generator iteration = n_critic critic steps + one generator step; images/s = real "
              "images through the critic. Medians over repeats, [min-max]. "
              + ("Kernels and conv/GEMM time per iteration from torch.profiler's CUDA trace."
                 if cuda else "CPU: outermost dispatcher ops instead of kernels; conv/GEMM from the aten "
                 "convolution and matmul ops."), "", "## Targets (issue 9)", "",
              "| target | configuration | measured | threshold | met | note |", "|---|---|---:|---:|---|---|"]
    for t in result["targets"]:
        met = {True: "yes", False: "no", None: "not judged"}[t["met"]]
        lines.append(f"| {t['target']} | {t['config'] or '-'} | {_fmt(t['value'])} | "
                     f"{'-' if t['threshold'] is None else t['threshold']} | {met} | {t['note']} |")
    pre = result.get("precompile")
    cold = {(r["key"], r["batch"]): r for r in (pre or {}).get("results", [])}
    if pre:
        lines += ["", f"torch.compile's cold compilation ran first, in {pre['jobs']} parallel process"
                  f"{'es' if pre['jobs'] != 1 else ''} "
                  f"({_fmt(pre['wall_s'])} s in all); each compile row's warm-up then loaded its graphs from "
                  "Inductor's on-disk cache (its note: graphs loaded/compiled, and the cold time of the "
                  "process that compiled them, two iterations, beside the other processes)."]
    launches = "kernels/it (host launches)" if cuda else "ops/it"
    for c in result["configs"]:
        s = c["summary"]
        lines += ["", f"## {c['label']} (n_critic {c['n_critic']})", "",
                  f"fastgan vs eager-public: {_fmt(s['fastgan_vs_public'])}x; vs the faster of "
                  f"eager-careful and compile ({s['best_plain'] or '-'}): {_fmt(s['fastgan_vs_best_plain'])}x; "
                  f"vs eager-careful replayed from CUDA graphs: {_fmt(s.get('fastgan_vs_graphed'))}x; "
                  f"vs the fastest plain loop ({s.get('fastest_plain') or '-'}): "
                  f"{_fmt(s.get('fastgan_vs_fastest_plain'))}x", "",
                  f"| implementation | gen it/s | images/s | ms/it | warm-up s | {launches} | conv/GEMM ms/it "
                  "| other ms/it | step/conv | loss d | loss g | note |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in c["rows"]:
            if "error" in r:
                lines.append(f"| {r['impl']} | - | - | - | - | - | - | - | - | - | - | {r['error']} |")
                continue
            p = r.get("profile", {})
            count = _fmt(p.get("kernels" if cuda else "ops"))
            if cuda and p.get("launches") is not None:
                count += f" ({_fmt(p['launches'])})"
            notes = [r.get("precision"), f"peak {r['peak_mem_gib']:.2f} GiB" if "peak_mem_gib" in r else None]
            if cuda and "cuda_graphs" in r:
                notes.append("CUDA graphs" if r["cuda_graphs"] else "eager (no CUDA graphs)")
            if r.get("steps_per_repeat", result["environment"]["steps"]) != result["environment"]["steps"]:
                notes.append(f"{r['steps_per_repeat']} it/repeat")
            if "compile_cache" in r:
                notes.append(_compile_note(r["compile_cache"], cold.get((c["key"], c["batch"]))))
            mem = "; ".join(x for x in notes if x)
            lines.append(f"| {r['impl']} | {_spread(r['gen_it_s'])} | {_spread(r['images_s'])} | "
                         f"{_fmt(r['step_ms'])} | {_fmt(r['warmup_s'])} | {count} | {_fmt(p.get('conv_ms'))} | "
                         f"{_fmt(p.get('other_ms'))} | {_fmt(p.get('step_over_conv'))} | "
                         f"{_fmt(r['losses']['d'], 4)} | {_fmt(r['losses']['g'], 4)} | {mem} |")
        fg = next((r for r in c["rows"] if r["impl"] == FASTGAN and "error" not in r), None)
        other = (fg or {}).get("profile", {}).get("top_other") if cuda else None
        if other:  # where fastgan's step spends its time beyond the convolutions
            lines += ["", "fastgan's costliest kernels other than convolution/GEMM, per iteration:", "",
                      "| kernel | ms/it | launches/it |", "|---|---:|---:|"]
            lines += [f"| `{o['name'].replace('|', '/')}` | {_fmt(o['ms'])} | {_fmt(o['launches'])} |"
                      for o in other]
    return "\n".join(lines) + "\n"


def _compile_note(counts, cold):
    """A compile row's note: its graphs loaded from the cache or compiled in its warm-up, and
    the cold compilation time where a precompile process had it."""
    fx, aot = (counts["fx_hits"], counts["fx_misses"]), (counts["aot_hits"], counts["aot_misses"])
    text = f"Inductor graphs: {fx[0]} cached, {fx[1]} compiled; AOTAutograd: {aot[0]} cached, {aot[1]} compiled"
    if cold is not None:
        text += ("; precompile failed: " + cold["error"] if "error" in cold
                 else f"; cold: {_fmt(cold['compile_s'])} s in precompile")
    return text


def short_table(result):
    head = ["configuration", BASELINE, CAREFUL, GRAPHED, COMPILED, FASTGAN, "vs (a)", "vs best(b,c)",
            "vs fastest plain", "step/conv"]
    lines = ["gen it/s (medians); fastgan's speedups and step/conv", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    for c in result["configs"]:
        by = {r["impl"]: r for r in c["rows"]}
        cells = [c["label"]]
        for name in (BASELINE, CAREFUL, GRAPHED, COMPILED, FASTGAN):
            r = by.get(name)
            if r is None:
                cells.append("-")
            elif "error" in r:
                cells.append("skipped" if r["error"].startswith("skipped") else "error")
            else:
                cells.append(_fmt(r["gen_it_s"]["median"]))
        fg = by.get(FASTGAN)
        ratio = fg.get("profile", {}).get("step_over_conv") if fg and "error" not in fg else None
        s = c["summary"]
        cells += [_fmt(s["fastgan_vs_public"]), _fmt(s["fastgan_vs_best_plain"]),
                  _fmt(s.get("fastgan_vs_fastest_plain")), _fmt(ratio)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report_stem(out_dir, env, batches, models=None):
    """OUT/<date>-<device>-step-b<batches>[-<models>][-N]: the batch sizes (b64, b64-256), the
    configurations when not all of them (dcgan+wgan), and -2, -3 ... where a report of that
    name (.md or .json) exists already: a run never overwrites another's report. Chosen once
    per run (its report is rewritten after every configuration under this name)."""
    out_dir = pathlib.Path(out_dir)
    device = re.sub(r"[^A-Za-z0-9_.-]+", "-", env["device"]).strip("-")
    name = f"{env['date'][:10]}-{device}-step-b{'-'.join(str(b) for b in batches)}"
    if models and set(models) != set(CONFIG_KEYS):
        name += "-" + "+".join(k for k in CONFIG_KEYS if k in models)
    stem, n = out_dir / name, 1
    while stem.with_name(stem.name + ".md").exists() or stem.with_name(stem.name + ".json").exists():
        n += 1
        stem = out_dir / f"{name}-{n}"
    return stem


def write_report(result, stem):
    """Writes STEM.md and STEM.json (report_stem names STEM), making STEM's folder."""
    stem = pathlib.Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    md, js = stem.with_name(stem.name + ".md"), stem.with_name(stem.name + ".json")
    md.write_text(markdown(result))
    js.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return md, js


# -- the command -----------------------------------------------------------------------------

def _csv(kind, allowed):
    def parse(text):
        items = [s.strip() for s in text.split(",") if s.strip()]
        bad = [s for s in items if s not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"{kind}: expected a comma-separated list of {', '.join(allowed)}, "
                                             f"got {text!r}")
        return items
    return parse


def _ints(text):
    try:
        values = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return values


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="the small configuration (the default without a GPU)")
    p.add_argument("--out", default=None,
                   help="report directory (default: benchmarks/results on CUDA; on a CPU "
                        f"{pathlib.Path(tempfile.gettempdir()) / 'fastgan-step'})")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--models", type=_csv("--models", CONFIG_KEYS), default=CONFIG_KEYS,
                   help=f"configurations ({', '.join(CONFIG_KEYS)})")
    p.add_argument("--impls", type=_csv("--impls", list(IMPLEMENTATIONS)), default=None,
                   help=f"implementations ({', '.join(IMPLEMENTATIONS)}; default: all, less "
                        f"{', '.join(sorted(CUDA_ONLY))} off CUDA)")
    p.add_argument("--batches", type=_ints, default=None, help="batch sizes (full: 64,256; small: 8)")
    p.add_argument("--resolution", type=int, choices=(16, 32, 64, 128), default=None)
    p.add_argument("--width", type=int, default=None, help="g_width = d_width (full: 64, the papers'; small: 16)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed iterations before the repeats (full: 5; small: 2)")
    p.add_argument("--steps", type=int, default=None,
                   help="iterations per repeat, at most with --repeat-s (full: 10; small: 2)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed repeats, reported as their median (full: 5; small: 3)")
    p.add_argument("--profile-steps", type=int, default=None,
                   help="iterations under torch.profiler for the conv/other breakdown (full: 2; small: 1)")
    p.add_argument("--repeat-s", type=float, default=None,
                   help="fill each repeat to about this many seconds, up to --steps iterations (0: always "
                        "--steps; full: 0.5, small: 0)")
    p.add_argument("--precompile-jobs", type=int, default=None,
                   help="processes compiling (c) cold before the timed run, one per (configuration, batch) "
                        "(0: none, each compile row compiles in its warm-up; default on CUDA with Inductor: "
                        "up to 8, half the cores)")
    p.add_argument("--precompile-worker", default=None, help=argparse.SUPPRESS)  # KEY:BATCH, see precompile()
    p.add_argument("--budget-s", type=float, default=None,
                   help="skip what is left once the run has taken this long (0: no limit; full: 420)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default on a CPU: 1, fastest for the small shapes)")
    p.add_argument("--compile-backend", default=None,
                   help=f"torch.compile backend for 'compile' (default: inductor; {CPU_COMPILE_BACKEND} on a CPU)")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode for 'compile' (default: default)")
    p.add_argument("--fastgan-set", action="append", default=[], metavar="KEY=VALUE",
                   help="a model hyperparameter or trainer setting for the fastgan implementation")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for name in ("warmup", "steps", "repeats", "profile_steps", "width", "threads"):
        v = getattr(args, name)
        if v is not None and (v < (0 if name in ("warmup", "profile_steps") else 1)):
            p.error(f"--{name.replace('_', '-')} must be {'>= 0' if name in ('warmup', 'profile_steps') else '>= 1'}, "
                    f"got {v}")
    if args.repeat_s is not None and not (math.isfinite(args.repeat_s) and args.repeat_s >= 0):
        p.error(f"--repeat-s must be a number of seconds >= 0 (0: --steps per repeat), got {args.repeat_s:g}")
    if args.precompile_jobs is not None and args.precompile_jobs < 0:
        p.error(f"--precompile-jobs must be >= 0 (0: no precompilation), got {args.precompile_jobs}")
    if args.precompile_worker is not None:
        key, _, batch = args.precompile_worker.rpartition(":")
        if key not in CONFIG_KEYS or not batch.isdigit() or int(batch) < 1:
            p.error(f"--precompile-worker: expected CONFIGURATION:BATCH, got {args.precompile_worker!r}")
    if args.budget_s is not None and not (math.isfinite(args.budget_s) and args.budget_s >= 0):
        p.error(f"--budget-s must be a number of seconds >= 0 (0: no limit), got {args.budget_s:g}")
    try:
        check_device(args.device, "--")  # fastgan's own device check (the trainer's)
    except ValueError as e:
        p.error(str(e))
    cuda = torch.device(args.device).type == "cuda" if args.device else torch.cuda.is_available()
    if args.impls is None:
        args.impls = [n for n in IMPLEMENTATIONS if cuda or n not in CUDA_ONLY]
    elif not cuda and set(args.impls) & CUDA_ONLY:
        p.error(f"--impls {','.join(sorted(set(args.impls) & CUDA_ONLY))}: needs a CUDA device "
                f"(CUDA graphs); this run's device is {args.device or 'cpu'}")
    if args.compile_backend is not None:
        known = sorted(set(torch._dynamo.list_backends(exclude_tags=())) | {CPU_COMPILE_BACKEND, "inductor"})
        if args.compile_backend not in known:
            p.error(f"--compile-backend {args.compile_backend!r}: not a torch.compile backend here "
                    f"(torch._dynamo.list_backends: {', '.join(known)})")
    try:
        check_fastgan_set(args.fastgan_set, args.models, args.device or "cpu")
    except (ValueError, TypeError) as e:
        p.error(f"--fastgan-set {' '.join(args.fastgan_set)}: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}")
    return args


def resolve_args(args, device):
    """Fills what the command line left unset from the small or full configuration, in
    place; returns (small, resolution, width, batches)."""
    small = args.small or device.type != "cuda"
    base = SMALL if small else FULL
    for key in ("warmup", "steps", "repeats", "repeat_s", "profile_steps", "budget_s"):
        if getattr(args, key) is None:
            setattr(args, key, base[key])
    if args.compile_backend is None and device.type == "cpu":
        args.compile_backend = CPU_COMPILE_BACKEND
    if args.threads is None and device.type == "cpu":
        args.threads = 1
    if args.out is None:  # a CPU run's (small) report stays out of the checkout
        args.out = str(_HERE / "results" if device.type == "cuda"
                       else pathlib.Path(tempfile.gettempdir()) / "fastgan-step")
    return small, args.resolution or base["resolution"], args.width or base["width"], args.batches or base["batches"]


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    small, resolution, width, batches = resolve_args(args, device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        if device.index is None:  # set_device needs an index
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)

    if args.precompile_worker:
        return precompile_worker(args, device, resolution, width)

    result = {"environment": environment(device, args, small), "configs": [], "targets": []}
    stem = report_stem(args.out, result["environment"], batches, args.models)
    t_start = time.perf_counter()
    jobs = precompile_jobs(args, device, batches)
    if jobs:
        print(f"step_e2e: compiling (c) cold in {jobs} processes ...", file=sys.stderr, flush=True)
        result["precompile"] = precompile(args, device, resolution, width, batches, jobs)
    for batch in batches:
        for key, model, arch in CONFIGS:
            if key not in args.models:
                continue
            spec = StepSpec(model, arch, resolution, batch, g_width=width, d_width=width)
            rows = []
            # The budget is checked per configuration: one that starts runs every implementation
            # (the first GPU run lost BEGAN's fastgan row to a check between implementations),
            # and the first always starts (the target's, however long precompiling took).
            elapsed = time.perf_counter() - t_start
            over = bool(args.budget_s) and elapsed > args.budget_s and bool(result["configs"])
            for name in args.impls:
                if over:
                    rows.append({"impl": name, "error": f"skipped: the run passed its time budget "
                                                        f"(--budget-s {args.budget_s:g}) at {elapsed:.0f} s"})
                    continue
                print(f"step_e2e: {spec.label}: {name} ...", file=sys.stderr, flush=True)
                rows.append(measure(name, spec, device, args))
            n_critic = next((r["n_critic"] for r in rows if "n_critic" in r), None)
            result["configs"].append({"key": key, "model": model, "arch": arch, "resolution": resolution,
                                      "batch": batch, "width": width, "label": spec.label, "n_critic": n_critic,
                                      "rows": rows, "summary": config_summary(rows)})
            result["targets"] = evaluate_targets(result["configs"], cuda=device.type == "cuda")
            result["elapsed_s"] = time.perf_counter() - t_start
            md, js = write_report(result, stem)  # after every configuration: a cut-off run leaves one
    print(f"report: {md} (and {js.name}; {result['elapsed_s']:.0f} s)")
    print(short_table(result))
    failed = [f"{c['label']} {r['impl']}" for c in result["configs"] for r in c["rows"]
              if "error" in r and not r["error"].startswith("skipped")]
    if failed:
        print(f"step_e2e: {len(failed)} row(s) ended in an error: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
