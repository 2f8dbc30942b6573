"""make_loader: image batches in [-1, 1] from a folder, a zip, a prepared file or the digits.

Every backend ends in the same step: fastgan.ops.gather_images turns uint8 HWC images into
a [B, C, R, R] batch in [-1, 1] ((v - 127.5) / 127.5), flipping the samples the flip mask
marks. The "cache" backend gathers straight from the whole dataset held on the device; the
decoding backends ("dali", "nvjpeg", "cpu") decode each batch to uint8 first.

Order. Epoch e visits torch.randperm(n, generator seeded with seed * 1_000_003 + e)
(with shuffle=False: arange(n), rolled by e * (n % world_size) when world_size does not
divide n, so that the samples the trim leaves out differ from epoch to epoch, as they do
shuffled), trimmed to a multiple of world_size; shard (rank, world)
takes positions rank, rank + world, ...: disjoint, equal shards that together cover the
epoch once. The flip mask is drawn per epoch position on the output device, from a
generator seeded with seed * 1_000_003 + e + 2**32, so a shard's flips are those of the
same positions in a one-process run. The position (epoch, next batch) is the loader's
whole state: resuming from state_dict() yields the batches an uninterrupted run would.

Bad files. The header check (fastgan.data._scan) skips and counts what it can see before
the run. A sample whose compressed data turns out corrupt during an epoch is replaced in
its batch by another sample of that batch (shapes never change; CUDA graphs rely on it),
counted in `skipped`, and reported once.

Streams. The loader's own device tensors (an epoch's order and flip mask, the labels, the
index of a decoded batch) are made on the stream current when they are made and read on
whichever stream takes a batch: the trainer takes its first batches on warm-up side streams
and the rest on another, and a caller's loop may switch streams too. So a stream's first
batch waits for the work that made them, and they are recorded on it (Tensor.record_stream:
the caching allocator gives their memory to nothing else before that stream is done with
them, as when an epoch's plan is replaced while the last gathers still read it).
"""
import contextlib
import math
import os
import sys
from pathlib import Path

import torch

from fastgan.data import _dali, _nvjpeg, prepared, toy
from fastgan.data._position import Position, check_shard
from fastgan.data._pil import PILBeside, PILDecoder, Samples, one_thread, to_device
from fastgan.data._scan import Source, check_all
from fastgan.ops import gather_images

DEFAULT_DATASET = "digits"
BACKENDS = ("auto", "dali", "nvjpeg", "cpu", "cache")
# Datasets whose decoded size fits are decoded once and kept whole ("auto" -> "cache").
CACHE_BUDGET = {"cuda": 1 << 30, "cpu": 256 << 20}
_FLIP_SEED_OFFSET = 2**32
_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_BAR_MIN_CHECK, _BAR_MIN_DECODE = 5000, 2000  # progress bars only for datasets larger than these


def _say(verbose, msg):
    if verbose:
        print(f"fastgan data: {msg}", file=sys.stderr, flush=True)


def _epoch_seed(seed, epoch):
    """The permutation seed of an epoch; any int seed (a large one is reduced to the 64 bits
    torch.Generator takes; the seeds in its range keep their old orders)."""
    v = seed * 1_000_003 + epoch
    return v if -2**63 <= v < 2**64 else v & (2**64 - 1)


class _OnStreams:
    """Device tensors made on one stream and read on whichever stream takes a batch (the
    module doc, Streams): take() makes them ready on, and keeps them for, the current
    stream. Nothing to do for tensors off CUDA."""

    def __init__(self, *tensors):
        self._tensors = [t for t in tensors if t is not None and t.is_cuda]
        self._ready, self._streams = None, set()
        if self._tensors:
            made = torch.cuda.current_stream(self._tensors[0].device)
            self._ready = torch.cuda.Event()
            self._ready.record(made)
            self._streams.add(made)

    def take(self):
        if self._ready is None:
            return
        stream = torch.cuda.current_stream(self._tensors[0].device)
        if stream not in self._streams:
            stream.wait_event(self._ready)
            for t in self._tensors:
                t.record_stream(stream)
            self._streams.add(stream)


