"""The "cpu" backend: PIL decoding in a torch DataLoader, and the preprocessing every backend shares.

Preprocessing (the CelebA-64 convention of mimicry and StudioGAN's celeba_64: torchvision's
CenterCrop then Resize): a centered square crop, by default the largest one (min(H, W):
178 x 178 of CelebA's 178 x 218 aligned faces; crop=128 is the TF comparison's), its corner
rounded down to whole pixels, cut out of the decoded image; then a resize of the cut crop
to resolution x resolution by torch's antialiased bilinear filter (resize_crops, every
backend's), a triangle whose support grows with the reduction, renormalized where it
reaches past the crop's edge. It is built to match PIL's BILINEAR: the two agree within a
level of 255 (benchmarks/baselines/pil_loader.py resizes with PIL; tests/test_bench_data.py
compares them). Here PIL decodes the crop and torch resizes a batch's crops in one call per
crop size: the same pixels, bit for bit, as DALI decoding on the CPU (both libjpeg-turbo),
and faster than PIL's resize of each image (2 workers, 2026-11-24, CelebA-like JPEGs to
64 x 64: 5,115 images/s against 4,375, same run otherwise; benchmarks/results/2026-11-24-
cpu-2core-EPYC-AVX512-data-rounds-cut-crop*.txt). Before 2026-11-24 this backend resized
with PIL, the crop's box within the whole image: its filter read past the crop, up to 14
levels apart from the cut crop on the outermost rows and columns.
Grayscale, CMYK, palette and alpha images convert to RGB (alpha dropped; 16-bit grayscale
scaled to 8 bits); channels=1 converts to L (ITU-R 601 luma).
EXIF orientation is ignored by every backend (CelebA has none).
"""
import atexit
import contextlib
import io
import signal
import weakref

import numpy as np
import torch
from PIL import Image


def crop_box(width, height, crop):
    """(left, top, side) of the centered square crop; crop=None: the largest square."""
    side = min(width, height) if crop is None else crop
    return (width - side) // 2, (height - side) // 2, side


