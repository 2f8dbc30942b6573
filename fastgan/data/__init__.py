"""Image data for training: loaders over folders, zips and prepared files, and the built-in digits.

    make_loader(path, resolution=64, batch_size=...)   batches in [-1, 1] (fastgan.data.loader)
    digits()                                           the built-in dataset's folder
    ToyLoader("ring8", batch_size=...)                 2-D points [B, 2, 1, 1] (fastgan.data.toy);
                                                       make_loader("ring8", resolution=1, channels=2,
                                                                   batch_size=...)
    prepare(path, out) / validate(path)                `fastgan data prepare|validate`

Backends: "dali" (GPU decoding, or DALI's CPU-only mode), "nvjpeg" (torchvision on the
GPU), "cpu" (PIL in DataLoader workers) and "cache" (the whole decoded dataset in memory,
each batch one fastgan.ops.gather_images call); "auto" picks and says which.
"""
from fastgan.data import toy
from fastgan.data.digits import digits
from fastgan.data.loader import BACKENDS, CACHE_BUDGET, DEFAULT_DATASET, ImageLoader, make_loader
from fastgan.data.tools import prepare, validate
from fastgan.data.toy import ToyLoader

__all__ = ["BACKENDS", "CACHE_BUDGET", "DEFAULT_DATASET", "ImageLoader", "ToyLoader", "digits",
           "make_loader", "prepare", "toy", "validate"]
