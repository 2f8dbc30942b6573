"""The built-in dataset: scikit-learn's handwritten digits, written once as PNG files.

`fastgan train` without --data trains on real images that need no network: the 1,797
8 x 8 digits bundled with scikit-learn (sklearn.datasets.load_digits, values 0..16,
labels 0..9; the UCI optical-recognition test set). They are written once as grayscale
PNGs, <cache>/digits/<label>/<i>.png, so they take exactly the path CelebA takes
(decode, crop, resize, gray -> RGB). Each image is scaled to 0..255 (v * 255 / 16,
rounded; white digit on black) and upscaled to 32 x 32 with PIL's BILINEAR filter, which
gives smooth strokes rather than 4 x 4 blocks.

<cache> is `root`, else $FASTGAN_CACHE_DIR, else $XDG_CACHE_HOME/fastgan, else
~/.cache/fastgan. The folder is built in a temporary folder beside it and renamed into
place, so concurrent writers are safe (the first rename wins; the others discard theirs)
and a crash never leaves a partial dataset. An existing folder is reused when it holds
all 1,797 files, and rebuilt otherwise.
"""
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from fastgan import _files

COUNT = 1797
SIZE = 32


def cache_dir(root=None):
    """fastgan's cache folder (see the module docstring)."""
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get("FASTGAN_CACHE_DIR"):
        return Path(os.environ["FASTGAN_CACHE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "fastgan"


def _complete(folder):
    return folder.is_dir() and sum(1 for _ in folder.glob("*/*.png")) == COUNT


def digits(root=None):
    """The folder of the digits dataset (10 class subfolders, 1,797 PNGs), written on first use."""
    from sklearn.datasets import load_digits

    base = cache_dir(root)
    final = base / "digits"
    if _complete(final):
        return final
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file in the way, a read-only folder
        raise ValueError(f"cannot create fastgan's cache folder {str(base)!r} for the digits: "
                         f"{exc.strerror or exc}; point $FASTGAN_CACHE_DIR to a writable folder") from None
    d = load_digits()
    tmp = Path(_files.mkdtemp(prefix=".digits-", dir=base))
    try:
        for label in range(10):
            (tmp / str(label)).mkdir()
        pixels = np.rint(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
        for i, (img, label) in enumerate(zip(pixels, d.target)):
            Image.fromarray(img, "L").resize((SIZE, SIZE), Image.BILINEAR).save(tmp / str(label) / f"{i}.png")
        # Another process (a DDP rank on a fresh machine) may have finished first and be
        # reading its folder: a complete folder is never replaced, and an incomplete one
        # (files deleted by hand) is moved aside and deleted only once ours is in its place.
        if _complete(final):
            return final
        stale = None
        if final.exists():
            stale = Path(tempfile.mkdtemp(prefix=".digits-stale-", dir=base))
            try:
                final.rename(stale / "digits")
            except OSError:
                pass  # another process moved it first
        try:
            tmp.rename(final)
        except OSError:
            if not _complete(final):  # lost the race to a writer whose result is broken
                raise
        if stale is not None:
            shutil.rmtree(stale, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
