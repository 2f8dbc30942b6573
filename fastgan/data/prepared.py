"""Prepared files: a dataset decoded once to one uint8 array, with its manifest inside.

`fastgan data prepare PATH --resolution 64 --out FILE` writes

    bytes 0..8        magic b"FGIMG\\x00\\x00\\x01"
    bytes 8..24       manifest offset and length (two little-endian uint64)
    bytes 24..56      sha256 of the manifest (zeros in files written before it was added)
    bytes 4096..      the images, uint8 [count, resolution, resolution, channels] (NHWC)
    after the images  the manifest, UTF-8 JSON

The manifest comes last so the images stream to disk as they decode (CelebA at 64x64 is
2.5 GB). It records the format version, count, resolution, crop, channels, labels and
class names, the source path and its file list with sizes (used and skipped, each skipped
one with its reason) and the sha256 of the image bytes; the header holds the manifest's own
sha256 (labels live in the manifest). The file is written to a
temporary name beside FILE, fsynced and renamed, so a crash never leaves a half file
under FILE. Loading refuses, saying why, a file that is foreign, of another format
version, of the wrong size, prepared at another resolution/crop/channels than asked,
whose source (when still present) has changed since (files added or removed, or of
another size: a file rewritten with the same size is not noticed), or whose checksums do
not match. Prepared files (named *.fgimg, or any other name with the magic) and the
hidden temporary files are no files of a source (fastgan.data._scan), so one written inside
its own source folder neither counts as a bad file of it nor makes another prepared file
of that folder stale.
"""
import hashlib
import json
import os
import struct
import time
from pathlib import Path

import numpy as np
import torch

MAGIC = b"FGIMG\x00\x00\x01"
SUFFIX = ".fgimg"  # the name prepared files go by (README, CLI examples); not enforced
# 2 (2026-11-24): the crop is cut out, then resized (fastgan.data._pil). Version 1 files
# resized the crop's box within the whole image (on the cpu backend and DALI on a GPU):
# their border pixels differ from what every backend now gives, so they are refused.
VERSION = 2
DATA_OFFSET = 4096
_CHUNK = 64 << 20  # bytes hashed / copied at a time when loading
_HEADER = len(MAGIC) + 16 + 32  # magic, manifest offset and length, manifest sha256
_KEYS = ("format", "version", "count", "resolution", "crop", "channels", "labels", "classes",
         "source", "files", "skipped", "data_offset", "data_bytes", "sha256")


def is_prepared(path):
    """True when `path` is a file that starts with the prepared-file magic."""
    path = Path(path)
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


