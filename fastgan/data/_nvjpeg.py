"""The "nvjpeg" backend: torchvision's batched nvJPEG decoder, for GPU machines without DALI.

torchvision.io.decode_jpeg(list, device="cuda") decodes a batch of JPEGs on the GPU; the
crop is a view and the resize is torch's bilinear interpolation with antialias=True of the
cut crop (fastgan.data._pil.resize_crops, every backend's preprocessing), rounded to uint8,
one call per group of equal crop sizes (one call for CelebA). PNGs and any JPEG nvJPEG
rejects are decoded by PIL on the host. torchvision is imported only when this backend is used.

The decoder runs ahead of the caller: `AHEAD` batches are read, decoded and resized at once,
each on a thread of its own, while the caller uses the batch before (torchvision's
decode_jpeg holds one decoder behind a lock and waits for the GPU: run in the caller's
thread, as before, the caller sat idle while it decoded and the decoder while the caller
worked). Each thread queues its GPU work on a stream of its own and records an event after
it; the batch is handed over on whichever stream takes it (the trainer takes its first
batches on a warm-up side stream, the rest on another), which waits for that event and is
recorded on the batch (Tensor.record_stream: the caching allocator gives its memory to
nothing else before that stream is done with it). Before decoding, a thread waits for its
own stream to finish what it queued: torchvision's decode_jpeg allocates its outputs on
the current stream but nvJPEG writes them from a stream of its own, unordered with it, so
no kernel on that stream may still be reading memory the allocator could hand to them.
(The previous design queued everything on the stream current at the epoch's first batch:
the trainer's first warm-up stream, which nothing else waited for afterwards.) A batch's
files are read on its thread, one after another: on
the development machine (2 cores, files in the page cache) that read about 60,000 small
JPEGs/s, a task per file on a thread pool (the backend's way before) 14,000-19,000.
"""
import collections
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np
import torch

from fastgan.data._pil import crop_box, group_crops, put_rows, resize_crops

AHEAD = 2  # batches in flight: being read, decoded and resized while the caller uses one


def available():
    if not torch.cuda.is_available():
        return False
    try:
        import torchvision.io  # noqa: F401
    except ImportError:
        return False
    return True


def require(device):
    if torch.device(device).type != "cuda":
        raise ValueError(f'backend "nvjpeg" decodes on a CUDA GPU; device is {device}')
    try:
        import torchvision.io  # noqa: F401
    except ImportError as exc:
        raise ValueError('backend "nvjpeg" needs torchvision, which is not importable here '
                         f'({exc}); install it, or choose backend="dali" or "cpu"') from exc


class NvJPEGDecoder:
    """Decodes batches of sample indices to uint8 [B, R, R, C] on a CUDA `device`."""
    name = "nvjpeg"

    def __init__(self, samples, sizes, device, ahead=None):
        require(device)
        self.samples, self.sizes, self.device = samples, sizes, torch.device(device)
        self.ahead = AHEAD if ahead is None else ahead
        if not (isinstance(self.ahead, int) and self.ahead >= 1):
            raise ValueError(f"NvJPEGDecoder: ahead must be an int >= 1, got {ahead!r}")
        self._threads = ThreadPoolExecutor(self.ahead, thread_name_prefix="fastgan-nvjpeg")
        self._local = threading.local()  # each thread's CUDA stream
        self._warned = False             # of a batch the GPU refused and PIL decoded (_decode)

    def _read(self, indices):
        """The encoded bytes of `indices`, read on this thread."""
        source, files = self.samples.source, self.samples.files
        return [source.read(files[i]) for i in indices]

    def _decode(self, indices, encoded):
        from torchvision.io import ImageReadMode, decode_jpeg

        s = self.samples
        r, c = s.resolution, s.channels
        failed = torch.zeros(len(indices), dtype=torch.bool)
        jpeg = [j for j, d in enumerate(encoded) if d[:2] == b"\xff\xd8"]
        host = [j for j, d in enumerate(encoded) if d[:2] != b"\xff\xd8"]
        decoded, refused = {}, None
        if jpeg:
            mode = ImageReadMode.RGB if c == 3 else ImageReadMode.GRAY
            try:
                imgs = decode_jpeg([torch.frombuffer(bytearray(encoded[j]), dtype=torch.uint8) for j in jpeg],
                                   mode=mode, device=self.device)
                decoded = dict(zip(jpeg, imgs))
            except RuntimeError as exc:
                host += jpeg  # one bad stream fails the batch: let PIL find which
                refused = exc
                if self.device.type == "cuda":
                    # nvJPEG may still be writing, from its own stream, into outputs that
                    # torchvision freed when it raised: nothing may reuse them before it stops
                    torch.cuda.synchronize(self.device)
        crops = []
        for j, img in decoded.items():
            w, h = self.sizes[indices[j]]
            left, top, side = crop_box(w, h, s.crop)
            crops.append((j, img[:, top:top + side, left:left + side]))
        out = resize_crops(group_crops(crops, len(indices)), len(indices), r, c, self.device)
        if host:  # PIL on the host, one copy to the device; a failed sample stays zeros
            pil = np.zeros((len(host), r, r, c), np.uint8)
            for n, j in enumerate(host):
                try:
                    pil[n] = s.decode(indices[j])
                except Exception:
                    failed[j] = True
            put_rows(out, host, torch.from_numpy(pil))
        if refused is not None and not self._warned and not failed[jpeg].any():
            # PIL decoded every JPEG of the batch: not a corrupt file (the loader counts
            # those) but this machine's torchvision or nvJPEG, which the user should hear of
            self._warned = True
            warnings.warn(f"nvjpeg backend: torchvision's GPU decoder refused a batch that PIL decodes "
                          f"({refused}); such batches are decoded by PIL on the CPU, slower",
                          RuntimeWarning, stacklevel=2)
        return out, failed

    def _read_and_decode(self, indices):
        """((batch, failed), the CUDA event after its GPU work, or None off CUDA)."""
        encoded = self._read(indices)
        if self.device.type != "cuda":  # the CPU standing in for the GPU (tests/data/test_nvjpeg.py)
            return self._decode(indices, encoded), None
        with torch.cuda.device(self.device):  # a new thread is on GPU 0
            stream = getattr(self._local, "stream", None)
            if stream is None:
                stream = self._local.stream = torch.cuda.Stream(self.device)
            stream.synchronize()  # nvJPEG writes from its own stream (the module doc)
            with torch.cuda.stream(stream):
                result = self._decode(indices, encoded)
                ready = torch.cuda.Event()
                ready.record(stream)
        return result, ready

    def batches(self, index_lists):
        """Yields (uint8 [B, R, R, C] on the GPU, bool [B] failed) per index list, in order,
        each ready on the stream current where it is taken (the module doc)."""
        index_lists = [list(map(int, ix)) for ix in index_lists]
        pending = collections.deque()

        def start(k):
            if k < len(index_lists):
                pending.append(self._threads.submit(self._read_and_decode, index_lists[k]))

        try:
            for k in range(self.ahead):
                start(k)
            for k in range(len(index_lists)):
                done = pending.popleft()
                start(k + self.ahead)
                (out, failed), ready = done.result()
                if ready is not None:
                    taker = torch.cuda.current_stream(self.device)
                    taker.wait_event(ready)
                    out.record_stream(taker)
                yield out, failed
        finally:  # left early (the trainer stopping, an error): drop what has not started and
            # let what has finish, so no thread of this epoch runs on once the caller goes on
            # (to capture a CUDA graph, say) or calls the decoder again
            for f in pending:
                f.cancel()
            wait(pending)
