"""A training batch from a uint8 dataset in memory: fastgan's one kernel against torch.

Batch 128 of 64x64x3 random images drawn from N = 20000 (246 MB of uint8), half of them
mirrored: gather, flip, HWC -> CHW, uint8 -> [-1, 1]. Eager torch is the reference
(data[index], torch.where over a flipped copy, permute, float, sub, div, the layout copy:
seven kernels, seven temporaries); torch.compile fuses the same graph. Two outputs: float32
NCHW, and bfloat16 channels_last (a mixed-precision critic's input).
GB/s: the batch's bytes read (B*H*W*C) plus written (B*C*H*W x the dtype's size).

    pytest benchmarks/bench_gather_images.py
"""
import pytest
import torch

from fastgan.ops import gather_images, gather_images_reference

IMPLS = ["eager", "torch.compile", "fastgan-cuda", "fastgan-triton", "fastgan-cpp"]
N, H, W, C, BATCH = 20000, 64, 64, 3, 128
OUTPUTS = [(torch.float32, False), (torch.bfloat16, True)]


@pytest.fixture(scope="module")
def dataset():
    """(data, index, flip) on the benchmark device, made once for the module."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator().manual_seed(0)
    data = torch.randint(0, 256, (N, H, W, C), generator=gen, dtype=torch.uint8).to(device)
    index = torch.randint(0, N, (BATCH,), generator=gen).to(device)
    flip = (torch.rand(BATCH, generator=gen) < 0.5).to(device)
    return data, index, flip


def _fn(impl):
    if impl == "eager":
        return gather_images_reference
    if impl == "torch.compile":
        return torch.compile(gather_images_reference)
    backend = impl.split("-")[1]
    return lambda *args, **kw: gather_images(*args, **kw, backend=backend)


@pytest.mark.parametrize("out", OUTPUTS, ids=["float32-nchw", "bfloat16-channels_last"])
@pytest.mark.parametrize("impl", IMPLS)
def test_gather_batch(measure, benchmark, device, skip_unavailable, dataset, impl, out):
    skip_unavailable(impl, device)
    dtype, channels_last = out
    data, index, flip = dataset
    fn = _fn(impl)

    def step():
        fn(data, index, flip, dtype=dtype, channels_last=channels_last)

    elems = BATCH * H * W * C
    nbytes = elems * (1 + torch.finfo(dtype).bits // 8)
    measure(step, nbytes=nbytes, group=f"gather_images {BATCH}x{H}x{W}x{C} -> {dtype} "
                                       f"{'channels_last' if channels_last else 'NCHW'} {device}")
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["images/s"] = round(BATCH / benchmark.stats.stats.median)
