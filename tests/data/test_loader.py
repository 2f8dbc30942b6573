"""make_loader on every backend that runs here: batches, order, sharding, resume, agreement."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fastgan.data import _dali, make_loader
from fastgan.data._pil import crop_box, resize_crops
from fastgan.data.loader import _decoder_choice

HAS_DALI = _dali.available()
needs_dali = pytest.mark.skipif(not HAS_DALI, reason='NVIDIA DALI is not installed (pip install "fastgan[dali]")')
CPU_BACKENDS = [pytest.param("cpu"), pytest.param("dali", marks=needs_dali), pytest.param("cache")]


def load(path, **kw):
    kw = {"batch_size": 5, "device": "cpu", "num_workers": 0, "verbose": False, **kw}
    return make_loader(path, **kw)


def levels(x):
    """Batch in [-1, 1] back to the uint8 levels it was made from."""
    return (x.float() * 127.5 + 127.5).round().to(torch.uint8)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_batches_shape_dtype_range_count(labeled, backend):
    loader = load(labeled, backend=backend, resolution=32, flip=True)
    assert loader.backend == backend and loader.num_samples == 12 and len(loader) == 2
    assert loader.num_classes == 2 and loader.skipped == 0
    seen = []
    for images, labels in loader:
        assert images.shape == (5, 3, 32, 32) and images.dtype == torch.float32
        assert images.min() >= -1 and images.max() <= 1 and images.std() > 0.1
        assert labels.dtype == torch.int64 and labels.shape == (5,)
        seen.append(labels)
    assert len(seen) == 2 and loader.epoch == 1
    assert set(torch.cat(seen).tolist()) <= {0, 1}


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_dtype_channels_last_gray_no_labels(faces, backend):
    loader = load(faces, backend=backend, resolution=16, dtype=torch.bfloat16, channels_last=True,
                  channels=1, drop_last=False, batch_size=10)
    batches = list(loader)
    assert [b[0].shape[0] for b in batches] == [10, 10, 4]  # drop_last=False keeps the partial batch
    images, labels = batches[0]
    assert labels is None and loader.num_classes == 0
    assert images.shape == (10, 1, 16, 16) and images.dtype == torch.bfloat16
    assert images.is_contiguous(memory_format=torch.channels_last)


@needs_dali
@pytest.mark.parametrize("crop,resolution,channels", [(None, 64, 3), (None, 48, 3), (None, 32, 3), (None, 16, 3),
                                                      (128, 64, 3), (100, 32, 3), (None, 64, 1), (None, 100, 3)])
def test_dali_cpu_matches_pil(faces, two_sizes, crop, resolution, channels):
    """The cpu backend (PIL decodes the crop) and DALI-CPU (DALI decodes it) both cut the
    crop out and resize it with torch (fastgan.data._pil.resize_crops); both decoders are
    libjpeg-turbo, so the batches are equal bit for bit, border included, in batches of one
    crop size and of two. (When PIL resized the crop's box within the whole image, reading
    past the crop, they were up to 14 levels apart on the outermost pixels.)"""
    for root in (faces, two_sizes) if crop is None or crop <= 100 else (faces,):  # two_sizes: 100 x 120 too
        a, b = (levels(next(iter(load(root, backend=be, crop=crop, resolution=resolution, channels=channels,
                                       batch_size=8, shuffle=False)))[0])
                for be in ("cpu", "dali"))
        assert a.shape == (8, channels, resolution, resolution)
        assert torch.equal(a, b)


@needs_dali
@pytest.mark.parametrize("crop,resolution", [(None, 64), (None, 48), (None, 16), (96, 64), (100, 32)])
def test_dali_cpu_is_torchs_resize_of_the_decoded_crop(two_sizes, crop, resolution):
    """On the CPU, DALI decodes the crop and torch resizes it (fastgan.data._dali): bit for
    bit F.interpolate's antialiased bilinear on uint8 of the crop PIL decodes (both decoders
    libjpeg-turbo), in batches whose crops differ in size (one resize per size) or not."""
    got = levels(next(iter(load(two_sizes, backend="dali", crop=crop, resolution=resolution,
                                batch_size=8, shuffle=False, num_workers=2)))[0])
    ref = []
    for p in sorted(two_sizes.iterdir()):
        im = np.asarray(Image.open(p).convert("RGB"))
        left, top, side = crop_box(im.shape[1], im.shape[0], crop)
        x = torch.from_numpy(im[top:top + side, left:left + side].copy()).permute(2, 0, 1)[None]
        ref.append(F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True)[0])
    assert got.shape == (8, 3, resolution, resolution)
    assert torch.equal(got, torch.stack(ref))


def test_resize_crops_puts_each_size_in_its_rows_on_one_thread(monkeypatch):
    """Every backend's resize: one F.interpolate call per crop size, run on one intra-op
    thread (the caller's count restored after), its results in the group's rows."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (3, 3, 40, 40), dtype=torch.uint8, generator=gen)
    b = torch.randint(0, 256, (2, 40, 30, 3), dtype=torch.uint8, generator=gen).permute(0, 3, 1, 2)

    def ref(x):
        return F.interpolate(x, size=(16, 16), mode="bilinear", antialias=True).permute(0, 2, 3, 1)
    want_a, want_b = ref(a), ref(b)
    seen = []
    interpolate = F.interpolate

    def spy(*args, **kw):
        seen.append(torch.get_num_threads())
        return interpolate(*args, **kw)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(F, "interpolate", spy)
        out = resize_crops([([0, 2, 4], a), ([1, 3], b)], 5, 16, 3, "cpu")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert seen == [1, 1]
    assert out.shape == (5, 16, 16, 3) and out.dtype == torch.uint8
    assert torch.equal(out[[0, 2, 4]], want_a) and torch.equal(out[[1, 3]], want_b)
    whole = resize_crops([(None, a)], 3, 16, 3, "cpu")
    assert whole.is_contiguous() and torch.equal(whole, want_a)
    assert torch.equal(resize_crops([], 2, 16, 3, "cpu"), torch.zeros((2, 16, 16, 3), dtype=torch.uint8))


@pytest.mark.parametrize("backend,threads", [("cpu", 1), pytest.param("dali", 1, marks=needs_dali),
                                             ("cache", 2)])
def test_decoded_batches_are_normalized_on_one_thread(labeled, monkeypatch, backend, threads):
    """Beside decoders that keep the cores busy, the loader's gather + normalize runs on one
    intra-op thread (fastgan.data._pil.one_thread); the cache's, with nothing beside it, on
    the caller's threads."""
    from fastgan.data import loader as module
    seen = []
    gather = module.gather_images

    def spy(*args, **kw):
        seen.append(torch.get_num_threads())
        return gather(*args, **kw)
    monkeypatch.setattr(module, "gather_images", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        batches = list(load(labeled, backend=backend))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert len(batches) == 2 and seen == [threads] * 2


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_same_seed_same_batches_bit_for_bit(labeled, backend):
    runs = [[(x.clone(), y.clone()) for x, y in load(labeled, backend=backend, flip=True, seed=3)]
            for _ in range(2)]
    for (x1, y1), (x2, y2) in zip(*runs):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    other = list(load(labeled, backend=backend, flip=True, seed=4))
    assert not all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(runs[0], other))


def test_cpu_and_cache_agree(labeled):
    """Same order, flips, labels and pixels; the cache decodes with DALI here when installed,
    whose pixels are the cpu backend's (test_dali_cpu_matches_pil)."""
    pairs = zip(load(labeled, backend="cpu", flip=True), load(labeled, backend="cache", flip=True))
    for (x1, y1), (x2, y2) in pairs:
        assert torch.equal(y1, y2)
        assert torch.equal(x1, x2)


@pytest.mark.parametrize("backend", ["cpu", "cache"])
def test_resume_gives_identical_batches(labeled, backend):
    kw = {"backend": backend, "flip": True, "batch_size": 3, "seed": 7}
    straight = load(labeled, **kw)
    ref = [(x.clone(), y.clone()) for _ in range(3) for x, y in straight]   # 3 epochs x 4 batches
    interrupted = load(labeled, **kw)
    got = [b for b in interrupted][:4]
    for i, b in enumerate(interrupted):                                       # epoch 1: stop after 2
        got.append(b)
        if i == 1:
            break
    state = interrupted.state_dict()
    assert state["epoch"] == 1 and state["batch"] == 2
    resumed = load(labeled, **kw)
    resumed.load_state_dict(state)
    got += list(resumed) + list(resumed)                                      # rest of 1, then 2
    assert len(got) == len(ref) == 12
    for (x1, y1), (x2, y2) in zip(ref, got):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("workers", [0, 2])
def test_iterating_leaves_torchs_global_rng_alone(labeled, backend, workers):
    """An epoch draws no number from torch's global RNG: the cpu backend's DataLoader drew its
    workers' base seed from it at each iter(), so a resumed run, starting an epoch mid-way,
    drew every later z and penalty point shifted (found by a review, 2026-11-24)."""
    loader = load(labeled, backend=backend, flip=True, batch_size=3, num_workers=workers)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    for _ in range(2):
        for _ in loader:
            pass
    it = iter(loader)
    next(it)
    del it
    assert torch.equal(torch.get_rng_state(), before)


def test_break_then_iterate_continues(labeled):
    loader = load(labeled, backend="cache", batch_size=3)
    ref = [y for _, y in load(labeled, backend="cache", batch_size=3)]
    it = iter(loader)
    first = next(it)[1]
    del it
    rest = [y for _, y in loader]
    assert len(rest) == 3 and all(torch.equal(a, b) for a, b in zip([first] + rest, ref))
    assert loader.epoch == 1 and loader.state_dict()["batch"] == 0
    with pytest.raises(ValueError, match="batch_size"):
        loader.load_state_dict({**loader.state_dict(), "batch_size": 4})


@pytest.mark.parametrize("backend", ["cpu", "cache"])
def test_shards_cover_an_epoch_once(faces, backend):
    """25 images would leave 1 over for 3 shards; 24 split 8/8/8, each its own, equal-sized."""
    full = load(faces, backend=backend, batch_size=1, shuffle=True, seed=5, resolution=8)
    one = [levels(x)[0] for x, _ in full]
    shards = []
    for rank in range(3):
        loader = load(faces, backend=backend, batch_size=2, shard=(rank, 3), seed=5, resolution=8)
        assert loader.num_samples == 8 and len(loader) == 4
        shards.append([img for x, _ in loader for img in levels(x)])
    key = lambda t: bytes(t.flatten().tolist())  # noqa: E731
    assert sorted(map(key, one)) == sorted(key(t) for s in shards for t in s)
    assert len({key(t) for s in shards for t in s}) == 24
    # shard r holds epoch positions r, r + 3, ...: the one-process order, dealt out
    assert all(torch.equal(shards[r][k], one[3 * k + r]) for r in range(3) for k in range(8))


def test_unshuffled_shards_leave_out_other_samples_each_epoch(faces):
    # 24 images over 5 shards: 4 are trimmed from each epoch. Unshuffled they were the last
    # 4 every epoch (never seen, silently); the order now rolls by 4 an epoch
    key = lambda t: bytes(t.flatten().tolist())  # noqa: E731
    everything = {key(t) for x, _ in load(faces, backend="cpu", batch_size=4, shuffle=False, resolution=8)
                  for t in levels(x)}
    assert len(everything) == 24
    loaders = [load(faces, backend="cpu", batch_size=2, shard=(r, 5), shuffle=False, drop_last=False,
                    resolution=8) for r in range(5)]
    seen = set()
    for epoch in range(6):
        this = [key(t) for loader in loaders for x, _ in loader for t in levels(x)]
        assert len(this) == len(set(this)) == 20  # within an epoch: each sample once at most
        seen |= set(this)
    assert seen == everything


@pytest.mark.parametrize("backend", ["cpu", pytest.param("dali", marks=needs_dali)])
def test_zip_reads_like_the_folder(labeled, tmp_path, zip_folder, backend):
    # dali: a folder's files are read inside the pipeline, a zip's members in Python
    z = zip_folder(labeled, tmp_path / "celeba.zip")
    a, b = load(labeled, backend=backend), load(z, backend=backend)
    assert b.num_classes == 2 and b.num_samples == 12
    for (x1, y1), (x2, y2) in zip(a, b):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_cpu_backend_with_two_workers(labeled):
    loader = load(labeled, backend="cpu", num_workers=2, batch_size=4, flip=True)
    first = [(x.clone(), y.clone()) for x, y in loader]
    single = list(load(labeled, backend="cpu", num_workers=0, batch_size=4, flip=True))
    for (x1, y1), (x2, y2) in zip(first, single):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert len(list(loader)) == 3 and loader.epoch == 2  # persistent workers, second epoch


@pytest.mark.parametrize("ending", ["exit", "exception"])
def test_a_script_holding_a_loader_with_workers_exits(labeled, tmp_path, ending):
    # the workers ignore SIGTERM (a stop is the trainer's to make), which multiprocessing sends
    # them at interpreter exit: a script that still held the loader never exited
    script = tmp_path / "hold.py"
    script.write_text(textwrap.dedent(f"""
        from fastgan.data import make_loader
        loader = make_loader({str(labeled)!r}, resolution=16, batch_size=4, backend="cpu",
                             device="cpu", num_workers=2, verbose=False)
        x, y = next(iter(loader))
        print("one batch", flush=True)
        if {ending == "exception"!r}:
            raise RuntimeError("the user's loop failed")
    """))
    try:
        r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                           cwd=tmp_path)
    except subprocess.TimeoutExpired:
        pytest.fail("the script did not exit in 120 s after its last line")
    assert r.stdout == "one batch\n"
    assert r.returncode == (1 if ending == "exception" else 0), r.stderr[-2000:]


