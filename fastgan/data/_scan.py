"""Finding a dataset's images and checking them before a run, so nothing breaks mid-epoch.

A source is a folder tree or a .zip of JPEG/PNG files. Layout (torchvision's ImageFolder
convention): images directly in the root have no labels; images under immediate
subfolders get integer labels in sorted subfolder-name order. A zip whose entries all sit
in one top folder (CelebA's img_align_celeba.zip holds img_align_celeba/*.jpg) is read as
that folder. Hidden files and folders (names starting with ".") and __MACOSX are ignored.

The check reads each image's header and tail only, on a thread pool (120 us a file
measured on 2 busy cores: about 25 s for CelebA's 202,599; a prepared file skips it).
It finds files that are not images, corrupt headers, truncated files (no JPEG end-of-image marker, no PNG IEND chunk), images smaller than the
crop, and notes the conversions (grayscale, CMYK, palette, alpha -> RGB). Corruption
inside the compressed data can only show at decode time; the loaders substitute and
count such a sample then (fastgan.data.loader).
"""
import io
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_TAIL = 256  # bytes read from a file's end for the truncation check


def _hidden(relpath):
    return any(part.startswith(".") or part == "__MACOSX" for part in relpath.split("/"))


class Source:
    """The files of a folder or zip: `files` (relative names, sorted), their `sizes`,
    `labels` (one int each, or None), `classes` (subfolder names), and `others` (names of
    files that are not images by extension, which count as skipped)."""

    def __init__(self, path):
        path = Path(path).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"dataset path {str(path)!r} does not exist")
        self.path = path
        self.is_zip = path.is_file()
        if self.is_zip and not zipfile.is_zipfile(path):
            raise ValueError(f"dataset path {str(path)!r} is a file but neither a .zip of images "
                             "nor a prepared file (fastgan data prepare)")
        self._zip = None
        self._zip_pid = None
        listing = self._list_zip() if self.is_zip else self._list_folder()
        self._prefix = ""
        if self.is_zip:
            tops = {name.split("/", 1)[0] for name in listing if "/" in name}
            if len(tops) == 1 and all("/" in name for name in listing):
                self._prefix = tops.pop() + "/"
                listing = {name[len(self._prefix):]: size for name, size in listing.items()}
        images = {n: s for n, s in listing.items() if n.lower().endswith(IMAGE_EXTENSIONS)}
        self.others = sorted(n for n in listing if n not in images)
        self.other_sizes = [listing[n] for n in self.others]
        root_images = sorted(n for n in images if "/" not in n)
        class_images = sorted(n for n in images if "/" in n)
        if not images:
            what = "is empty" if not listing else f"holds no {'/'.join(IMAGE_EXTENSIONS)} images"
            raise ValueError(f"dataset {str(path)!r} {what}")
        if root_images and class_images:
            raise ValueError(f"dataset {str(path)!r} mixes images in its root ({root_images[0]!r}, ...) "
                             f"with images in class subfolders ({class_images[0]!r}, ...); "
                             "use one layout")
        self.files = root_images or class_images
        self.sizes = [images[n] for n in self.files]
        if class_images:
            self.classes = sorted({n.split("/", 1)[0] for n in class_images})
            index = {c: i for i, c in enumerate(self.classes)}
            self.labels = [index[n.split("/", 1)[0]] for n in self.files]
        else:
            self.classes, self.labels = [], None

    def _list_folder(self):
        out = {}
        for dirpath, dirnames, filenames in os.walk(self.path):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = os.path.relpath(dirpath, self.path)
            for f in filenames:
                name = f if rel == "." else f"{rel}/{f}".replace(os.sep, "/")
                if not _hidden(name):
                    out[name] = os.path.getsize(os.path.join(dirpath, f))
        return out

    def _list_zip(self):
        with zipfile.ZipFile(self.path) as z:
            return {i.filename: i.file_size for i in z.infolist()
                    if not i.is_dir() and not _hidden(i.filename)}

    def listing(self):
        """{name: size} of every file considered (images and others), for staleness checks."""
        return dict(zip(self.files + self.others, self.sizes + self.other_sizes))

    def read(self, name):
        """The bytes of file `name` (safe in forked DataLoader workers: a zip is reopened per process)."""
        if not self.is_zip:
            with open(self.path / name, "rb") as f:
                return f.read()
        if self._zip is None or self._zip_pid != os.getpid():
            self._zip, self._zip_pid = zipfile.ZipFile(self.path), os.getpid()
        return self._zip.read(self._prefix + name)

    def __getstate__(self):
        return {**self.__dict__, "_zip": None, "_zip_pid": None}

    def _head_tail(self, name):
        if self.is_zip:
            data = self.read(name)
            return io.BytesIO(data), data[-_TAIL:]
        with open(self.path / name, "rb") as f:
            head = f.read(1 << 16)
            f.seek(max(0, os.fstat(f.fileno()).st_size - _TAIL))
            return io.BytesIO(head), f.read()


class Check:
    """What the header check found about one file: `ok`, `width`, `height`, `mode`,
    `problem` (why it is skipped, or None), `note` (a conversion, or None)."""
    __slots__ = ("ok", "width", "height", "mode", "problem", "note")

    def __init__(self, problem=None, width=0, height=0, mode="", note=None):
        self.ok = problem is None
        self.problem, self.width, self.height, self.mode, self.note = problem, width, height, mode, note


def check_file(source, name, crop, channels):
    """Check one image's header and tail without decoding it (see the module docstring)."""
    try:
        head, tail = source._head_tail(name)
    except OSError as exc:
        return Check(f"unreadable: {exc}")
    try:
        with Image.open(head) as im:
            fmt, mode, (w, h) = im.format, im.mode, im.size
    except Image.UnidentifiedImageError:
        return Check("not an image (unrecognized data)")
    except Exception as exc:  # PIL raises many types on a broken header
        return Check(f"corrupt header: {exc}")
    if fmt == "JPEG" and b"\xff\xd9" not in tail:
        return Check("truncated: no JPEG end-of-image marker", w, h, mode)
    if fmt == "PNG" and b"IEND" not in tail:
        return Check("truncated: no PNG IEND chunk", w, h, mode)
    if crop is not None and min(w, h) < crop:
        return Check(f"too small for the crop: {w}x{h} < {crop}x{crop}", w, h, mode)
    if w == 0 or h == 0:
        return Check(f"empty image ({w}x{h})", w, h, mode)
    target = "RGB" if channels == 3 else "L"
    note = None if mode == target else f"converted {mode} -> {target}"
    return Check(None, w, h, mode, note)


def check_all(source, crop, channels, progress=False):
    """check_file for every image of `source`, in order, on a thread pool (file reads overlap)."""
    from tqdm import tqdm

    workers = min(16, 4 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        it = pool.map(lambda n: check_file(source, n, crop, channels), source.files)
        return list(tqdm(it, total=len(source.files), desc=f"checking {source.path.name}",
                         unit="img", disable=not progress, leave=False))
