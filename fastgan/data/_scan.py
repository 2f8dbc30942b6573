"""Finding a dataset's images and checking them before a run, so nothing breaks mid-epoch.

A source is a folder tree or a .zip of JPEG/PNG files. Layout (torchvision's ImageFolder
convention): images directly in the root have no labels; images under immediate
subfolders get integer labels in sorted subfolder-name order. A zip whose entries all sit
in one top folder (CelebA's img_align_celeba.zip holds img_align_celeba/*.jpg) is read as
that folder. Hidden files and folders (names starting with ".") and __MACOSX are ignored.

The check reads each image's header and tail only, on a thread pool (120 us a file
measured on 2 busy cores: about 25 s for CelebA's 202,599; a prepared file skips it).
It finds files that are not images, corrupt headers, truncated files (no JPEG end-of-image
marker or PNG IEND chunk at the end, and a decode that fails: data after the marker is
fine), images smaller than the crop, and notes the conversions (grayscale, CMYK,
palette, alpha -> RGB). Corruption inside the compressed data can only show at decode
time; the loaders substitute and count such a sample then (fastgan.data.loader).
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
        """Symbolic links are followed (a class folder may be a link to images elsewhere),
        each real folder once (a link back up the tree is not a loop); a file that cannot be
        sized (a broken link) is listed with size 0 and found unreadable by the check."""
        out, seen = {}, {os.path.realpath(self.path)}
        for dirpath, dirnames, filenames in os.walk(self.path, followlinks=True):
            kept = []
            for d in dirnames:
                real = os.path.realpath(os.path.join(dirpath, d))
                if not d.startswith(".") and real not in seen:
                    seen.add(real)
                    kept.append(d)
            dirnames[:] = kept
            rel = os.path.relpath(dirpath, self.path)
            for f in filenames:
                name = f if rel == "." else f"{rel}/{f}".replace(os.sep, "/")
                if not _hidden(name):
                    try:
                        out[name] = os.path.getsize(os.path.join(dirpath, f))
                    except OSError:
                        out[name] = 0
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

    def _open_with_tail(self, name):
        """(a binary file object of `name` at its start, its last _TAIL bytes). A folder's
        file is opened, not read: PIL reads as much of the header as it needs (metadata
        such as an ICC profile can run to hundreds of kB)."""
        if self.is_zip:
            data = self.read(name)
            return io.BytesIO(data), data[-_TAIL:]
        f = open(self.path / name, "rb")
        try:
            f.seek(max(0, os.fstat(f.fileno()).st_size - _TAIL))
            tail = f.read()
            f.seek(0)
        except BaseException:
            f.close()
            raise
        return f, tail


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
        f, tail = source._open_with_tail(name)
    except Exception as exc:  # OSError; a zip member also BadZipFile (bad CRC), RuntimeError
        # (encrypted) or NotImplementedError (an unknown compression method): all "unreadable"
        return Check(f"unreadable: {exc}")
    with f:
        try:
            im = Image.open(f)
            fmt, mode, (w, h) = im.format, im.mode, im.size
        except Image.UnidentifiedImageError:
            return Check("not an image (unrecognized data)")
        except Exception as exc:  # PIL raises many types on a broken header
            return Check(f"corrupt header: {exc}")
        end = {"JPEG": (b"\xff\xd9", "no JPEG end-of-image marker"), "PNG": (b"IEND", "no PNG IEND chunk")}
        if fmt in end and end[fmt][0] not in tail:
            # truncated, or data after the end (a camera's trailer): only decoding tells
            try:
                im.load()
            except Exception:
                return Check(f"truncated: {end[fmt][1]}", w, h, mode)
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