def test_auto_choice_and_message(labeled, capsys):
    loader = make_loader(labeled, batch_size=4, device="cpu", num_workers=0)
    assert loader.backend == "cache"
    assert "backend 'cache'" in capsys.readouterr().err
    import fastgan.data.loader as L

    old = L.CACHE_BUDGET["cpu"]
    try:
        L.CACHE_BUDGET["cpu"] = 1000
        loader = make_loader(labeled, batch_size=4, device="cpu", num_workers=0)
    finally:
        L.CACHE_BUDGET["cpu"] = old
    assert loader.backend == _decoder_choice(torch.device("cpu"))[0]
    assert f"backend {loader.backend!r}" in capsys.readouterr().err


def test_bad_arguments(labeled):
    with pytest.raises(ValueError, match="backend"):
        load(labeled, backend="pil")
    with pytest.raises(ValueError, match="shard"):
        load(labeled, shard=(2, 2))
    with pytest.raises(ValueError, match="channels"):
        load(labeled, channels=4)
    with pytest.raises(ValueError, match="fewer than batch_size"):
        load(labeled, batch_size=13)
    with pytest.raises(TypeError, match="dtype"):
        load(labeled, dtype=torch.int8)


def test_dali_missing_is_a_clear_error(labeled, monkeypatch):
    monkeypatch.setattr(_dali, "available", lambda: False)
    with pytest.raises(ValueError, match=r"pip install \"fastgan\[dali\]\""):
        load(labeled, backend="dali")


