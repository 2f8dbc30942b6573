"""The end-to-end GAN step (issue 9, item 3) under pytest-benchmark: one generator iteration
(n_critic critic steps + one generator step) of each implementation of
benchmarks/step_e2e.py (eager-public, eager-careful, compile, fastgan) on WGAN-GP with the
DCGAN architecture (Gulrajani et al. 2017, arXiv:1704.00028) and DCGAN (Radford et al.
2015, arXiv:1511.06434), paper defaults, batches from device memory.

64x64, batch 64, widths 64 on a GPU; step_e2e.py's small configuration (16x16, batch 8,
widths 16, torch.compile on aot_eager) on a CPU. step_e2e.py is the full suite (all models,
both batches, medians with spread, the profiler breakdown, the report); this file puts the
step beside the other benchmarks of `pytest benchmarks/`.

    pytest benchmarks/bench_step_e2e.py
"""
import pathlib
import sys

import pytest
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # --import-mode=importlib: step_e2e's folder
import step_e2e  # noqa: E402
from baselines import StepSpec  # noqa: E402

MODELS = ["wgan-gp-dcgan", "dcgan"]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("impl", list(step_e2e.IMPLEMENTATIONS))
def test_step_e2e(measure, benchmark, device, impl, model):
    dev = torch.device(device)
    if impl in step_e2e.CUDA_ONLY and dev.type != "cuda":
        pytest.skip(f"{impl} replays CUDA graphs: it needs a CUDA device")
    args = step_e2e.parse_args(["--impls", impl])
    _, resolution, width, batches = step_e2e.resolve_args(args, dev)
    _, name, arch = next(c for c in step_e2e.CONFIGS if c[0] == model)
    spec = StepSpec(name, arch, resolution, batches[0], g_width=width, d_width=width)
    saved_threads, saved_cudnn = torch.get_num_threads(), torch.backends.cudnn.benchmark
    loop = None
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        loop = step_e2e.IMPLEMENTATIONS[impl](spec, dev, args)
        if loop.cudnn_benchmark is not None:
            torch.backends.cudnn.benchmark = loop.cudnn_benchmark
        rounds, iterations = (10, 2) if dev.type == "cuda" else (3, 1)
        benchmark.extra_info["images_per_iteration"] = loop.n_critic * spec.batch
        measure(loop.step, nbytes=None, group=f"step e2e {spec.label} {device}", rounds=rounds,
                iterations=iterations)
    finally:
        if loop is not None and hasattr(loop, "close"):
            loop.close()
        torch.set_num_threads(saved_threads)
        torch.backends.cudnn.benchmark = saved_cudnn
