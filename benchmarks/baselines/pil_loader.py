"""A CelebA-64 loader written the way common public GAN code writes it, for
benchmarks/bench_data.py: the reference point a user coming from those implementations
knows, beside fastgan's own PIL backend ("cpu").

What makes it "public-style" (torchvision's ImageFolder + Compose([CenterCrop, Resize,
ToTensor, Normalize]) + DataLoader, written out with PIL and NumPy so the benchmark needs
no torchvision):
  - one file per __getitem__: open, convert("RGB"), center crop, then a separate resize to
    64 x 64 (PIL's BILINEAR, antialiased when reducing, as torchvision's Resize on a PIL
    image);
  - ToTensor and Normalize per image in the worker: float32 CHW in [-1, 1], so the workers
    send four times the bytes of uint8;
  - the DataLoader's default collate stacks the batch; shuffle=True.
One concession, so that a small benchmark set does not measure process start-up: the
workers persist across epochs (persistent_workers=True), which public code rarely sets.
"""
import numpy as np
import torch
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class PlainImageFolder(torch.utils.data.Dataset):
    """Every image under `root` (sorted), center-cropped to `crop` (None: the largest
    square) and resized to `resolution`; items are (float32 [3, R, R] in [-1, 1], 0)."""

    def __init__(self, root, resolution=64, crop=None):
        from pathlib import Path
        self.files = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise ValueError(f"PlainImageFolder: no images under {root}")
        self.resolution, self.crop = resolution, crop

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        with Image.open(self.files[i]) as im:
            im = im.convert("RGB")
        w, h = im.size
        side = min(w, h) if self.crop is None else self.crop
        left, top = round((w - side) / 2), round((h - side) / 2)  # CenterCrop's rounding
        im = im.crop((left, top, left + side, top + side))
        im = im.resize((self.resolution, self.resolution), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255)
        return x.sub_(0.5).div_(0.5), 0


def plain_loader(root, *, resolution=64, batch_size=128, num_workers=2, crop=None, seed=0):
    """DataLoader(PlainImageFolder(root), batch_size, shuffle=True, drop_last=True,
    num_workers) yielding (float32 [B, 3, R, R], labels) on the CPU."""
    gen = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        PlainImageFolder(root, resolution, crop), batch_size=batch_size, shuffle=True, drop_last=True,
        num_workers=num_workers, persistent_workers=num_workers > 0, generator=gen)
