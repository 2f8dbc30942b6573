"""WGAN weight clip: fastgan's backends against eager PyTorch and torch.compile.

Parameter sets: the DCGAN 64x64 critic (Radford et al. 2015, ndf = 64: 11 tensors,
2,765,568 parameters) and 300 small tensors (launch-bound). Baselines: the Python
loop of public WGAN code (`p.data.clamp_` per tensor), torch's foreach clamps, and
torch.compile of the loop. GB/s counts each element read once and written once.

    pytest benchmarks/bench_clip_weights.py                  # this machine's device
    pytest benchmarks/bench_clip_weights.py --benchmark-json out.json
"""
import pytest
import torch
from fastgan import _backend
from fastgan.ops import clip_weights_

C = 0.01


def _params(kind, device, dtype, dcgan_critic):
    gen = torch.Generator().manual_seed(0)
    if kind == "dcgan-critic":
        shapes = [p.shape for p in dcgan_critic().parameters()]
    else:  # "300-small"
        shapes = [(n,) for n in torch.randint(1, 3000, (300,), generator=gen).tolist()]
    return [(torch.randn(s, generator=gen) * 0.02).to(device=device, dtype=dtype) for s in shapes]


def _python_loop(params):
    for p in params:
        p.data.clamp_(-C, C)


def _foreach(params):
    torch._foreach_clamp_min_(params, -C)
    torch._foreach_clamp_max_(params, C)


_compiled_loop = torch.compile(_python_loop)

IMPLS = ["eager-loop", "eager-foreach", "torch.compile", "fastgan-cuda", "fastgan-triton", "fastgan-cpp"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("kind", ["dcgan-critic", "300-small"])
@pytest.mark.parametrize("impl", IMPLS)
def test_clip_weights(measure, device, dcgan_critic, impl, kind, dtype):
    if impl.startswith("fastgan-"):
        backend = impl.removeprefix("fastgan-")
        ok, why = _backend.status(backend, device)
        if not ok:
            pytest.skip(f"{backend} backend unavailable on {device}: {why}")
        if backend == "triton" and device == "cpu":
            pytest.skip("the Triton interpreter is a test vehicle, not a performance backend")
        fn = lambda p: clip_weights_(p, C, backend=backend)  # noqa: E731
    else:
        fn = {"eager-loop": _python_loop, "eager-foreach": _foreach, "torch.compile": _compiled_loop}[impl]
    params = _params(kind, device, dtype, dcgan_critic)
    measure(lambda: fn(params), nbytes=2 * sum(p.numel() * p.element_size() for p in params),
            group=f"clip_weights {kind} {str(dtype).removeprefix('torch.')} {device}")
