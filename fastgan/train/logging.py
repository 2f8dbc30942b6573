"""What a run reports: scalars and sample grids (TensorBoard + files), and a progress bar.

Inside the package, ``import logging`` still means the standard library (imports are
absolute); import this module by its full name, ``fastgan.train.logging``.

A run directory gets ``metrics.jsonl`` (one JSON object per ``scalars`` call, readable
without TensorBoard), ``samples/step_{step:09d}.png`` and, when the ``tensorboard``
package is installed, event files under ``tensorboard/``. With ``enabled=False`` (every
DDP rank but 0) nothing is created or written.

Samples of 2-D toy data (points [N, 2, 1, 1] or [N, 2], fastgan.data.toy) are drawn as a
scatter plot (fastgan.data.toy.scatter_image) instead of an image grid, under the same
file names and TensorBoard tag.
"""
import json
import math
import os
import pathlib
import sys
import time
import warnings

import torch

from fastgan import _files

__all__ = ["make_grid", "picture", "save_image_grid", "save_samples", "RunLogger", "Progress"]


def make_grid(images, nrow=None, padding=2, value_range=(-1, 1)):
    """Tiles images [N, C, H, W] (C = 1 or 3, floats in `value_range`) into one uint8
    image [rows*(H+padding)+padding, nrow*(W+padding)+padding, C], row by row, on a black
    background. Values are clamped to `value_range` and rounded; NaN shows as black.
    `nrow` (images per row) defaults to ceil(sqrt(N)), a square-ish grid."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] not in (1, 3):
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a tensor [N, C, H, W] with C = 1 or 3, got {got}")
    if not images.is_floating_point():
        raise TypeError(f"images must be floating point in value_range, got {images.dtype}")
    n, c, h, w = images.shape
    if n == 0:
        raise ValueError("images is empty (N = 0)")
    lo, hi = (float(v) for v in value_range)
    if not lo < hi:
        raise ValueError(f"value_range must be (low, high) with low < high, got {value_range!r}")
    nrow = math.ceil(math.sqrt(n)) if nrow is None else nrow
    if type(nrow) is not int or nrow < 1:
        raise ValueError(f"nrow must be an int >= 1, got {nrow!r}")
    if type(padding) is not int or padding < 0:
        raise ValueError(f"padding must be an int >= 0, got {padding!r}")

    x = images.detach().float().cpu().nan_to_num(nan=lo).clamp(lo, hi)
    x = ((x - lo) * (255.0 / (hi - lo))).round().to(torch.uint8)
    ncol = min(nrow, n)
    rows = math.ceil(n / ncol)
    grid = torch.zeros(rows * (h + padding) + padding, ncol * (w + padding) + padding, c,
                       dtype=torch.uint8)
    for i in range(n):
        top = padding + (i // ncol) * (h + padding)
        left = padding + (i % ncol) * (w + padding)
        grid[top:top + h, left:left + w] = x[i].permute(1, 2, 0)
    return grid


def _replace_atomically(path, write):
    """Calls write(tmp_path) on a temporary beside `path`, then renames it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _files.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def _save_png(grid, path):
    from PIL import Image

    array = grid.numpy()
    image = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    _replace_atomically(path, lambda tmp: image.save(tmp, format="PNG"))
    return path


def _is_points(images):
    """True for 2-D toy samples: [N, 2] or [N, 2, 1, 1] (make_grid takes C = 1 or 3 only)."""
    return isinstance(images, torch.Tensor) and (
        (images.dim() == 2 and images.shape[1] == 2)
        or (images.dim() == 4 and tuple(images.shape[1:]) == (2, 1, 1)))


def picture(samples, nrow=None, mixture=None):
    """The uint8 [H, W, C] picture of a batch of samples: make_grid of images, or for 2-D
    points ([N, 2, 1, 1] or [N, 2]) fastgan.data.toy.scatter_image, with the centers of
    `mixture` ("ring8", "grid25") marked."""
    if _is_points(samples):
        from fastgan.data import toy
        return toy.scatter_image(samples, mixture)
    return make_grid(samples, nrow=nrow)


def save_image_grid(images, path, nrow=None, value_range=(-1, 1)):
    """Writes make_grid(images) as a PNG at `path` (atomically: readers never see half a
    file); returns the path."""
    return _save_png(make_grid(images, nrow=nrow, value_range=value_range), pathlib.Path(path))


def save_samples(samples, path, nrow=None, mixture=None):
    """Writes picture(samples, nrow, mixture) as a PNG at `path` (atomically); returns the path."""
    return _save_png(picture(samples, nrow, mixture), pathlib.Path(path))


_warned_no_tensorboard = False