def _mib(nbytes):
    return f"{nbytes / 2**20:.1f} MiB"


class ImageLoader(Position):
    """One epoch of (images, labels) batches per iteration; see make_loader."""

    def __init__(self, *, n, labels, num_classes, batch_size, resolution, channels, device,
                 backend, data=None, decoder=None, flip, shuffle, drop_last, seed, shard,
                 dtype, channels_last, skipped, verbose, source):
        self._n = n                       # usable samples in the whole dataset
        self.num_classes = num_classes
        self.batch_size, self.resolution, self.channels = batch_size, resolution, channels
        self.device, self.backend = device, backend
        self.flip, self.shuffle, self.drop_last, self.seed = flip, shuffle, drop_last, seed
        self.rank, self.world_size = shard
        self.dtype, self.channels_last = dtype, channels_last
        self.num_samples = n // self.world_size
        self.epoch, self._batch = 0, 0
        self._data, self._decoder = data, decoder
        self._labels_host = None if labels is None else torch.as_tensor(labels, dtype=torch.int64)
        self._labels = None if labels is None else self._labels_host.to(device)
        self._skipped_before = skipped
        self._bad = set()                 # samples found corrupt while decoding
        self._verbose, self._source = verbose, source
        self._plan_cache = None
        self._arange = torch.arange(batch_size, device=data.device if data is not None else device)
        self._own = _OnStreams(self._labels, self._arange)

    # -- position -----------------------------------------------------------------
    def __len__(self):
        per, b = self.num_samples, self.batch_size
        return per // b if self.drop_last else math.ceil(per / b)

    @property
    def skipped(self):
        """Files skipped: at the header check, and found corrupt while decoding."""
        return self._skipped_before + len(self._bad)

    # -- one epoch's order --------------------------------------------------------
    def _plan(self, epoch):
        """(order on host, order on the data's device, flips on that device or None, the
        _OnStreams of these and of the loader's own device tensors) of this shard."""
        if self._plan_cache is not None and self._plan_cache[0] == epoch:
            return self._plan_cache[1:]
        n, world = self._n, self.world_size
        if self.shuffle:
            g = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))
            order = torch.randperm(n, generator=g)
        else:  # the trimmed n % world differ by epoch (the same ones every epoch before)
            order = torch.arange(n).roll(-((epoch * (n % world)) % n))
        take = slice(self.rank, self.num_samples * world, world)
        order = order[take].contiguous()
        dev = self._data.device if self._data is not None else self.device
        self._own.take()
        order_dev = order.pin_memory().to(dev, non_blocking=True) if dev.type == "cuda" else order
        flips = None
        if self.flip:
            v = _epoch_seed(self.seed, epoch) + _FLIP_SEED_OFFSET  # in the 64 bits a generator takes
            g = torch.Generator(dev).manual_seed(v if v < 2**64 else v & (2**64 - 1))
            flips = (torch.rand(self.num_samples * world, generator=g, device=dev) < 0.5)[take].contiguous()
        # one hand-over per batch for all of them: the stream that makes the plan has waited
        # for the labels and the index (self._own), so a wait for it waits for those too
        self._plan_cache = (epoch, order, order_dev, flips,
                            _OnStreams(order_dev, flips, self._labels, self._arange))
        return self._plan_cache[1:]

    def _spans(self, start):
        per, b = self.num_samples, self.batch_size
        return [(k, k * b, min((k + 1) * b, per)) for k in range(start, len(self))]

    # -- iteration ------------------------------------------------------------------
    def __iter__(self):
        if self._batch >= len(self):        # stopped right after an epoch's last batch
            self.epoch, self._batch = self.epoch + 1, 0
        epoch = self.epoch
        plan = self._plan(epoch)
        spans = self._spans(self._batch)
        batches = self._cache_batches(*plan, spans) if self._data is not None \
            else self._decoded_batches(*plan, spans)
        try:
            for k, item in zip((k for k, _, _ in spans), batches):
                self._batch = k + 1
                yield item
        finally:  # left early: the decoder's batches in flight end now, not when collected
            batches.close()
        self.epoch, self._batch = epoch + 1, 0

    def _out(self, images):
        return to_device(images, self.device)  # a pinned-host dataset feeding a GPU: no sync

    def _labels_of(self, index):
        if self._labels is None:
            return None
        if index.device == self._labels.device:
            return self._labels[index]
        # a pinned-host dataset feeding a GPU: gathered on the host and copied as the images
        # are (index.to(cuda) would wait for the work queued on the stream)
        return self._out(self._labels_host[index])

    def _cache_batches(self, order, order_dev, flips, on_streams, spans):
        for _, s, e in spans:
            on_streams.take()
            idx = order_dev[s:e]
            f = None if flips is None else flips[s:e]
            images = gather_images(self._data, idx, f, dtype=self.dtype, channels_last=self.channels_last)
            yield self._out(images), self._labels_of(idx)

    def _decoded_batches(self, order, order_dev, flips, on_streams, spans):
        decoded = self._decoder.batches([order[s:e] for _, s, e in spans])
        try:
            for (_, s, e), (u8, failed) in zip(spans, decoded):
                on_streams.take()
                idx = order_dev[s:e]
                if failed.any():
                    u8, idx = self._substitute(u8, order[s:e], failed)
                u8 = u8.to(self.device, non_blocking=True)
                f = None if flips is None else flips[s:e]
                # on the CPU, one thread: the decoders keep the cores busy meanwhile (a
                # 2-core machine, DALI, 2026-11-24: 3.8 ms per batch of 128 on two threads
                # against 0.25 ms idle; see fastgan.data._pil.one_thread)
                with one_thread() if u8.device.type == "cpu" else contextlib.nullcontext():
                    images = gather_images(u8, self._arange[:e - s], f, dtype=self.dtype,
                                           channels_last=self.channels_last)
                yield images, self._labels_of(idx)
        finally:
            decoded.close()

    def _substitute(self, u8, idx, failed):
        """Replaces the failed samples of a batch by its first good one (zeros if none)."""
        new = {int(i) for i in idx[failed]} - self._bad
        if new:
            self._bad |= new
            names = ", ".join(repr(self._decoder.samples.files[i]) for i in sorted(new)[:3])
            _say(self._verbose, f"{len(new)} file(s) of {str(self._source)!r} failed to decode "
                                f"({names}{', ...' if len(new) > 3 else ''}); each is replaced by another "
                                f"sample of its batch ({self.skipped} skipped in all)")
        good = (~failed).nonzero()
        idx = idx.clone()
        if len(good):
            j = int(good[0])
            u8 = u8.clone()
            u8[failed.to(u8.device)] = u8[j].clone()
            idx[failed] = idx[j]
        return u8, idx.to(self.device)

    def __repr__(self):
        return (f"ImageLoader(backend={self.backend!r}, num_samples={self.num_samples}, "
                f"batch_size={self.batch_size}, resolution={self.resolution}, channels={self.channels}, "
                f"num_classes={self.num_classes}, device={str(self.device)!r}, epoch={self.epoch})")


