"""The "dali" backend: an NVIDIA DALI pipeline decodes the crop of each image, and torch
resizes the batch.

On a GPU the decoder runs with device="mixed" (nvJPEG, and the hardware JPEG decoder
where the GPU has one); without one the pipeline runs in DALI's CPU-only mode
(device_id=None, every operator on device="cpu"). The loader, not DALI, chooses the files
of each batch and feeds them through external_source, so the order, sharding and resume
are the same as every other backend's.

DALI decodes the crop alone (fn.decoders.image_slice: a 178 x 218 CelebA face's 178 x 178
square), and torch resizes it (fastgan.data._pil.resize_crops, as the nvjpeg backend does):
the antialiased bilinear filter of the cut crop, torchvision's CenterCrop + Resize. On the
CPU the batches are the cpu backend's bit for bit (both decoders libjpeg-turbo, the same
resize: uint8 channels_last, one call per crop size, one for CelebA, on one thread;
tests/data check it); on a GPU nvJPEG decodes and the resize is float32 on the current
stream. DALI's own resize is not used:
  - on the CPU it cost about as much as its decoding (2 threads, 2026-11-24, whole images:
    10,044 images/s decoded, 5,942 decoded and resized; torch resized 41,600 images/s of
    178 x 178 on one thread): through the loader, 4,960 images/s became 6,994 (a PIL
    DataLoader with 2 workers: 4,198-4,206; benchmarks/results/2026-11-24-cpu-2core-EPYC-
    AVX512-data-rounds*.txt; 8,923 since the loader's normalize runs on one thread too);
  - at the crop's edge it repeats the edge pixel where PIL and torch renormalize their
    filter: up to 15 levels apart on the outermost pixels (measured on the tests' pictures
    on the CPU, 2026-11-24). Before that day's change the GPU path resized with DALI a
    window reaching past the crop: PIL's box within the whole image, the cpu backend's
    preprocessing then.

A folder's files are read by the pipeline (fn.io.file.read, on DALI's threads, without
the GIL); a zip's members are read in Python on a thread pool, ahead of their batch.

The pipeline runs ahead of the caller: `AHEAD` batches are fed and scheduled before the
first one is taken, and each batch taken is replaced by the next, so DALI's threads decode
while the caller feeds the next inputs and uses this batch (run synchronously, they sat idle
for that time). On a GPU the batch taken keeps its DALI buffer until the next is taken (the
copy of its crops out of it is queued on the stream, as Pipeline.run leaves it); with the
older executors that buffer is one of the pipeline's, so one fewer is ahead, while DALI's
default one (exec_dynamic) counts references to its outputs and keeps AHEAD. Only DALI's
calls can fail a batch (below): torch's resize after them raises as it is. A generator
left before its end (the trainer stopping, a resume) leaves batches in flight; they are
taken and dropped when it closes, or at the next call, which then owns the pipeline: the
older generator, resumed, raises.

A batch DALI cannot decode (corruption inside the compressed data: DALI's pipeline
stops on it) is decoded again by PIL, the failed samples marked, and the pipeline
rebuilt; the batches that were in flight behind it are fed again to the new one. The
samples that stopped it are PIL's from the next epoch on (`pil_only`, see _learn). Install
with `pip install "fastgan[dali]"`.
"""
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from fastgan.data._pil import crop_box, group_crops, resize_crops

