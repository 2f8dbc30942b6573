"""The "cpu" backend: PIL decoding in a torch DataLoader, and the preprocessing every backend matches.

Preprocessing (the CelebA-64 convention of mimicry and StudioGAN's celeba_64): a centered
square crop, by default the largest one (min(H, W): 178 x 178 of CelebA's 178 x 218
aligned faces; crop=128 is the TF comparison's), its corner rounded down to whole pixels,
then a resize to resolution x resolution with PIL's BILINEAR filter, which is a triangle
filter whose support grows with the reduction (antialiasing). Crop and resize are one
PIL call (resize's box=), so no intermediate image is made. Grayscale, CMYK, palette and
alpha images convert to RGB (alpha dropped; 16-bit grayscale scaled to 8 bits);
channels=1 converts to L (ITU-R 601 luma).
EXIF orientation is ignored by every backend (CelebA has none).
"""
import io
import signal

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


def decode_pil(data, resolution, crop, channels):
    """Encoded bytes -> uint8 array [resolution, resolution, channels]. Raises on a bad image
    (OSError, ValueError from PIL; ValueError when smaller than the crop)."""
    with Image.open(io.BytesIO(data)) as im:
        mode = "RGB" if channels == 3 else "L"
        if im.mode.startswith("I"):  # a 16-bit grayscale PNG: convert() would clip, not scale
            im = _gray16_to_8(im)
        im = im.convert(mode) if im.mode != mode else im
        w, h = im.size
        left, top, side = crop_box(w, h, crop)
        if left < 0 or top < 0:
            raise ValueError(f"image {w}x{h} is smaller than the crop {side}x{side}")
        im = im.resize((resolution, resolution), Image.BILINEAR,
                       box=(left, top, left + side, top + side))
        return np.asarray(im, dtype=np.uint8).reshape(resolution, resolution, channels)


class Samples(torch.utils.data.Dataset):
    """Sample i of the usable files, decoded by PIL. __getitems__ returns a whole batch:
    (uint8 [B, R, R, C], bool [B] failed), a failed sample left as zeros."""

    def __init__(self, source, files, resolution, crop, channels):
        self.source, self.files = source, files
        self.resolution, self.crop, self.channels = resolution, crop, channels

    def __len__(self):
        return len(self.files)

    def decode(self, i):
        return decode_pil(self.source.read(self.files[i]), self.resolution, self.crop, self.channels)

    def __getitems__(self, indices):
        r, c = self.resolution, self.channels
        out = np.zeros((len(indices), r, r, c), np.uint8)
        failed = np.zeros(len(indices), np.bool_)
        for j, i in enumerate(indices):
            try:
                out[j] = self.decode(i)
            except Exception:  # corrupt data past the header check: substituted by the loader
                failed[j] = True
        return torch.from_numpy(out), torch.from_numpy(failed)


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


class PILDecoder:
    """Decodes batches of sample indices with PIL in `num_workers` worker processes (0: in
    this process). Workers persist across epochs; pinned output when feeding a GPU."""
    name = "cpu"

    def __init__(self, samples, num_workers, pin_memory):
        self.samples = samples
        self._sampler = _BatchList()
        self._loader = torch.utils.data.DataLoader(
            samples, batch_sampler=self._sampler, num_workers=num_workers, collate_fn=_collate,
            pin_memory=pin_memory, persistent_workers=num_workers > 0,
            prefetch_factor=4 if num_workers > 0 else None,
            worker_init_fn=_leave_stop_signals_to_the_main_process if num_workers > 0 else None)

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
                    out[torch.tensor(at, device=self.device)] = u8.to(self.device)
                    failed[at] = bad
                yield out, failed
        finally:
            inner.close()
