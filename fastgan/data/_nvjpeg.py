"""The "nvjpeg" backend: torchvision's batched nvJPEG decoder, for GPU machines without DALI.

torchvision.io.decode_jpeg(list, device="cuda") decodes a batch of JPEGs on the GPU; the
crop is a view and the resize is torch's bilinear interpolation with antialias=True (the
same triangle filter as PIL's BILINEAR when reducing), rounded to uint8, one call per
group of equal crop sizes (one call for CelebA). PNGs and any JPEG nvJPEG rejects are
decoded by PIL on the host. torchvision is imported only when this backend is used.
"""
from concurrent.futures import ThreadPoolExecutor

import torch

from fastgan.data._pil import crop_box


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

    def __init__(self, samples, sizes, device, num_threads):
        require(device)
        self.samples, self.sizes, self.device = samples, sizes, torch.device(device)
        self._reader = ThreadPoolExecutor(max(2, num_threads))

    def _decode(self, indices, encoded):
        from torchvision.io import ImageReadMode, decode_jpeg

        s = self.samples
        r, c = s.resolution, s.channels
        out = torch.zeros((len(indices), r, r, c), dtype=torch.uint8, device=self.device)
        failed = torch.zeros(len(indices), dtype=torch.bool)
        jpeg = [j for j, d in enumerate(encoded) if d[:2] == b"\xff\xd8"]
        host = [j for j, d in enumerate(encoded) if d[:2] != b"\xff\xd8"]
        decoded = {}
        if jpeg:
            mode = ImageReadMode.RGB if c == 3 else ImageReadMode.GRAY
            try:
                imgs = decode_jpeg([torch.frombuffer(bytearray(encoded[j]), dtype=torch.uint8) for j in jpeg],
                                   mode=mode, device=self.device)
                decoded = dict(zip(jpeg, imgs))
            except RuntimeError:
                host += jpeg  # one bad stream fails the batch: let PIL find which
        groups = {}
        for j, img in decoded.items():
            w, h = self.sizes[indices[j]]
            left, top, side = crop_box(w, h, s.crop)
            groups.setdefault(side, []).append((j, img[:, top:top + side, left:left + side]))
        for side, items in groups.items():
            x = torch.stack([im for _, im in items]).float()
            y = torch.nn.functional.interpolate(x, size=(r, r), mode="bilinear", antialias=True,
                                                align_corners=False)
            y = y.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
            out[torch.tensor([j for j, _ in items], device=self.device)] = y
        for j in host:
            try:
                out[j] = torch.from_numpy(s.decode(indices[j])).to(self.device)
            except Exception:
                failed[j] = True
        return out, failed

    def batches(self, index_lists):
        """Yields (uint8 [B, R, R, C] on the GPU, bool [B] failed) per index list."""
        read = lambda i: self.samples.source.read(self.samples.files[i])  # noqa: E731
        index_lists = [list(map(int, ix)) for ix in index_lists]
        ahead = [self._reader.submit(read, i) for i in index_lists[0]] if index_lists else []
        for k, indices in enumerate(index_lists):
            encoded = [f.result() for f in ahead]
            if k + 1 < len(index_lists):
                ahead = [self._reader.submit(read, i) for i in index_lists[k + 1]]
            yield self._decode(indices, encoded)
