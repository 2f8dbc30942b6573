"""The "dali" backend: an NVIDIA DALI pipeline decodes, crops and resizes each batch.

On a GPU the decoder runs with device="mixed" (nvJPEG, and the hardware JPEG decoder
where the GPU has one) and the resize on the GPU; without one the pipeline runs in DALI's
CPU-only mode (device_id=None, every operator on device="cpu"). The loader, not DALI,
chooses the files of each batch and feeds them through external_source, so the order,
sharding and resume are the same as every other backend's.
The decoder decodes only a window around the crop (fn.decoders.image_slice; at 64 px the
window of a 178 x 218 CelebA face leaves out 32 of its 218 rows). The window reaches
`_margin` pixels past the crop, the filter's support and one more, so the result is that of
resizing the whole decoded image: bit for bit at 16, 32 and 64 px in the tests, within one
level at sizes such as 48 and 96, where the region's corner, counted from the window's
instead of the image's, rounds differently in float32. The crop is passed to the resize as
its region of interest in pixels (the same corner as PIL's box), and the resize is linear
with antialiasing, PIL's BILINEAR reducing filter: the two agree within a few levels
(tests/data measure it).

A folder's files are read by the pipeline (fn.io.file.read, on DALI's threads, without
the GIL); a zip's members are read in Python on a thread pool, a batch ahead.

A batch DALI cannot decode (corruption inside the compressed data: DALI's pipeline
stops on it) is decoded again by PIL, the failed samples marked, and the pipeline
rebuilt. Install with `pip install "fastgan[dali]"`.
"""
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from fastgan.data._pil import crop_box


def _margin(side, resolution):
    """Pixels of the image beyond each side of the crop that the resize can read: its
    antialiasing triangle filter spans side / resolution source pixels each way (measured:
    that many give the whole image's result exactly; one more for safety)."""
    return math.ceil(side / resolution) + 1


def available():
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        return False
    return True


def require():
    if not available():
        raise ValueError('backend "dali" needs NVIDIA DALI, which is not installed: '
                         'pip install "fastgan[dali]" (or choose backend="cpu")')


class DALIDecoder:
    """Decodes batches of sample indices with DALI; output uint8 [B, R, R, C] on `device`
    (a CUDA device: mixed decoding; cpu: DALI's CPU-only mode)."""
    name = "dali"

    def __init__(self, samples, sizes, batch_size, device, num_threads):
        require()
        self.samples = samples          # fastgan.data._pil.Samples: source, files, the PIL fallback
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.num_threads = max(1, num_threads)
        r = samples.resolution
        # per sample, float32 [y, x] pairs: the decoded window (anchor, shape) and the crop
        # within it (start, end)
        self._window, self._roi = [], []
        for w, h in sizes:
            left, top, side = crop_box(w, h, samples.crop)
            m = _margin(side, r)
            y0, x0 = max(0, top - m), max(0, left - m)
            y1, x1 = min(h, top + side + m), min(w, left + side + m)
            self._window.append((np.array([y0, x0], np.float32), np.array([y1 - y0, x1 - x0], np.float32)))
            self._roi.append((np.array([top - y0, left - x0], np.float32),
                              np.array([top - y0 + side, left - x0 + side], np.float32)))
        self._shape = (r, r, samples.channels)
        self._pipe = None
        # A folder's files are read by DALI's own threads (fn.io.file.read, no GIL); a zip's
        # members are read here, on a thread pool, while the previous batch decodes.
        source = samples.source
        self._folder = None if source.is_zip else source.path
        self._reader = None if self._folder is not None else ThreadPoolExecutor(max(2, self.num_threads))

    def _build(self):
        import nvidia.dali.fn as fn
        import nvidia.dali.types as types
        from nvidia.dali import Pipeline

        gpu = self.device.type == "cuda"
        device_id = (self.device.index if self.device.index is not None
                     else torch.cuda.current_device()) if gpu else None
        pipe = Pipeline(batch_size=self.batch_size, num_threads=self.num_threads,
                        device_id=device_id, prefetch_queue_depth=1)
        with pipe:
            enc = fn.external_source(name="enc", dtype=types.UINT8, ndim=1)
            if self._folder is not None:  # enc holds each file's path, UTF-8
                enc = fn.io.file.read(enc, dont_use_mmap=True)
            anchor = fn.external_source(name="anchor", dtype=types.FLOAT, ndim=1)
            shape = fn.external_source(name="shape", dtype=types.FLOAT, ndim=1)
            start = fn.external_source(name="start", dtype=types.FLOAT, ndim=1)
            end = fn.external_source(name="end", dtype=types.FLOAT, ndim=1)
            img = fn.decoders.image_slice(enc, anchor, shape, device="mixed" if gpu else "cpu",
                                          output_type=types.RGB if self.samples.channels == 3 else types.GRAY,
                                          adjust_orientation=False, axis_names="HW",
                                          normalized_anchor=False, normalized_shape=False)
            r = self.samples.resolution
            img = fn.resize(img, size=[r, r], roi_start=start, roi_end=end, roi_relative=False,
                            antialias=True, interp_type=types.INTERP_LINEAR)
            pipe.set_outputs(img)
        pipe.build()
        return pipe

    def _read_ahead(self, indices):
        """A callable giving the pipeline's "enc" input for these samples: each file's path
        (a folder: DALI reads the files) or bytes (a zip's members, read on the pool now)."""
        files = self.samples.files
        if self._folder is not None:
            paths = [np.frombuffer(os.fsencode(self._folder / files[i]), np.uint8) for i in indices]
            return lambda: paths
        source = self.samples.source
        futures = [self._reader.submit(lambda i: np.frombuffer(source.read(files[i]), np.uint8), i)
                   for i in indices]
        return lambda: [f.result() for f in futures]

    def _run(self, indices, encoded):
        if self._pipe is None:
            self._pipe = self._build()
        self._pipe.feed_input("enc", encoded)
        self._pipe.feed_input("anchor", [self._window[i][0] for i in indices])
        self._pipe.feed_input("shape", [self._window[i][1] for i in indices])
        self._pipe.feed_input("start", [self._roi[i][0] for i in indices])
        self._pipe.feed_input("end", [self._roi[i][1] for i in indices])
        (out,) = self._pipe.run()
        t = out.as_tensor()
        if self.device.type == "cuda":
            from nvidia.dali.plugin.pytorch import feed_ndarray

            dst = torch.empty((len(indices),) + self._shape, dtype=torch.uint8, device=self.device)
            feed_ndarray(t, dst, cuda_stream=torch.cuda.current_stream(self.device))
            return dst
        return torch.from_numpy(np.array(t))  # a copy: DALI reuses its buffer next run

    def _fallback(self, indices):
        self._pipe = None  # DALI invalidates a pipeline after an error: rebuild on next use
        out, failed = self.samples.__getitems__(indices)
        return out.to(self.device), failed

    def batches(self, index_lists):
        """Yields (uint8 [B, R, R, C] on self.device, bool [B] failed) per index list; a
        zip's next batch is read while this one decodes."""
        index_lists = [list(map(int, ix)) for ix in index_lists]
        if not index_lists:
            return
        pending = self._read_ahead(index_lists[0])
        for k, indices in enumerate(index_lists):
            encoded = pending()
            if k + 1 < len(index_lists):
                pending = self._read_ahead(index_lists[k + 1])
            try:
                out, failed = self._run(indices, encoded), torch.zeros(len(indices), dtype=torch.bool)
            except (RuntimeError, OSError, IndexError, ValueError):
                out, failed = self._fallback(indices)
            yield out, failed
