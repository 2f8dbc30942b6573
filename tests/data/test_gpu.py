"""GPU paths: DALI's mixed decoding, torchvision's nvJPEG, the cache on the GPU and in pinned memory."""
import pytest
import torch

import fastgan.data.loader as loader_mod
from fastgan.data import _dali, _nvjpeg, make_loader

pytestmark = pytest.mark.gpu


def load(path, **kw):
    return make_loader(path, **{"batch_size": 6, "device": "cuda", "verbose": False, **kw})


def levels(x):
    return (x.float() * 127.5 + 127.5).round().int()


def _pil_levels(path, **kw):
    return levels(next(iter(make_loader(path, batch_size=24, backend="cpu", device="cpu", shuffle=False,
                                        num_workers=0, verbose=False, **kw)))[0])


@pytest.mark.parametrize("backend", ["dali", "nvjpeg"])
def test_gpu_decoding_matches_pil(faces, backend):
    if backend == "dali" and not _dali.available():
        pytest.skip('NVIDIA DALI is not installed (pip install "fastgan[dali]")')
    if backend == "nvjpeg" and not _nvjpeg.available():
        pytest.skip("torchvision is not installed: the nvjpeg backend needs torchvision.io.decode_jpeg")
    for crop in (None, 128):
        loader = load(faces, backend=backend, crop=crop, batch_size=24, shuffle=False)
        images, labels = next(iter(loader))
        assert images.device.type == "cuda" and images.shape == (24, 3, 64, 64) and labels is None
        d = (levels(images).cpu() - _pil_levels(faces, crop=crop)).abs()
        # nvJPEG's IDCT and chroma upsampling differ from libjpeg-turbo's (PIL's and
        # DALI-CPU's): a few levels almost everywhere, more at sharp colour edges (an H100,
        # 2026-11-22: up to 14 levels inside; the cpu backend then resized the crop's box
        # within the whole image, so the border was further apart still). All resize the
        # cut crop now (fastgan.data._pil).
        inner = d[..., 2:-2, 2:-2].float()
        stats = (f"crop {crop}: mean {d.float().mean():.3f}, inner p99 {inner.quantile(0.99):.1f}, "
                 f"inner max {inner.max():.0f} levels")
        assert d.float().mean() <= 1.0 and inner.quantile(0.99) <= 4 and inner.max() <= 24, stats


def test_gpu_bad_files_never_crash(mixed):
    backends = ["cache"] + (["dali"] if _dali.available() else []) + (["nvjpeg"] if _nvjpeg.available() else [])
    for backend in backends:
        loader = load(mixed, backend=backend, crop=128, batch_size=4)
        for images, _ in loader:
            assert images.shape == (4, 3, 64, 64) and torch.isfinite(images).all()
        assert loader.skipped == 6, backend


def test_cache_on_gpu_matches_cpu(labeled):
    gpu = load(labeled, backend="cache", flip=True, batch_size=4)
    assert gpu._data.device.type == "cuda"
    for images, labels in gpu:
        assert images.device.type == "cuda" and labels.device.type == "cuda"
        assert images.shape == (4, 3, 64, 64)


def test_cache_in_pinned_memory(labeled, monkeypatch):
    """A cache in pinned host memory (one that does not fit the GPU) holds the pixels of one
    on the GPU and gives the same batches and labels, on the GPU. Its images are decoded on
    the GPU (nvjpeg or DALI): the copy into pinned memory returned before they arrived when
    it was non_blocking (found by reading, 2026-11-24; the test compared labels only)."""
    monkeypatch.setattr(loader_mod, "_pin_instead", lambda nbytes, device: True)
    pinned = load(labeled, backend="cache", batch_size=4)
    assert pinned._data.device.type == "cpu" and pinned._data.is_pinned()
    monkeypatch.undo()
    resident = load(labeled, backend="cache", batch_size=4)
    assert resident._data.device.type == "cuda"
    assert torch.equal(pinned._data, resident._data.cpu())
    n = 0
    for (images, labels), (ref, ref_labels) in zip(pinned, resident):
        assert images.device.type == "cuda" and labels.device.type == "cuda"
        assert torch.equal(images, ref) and torch.equal(labels, ref_labels)
        n += 1
    assert n == len(resident) > 1


