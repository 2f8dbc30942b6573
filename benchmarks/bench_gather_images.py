"""A training batch from a uint8 dataset in memory: fastgan's one kernel against torch.

Batch 128 of 64x64x3 random images drawn from N = 20000 (246 MB of uint8), half of them
mirrored: gather, flip, HWC -> CHW, uint8 -> [-1, 1]. Two eager baselines:
  eager          fastgan's reference, gather_images_reference: exact to the last bit (a true
                 division by 127.5, range checks on the index), so more kernels than needed;
  eager-plain    what a careful user writes: data[index], torch.where over a flipped copy,
                 permute, float, div_, sub_, one copy into the output's dtype and layout
                 (within 6e-8 of the reference; checked below before timing);
torch.compile compiles the reference's graph. Two outputs: float32 NCHW, and bfloat16
channels_last (a mixed-precision critic's input).
GB/s: the batch's bytes read (B*H*W*C) plus written (B*C*H*W x the dtype's size).

    pytest benchmarks/bench_gather_images.py
"""
import pytest
import torch

from fastgan.ops import gather_images, gather_images_reference

IMPLS = ["eager", "eager-plain", "torch.compile", "fastgan-cuda", "fastgan-triton", "fastgan-cpp"]
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


def gather_plain(data, index, flip, *, dtype, channels_last):
    """The batch as plain eager code writes it."""
    x = data[index]
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(2), x)
    x = x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1)  # channels_last strides already
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return x.to(dtype=dtype, memory_format=fmt)


def _fn(impl):
    if impl == "eager":
        return gather_images_reference
    if impl == "eager-plain":
        return gather_plain
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
    got = fn(data, index, flip, dtype=dtype, channels_last=channels_last)
    want = gather_images_reference(data, index, flip, dtype=dtype, channels_last=channels_last)
    # a fast wrong batch must not be timed (bf16: one rounding of the same float32 values)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-7 if dtype == torch.float32 else 2 ** -8)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert got.is_contiguous(memory_format=fmt), f"{impl}: the output is not in the asked layout"

    def step():
        fn(data, index, flip, dtype=dtype, channels_last=channels_last)

    elems = BATCH * H * W * C
    nbytes = elems * (1 + torch.finfo(dtype).bits // 8)
    measure(step, nbytes=nbytes, group=f"gather_images {BATCH}x{H}x{W}x{C} -> {dtype} "
                                       f"{'channels_last' if channels_last else 'NCHW'} {device}")
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["images/s"] = round(BATCH / benchmark.stats.stats.median)
