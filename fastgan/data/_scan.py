"""Finding a dataset's images and checking them before a run, so nothing breaks mid-epoch.

A source is a folder tree or a .zip of JPEG, PNG, WebP, BMP, TIFF or GIF files (by
extension; an animated GIF or WebP gives its first frame). Layout (torchvision's
ImageFolder convention): images directly in the root have no labels; images under
immediate subfolders get integer labels in sorted subfolder-name order. A zip whose
entries all sit in one top folder (CelebA's img_align_celeba.zip holds
img_align_celeba/*.jpg) is read as that folder. Hidden files and folders (names starting
with ".", which covers fastgan data prepare's temporary files), __MACOSX and lost+found are ignored,
and so are prepared files (fastgan.data.prepared: a .fgimg name, or a file of another
non-image name that starts with their magic): one written into its source folder is no
file of that source.

The check reads each image's header and tail only, on a thread pool (120 us a file
measured on 2 busy cores: about 25 s for CelebA's 202,599; a prepared file skips it).
It finds files that are not images, corrupt headers, truncated files (a JPEG without its
end-of-image marker, a PNG without its IEND chunk, a GIF without its trailer, a WebP or
BMP shorter than its header says, and a decode that fails: data after the end is fine),
images smaller than the crop, and notes the conversions (grayscale, CMYK, palette,
alpha -> RGB). Corruption inside the compressed data (and any truncated TIFF, which has
no end marker) can only show at decode time; the loaders substitute and count such a
sample then (fastgan.data.loader).
"""
import io
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from fastgan.data.prepared import DATA_OFFSET, MAGIC, SUFFIX

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
_HEAD, _TAIL = 16, 256  # bytes read from a file's start and end for the format and truncation checks


def _hidden(relpath):
    # lost+found: a filesystem's own folder at a disk's root, unreadable to users
    return any(part.startswith(".") or part in ("__MACOSX", "lost+found") for part in relpath.split("/"))


def _is_image_name(name):
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _is_prepared(name, size, head):
    """True for a prepared file: a .fgimg name, or any other non-image name of a prepared
    file's size (at least its DATA_OFFSET) with its header (`head`: a callable giving the
    file's first bytes, read only when name and size do not tell)."""
    return name.lower().endswith(SUFFIX) or (not _is_image_name(name) and size >= DATA_OFFSET
                                             and head() == MAGIC)


def extension_problem(name):
    """Why `name`, a file of a source that is not an image by its extension, is skipped."""
    ext = os.path.splitext(name)[1]
    return f"not an image by its extension ({ext or 'none'}; images are {', '.join(IMAGE_EXTENSIONS)})"


def _refuse_file(path):
    """The ValueError for a dataset path that is a file but no zip of images."""
    where = f"dataset path {str(path)!r}"
    try:
        with open(path, "rb") as f:
            head = f.read(len(MAGIC))
    except OSError as exc:
        return ValueError(f"{where} cannot be read: {exc.strerror or exc}")
    name = path.name.lower()
    if head == MAGIC:
        return ValueError(f"{where} is a prepared file (fastgan data prepare), not a folder or zip of images")
    if name.endswith(SUFFIX) or (head and MAGIC.startswith(head)):
        return ValueError(f"{where} is named like a prepared file but lacks its header "
                          f"({path.stat().st_size} bytes): truncated, or not written by "
                          "fastgan data prepare; prepare it again")
    if name.endswith(".zip") or head.startswith(b"PK"):
        return ValueError(f"{where} is not a readable zip (no central directory at its end: "
                          "truncated or damaged)")
    if _is_image_name(name):
        return ValueError(f"{where} is one image; a dataset is a folder of images, a .zip of them, "
                          "or a prepared file (fastgan data prepare)")
    return ValueError(f"{where} is a file but neither a .zip of images nor a prepared file "
                      "(fastgan data prepare)")


def _file_head(path):
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC))
    except OSError:
        return b""


def _member_head(z, info):
    try:
        with z.open(info) as f:
            return f.read(len(MAGIC))
    except Exception:  # the member's own problem (bad CRC, encrypted, ...): the check reports it
        return b""