# -- choosing and building a backend ---------------------------------------------------
def _decoder_choice(device, formats=()):
    """(name, reason) of the fastest decoding backend available for `device`, for images of
    these PIL `formats` (the header check's): where most are formats neither DALI nor nvJPEG
    reads (GIF), which PIL would decode one at a time beside them in this process, PIL in
    DataLoader workers."""
    pil_only = sum(f not in _dali.FORMATS for f in formats)
    if 2 * pil_only > len(formats) and (_dali.available() or device.type == "cuda"):
        return "cpu", (f"{pil_only} of its {len(formats)} images are in formats only PIL reads (GIF): "
                       "PIL in DataLoader workers")
    if device.type == "cuda":
        if _dali.available():
            return "dali", "GPU decoding with DALI (device='mixed')"
        if _nvjpeg.available():
            return "nvjpeg", "GPU decoding with torchvision's nvJPEG (DALI is not installed)"
        return "cpu", "neither DALI nor torchvision is installed: PIL decodes on the CPU"
    if _dali.available():
        return "dali", "DALI's CPU-only mode (no GPU)"
    return "cpu", "PIL in DataLoader workers (no GPU, DALI not installed)"


def _make_decoder(name, samples, sizes, batch_size, device, num_workers, formats=None):
    """The decoder `name` of `samples`; `sizes`: their (width, height), `formats`: their PIL
    format names (None: all read by DALI), both from the header check."""
    if name == "dali":
        return PILBeside(_dali.DALIDecoder(samples, sizes, batch_size, device, num_workers, formats), device)
    if name == "nvjpeg":
        return _nvjpeg.NvJPEGDecoder(samples, sizes, device)
    return PILDecoder(samples, num_workers, pin_memory=device.type == "cuda")


