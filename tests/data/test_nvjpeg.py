"""The "nvjpeg" backend's own logic on the CPU: torchvision's decode_jpeg is replaced by a
PIL stand-in with its interface (a list of 1-D uint8 tensors in, a list of uint8 [C, H, W]
out, one bad stream failing the whole call with RuntimeError), so what fastgan does around
it runs here: the crop and resize, the PIL fallback for PNGs and bad streams, the failed
mask, the order of batches decoded ahead on threads, leaving early and errors. The real
decoder on a GPU: tests/data/test_gpu.py."""
import io
import sys
import threading
import types
from enum import Enum

import numpy as np
import pytest
import torch
from PIL import Image

from fastgan.data import _nvjpeg, make_loader

WAIT = 60  # seconds a thread waits for another before the test fails (never reached when it works)


class ImageReadMode(Enum):
    GRAY = 1
    RGB = 3


def _pil_decode_jpeg(data, mode=ImageReadMode.RGB, device="cpu"):
    out = []
    for d in data:
        assert d.dtype == torch.uint8 and d.dim() == 1
        try:
            im = Image.open(io.BytesIO(d.numpy().tobytes()))
            im = im.convert("RGB" if mode is ImageReadMode.RGB else "L")
        except Exception as exc:  # noqa: BLE001 (nvJPEG fails the batch on any bad stream)
            raise RuntimeError(f"Error while decoding JPEG images: {exc}") from None
        t = torch.from_numpy(np.asarray(im).copy())
        out.append((t[None] if t.dim() == 2 else t.permute(2, 0, 1)).to(device))
    return out


@pytest.fixture
def fake_torchvision(monkeypatch):
    """Installs the stand-in; returns the list of batch sizes each call decoded."""
    calls = []
    io_module = types.ModuleType("torchvision.io")
    io_module.ImageReadMode = ImageReadMode

    def decode_jpeg(data, mode=ImageReadMode.RGB, device="cpu"):
        calls.append(len(data))
        return io_module.hook(data, mode, device)

    io_module.decode_jpeg = decode_jpeg
    io_module.hook = _pil_decode_jpeg
    monkeypatch.setitem(sys.modules, "torchvision", types.ModuleType("torchvision"))
    monkeypatch.setitem(sys.modules, "torchvision.io", io_module)
    monkeypatch.setattr(_nvjpeg, "require", lambda device: None)  # the CPU stands in for the GPU
    return io_module, calls


def load(path, backend, **kw):
    return make_loader(path, **{"batch_size": 4, "device": "cpu", "shuffle": False, "verbose": False,
                                "num_workers": 2, "backend": backend, **kw})


def levels(x):
    return (x.float() * 127.5 + 127.5).round().int()


def test_matches_pil_backend(faces, fake_torchvision):
    _, calls = fake_torchvision
    for crop in (None, 128):
        ours = torch.cat([x for x, _ in load(faces, "nvjpeg", crop=crop)])
        ref = torch.cat([x for x, _ in load(faces, "cpu", crop=crop, num_workers=0)])
        assert ours.shape == ref.shape == (24, 3, 64, 64)
        # the same pixels decoded (PIL both, here), the same cut crop, the same resize
        # (fastgan.data._pil.resize_crops; on a GPU it resizes in float32 and rounds)
        assert torch.equal(ours, ref), crop
    assert calls == [4] * 12  # one decode_jpeg call per batch of JPEGs


@pytest.mark.parametrize("ahead", [1, 2, 5])
def test_batches_in_order_whatever_runs_ahead(faces, fake_torchvision, monkeypatch, ahead):
    ref = [x for x, _ in load(faces, "nvjpeg", flip=True, shuffle=True, seed=3)]
    monkeypatch.setattr(_nvjpeg, "AHEAD", ahead)
    loader = load(faces, "nvjpeg", flip=True, shuffle=True, seed=3)
    assert loader._decoder.ahead == ahead
    got = [x for x, _ in loader]
    assert len(got) == len(ref) == 6
    for a, b in zip(got, ref):
        assert torch.equal(a, b)


def test_bad_files_are_decoded_by_pil_or_counted(mixed, fake_torchvision):
    loader = load(mixed, "nvjpeg", crop=128, batch_size=2)
    seen = 0
    for images, _ in loader:
        assert images.shape == (2, 3, 64, 64) and torch.isfinite(images).all()
        assert images.min() >= -1 and images.max() <= 1
        seen += images.shape[0]
    assert seen == 10 and loader.skipped == 6  # as every other backend (test_gpu, test_bad_inputs)