def _summary_writer(log_dir, purge_step):
    global _warned_no_tensorboard
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch raises it when the tensorboard package is missing
        if not _warned_no_tensorboard:
            warnings.warn("install tensorboard for TensorBoard logs (pip install tensorboard); "
                          "metrics.jsonl and PNG samples are still written", stacklevel=3)
            _warned_no_tensorboard = True
        return None
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


def _scalar(key, value):
    if not isinstance(key, str):
        raise TypeError(f"scalar names must be strings, got {key!r}")
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"scalar {key!r} must have one element, got shape {tuple(value.shape)}")
        return float(value.item())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"scalar {key!r} must be a number, got {type(value).__name__}")
    return float(value)


class RunLogger:
    """Scalars and sample grids of one run, to TensorBoard and to files in `run_dir`.

    purge_step: on resume, the step training continues from; what was logged at steps
    >= purge_step by the interrupted run is dropped (metrics.jsonl lines and TensorBoard
    events), so the resumed run's values are not shown twice.
    mixture: for 2-D point samples, the toy mixture they imitate ("ring8", "grid25"): its
    centers are marked and its default view used (None: the view fits the samples).
    """

    def __init__(self, run_dir, *, enabled=True, tensorboard=True, purge_step=None, mixture=None):
        self.run_dir = pathlib.Path(run_dir)
        self.enabled = enabled
        if mixture is not None:
            from fastgan.data import toy
            toy.centers(mixture)  # ValueError naming the mixtures
        self.mixture = mixture
        self._writer = self._metrics = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        metrics = self.run_dir / "metrics.jsonl"
        if purge_step is not None and metrics.exists():
            _purge_metrics(metrics, purge_step)
        self._metrics = open(metrics, "a", encoding="utf-8")
        if tensorboard:
            self._writer = _summary_writer(self.run_dir / "tensorboard", purge_step)

    def scalars(self, step, values):
        """Logs {name: number} at `step`: one TensorBoard scalar per name, one JSON line
        {"step", "time", **values} in metrics.jsonl. Tensors are read back here (a host
        sync), so call it only on logging steps."""
        if not self.enabled:
            return
        values = {k: _scalar(k, v) for k, v in values.items()}
        if "step" in values or "time" in values:
            raise ValueError("scalar names 'step' and 'time' are reserved in metrics.jsonl")
        if self._writer is not None:
            for k, v in values.items():
                self._writer.add_scalar(k, v, step)
        self._metrics.write(json.dumps({"step": step, "time": round(time.time(), 3), **values}) + "\n")
        self._metrics.flush()

    def images(self, step, images, tag="samples"):
        """Logs a grid of `images` [N, C, H, W] in [-1, 1]: TensorBoard image `tag` and the
        PNG run_dir/<tag>/step_{step:09d}.png. Returns the PNG's path (None if disabled).
        2-D points ([N, 2, 1, 1] or [N, 2]) are drawn with fastgan.data.toy.scatter_image."""
        if not self.enabled:
            return None
        parts = pathlib.PurePosixPath(tag).parts
        if not parts or tag.startswith("/") or ".." in parts:
            raise ValueError(f"tag must be a relative name like 'samples' or 'samples/ema', got {tag!r}")
        grid = picture(images, mixture=self.mixture)
        if self._writer is not None:
            self._writer.add_image(tag, grid, step, dataformats="HWC")
        return _save_png(grid, self.run_dir.joinpath(*parts) / f"step_{step:09d}.png")

    def close(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _purge_metrics(path, purge_step):
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] < purge_step:
                kept.append(line + "\n")
        except (ValueError, KeyError, TypeError):  # a line cut short by the crash
            continue

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(kept)

    _replace_atomically(path, write)


class Progress:
    """A tqdm bar: step/total, ETA, images/s and the latest losses.

    On a terminal it redraws up to 10 times a second; into a file or CI log (not a TTY)
    at most every 30 s, so logs get a line per half minute rather than thousands.
    """

    def __init__(self, total, *, initial=0, enabled=True, desc="train"):
        from tqdm import tqdm

        stream = sys.stderr
        tty = hasattr(stream, "isatty") and stream.isatty()
        self._bar = tqdm(total=total, initial=initial, desc=desc, unit="step", file=stream,
                         disable=not enabled, dynamic_ncols=tty, mininterval=0.1 if tty else 30.0,
                         maxinterval=10.0 if tty else 300.0, smoothing=0.1)

    @property
    def n(self):
        """The step last shown."""
        return self._bar.n

    def update(self, step, *, images_per_s=None, **losses):
        """Moves the bar to `step` and shows the given losses (numbers) and images/s."""
        if self._bar.disable:
            return
        postfix = {k: f"{_scalar(k, v):.4g}" for k, v in losses.items()}
        if images_per_s is not None:
            postfix["img/s"] = f"{_scalar('images_per_s', images_per_s):.1f}"
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(step - self._bar.n)

    def close(self):
        self._bar.close()