class Source:
    """The files of a folder or zip: `files` (relative names, sorted), their `sizes`,
    `labels` (one int each, or None), `classes` (subfolder names), `others` (names of
    files that are not images by extension, which count as skipped) and `ignored` (the
    prepared files found, which are no files of the source)."""

    def __init__(self, path):
        path = Path(path).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"dataset path {str(path)!r} does not exist")
        self.path = path
        self.is_zip = path.is_file()
        if not self.is_zip and not path.is_dir():
            raise ValueError(f"dataset path {str(path)!r} is neither a folder nor a file")
        if self.is_zip and not zipfile.is_zipfile(path):
            raise _refuse_file(path)
        self._zip = None
        self._zip_pid = None
        listing, self.ignored = self._list_zip() if self.is_zip else self._list_folder()
        self._prefix = ""
        if self.is_zip:
            tops = {name.split("/", 1)[0] for name in listing if "/" in name}
            if len(tops) == 1 and all("/" in name for name in listing):
                self._prefix = tops.pop() + "/"
                listing = {name[len(self._prefix):]: size for name, size in listing.items()}
                self.ignored = [n[len(self._prefix):] if n.startswith(self._prefix) else n
                                for n in self.ignored]
        images = {n: s for n, s in listing.items() if _is_image_name(n)}
        self.others = sorted(n for n in listing if n not in images)
        self.other_sizes = [listing[n] for n in self.others]
        root_images = sorted(n for n in images if "/" not in n)
        class_images = sorted(n for n in images if "/" in n)
        if not images:
            what = "is empty" if not listing else f"holds no {'/'.join(IMAGE_EXTENSIONS)} images"
            if not listing and self.ignored:
                what = (f"holds only prepared files ({', '.join(self.ignored[:3])}); load one of them "
                        "as the dataset")
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
        """({name: size}, [prepared files]) of the folder. Symbolic links are followed (a
        class folder may be a link to images elsewhere), each real folder once, the first in
        sorted order (a link back up the tree is not a loop; of two names for one folder, the
        same one on every machine, whatever order the file system lists them in); a file
        that cannot be sized (a broken link) is listed with size 0 and found unreadable by
        the check; a folder that cannot be listed is refused (its images would silently be
        missing, a class's labels with them)."""
        out, ignored, seen = {}, [], {os.path.realpath(self.path)}

        def refuse(exc):
            raise ValueError(f"dataset folder {exc.filename!r} cannot be listed: {exc.strerror or exc}")

        for dirpath, dirnames, filenames in os.walk(self.path, onerror=refuse, followlinks=True):
            kept = []
            for d in sorted(dirnames):
                real = os.path.realpath(os.path.join(dirpath, d))
                if not _hidden(d) and real not in seen:
                    seen.add(real)
                    kept.append(d)
            dirnames[:] = kept
            rel = os.path.relpath(dirpath, self.path)
            for f in filenames:
                name = f if rel == "." else f"{rel}/{f}".replace(os.sep, "/")
                if _hidden(name):
                    continue
                full = os.path.join(dirpath, f)
                try:
                    size = os.path.getsize(full)
                except OSError:
                    size = 0
                if _is_prepared(name, size, lambda: _file_head(full)):
                    ignored.append(name)
                else:
                    out[name] = size
        return out, sorted(ignored)

    def _list_zip(self):
        """({name: size}, [prepared files]) of the zip's members."""
        out, ignored = {}, []
        try:
            with zipfile.ZipFile(self.path) as z:
                for i in z.infolist():
                    if i.is_dir() or _hidden(i.filename):
                        continue
                    if _is_prepared(i.filename, i.file_size, lambda: _member_head(z, i)):
                        ignored.append(i.filename)
                    else:
                        out[i.filename] = i.file_size
        except (zipfile.BadZipFile, OSError, ValueError) as exc:  # a damaged central directory
            raise ValueError(f"dataset path {str(self.path)!r} is not a readable zip ({exc})") from None
        return out, sorted(ignored)

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
        """(a binary file object of `name` at its start, its first _HEAD and last _TAIL
        bytes, its size). A folder's file is opened, not read: PIL reads as much of the
        header as it needs (metadata such as an ICC profile can run to hundreds of kB)."""
        if self.is_zip:
            data = self.read(name)
            return io.BytesIO(data), data[:_HEAD], data[-_TAIL:], len(data)
        f = open(self.path / name, "rb")
        try:
            size = os.fstat(f.fileno()).st_size
            head = f.read(_HEAD)
            f.seek(max(0, size - _TAIL))
            tail = f.read()
            f.seek(0)
        except BaseException:
            f.close()
            raise
        return f, head, tail, size