@pytest.mark.parametrize("verbose, progress, want", [(True, None, True), (True, False, False),
                                                     (False, True, True), (False, None, False)])
def test_progress_bars_follow_progress_else_verbose(labeled, monkeypatch, verbose, progress, want):
    # `fastgan train --no-progress` passes progress=False: the one-time check and decode of a
    # dataset draw no bars then, while the backend choice is still said (verbose).
    from fastgan.data import loader as loader_mod
    seen = {}
    real_check_all, real_decode_all = loader_mod.check_all, loader_mod.decode_all

    def check_all(*a, progress=False, **k):
        seen["check"] = progress
        return real_check_all(*a, progress=False, **k)

    def decode_all(*a, progress=False, **k):
        seen["decode"] = progress
        return real_decode_all(*a, progress=False, **k)

    monkeypatch.setattr(loader_mod, "check_all", check_all)
    monkeypatch.setattr(loader_mod, "decode_all", decode_all)
    monkeypatch.setattr(loader_mod, "_BAR_MIN_CHECK", 0)
    monkeypatch.setattr(loader_mod, "_BAR_MIN_DECODE", 0)
    load(labeled, backend="cache", verbose=verbose, progress=progress)
    assert seen == {"check": want, "decode": want}


def test_device_tensors_handed_to_each_taking_stream(monkeypatch):
    """fastgan.data.loader, Streams: the first take on a stream waits once for the stream the
    tensors were made on and records them on it; the making stream and a stream seen before
    add nothing. With fake streams, events and tensors: the CPU has no streams."""
    from fastgan.data import loader as loader_mod
    log, current = [], ["made"]

    class Stream:
        def __init__(self, name):
            self.name = name

        def wait_event(self, event):
            log.append(("wait", self.name, event.recorded_on))

    streams = {name: Stream(name) for name in ("made", "side", "main")}

    class Event:
        def record(self, stream):
            self.recorded_on = stream.name

    class Tensor:
        is_cuda, device = True, "cuda:0"

        def __init__(self, name):
            self.name = name

        def record_stream(self, stream):
            log.append(("record", self.name, stream.name))

    class Host:
        is_cuda = False

    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: streams[current[0]])
    monkeypatch.setattr(torch.cuda, "Event", Event)
    guard = loader_mod._OnStreams(Tensor("order"), None, Host(), Tensor("flips"))
    guard.take()
    assert log == []
    for name in ("side", "side", "main", "side", "made", "main"):
        current[0] = name
        guard.take()
    assert log == [("wait", "side", "made"), ("record", "order", "side"), ("record", "flips", "side"),
                   ("wait", "main", "made"), ("record", "order", "main"), ("record", "flips", "main")]
    loader_mod._OnStreams(None, Host()).take()  # nothing on CUDA: no stream is even asked for
    current[0] = "missing"
    loader_mod._OnStreams(Host()).take()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_flip_mirrors_about_half_the_images_and_nothing_else(labeled, backend):
    """Every flip test compared two runs sharing one flip mask: a loader that never (or
    always) flipped passed them all. Here each image is itself or its mirror image, against
    the same loader without flips, and about half are mirrored over 10 epochs."""
    plain = load(labeled, backend=backend, batch_size=4, seed=5)
    flipping = load(labeled, backend=backend, batch_size=4, seed=5, flip=True)
    flipped = total = 0
    for _ in range(10):
        for (x, y), (xf, yf) in zip(plain, flipping):
            assert torch.equal(y, yf)
            for a, b in zip(x, xf):
                mirrored = torch.equal(b, a.flip(-1))
                assert mirrored or torch.equal(b, a)
                assert not torch.equal(a, a.flip(-1))  # the test images are not symmetric
                flipped += mirrored
                total += 1
    assert total == 120 and 0.3 < flipped / total < 0.7, (flipped, total)