def decode_all(decoder, n, sink, batch=256, progress=False, desc="decoding"):
    """Decodes samples 0..n-1 in order, calling sink(first_index, uint8 batch, failed mask)."""
    from tqdm import tqdm

    spans = [(s, min(s + batch, n)) for s in range(0, n, batch)]
    with tqdm(total=n, desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for (s, e), (u8, failed) in zip(spans, decoder.batches([range(s, e) for s, e in spans])):
            sink(s, u8, failed)
            bar.update(e - s)


def _pin_instead(nbytes, device):
    """True when a dataset of nbytes should stay in pinned host memory rather than the GPU."""
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes > free - max(2 << 30, free // 4)  # leave room for the model


def check_image_settings(resolution, crop, channels):
    """ValueError naming the first bad one of an image dataset's resolution, crop, channels
    (shared by the loaders and `fastgan data prepare/validate`)."""
    if not isinstance(resolution, int) or isinstance(resolution, bool) or resolution < 1:
        raise ValueError(f"resolution must be a positive int, got {resolution!r}")
    if crop is not None and (not isinstance(crop, int) or isinstance(crop, bool) or crop < 1):
        raise ValueError(f"crop must be None (the largest centered square) or a positive int, got {crop!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")


def _check_args(resolution, batch_size, backend, crop, channels, shard, dtype, seed, num_workers):
    check_image_settings(resolution, crop, channels)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}")
    rank, world = check_shard(shard)
    if dtype not in _DTYPES:
        raise TypeError(f"dtype must be torch.float32, torch.float16 or torch.bfloat16, got {dtype}")
    if not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if num_workers is not None and (not isinstance(num_workers, int) or num_workers < 0):
        raise ValueError(f"num_workers must be None or an int >= 0, got {num_workers!r}")
    return rank, world


def make_loader(path, *, resolution=64, batch_size, backend="auto", device=None, crop=None,
                flip=False, shuffle=True, drop_last=True, seed=0, shard=(0, 1),
                channels_last=False, dtype=torch.float32, channels=3, num_workers=None,
                verbose=True, progress=None):
    """An ImageLoader over a folder tree or .zip of JPEG, PNG, WebP, BMP, TIFF or GIF images,
    a prepared file (fastgan data prepare), or "digits" (fastgan.data.digits()); for a 2-D
    toy mixture (a name in fastgan.data.toy.MIXTURES: "ring8", "grid25") a
    fastgan.data.toy.ToyLoader of points [B, 2, 1, 1], which needs resolution=1 and channels=2.

    Images are center-cropped (crop=None: the largest square, 178 for CelebA; crop=N: N x N)
    and resized with antialiasing to resolution x resolution. backend: "auto" (a prepared
    file or a dataset whose decoded size fits CACHE_BUDGET -> "cache"; otherwise "dali",
    "nvjpeg" or "cpu", the fastest available; the choice is printed with verbose=True),
    "dali", "nvjpeg", "cpu" or "cache". num_workers: DataLoader workers ("cpu") or DALI's
    threads ("dali"); None: min(8, CPU count). "nvjpeg" reads and decodes each batch on a
    thread of its own, fastgan.data._nvjpeg.AHEAD batches ahead of the caller. progress: progress bars while a
    large dataset is checked and decoded once (None: as verbose).
    """
    if isinstance(path, str) and path in toy.MIXTURES:
        return _toy_loader(path, resolution, batch_size, backend, device, crop, seed, shard, dtype,
                           channels, verbose)
    shard = _check_args(resolution, batch_size, backend, crop, channels, shard, dtype, seed, num_workers)
    progress = verbose if progress is None else bool(progress)
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    workers = min(8, os.cpu_count() or 1) if num_workers is None else num_workers
    if isinstance(path, str) and path == DEFAULT_DATASET:
        from fastgan.data.digits import digits
        path = digits()
    path = Path(path).expanduser()
    common = dict(batch_size=batch_size, resolution=resolution, channels=channels, device=device,
                  flip=flip, shuffle=shuffle, drop_last=drop_last, seed=seed, shard=shard, dtype=dtype,
                  channels_last=channels_last, verbose=verbose, source=path)

    if prepared.is_prepared(path):
        if backend not in ("auto", "cache"):
            raise ValueError(f"{str(path)!r} is a prepared file, which loads with backend='cache' "
                             f"(or 'auto'), not {backend!r}")
        m = prepared.read_manifest(path)
        prepared.check_request(path, m, resolution, crop, channels)
        prepared.check_source(path, m)
        nbytes = m["data_bytes"]
        pin = _pin_instead(nbytes, device)
        data, m = prepared.load(path, device, pin=pin)
        where = "pinned host memory (too big for the GPU)" if pin else str(device)
        _say(verbose, f"backend 'cache': prepared file {str(path)!r}, {m['count']} images "
                      f"({_mib(nbytes)}) in {where}")
        loader = ImageLoader(n=m["count"], labels=m["labels"], num_classes=len(m["classes"]),
                             backend="cache", data=data, skipped=len(m["skipped"]), **common)
    else:
        source = Source(path)
        checks = check_all(source, crop, channels, progress=progress and len(source.files) > _BAR_MIN_CHECK)
        usable = [k for k, c in enumerate(checks) if c.ok]
        skipped = len(source.others) + len(source.files) - len(usable)
        if not usable:
            first = next(c.problem for c in checks)
            raise ValueError(f"dataset {str(path)!r}: none of its {len(source.files)} image files is "
                             f"usable ({source.files[0]!r}: {first}); see `fastgan data validate {path}`")
        if skipped:
            _say(verbose, f"{skipped} of {len(source.files) + len(source.others)} files in {str(path)!r} "
                          "are skipped (not images, empty, corrupt, truncated, too large or smaller than "
                          f"the crop); `fastgan data validate {path}` lists them")
        files = [source.files[k] for k in usable]
        sizes = [(checks[k].width, checks[k].height) for k in usable]
        formats = [checks[k].format for k in usable]
        labels = None if source.labels is None else [source.labels[k] for k in usable]
        samples = Samples(source, files, resolution, crop, channels)
        nbytes = len(files) * resolution * resolution * channels
        name, reason = backend, "asked"
        if backend == "auto":
            budget = CACHE_BUDGET[device.type]
            if nbytes <= budget:
                name = "cache"
                reason = f"its decoded size {_mib(nbytes)} fits the {_mib(budget)} budget on {device.type}"
            else:
                name, reason = _decoder_choice(device, formats)
        if name == "dali":
            _dali.require()
        if name == "nvjpeg":
            _nvjpeg.require(device)
        if name == "cache":
            dec_name, dec_reason = _decoder_choice(device, formats)
            decoder = _make_decoder(dec_name, samples, sizes, 256, device, workers, formats)
            data, failed_at = _decode_whole(decoder, len(files), device, nbytes, progress, path)
            if failed_at:
                keep = sorted(set(range(len(files))) - set(failed_at))
                data = data[torch.tensor(keep, device=data.device)].contiguous()
                labels = None if labels is None else [labels[k] for k in keep]
                _say(verbose, f"{len(failed_at)} file(s) failed to decode and are skipped")
            _say(verbose, f"backend 'cache' ({reason}): {data.shape[0]} images decoded once with "
                          f"{dec_name} into {'pinned host memory' if data.device != device else device}")
            loader = ImageLoader(n=data.shape[0], labels=labels, num_classes=len(source.classes),
                                 backend="cache", data=data, skipped=skipped + len(failed_at), **common)
        else:
            decoder = _make_decoder(name, samples, sizes, batch_size, device, workers, formats)
            _say(verbose, f"backend {name!r} ({reason}): {len(files)} images of {str(path)!r}")
            loader = ImageLoader(n=len(files), labels=labels, num_classes=len(source.classes),
                                 backend=name, decoder=decoder, skipped=skipped, **common)
    if len(loader) == 0:
        held = f"shard {loader.rank} of {loader.world_size} has" if loader.world_size > 1 else "has"
        why = (f"fewer than batch_size={batch_size} with drop_last=True" if drop_last else
               f"since its {loader._n} usable images are fewer than the {loader.world_size} "
               "processes (each shard takes n // world_size)")
        raise ValueError(f"dataset {str(path)!r}: {held} {loader.num_samples} images, {why}")
    return loader


def _toy_loader(name, resolution, batch_size, backend, device, crop, seed, shard, dtype, channels,
                verbose):
    """make_loader's branch for a 2-D toy mixture. flip, shuffle, drop_last, channels_last and
    num_workers do not apply (a flip of a 1x1 image is itself; the points are i.i.d. and come
    in full batches; [B, 2, 1, 1] has one layout) and are ignored."""
    if resolution != 1 or channels != 2:
        raise ValueError(f"dataset {name!r} is 2-D toy data: points stored as [B, 2, 1, 1], which "
                         f"needs resolution=1 and channels=2 (an MLP model), got resolution="
                         f"{resolution!r}, channels={channels!r}")
    if backend != "auto":
        raise ValueError(f"dataset {name!r} is sampled on the fly (backend 'toy'): backend must be "
                         f"'auto', got {backend!r}")
    if crop is not None:
        raise ValueError(f"dataset {name!r} is 2-D points: crop must be None, got {crop!r}")
    loader = toy.ToyLoader(name, batch_size=batch_size, seed=seed, device=device, shard=shard,
                           dtype=dtype)
    _say(verbose, f"backend 'toy': mixture {name!r} ({loader.num_classes} Gaussians, std "
                  f"{loader.std}), {loader.num_samples} points per epoch sampled on {loader.device}")
    return loader


def _decode_whole(decoder, n, device, nbytes, progress, path):
    """Decodes a whole dataset once into uint8 [n, R, R, C] on `device` (pinned host memory
    when it does not fit the GPU); returns it and the indices that failed to decode."""
    s = decoder.samples
    pin = _pin_instead(nbytes, device)
    target = torch.device("cpu") if pin else device
    data = torch.empty((n, s.resolution, s.resolution, s.channels), dtype=torch.uint8,
                       device=target, pin_memory=pin)
    failed_at = []

    def sink(start, u8, failed):
        # into pinned host memory the copy waits: one with non_blocking from the GPU would
        # return before the bytes arrive (then nothing on the host waits for them)
        data[start:start + len(u8)].copy_(u8, non_blocking=not pin)
        failed_at.extend(start + int(j) for j in failed.nonzero().flatten())

    decode_all(decoder, n, sink, progress=progress and n > _BAR_MIN_DECODE, desc=f"decoding {path.name}")
    return data, failed_at