def test_a_refusal_pil_decodes_is_reported_once(faces, fake_torchvision):
    """When the GPU decoder refuses batches that PIL decodes whole (this machine's
    torchvision or nvJPEG, not a corrupt file), the backend says so once, and the batches
    are PIL's, right; a corrupt file's refusal (test above) is counted, not reported."""
    io_module, _ = fake_torchvision
    ref = [x for x, _ in load(faces, "cpu")]

    def refuse(data, mode, device):
        raise RuntimeError("nvjpeg is not supported here (stand-in)")

    io_module.hook = refuse
    with pytest.warns(RuntimeWarning, match="refused a batch that PIL decodes.*stand-in") as caught:
        got = [x for x, _ in load(faces, "nvjpeg")]
    assert len([w for w in caught if issubclass(w.category, RuntimeWarning)]) == 1
    assert len(got) == len(ref) > 1 and all(torch.equal(a, b) for a, b in zip(got, ref))


def test_a_corrupt_file_is_not_reported(mixed, fake_torchvision, recwarn):
    for _ in load(mixed, "nvjpeg", crop=128, batch_size=2):
        pass
    assert not [w for w in recwarn if "refused a batch" in str(w.message)]


def test_decodes_ahead_while_the_caller_holds_a_batch(faces, fake_torchvision, monkeypatch):
    io_module, _ = fake_torchvision
    monkeypatch.setattr(_nvjpeg, "AHEAD", 2)
    entered = [threading.Event() for _ in range(6)]
    count = iter(range(6))

    def hook(data, mode, device):
        entered[next(count)].set()
        return _pil_decode_jpeg(data, mode, device)

    io_module.hook = hook
    it = iter(load(faces, "nvjpeg"))
    next(it)
    # holding batch 0, the caller has batches 1 and 2 decoding (or done), not 3
    assert entered[1].wait(WAIT) and entered[2].wait(WAIT)
    assert not entered[3].is_set()
    rest = list(it)
    assert len(rest) == 5 and all(e.is_set() for e in entered)


def test_leaving_early_then_iterating_again(faces, fake_torchvision, monkeypatch):
    io_module, _ = fake_torchvision
    release = threading.Event()

    def hook(data, mode, device):
        assert release.wait(WAIT)
        return _pil_decode_jpeg(data, mode, device)

    io_module.hook = hook
    loader = load(faces, "nvjpeg")
    full = None
    it = iter(loader)
    release.set()
    first, _ = next(it)
    it.close()  # batches 1 and 2 in flight finish and are dropped; 3 and on never start
    assert loader.epoch == 0 and loader._batch == 1
    rest = [x for x, _ in loader]  # the epoch resumes at batch 1
    full = [x for x, _ in load(faces, "nvjpeg")]
    assert len(rest) == 5
    for a, b in zip([first] + rest, full):
        assert torch.equal(a, b)


def test_leaving_early_waits_for_the_batches_in_flight(faces, fake_torchvision):
    """Closing an epoch returns once the batches already decoding are done, so no thread
    of it calls the decoder (or queues work on the caller's stream) afterwards."""
    io_module, _ = fake_torchvision
    first = (faces / "000000.jpg").read_bytes()
    go, both_in, closed = threading.Event(), threading.Event(), threading.Event()
    lock = threading.Lock()
    entered, left = [], []

    def hook(data, mode, device):
        with lock:
            entered.append(1)
            if len(entered) == 3:
                both_in.set()
        if data[0].numpy().tobytes() != first:  # batches 1 and 2, while the caller holds 0
            assert go.wait(WAIT)
        try:
            return _pil_decode_jpeg(data, mode, device)
        finally:
            with lock:
                left.append(1)

    io_module.hook = hook
    it = iter(load(faces, "nvjpeg"))
    next(it)
    assert both_in.wait(WAIT)  # batches 1 and 2 are inside the decoder, held there
    closer = threading.Thread(target=lambda: (it.close(), closed.set()))
    closer.start()
    try:
        assert not closed.wait(0.5)  # close waits for them (without the wait: returns at once)
    finally:
        go.set()
    closer.join(WAIT)
    assert closed.is_set()
    with lock:
        assert len(entered) == len(left) == 3  # both finished before close returned


def test_an_error_reaches_the_caller_at_its_batch(faces, fake_torchvision):
    io_module, _ = fake_torchvision
    third = (faces / "000008.jpg").read_bytes()  # the first file of the third batch (no shuffle)

    def hook(data, mode, device):  # known by its files, not by the order the threads call in
        if data[0].numpy().tobytes() == third:
            raise MemoryError("out of memory (the third batch)")
        return _pil_decode_jpeg(data, mode, device)

    io_module.hook = hook
    it = iter(load(faces, "nvjpeg"))
    next(it), next(it)
    with pytest.raises(MemoryError, match="the third batch"):
        next(it)


def test_ahead_is_checked(faces, fake_torchvision):
    loader = load(faces, "nvjpeg")
    d = loader._decoder
    for bad in (0, -1, 1.5, "2"):
        with pytest.raises(ValueError, match="ahead must be an int >= 1"):
            _nvjpeg.NvJPEGDecoder(d.samples, d.sizes, "cpu", ahead=bad)