class Check:
    """What the header check found about one file: `ok`, `width`, `height`, `mode`,
    `format` (PIL's name for it: "JPEG", "PNG", "WEBP", ...), `problem` (why it is
    skipped, or None), `note` (a conversion, or None)."""
    __slots__ = ("ok", "width", "height", "mode", "format", "problem", "note")

    def __init__(self, problem=None, width=0, height=0, mode="", note=None, fmt=None):
        self.ok = problem is None
        self.problem, self.width, self.height, self.mode, self.note = problem, width, height, mode, note
        self.format = fmt


_SIGNATURES = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF87a", "GIF"),
               (b"GIF89a", "GIF"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"BM", "BMP"))


def _sniff(head):
    """The image format a file's first bytes announce, or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return next((fmt for sig, fmt in _SIGNATURES if head.startswith(sig)), None)


def _cut_short(fmt, head, tail, size):
    """Why a file of format `fmt` looks truncated (its end marker missing, or its header
    giving a size past the file's end), or None. A TIFF has neither to check. Data after
    the end (a camera's trailer) also hides a marker: the caller decodes such a file to tell."""
    if fmt == "JPEG" and b"\xff\xd9" not in tail:
        return "no JPEG end-of-image marker"
    if fmt == "PNG" and b"IEND" not in tail:
        return "no PNG IEND chunk"
    if fmt == "GIF" and not tail.endswith(b";"):
        return "no GIF trailer"
    declared = {"WEBP": int.from_bytes(head[4:8], "little") + 8,  # the RIFF chunk's size
                "BMP": int.from_bytes(head[2:6], "little")}.get(fmt)  # bfSize (0 in some files)
    if declared is not None and declared > size:
        return f"{size} bytes, its {fmt} header says {declared}"
    return None


def check_file(source, name, crop, channels):
    """Check one image's header and tail without decoding it (see the module docstring)."""
    try:
        f, head, tail, size = source._open_with_tail(name)
    except Exception as exc:  # OSError; a zip member also BadZipFile (bad CRC), RuntimeError
        # (encrypted) or NotImplementedError (an unknown compression method): all "unreadable"
        return Check(f"unreadable: {exc}")
    with f:
        if size == 0:
            return Check("empty file (0 bytes)")
        sniffed = _sniff(head)
        short = _cut_short(sniffed, head, tail, size)
        try:
            im = Image.open(f)
            fmt, mode, (w, h) = im.format, im.mode, im.size
        except Image.DecompressionBombError as exc:
            return Check(f"too large to decode: {exc}")
        except Exception as exc:  # PIL raises many types on a broken header
            if short:  # PIL opens a truncated WebP (and some TIFFs) no further than this
                return Check(f"truncated: {short}")
            if head.startswith(MAGIC):  # renamed after `fastgan data prepare`, which refuses these names
                return Check(f"a fastgan prepared file under an image's name: rename it *{SUFFIX}, or "
                             "give it as the dataset")
            if sniffed is None and isinstance(exc, Image.UnidentifiedImageError):
                return Check("not an image (unrecognized data)")
            if isinstance(exc, Image.UnidentifiedImageError):
                return Check(f"corrupt header: starts as a {sniffed} file, which PIL cannot read "
                             "(truncated or damaged)")
            return Check(f"corrupt header: {exc}")
        if short:  # truncated, or data after the end (a camera's trailer): only decoding tells
            try:
                im.load()
            except Exception:
                return Check(f"truncated: {short}", w, h, mode, fmt=fmt)
    if crop is not None and min(w, h) < crop:
        return Check(f"too small for the crop: {w}x{h} < {crop}x{crop}", w, h, mode, fmt=fmt)
    if w == 0 or h == 0:
        return Check(f"empty image ({w}x{h})", w, h, mode, fmt=fmt)
    if mode == "F":  # a float TIFF: converting would clip it to 0..255, a [0, 1] image to black
        return Check("32-bit float pixels (PIL mode F), whose range (0-1? 0-255?) the file does not "
                     "say; save it with 8- or 16-bit pixels", w, h, mode, fmt=fmt)
    target = "RGB" if channels == 3 else "L"
    note = None if mode == target else f"converted {mode} -> {target}"
    return Check(None, w, h, mode, note, fmt=fmt)


def check_all(source, crop, channels, progress=False):
    """check_file for every image of `source`, in order, on a thread pool (file reads overlap)."""
    from tqdm import tqdm

    workers = min(16, 4 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        it = pool.map(lambda n: check_file(source, n, crop, channels), source.files)
        return list(tqdm(it, total=len(source.files), desc=f"checking {source.path.name}",
                         unit="img", disable=not progress, leave=False))
