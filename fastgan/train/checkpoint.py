"""Checkpoints that survive a crash at any moment, and the RNG states a resume needs.

A checkpoint is ``run_dir/checkpoints/step_{step:09d}.pt``. It is written to a hidden
temporary file in the same directory, flushed and fsynced, renamed over the final name
(``os.replace`` is atomic on POSIX and Windows) and the directory is fsynced, so a crash
leaves either the previous set of checkpoints or the new file complete, never a partial
file under a final name. Leftover temporaries are ignored by the readers and removed
by the next save.

File layout (one version; a new layout gets a new magic)::

    MAGIC                 16 bytes  b"FASTGAN-CKPT-v1\\n"
    payload               n bytes   torch.save({"format", "version", "step", "state"});
                                    loading returns "state", the dict that was saved
    n                     8 bytes   little-endian unsigned
    sha256(payload)       32 bytes
    END                   8 bytes   b"\\nCKPTEND"

The footer makes truncation, a zero-length file and a flipped bit three distinct,
named failures on load instead of an unpickling error deep inside torch.

Loading uses ``torch.load(weights_only=True)``: no code runs from a checkpoint, even one
copied from elsewhere. To keep that possible, ``save_checkpoint`` accepts only what the
weights-only unpickler reads back (tensors, Python scalars, strings, bytes, None, dicts,
lists, tuples, sets, torch dtypes/devices/sizes) and names the offending key otherwise;
``rng_state`` stores numpy's generator state as a tensor for the same reason.

Single writer: one process (rank 0) writes a run's checkpoints.
"""
import hashlib
import io
import os
import pathlib
import random
import re
import struct
import warnings
from collections import OrderedDict

import torch

from fastgan import _files

__all__ = ["CheckpointError", "save_checkpoint", "save_file", "list_checkpoints", "load_latest",
           "load_checkpoint", "rng_state", "set_rng_state"]