def _gray16_to_8(im):
    """A 16-bit grayscale image (PIL mode I;16* or I) as 8-bit L, v * 255 / 65535 rounded,
    as DALI and libpng's 16-to-8 reduction scale it (PIL's convert("L") clips at 255)."""
    v = np.asarray(im, dtype=np.int64)
    return Image.fromarray(((v.clip(0, 65535) * 255 + 32767) // 65535).astype(np.uint8), "L")


def decode_crop(data, crop, channels):
    """Encoded bytes -> the centered square crop, uint8 array [S, S, channels] (a view of
    the decoded image). Raises on a bad image (OSError, ValueError from PIL;
    ValueError when smaller than the crop)."""
    with Image.open(io.BytesIO(data)) as im:
        mode = "RGB" if channels == 3 else "L"
        if im.mode.startswith("I"):  # a 16-bit grayscale PNG: convert() would clip, not scale
            im = _gray16_to_8(im)
        im = im.convert(mode) if im.mode != mode else im
        w, h = im.size
        left, top, side = crop_box(w, h, crop)
        if left < 0 or top < 0:
            raise ValueError(f"image {w}x{h} is smaller than the crop {side}x{side}")
        a = np.array(im, dtype=np.uint8).reshape(h, w, channels)  # writable: torch.from_numpy
        return a[top:top + side, left:left + side]


def decode_pil(data, resolution, crop, channels):
    """Encoded bytes -> uint8 array [resolution, resolution, channels]: decode_crop, then
    resize_crops. Raises as decode_crop does."""
    return _resize_one(decode_crop(data, crop, channels), resolution, channels)


def _resize_one(crop, resolution, channels):
    x = torch.from_numpy(crop).permute(2, 0, 1)[None]
    return resize_crops([(None, x)], 1, resolution, channels, "cpu")[0].numpy()


def group_crops(items, n):
    """resize_crops' groups from (row, uint8 crop [C, S, S]) pairs: the crops of each size
    stacked, with their rows (None where one size holds all n rows, in order)."""
    by_size = {}
    for row, x in items:
        by_size.setdefault(tuple(x.shape), []).append((row, x))
    return [(None if len(g) == n else [row for row, _ in g], torch.stack([x for _, x in g]))
            for g in by_size.values()]


@contextlib.contextmanager
def one_thread():
    """torch on one intra-op thread inside, the caller's count restored after: for the CPU
    work a loader does beside decoders that keep every core busy (DALI's threads, PIL's
    worker processes), where an op split over two threads waits at its barrier for the one
    descheduled."""
    threads = torch.get_num_threads()
    if threads > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if threads > 1:
            torch.set_num_threads(threads)


GPU_MAX_REDUCTION = 64  # resize_crops: torch's CUDA antialias kernel fails past ~94x


def resize_crops(groups, n, resolution, channels, device):
    """uint8 [n, R, R, C] on `device`: the crops of each (rows, crops) group, uint8
    [k, C, S, S] of one size S (any strides), resized to R x R by torch's antialiased
    bilinear filter into the output's `rows` (None: the group is the whole batch, in order).
    Every backend's decoder resizes with it (the cache is made by one of them). On the CPU
    it resizes uint8 to uint8 (torch's fixed-point kernel, vectorized for channels_last
    input) on one intra-op thread (torch.set_num_threads, restored after): beside DALI's
    decoding threads, a resize on two threads waited for the one descheduled (a 2-core
    machine under load, 2026-11-24: 279 images/s through the loader, against 3,003 on one
    thread). On a GPU it resizes in float32 and rounds (torch's CUDA kernel has no uint8
    version), except for reductions past GPU_MAX_REDUCTION, which it resizes on the CPU."""
    r = resolution
    device = torch.device(device)
    out = None
    with one_thread() if device.type == "cpu" else contextlib.nullcontext():
        for rows, x in groups:
            if device.type == "cpu":
                y = torch.nn.functional.interpolate(x, size=(r, r), mode="bilinear", antialias=True,
                                                    align_corners=False)
            else:
                # torch's CUDA kernel holds its filter's weights in 48 KiB of shared memory
                # and refuses reductions past about 94x (a 3,000-pixel crop to 32): those
                # crops are resized on the CPU, by the same float32 math
                far = max(x.shape[-2:]) > GPU_MAX_REDUCTION * r
                y = torch.nn.functional.interpolate((x.cpu() if far else x).float(), size=(r, r),
                                                    mode="bilinear", antialias=True, align_corners=False)
                y = y.round_().clamp_(0, 255).to(torch.uint8)
                y = y.to(device) if far else y
            y = y.permute(0, 2, 3, 1)
            if rows is None:
                return y.contiguous()
            if out is None:
                out = torch.zeros((n, r, r, channels), dtype=torch.uint8, device=device)
            put_rows(out, rows, y)
    return torch.zeros((n, r, r, channels), dtype=torch.uint8, device=device) if out is None else out


def to_device(t, device):
    """t on `device`; from the host to a GPU through pinned memory with non_blocking, since a
    plain copy (and torch.tensor(..., device="cuda"), a list index) waits for all the work
    queued on the stream: a host synchronization."""
    device = torch.device(device)
    if t.device.type == "cpu" and device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def put_rows(out, rows, x):
    """out[rows] = x for a list `rows`, x on any device, with no host synchronization."""
    index = to_device(torch.tensor(rows, dtype=torch.int64), out.device)
    out.index_copy_(0, index, to_device(x, out.device))


class Samples(torch.utils.data.Dataset):
    """Sample i of the usable files, decoded by PIL. __getitems__ returns a whole batch:
    (uint8 [B, R, R, C], bool [B] failed), a failed sample left as zeros."""

    def __init__(self, source, files, resolution, crop, channels):
        self.source, self.files = source, files
        self.resolution, self.crop, self.channels = resolution, crop, channels

    def __len__(self):
        return len(self.files)

    def crop_of(self, i):
        """Sample i's crop, uint8 [S, S, C] (decode_crop)."""
        return decode_crop(self.source.read(self.files[i]), self.crop, self.channels)

    def decode(self, i):
        """Sample i, uint8 [R, R, C]."""
        return _resize_one(self.crop_of(i), self.resolution, self.channels)

    def __getitems__(self, indices):
        """PIL decodes each sample's crop; torch resizes them, one call per crop size."""
        r, c, n = self.resolution, self.channels, len(indices)
        failed = np.zeros(n, np.bool_)
        crops = []
        for j, i in enumerate(indices):
            try:
                crops.append((j, torch.from_numpy(self.crop_of(i)).permute(2, 0, 1)))
            except Exception:  # corrupt data past the header check: substituted by the loader
                failed[j] = True
        return resize_crops(group_crops(crops, n), n, r, c, "cpu"), torch.from_numpy(failed)


def _collate(batch):
    return batch  # __getitems__ already made the batch


def _leave_stop_signals_to_the_main_process(_worker_id):
    """A terminal's Ctrl-C (and a scheduler's SIGTERM) reach the whole process group. The
    trainer stops at the end of the step on either (fastgan.train.control) and then shuts the
    workers down; a worker that had died of the signal first would turn that stop into a
    "worker exited unexpectedly" error in the middle of the step. Workers forked inside
    Trainer.fit inherit its handlers, which only note the signal; this covers workers started
    anywhere else (a loader first iterated outside fit) and the second Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class _BatchList(torch.utils.data.Sampler):
    """Yields the index lists the loader sets before each iteration (persistent workers
    re-iterate the same sampler object)."""

    def __init__(self):
        self.batches = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


# Decoders whose workers may be alive. At interpreter exit torch leaves persistent workers to
# multiprocessing, which terminates them with SIGTERM and waits: ours ignore SIGTERM (above),
# so a script that still held a loader never exited. This hook, registered after torch's and
# multiprocessing's (atexit runs last registered first), shuts them down first, as torch does
# when a loader is deleted: the workers read their end-of-work message and return.
_LIVE = weakref.WeakSet()


@atexit.register
def _shut_down_workers():
    for decoder in list(_LIVE):
        decoder.close()


class PILDecoder:
    """Decodes batches of sample indices with PIL in `num_workers` worker processes (0: in
    this process). Workers persist across epochs; pinned output when feeding a GPU.
    close() (also run at interpreter exit) ends the workers; a later batch starts new ones."""
    name = "cpu"

    def __init__(self, samples, num_workers, pin_memory):
        self.samples = samples
        self._sampler = _BatchList()
        # its own generator: each iter() draws the workers' base seed from it (unused: PIL's
        # decoding draws nothing), where it drew from torch's global RNG, so a resumed run
        # starting an epoch mid-way shifted every random number after it
        self._loader = torch.utils.data.DataLoader(
            samples, batch_sampler=self._sampler, num_workers=num_workers, collate_fn=_collate,
            generator=torch.Generator(), pin_memory=pin_memory, persistent_workers=num_workers > 0,
            prefetch_factor=4 if num_workers > 0 else None,
            worker_init_fn=_leave_stop_signals_to_the_main_process if num_workers > 0 else None)
        if num_workers > 0:
            _LIVE.add(self)

    def close(self):
        """Ends the worker processes (torch's DataLoader keeps persistent ones in _iterator)."""
        it = getattr(self._loader, "_iterator", None)
        if it is not None:
            self._loader._iterator = None
            it._shutdown_workers()

    def batches(self, index_lists):
        """Yields (uint8 [B, R, R, C] on the host, bool [B] failed) per index list."""
        self._sampler.batches = [list(map(int, ix)) for ix in index_lists]
        yield from self._loader


class PILBeside:
    """Wraps the "dali" decoder, which leaves some samples to PIL (its `pil_only`: GIFs, and
    the files it stopped on in an earlier epoch): those are decoded by PIL here, in this
    process, the others by `decoder`, and each batch is put together on `device` in the order
    asked. The set is read at each call, so what the decoder learns applies from the next."""

    def __init__(self, decoder, device):
        self.decoder, self.device = decoder, torch.device(device)
        self.samples, self.name = decoder.samples, decoder.name

    def batches(self, index_lists):
        """Yields (uint8 [B, R, R, C] on the device, bool [B] failed) per index list."""
        pil = frozenset(self.decoder.pil_only)
        lists = [[int(i) for i in ix] for ix in index_lists]
        parts = [[i for i in ix if i not in pil] for ix in lists]
        inner = self.decoder.batches([p for p in parts if p])
        r, c = self.samples.resolution, self.samples.channels
        try:
            for ix, part in zip(lists, parts):
                if len(part) == len(ix):
                    yield next(inner)
                    continue
                out = torch.empty((len(ix), r, r, c), dtype=torch.uint8, device=self.device)
                failed = torch.zeros(len(ix), dtype=torch.bool)
                here = [j for j, i in enumerate(ix) if i in pil]
                there = [j for j, i in enumerate(ix) if i not in pil]
                batches = [(here, self.samples.__getitems__([ix[j] for j in here]))]
                if there:
                    batches.append((there, next(inner)))
                for at, (u8, bad) in batches:
                    put_rows(out, at, u8)
                    failed[at] = bad
                yield out, failed
        finally:
            inner.close()