def test_resize_of_a_very_large_crop():
    """torch's CUDA antialiased resize refuses reductions past about 94x (its filter's
    weights in 48 KiB of shared memory): resize_crops does those on the CPU, by the same
    float32 math, so a 3,000-pixel crop to 32 x 32 works and agrees with the CPU's uint8
    resize within a level, as smaller ones do."""
    from fastgan.data._pil import GPU_MAX_REDUCTION, resize_crops
    g = torch.Generator().manual_seed(0)
    big = torch.randint(0, 256, (2, 3, 3000, 3000), dtype=torch.uint8, generator=g)
    small = torch.randint(0, 256, (1, 3, 900, 900), dtype=torch.uint8, generator=g)
    assert 3000 > GPU_MAX_REDUCTION * 32 > 900
    groups = [([0, 2], big), ([1], small)]
    got = resize_crops([(r, x.cuda()) for r, x in groups], 3, 32, 3, "cuda")
    ref = resize_crops(groups, 3, 32, 3, "cpu")
    assert got.device.type == "cuda" and got.shape == ref.shape == (3, 32, 32, 3)
    assert (got.cpu().int() - ref.int()).abs().max() <= 1


def test_cache_plan_ready_on_any_stream(labeled):
    """An epoch's order and flips are made on the stream that takes its first batch (the
    trainer's warm-up side stream), here kept busy so that their copy and draw come late; the
    next batches are taken on the default stream, which never waits for the side stream: the
    loader makes it wait before it reads them (fastgan.data.loader, Streams)."""
    def take(it):
        return [(x * 1, y * 1) for x, y in it]
    ref = take(load(labeled, backend="cache", batch_size=4, flip=True))
    it = iter(load(labeled, backend="cache", batch_size=4, flip=True))
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        torch.cuda._sleep(500_000_000)  # ahead of the plan's copy to the GPU and its flip draw
        got = take([next(it)])
    got += take(it)
    torch.cuda.synchronize()
    assert len(got) == len(ref) > 1
    bad = [k for k, ((a, la), (b, lb)) in enumerate(zip(got, ref)) if not (torch.equal(a, b) and torch.equal(la, lb))]
    assert bad == []


def test_nvjpeg_ahead_and_streams(faces, monkeypatch):
    """The batches decoded ahead on the decoder's threads are the same whatever runs ahead,
    and each is ready on the stream that takes it, whatever that stream or another has
    queued. As the trainer does: the first batch taken on a warm-up side stream, the rest on
    the default stream; the side stream is then kept busy (the old design queued the whole
    epoch's decoding on it, and the default stream read the batches before they were made)."""
    if not _nvjpeg.available():
        pytest.skip("torchvision is not installed: the nvjpeg backend needs torchvision.io.decode_jpeg")
    ref = [x.clone() for x, _ in load(faces, backend="nvjpeg", batch_size=4, flip=True)]
    for ahead in (1, 3):
        monkeypatch.setattr(_nvjpeg, "AHEAD", ahead)
        got = [x.clone() for x, _ in load(faces, backend="nvjpeg", batch_size=4, flip=True)]
        assert all(torch.equal(a, b) for a, b in zip(got, ref)) and len(got) == len(ref), ahead
    monkeypatch.undo()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    it = iter(load(faces, backend="nvjpeg", batch_size=4, flip=True))
    with torch.cuda.stream(side):
        x, _ = next(it)
        got = [x * 1]
    torch.cuda.current_stream().wait_stream(side)
    for x, _ in it:
        with torch.cuda.stream(side):
            torch.cuda._sleep(100_000_000)  # the side stream busy while the default one reads
        got.append(x * 1)
    torch.cuda.synchronize()
    assert len(got) == len(ref)
    assert [k for k, (a, b) in enumerate(zip(got, ref)) if not torch.equal(a, b)] == []
    got = []
    for x, _ in load(faces, backend="nvjpeg", batch_size=4, flip=True):
        torch.cuda._sleep(20_000_000)  # the taker busy: the decoder must not reuse what it still reads
        got.append(x * 1)
        del x
    torch.cuda.synchronize()
    assert [k for k, (a, b) in enumerate(zip(got, ref)) if not torch.equal(a, b)] == []