FORMAT = "fastgan.checkpoint"
VERSION = 1
_MAGIC = b"FASTGAN-CKPT-v1\n"
_END = b"\nCKPTEND"
_FOOTER = struct.Struct("<Q32s8s")  # payload length, sha256 digest, _END
_NAME = re.compile(r"step_(\d{9,})\.pt")
_TMP_PREFIX = ".step_"
_TMP_SUFFIX = ".tmp"


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used; the message names the file and why."""


def _ckpt_dir(run_dir):
    return pathlib.Path(run_dir) / "checkpoints"


def _fsync_dir(path):
    # Makes a rename or unlink inside `path` durable. POSIX only: Windows cannot open
    # a directory, and its os.replace is already durable (MoveFileEx with write-through).
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_SCALARS = (int, float, bool, complex, str, bytes, type(None), torch.dtype, torch.device)


def _check_loadable(obj, where):
    """Raises TypeError naming `where` if weights-only torch.load could not read `obj` back."""
    t = type(obj)
    if isinstance(obj, torch.Tensor) or t in _SCALARS or t is torch.Size:
        return
    if t in (dict, OrderedDict):
        for k, v in obj.items():
            _check_loadable(k, f"{where} key {k!r}")
            _check_loadable(v, f"{where}[{k!r}]")
        return
    if t in (list, tuple, set):  # not frozenset: weights_only rejects it
        for i, v in enumerate(obj):
            _check_loadable(v, f"{where}[{i}]")
        return
    # Exact types on purpose: numpy.float64 is a float subclass, a namedtuple a tuple
    # subclass, and neither loads with weights_only=True.
    raise TypeError(
        f"{where} is a {t.__module__}.{t.__qualname__}, which a checkpoint cannot hold "
        f"(loading uses torch.load(weights_only=True)); store tensors, Python scalars, "
        f"strings, dicts, lists or tuples instead")


class _HashingWriter:
    """File wrapper for torch.save: hashes and counts the payload as it streams out."""

    def __init__(self, f):
        self.f, self.sha, self.n = f, hashlib.sha256(), 0
        self.error = None  # the first OSError of a write: torch's zip writer replaces it by
                           # a RuntimeError ("unexpected pos ..."), which names no cause

    def write(self, data):
        try:
            written = self.f.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise
        self.sha.update(data)
        self.n += len(data)
        return written

    def flush(self):
        self.f.flush()


def _write(final, step, state, *, prefix):
    """Writes the checkpoint file `final` atomically (temporary file, fsync, rename)."""
    fd, tmp_name = _files.mkstemp(dir=final.parent, prefix=prefix, suffix=_TMP_SUFFIX)
    tmp = pathlib.Path(tmp_name)
    writer = None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_MAGIC)
            writer = _HashingWriter(f)
            torch.save({"format": FORMAT, "version": VERSION, "step": step, "state": state}, writer)
            f.write(_FOOTER.pack(writer.n, writer.sha.digest(), _END))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        cause = writer.error if writer is not None and writer.error is not None else exc
        if isinstance(cause, OSError):  # a full disk, say: one line that says so (see _HashingWriter)
            raise OSError(cause.errno, f"cannot write checkpoint {final}: {cause.strerror or cause}; "
                                       "what was saved before is intact") from exc
        raise


def save_file(path, step, state):
    """Writes `state` as a checkpoint file at `path` (any name, e.g. run_dir/best.pt),
    atomically and in the same format as save_checkpoint; load it with load_checkpoint.
    It is not one of the rotated step_*.pt files. Returns the path."""
    if type(step) is not int or step < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r}")
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict, got {type(state).__name__}")
    _check_loadable(state, "state")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, step, state, prefix=f".{path.name}.")
    _fsync_dir(path.parent)
    return path


def save_checkpoint(run_dir, step, state, *, keep=3):
    """Writes `state` as the checkpoint of `step` atomically and keeps the newest `keep`.

    `state` is a dict (models', optimizers', scaler's state_dicts, rng_state(), config, ...).
    After the write, checkpoints with a step above `step` are deleted (they belong to a
    timeline this run abandoned by resuming from an earlier checkpoint, typically past a
    damaged one), then all but the newest `keep`, then leftover temporary files.
    Returns the checkpoint's path.
    """
    if type(step) is not int or step < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r}")
    if type(keep) is not int or keep < 1:
        raise ValueError(f"keep must be an int >= 1, got {keep!r}")
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict, got {type(state).__name__}")
    _check_loadable(state, "state")

    directory = _ckpt_dir(run_dir)
    created = not directory.is_dir()
    directory.mkdir(parents=True, exist_ok=True)
    if created:
        _fsync_dir(directory.parent)
    final = directory / f"step_{step:09d}.pt"
    _write(final, step, state, prefix=f"{_TMP_PREFIX}{step:09d}.")
    _fsync_dir(directory)

    for path in list_checkpoints(run_dir):
        if _step_of(path) > step:
            path.unlink(missing_ok=True)
    for path in list_checkpoints(run_dir)[:-keep]:
        path.unlink(missing_ok=True)
    for path in directory.glob(f"{_TMP_PREFIX}*{_TMP_SUFFIX}"):
        path.unlink(missing_ok=True)
    return final


def _step_of(path):
    return int(_NAME.fullmatch(path.name).group(1))


def list_checkpoints(run_dir):
    """Checkpoint paths of `run_dir`, oldest to newest by the step in their names.

    Temporary and foreign files are ignored; a run without checkpoints gives [].
    """
    directory = _ckpt_dir(run_dir)
    if not directory.is_dir():
        return []
    paths = [p for p in directory.iterdir() if _NAME.fullmatch(p.name) and p.is_file()]
    return sorted(paths, key=_step_of)


def load_checkpoint(path, *, map_location="cpu"):
    """The `state` dict that save_checkpoint wrote to `path`, checksum verified.

    Raises FileNotFoundError if `path` does not exist and CheckpointError (naming the file
    and why) if it is damaged or not a fastgan checkpoint.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a checkpoint file: name one of its "
                                "files, or load_latest(run_dir) for a run's newest")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")

    def fail(why):
        return CheckpointError(f"{path}: {why}")

    data = path.read_bytes()
    if not data:
        raise fail("empty file (zero length)")
    if not data.startswith(_MAGIC):
        if _MAGIC.startswith(data):
            raise fail(f"truncated ({len(data)} bytes, payload missing)")
        raise fail("not a fastgan checkpoint (bad magic)")
    if len(data) < len(_MAGIC) + _FOOTER.size or not data.endswith(_END):
        raise fail(f"truncated ({len(data)} bytes, footer missing)")
    n, digest, _ = _FOOTER.unpack_from(data, len(data) - _FOOTER.size)
    payload = memoryview(data)[len(_MAGIC):len(data) - _FOOTER.size]
    if n != len(payload):
        raise fail(f"damaged: footer says {n} payload bytes, file holds {len(payload)}")
    if hashlib.sha256(payload).digest() != digest:
        raise fail("checksum mismatch (damaged file)")
    try:
        ckpt = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as exc:  # checksum is fine, so: written by an incompatible torch/fastgan
        raise fail(f"cannot be read: {type(exc).__name__}: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise fail(f"payload is not a {FORMAT} dict")
    if ckpt.get("version") != VERSION:
        raise fail(f"unsupported version {ckpt.get('version')!r} (this fastgan reads {VERSION})")
    return ckpt["state"]


def load_latest(run_dir, *, map_location="cpu", skipped=None):
    """(path, state) of the newest valid checkpoint of `run_dir`, or (None, None).

    A damaged checkpoint is skipped with a warning and the next older one is tried, as is
    one the file system will not give (its `why` starts "cannot be opened": permissions, an
    I/O error; it may be intact, and a resume refuses to skip it) or one removed meanwhile;
    each skipped one is appended to the list `skipped`, when given, as (path, why).
    """
    for path in reversed(list_checkpoints(run_dir)):
        try:
            return path, load_checkpoint(path, map_location=map_location)
        except (CheckpointError, OSError) as exc:
            if isinstance(exc, CheckpointError):
                why, what = str(exc).removeprefix(f"{path}: "), "damaged checkpoint"
            elif isinstance(exc, FileNotFoundError):
                why, what = "removed meanwhile", "checkpoint"
            else:
                why, what = f"cannot be opened: {type(exc).__name__}: {exc}", "checkpoint"
            warnings.warn(f"skipping {what} {path}: {why}", stacklevel=2)
            if skipped is not None:
                skipped.append((path, why))
    return None, None


def rng_state():
    """Every global RNG state a resume must restore: Python, numpy (if importable), torch
    CPU and, if CUDA is initialized, every CUDA device. Holds only checkpointable types."""
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    try:
        import numpy as np
    except ImportError:
        pass
    else:
        name, keys, pos, has_gauss, gauss = np.random.get_state()
        state["numpy"] = (name, torch.from_numpy(keys.astype(np.int64)), int(pos),
                          int(has_gauss), float(gauss))
    # An uninitialized CUDA has produced no random numbers yet; asking would create contexts.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    """Restores what rng_state() returned. A missing entry leaves that RNG as it is. CUDA
    states saved for a different number of devices than are visible now are restored for
    the first min(saved, visible) devices, with a warning."""
    if not isinstance(state, dict):
        raise TypeError(f"state must be the dict rng_state() returned, got {type(state).__name__}")
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    if "numpy" in state:
        try:
            import numpy as np
        except ImportError:
            warnings.warn("checkpoint holds a numpy RNG state but numpy is not installed", stacklevel=2)
        else:
            name, keys, pos, has_gauss, gauss = state["numpy"]
            np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, gauss))
    cuda = state.get("cuda")
    if cuda:
        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if len(cuda) != visible:
            warnings.warn(f"checkpoint holds CUDA RNG states for {len(cuda)} devices, "
                          f"{visible} visible; restoring {min(len(cuda), visible)}", stacklevel=2)
        for i, s in enumerate(cuda[:visible]):
            torch.cuda.set_rng_state(s.cpu(), i)