class Writer:
    """Streams uint8 image batches to a temporary file beside `out`; commit() adds the
    manifest and renames it to `out`. Used as a context manager (the temporary file is
    removed on an error)."""

    def __init__(self, out, overwrite=False):
        self.out = Path(out).expanduser()
        if self.out.exists() and not overwrite:
            raise ValueError(f"{str(self.out)!r} exists; pass --overwrite (overwrite=True) to replace it")
        if not self.out.parent.is_dir():
            what = "is not a folder" if self.out.parent.exists() else "does not exist"
            raise FileNotFoundError(f"folder {str(self.out.parent)!r} of the output file {what}")
        self.tmp = self.out.with_name(f".{self.out.name}.{os.getpid()}.tmp")
        try:
            self._f = open(self.tmp, "wb")
        except OSError as exc:  # a read-only folder, say
            raise ValueError(f"cannot write {str(self.tmp)!r} (the output file before its rename): "
                             f"{exc.strerror or exc}") from None
        self._f.write(b"\0" * DATA_OFFSET)
        self._sha = hashlib.sha256()
        self.nbytes = 0

    def _failed(self, exc):
        """The one-line error for a write that failed (a full disk, a quota, an I/O error);
        __exit__ then removes the temporary file, and `out` is as it was."""
        return ValueError(f"cannot write {str(self.tmp)!r} (the output file before its rename) after "
                          f"{DATA_OFFSET + self.nbytes:,} bytes: {exc.strerror or exc}; "
                          f"{str(self.out)!r} was not changed")

    def write(self, batch):
        b = np.ascontiguousarray(batch.cpu().numpy() if isinstance(batch, torch.Tensor) else batch)
        self._sha.update(b.data)
        try:
            self._f.write(b.data)
        except OSError as exc:
            raise self._failed(exc) from None
        self.nbytes += b.nbytes

    def commit(self, manifest):
        try:
            manifest = self._finish(manifest)
        except OSError as exc:  # the manifest, flush or fsync on a full disk: before the rename
            raise self._failed(exc) from None
        os.replace(self.tmp, self.out)
        dir_fd = os.open(self.out.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a crash
        finally:
            os.close(dir_fd)
        return manifest

    def _finish(self, manifest):
        """Writes the manifest and the header into the temporary file and closes it."""
        manifest = {**manifest, "format": "fastgan-images", "version": VERSION,
                    "dtype": "uint8", "layout": "NHWC", "data_offset": DATA_OFFSET,
                    "data_bytes": self.nbytes, "sha256": self._sha.hexdigest(),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        r, c = manifest["resolution"], manifest["channels"]
        assert self.nbytes == manifest["count"] * r * r * c, "image bytes do not match the count"
        text = json.dumps(manifest, separators=(",", ":")).encode()
        self._f.write(text)
        self._f.seek(len(MAGIC))
        self._f.write(struct.pack("<QQ", DATA_OFFSET + self.nbytes, len(text)))
        self._f.write(hashlib.sha256(text).digest())
        self._f.seek(0)
        self._f.write(MAGIC)
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        return manifest

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if not self._f.closed:
            try:
                self._f.close()
            except OSError:  # its buffer's flush, on the full disk that stopped the write
                pass
        if self.tmp.exists():
            self.tmp.unlink()


def read_manifest(path):
    """The manifest of prepared file `path`, after checking magic, version and size."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(_HEADER)
        if head[:len(MAGIC)] != MAGIC:
            raise ValueError(f"{str(path)!r} is not a fastgan prepared file (foreign header)")
        if len(head) < _HEADER:
            raise ValueError(f"prepared file {str(path)!r} is truncated ({size} bytes, not even its "
                             "header); prepare it again")
        offset, length = struct.unpack("<QQ", head[len(MAGIC):len(MAGIC) + 16])
        digest = head[len(MAGIC) + 16:]
        if offset + length != size:
            raise ValueError(f"prepared file {str(path)!r} has the wrong size ({size} bytes, its "
                             f"header says {offset + length}): truncated or altered; prepare it again")
        f.seek(offset)
        text = f.read(length)
    if any(digest) and hashlib.sha256(text).digest() != digest:
        raise ValueError(f"prepared file {str(path)!r} has a corrupt manifest (its sha256 does not "
                         "match the header's); prepare it again")
    try:
        m = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"prepared file {str(path)!r} has a corrupt manifest ({exc})") from None
    missing = [k for k in _KEYS if not isinstance(m, dict) or k not in m]
    if missing:
        raise ValueError(f"prepared file {str(path)!r} has a manifest without {', '.join(missing)}; "
                         "prepare it again")
    if m.get("format") == "fastgan-images" and m.get("version") == 1:
        raise ValueError(f"prepared file {str(path)!r} is version 1, made by an older fastgan whose resize "
                         "read pixels past the crop (their border differs from what every backend gives "
                         "now, which resizes the crop cut out): prepare it again")
    if m.get("format") != "fastgan-images" or m.get("version") != VERSION:
        raise ValueError(f"prepared file {str(path)!r} is format {m.get('format')!r} version "
                         f"{m.get('version')!r}; this fastgan reads fastgan-images version {VERSION}: "
                         "prepare it again")
    r, c = m["resolution"], m["channels"]
    if m["data_bytes"] != m["count"] * r * r * c or m["data_offset"] + m["data_bytes"] != offset:
        raise ValueError(f"prepared file {str(path)!r}: its manifest does not match its size; prepare it again")
    return m


def check_request(path, m, resolution, crop, channels):
    """Refuses a prepared file made with other settings than those asked."""
    for key, asked in (("resolution", resolution), ("crop", crop), ("channels", channels)):
        if m[key] != asked:
            raise ValueError(f"prepared file {str(path)!r} was made with {key}={m[key]!r} but "
                             f"{key}={asked!r} is asked; prepare it again with those settings "
                             "or ask for the file's")


def check_source(path, m):
    """Refuses a prepared file whose source folder or zip, if still present, has changed."""
    from fastgan.data._scan import Source

    src = Path(m["source"])
    if not src.exists():
        return
    try:
        source = Source(src)
        now = source.listing()
    except ValueError as exc:
        raise ValueError(f"prepared file {str(path)!r} is stale: its source {str(src)!r} "
                         f"changed ({exc})") from None
    then = {name: size for name, size in m["files"]}
    then.update({name: size for name, size, _ in m["skipped"]})
    # Prepared files are no files of a source now; a manifest written before that lists any
    # that lay in the folder then among its skipped files.
    for name in [n for n in then if n.lower().endswith(SUFFIX) or n in source.ignored]:
        del then[name]
    now.pop(m.get("inside_source"), None)  # the prepared file itself, written into its source
    if now != then:
        added = len(now.keys() - then.keys())
        removed = len(then.keys() - now.keys())
        resized = sum(1 for k in now.keys() & then.keys() if now[k] != then[k])
        raise ValueError(f"prepared file {str(path)!r} is stale: its source {str(src)!r} changed since "
                         f"it was prepared ({added} files added, {removed} removed, {resized} changed "
                         "size); prepare it again")


def load(path, device, pin=False):
    """The images of a prepared file as uint8 [count, R, R, C] on `device` (pinned host
    memory with pin=True), read in chunks and checked against the manifest's sha256."""
    path = Path(path)
    m = read_manifest(path)
    r, c, n = m["resolution"], m["channels"], m["count"]
    device = torch.device(device)
    host = torch.empty((n, r, r, c), dtype=torch.uint8, pin_memory=pin or device.type == "cuda")
    flat = host.view(-1).numpy()
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(m["data_offset"])
        pos = 0
        while pos < flat.size:
            k = f.readinto(memoryview(flat[pos:pos + _CHUNK]))
            if not k:
                break
            sha.update(memoryview(flat[pos:pos + k]))
            pos += k
    if pos != flat.size or sha.hexdigest() != m["sha256"]:
        raise ValueError(f"prepared file {str(path)!r} is corrupt: the sha256 of its images does not "
                         "match its manifest; prepare it again")
    data = host if pin or device.type != "cuda" else host.to(device)
    return data, m