AHEAD = 2  # batches in the pipeline at once: the pipeline's prefetch_queue_depth
_FAILURES = (RuntimeError, OSError, IndexError, ValueError)  # what a failed DALI batch raises
# The formats fn.decoders.image_slice reads (DALI's documentation; tests/data compare them
# with PIL on the CPU, DALI 2.4), by PIL's names (the header check's Check.format): MPO is
# a JPEG with more pictures after it, PPM PIL's name for the PNM family. Not GIF: the
# loader has PIL decode the other samples beside the pipeline (fastgan.data._pil.PILBeside).
# An encoding DALI's codecs refuse within these (seen: some lossless WebPs carrying EXIF,
# an uncompressed 1-bit TIFF) stops its batch, which PIL then decodes (the fallback below).
FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "JPEG2000", "PPM"})


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

    def __init__(self, samples, sizes, batch_size, device, num_threads, formats=None):
        require()
        self.samples = samples          # fastgan.data._pil.Samples: source, files, the PIL fallback
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.num_threads = max(1, num_threads)
        # per sample, float32 [y, x] pairs: the crop's corner and shape, rows of [N, 2]
        # arrays, so a batch's are one dense array
        geometry = np.zeros((2, len(sizes), 2), np.float32)
        for i, (w, h) in enumerate(sizes):
            left, top, side = crop_box(w, h, samples.crop)
            geometry[:, i] = [(top, left), (side, side)]
        self._anchor, self._window = geometry
        self._pipe = None
        self._primed = False            # the pipeline's first schedule_run, which runs AHEAD batches, is done
        self._in_flight = 0             # batches scheduled and not yet taken
        self._held = False              # an output DALI lent us is not yet released
        self._generation = 0            # calls of batches() so far: the newest owns the pipeline
        # Samples PIL decodes, not DALI (fastgan.data._pil.PILBeside puts the batches
        # together): the formats DALI does not read (`formats`: PIL's name of each sample's,
        # from the header check), and those learned from a batch DALI stopped on (_learn)
        self._formats = formats
        self.pil_only = {i for i, f in enumerate(formats or ()) if f not in FORMATS}
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
                        device_id=device_id, prefetch_queue_depth=AHEAD)
        with pipe:
            enc = fn.external_source(name="enc", dtype=types.UINT8, ndim=1)
            if self._folder is not None:  # enc holds each file's path, UTF-8
                enc = fn.io.file.read(enc, dont_use_mmap=True)
            anchor = fn.external_source(name="anchor", dtype=types.FLOAT, ndim=1)
            shape = fn.external_source(name="shape", dtype=types.FLOAT, ndim=1)
            img = fn.decoders.image_slice(enc, anchor, shape, device="mixed" if gpu else "cpu",
                                          output_type=types.RGB if self.samples.channels == 3 else types.GRAY,
                                          adjust_orientation=False, axis_names="HW",
                                          normalized_anchor=False, normalized_shape=False)
            pipe.set_outputs(img)
        pipe.build()
        return pipe

    def _read_ahead(self, indices):
        """A callable giving the pipeline's "enc" input for these samples: each file's path
        (a folder: DALI reads the files) or bytes (a zip's members, read on the pool now)."""
        files = self.samples.files
        if self._folder is not None:
            base = os.fsencode(os.path.join(self._folder, ""))  # no Path per file: 128 a batch
            paths = [np.frombuffer(base + os.fsencode(files[i]), np.uint8) for i in indices]
            return lambda: paths
        source = self.samples.source
        futures = [self._reader.submit(lambda i: np.frombuffer(source.read(files[i]), np.uint8), i)
                   for i in indices]
        return lambda: [f.result() for f in futures]

    def _feed(self, indices, encoded):
        pipe = self._pipe
        pipe.feed_input("enc", encoded)
        pipe.feed_input("anchor", self._anchor[indices])
        pipe.feed_input("shape", self._window[indices])

    def _schedule(self, batches):
        """Feeds and schedules `batches`, a list of (indices, encoded): AHEAD of them on a
        fresh pipeline (its first schedule_run runs that many), else one."""
        if self._pipe is None:
            self._pipe = self._build()
        assert len(batches) == (1 if self._primed else AHEAD)
        for indices, encoded in batches:
            self._feed(indices, encoded)
        self._pipe.schedule_run()
        self._primed = True
        self._in_flight += len(batches)

    def _share(self):
        """The oldest batch in flight (DALI's buffer, held until _release)."""
        self._release()
        self._in_flight -= 1
        (out,) = self._pipe.share_outputs()
        self._held = True
        return out  # a TensorList: a dense tensor (as_tensor()) unless the crops' sizes differ

    def _release(self):
        if self._held:
            self._held = False
            self._pipe.release_outputs()

    def _resized(self, t, n):
        """DALI's batch `t` (from _share), resized, as uint8 [n, R, R, C] on self.device. On
        the CPU the resize reads DALI's buffer in place and frees it after, so the pipeline
        can fill it while the caller works; on a GPU the crops are copied out on the current
        stream and the buffer is freed at the next take (as Pipeline.run frees it), by when
        the copy has run. Errors here are torch's (out of memory, say), not a batch DALI
        could not decode: batches() lets them through."""
        s = self.samples
        try:
            return resize_crops(self._crops(t, n), n, s.resolution, s.channels, self.device)
        finally:
            if self.device.type != "cuda":
                self._release()

    def _holding(self):
        """Whether a batch taken keeps a pipeline buffer from the next run: only with the
        older executors. With DALI's default one (exec_dynamic) outputs are reference
        counted and release_outputs does not invalidate them (its documentation), so the
        pipeline runs AHEAD batches ahead while the last one's crops are copied out."""
        return self._held and not getattr(self._pipe, "exec_dynamic", False)

    def _crops(self, t, n):
        """(rows, uint8 [k, C, S, S]) per crop size S of DALI's decoded crops `t` (rows None:
        one size, the whole batch in order): views of DALI's host buffer on the CPU, copies
        queued on the current stream on a GPU."""
        if self.device.type == "cuda":
            from nvidia.dali.plugin.pytorch import feed_ndarray
            stream = torch.cuda.current_stream(self.device)

            def get(d):
                return feed_ndarray(d, torch.empty(d.shape(), dtype=torch.uint8, device=self.device),
                                    cuda_stream=stream)
        else:
            def get(d):
                return torch.from_numpy(np.asarray(d))
        if t.is_dense_tensor():  # every crop one size (CelebA): one [n, S, S, C] array
            return [(None, get(t.as_tensor()).permute(0, 3, 1, 2))]
        return group_crops([(i, get(t[i]).permute(2, 0, 1)) for i in range(n)], n)

    def _drop_in_flight(self):
        """Takes and drops the batches left in flight (by a generator left early, or filling
        a fresh pipeline's first run past the last batch)."""
        try:
            while self._in_flight:
                self._share()
            self._release()
        except (*_FAILURES, StopIteration, AttributeError):
            # StopIteration: nothing was in flight after all; AttributeError: the interpreter
            # is exiting with a generator left early, and DALI has already torn the
            # pipeline's backend down (Python printed "Exception ignored in" and a traceback)
            self._reset()

    def _reset(self):
        """Forgets the pipeline: DALI invalidates it after an error; rebuilt on next use."""
        self._pipe, self._primed, self._in_flight, self._held = None, False, 0, False

    def _fallback(self, indices):
        out, failed = self.samples.__getitems__(indices)
        return out.to(self.device), failed

    def _learn(self, indices, failed):
        """Adds to pil_only the samples of a batch DALI stopped on that likely stopped it,
        so that the next epochs do not pay the fallback and a new pipeline again: those PIL
        could not decode either (corrupt; the loader substitutes them), else the batch's
        non-JPEGs (the rare encodings DALI's codecs refuse), else the whole batch."""
        idx = [int(i) for i in indices]
        corrupt = {i for i, bad in zip(idx, failed.tolist()) if bad}
        other = {i for i in idx if self._formats is not None and self._formats[i] not in ("JPEG", "MPO")}
        self.pil_only |= corrupt or other or set(idx)

    def batches(self, index_lists):
        """Yields (uint8 [B, R, R, C] on self.device, bool [B] failed) per index list. The
        pipeline holds up to AHEAD of them at once (see the module's docstring)."""
        lists = [np.asarray(ix, dtype=np.int64).reshape(-1) for ix in index_lists]
        self._drop_in_flight()
        self._generation += 1       # an older generator, resumed, must not take this one's batches
        mine = self._generation
        reads = {}  # list number -> a callable giving its "enc" input, read ahead for a zip
        fed = 0     # lists fed to the pipeline so far, in order

        def enc(k):
            return (reads.pop(k, None) or self._read_ahead(lists[k]))()

        def top_up(taken):
            # AHEAD buffers in all: a held one (a GPU copy's source) counts against them
            nonlocal fed
            while fed < len(lists) and fed - taken < AHEAD - self._holding():
                if self._primed:
                    self._schedule([(lists[fed], enc(fed))])
                    fed += 1
                else:  # a fresh pipeline's first run takes AHEAD batches; past the end it
                    # repeats the last, whose extra outputs _drop_in_flight takes
                    group = [min(k, len(lists) - 1) for k in range(fed, fed + AHEAD)]
                    encoded = {k: enc(k) for k in dict.fromkeys(group)}  # feed_input copies
                    self._schedule([(lists[k], encoded[k]) for k in group])
                    fed = group[-1] + 1
            if fed < len(lists) and fed not in reads and self._reader is not None:
                reads[fed] = self._read_ahead(lists[fed])  # a zip's next members, read meanwhile

        try:
            for k, indices in enumerate(lists):
                if self._generation != mine:
                    raise RuntimeError("DALIDecoder.batches: this generator was left for a newer "
                                       "call of batches(), whose batches share the pipeline; "
                                       "iterate the newer one")
                try:
                    top_up(k)
                    t = self._share()
                except _FAILURES:  # DALI stopped on this batch: PIL decodes it, and the ones
                    self._reset()  # behind it are fed to a new pipeline
                    fed = k + 1
                    out, failed = self._fallback(indices.tolist())
                    self._learn(indices, failed)
                else:
                    out = self._resized(t, len(indices))
                    failed = torch.zeros(len(indices), dtype=torch.bool)
                    del t
                    try:
                        top_up(k + 1)
                    except _FAILURES:  # scheduling the next batch failed: a new pipeline
                        self._reset()  # takes it at the next top_up
                        fed = k + 1
                yield out, failed
        finally:
            if self._generation == mine:
                self._drop_in_flight()
