"""Every format the scanner takes (JPEG, PNG, WebP, BMP, TIFF, GIF) decodes on every backend
to PIL's pixels, and a cut-short file of each is reported with its real reason."""
import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, features

from fastgan.cli import main
from fastgan.data import _dali, make_loader
from fastgan.data._pil import decode_pil

BACKENDS = ["cpu", "cache"] + (["dali"] if _dali.available() else [])
pytestmark = pytest.mark.skipif(not features.check("webp"), reason="this PIL is built without WebP")


def load(path, **kw):
    return make_loader(path, **{"batch_size": 4, "device": "cpu", "num_workers": 0, "verbose": False,
                                "resolution": 16, "shuffle": False, "drop_last": False, **kw})


def levels(x):
    return (x.float() * 127.5 + 127.5).round().to(torch.uint8)


def image(seed, mode="RGB", w=40, h=48):
    """A smooth gradient with mild noise (what a resize comparison can hold to a level)."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, w)[None, :, None]
    y = np.linspace(0, 1, h)[:, None, None]
    img = 40 + 150 * (x * rng.uniform(0.3, 1, 3) + y * rng.uniform(0, 0.5, 3)) + rng.normal(0, 3, (h, w, 3))
    im = Image.fromarray(img.clip(0, 255).astype(np.uint8), "RGB")
    if mode == "RGBA":
        a = np.asarray(im.convert("RGBA")).copy()
        a[..., 3] = np.linspace(30, 255, w, dtype=np.uint8)[None, :]
        return Image.fromarray(a, "RGBA")
    return im.convert(mode)


def encode(im, fmt, **kw):
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


# name -> bytes: each format as commonly written (GIF: a palette image)
FILES = {
    "a.jpg": lambda: encode(image(0), "JPEG", quality=95),
    "b.png": lambda: encode(image(1), "PNG"),
    "c.webp": lambda: encode(image(2), "WEBP", quality=90),
    "d.webp": lambda: encode(image(3, "RGBA"), "WEBP", lossless=True),  # alpha, dropped
    "e.bmp": lambda: encode(image(4), "BMP"),
    "f.tif": lambda: encode(image(5), "TIFF", compression="tiff_lzw"),
    "g.tiff": lambda: encode(image(6, "L"), "TIFF"),
    "h.gif": lambda: encode(image(7, "P"), "GIF"),
}


@pytest.fixture(scope="module")
def formats(tmp_path_factory):
    root = tmp_path_factory.mktemp("formats")
    for name, make in FILES.items():
        (root / name).write_bytes(make())
    return root


def test_every_format_is_an_image(formats, capsys):
    # they were "not an image (extension)" but for .jpg and .png
    assert main(["data", "validate", str(formats), "--resolution", "16"]) == 0
    out = capsys.readouterr().out
    assert "8 files: 8 usable, 0 bad" in out
    assert "converted  g.tiff: converted L -> RGB" in out and "converted  h.gif: converted P -> RGB" in out


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_format_decodes_to_pils_pixels(formats, backend):
    """cpu is PIL itself; the cache decodes with DALI where it is installed; DALI's resize
    differs from PIL's where the crop (40 x 40 of 40 x 48: the full width) meets the image's
    edge (see test_loader.test_dali_cpu_matches_pil), within a level inside. GIFs go to PIL
    under DALI too: equal everywhere."""
    names = sorted(FILES)
    want = torch.stack([torch.from_numpy(decode_pil((formats / n).read_bytes(), 16, None, 3).copy())
                        for n in names])
    loader = load(formats, backend=backend, batch_size=len(names))
    assert loader.skipped == 0
    got = levels(next(iter(loader))[0]).permute(0, 2, 3, 1)
    d = (got.int() - want.int()).abs()
    if backend == "cpu" or not _dali.available():
        assert torch.equal(got, want)
        return
    assert d[:, 1:-1, 1:-1].max() <= 2 and d.float().mean() <= 0.5 and d.max() <= 20
    assert torch.equal(got[names.index("h.gif")], want[names.index("h.gif")])


@pytest.mark.parametrize("backend", BACKENDS)
def test_animated_files_give_their_first_frame(tmp_path, backend):
    """An animated WebP or GIF is its first frame on every backend (the second frame here is
    the first's negative, so any other frame, or a blend, is far off)."""
    first, second = image(10), Image.fromarray(255 - np.asarray(image(11)))
    files = {"a.webp": encode(first, "WEBP", save_all=True, append_images=[second], lossless=True,
                              duration=100),
             "b.gif": encode(first.convert("P"), "GIF", save_all=True, append_images=[second.convert("P")],
                             duration=100)}
    (tmp_path / "set").mkdir()
    for name, data in files.items():
        (tmp_path / "set" / name).write_bytes(data)
        assert Image.open(io.BytesIO(data)).n_frames == 2
    stills = [encode(first, "PNG"), encode(first.convert("P"), "PNG")]  # the same first frames alone
    want = torch.stack([torch.from_numpy(decode_pil(d, 16, None, 3).copy()) for d in stills])
    loader = load(tmp_path / "set", backend=backend, batch_size=2)
    got = levels(next(iter(loader))[0]).permute(0, 2, 3, 1)
    assert loader.skipped == 0
    d = (got.int() - want.int()).abs()
    if backend == "cpu" or not _dali.available():
        assert torch.equal(got, want)
    else:  # DALI's resize at the crop's edge (see test_every_format_decodes_to_pils_pixels)
        assert d[:, 1:-1, 1:-1].max() <= 2 and d.max() <= 20, d.amax(dim=(1, 2, 3))


@pytest.mark.skipif(not _dali.available(), reason="NVIDIA DALI is not installed")
def test_dali_leaves_gifs_to_pil(formats, tmp_path, monkeypatch):
    """DALI does not read GIF: a batch holding one must not fail in the pipeline and be
    decoded again (the fallback, meant for the rare file DALI's codecs refuse)."""
    def refuse(self, indices):
        raise AssertionError(f"DALI fell back to PIL for {indices}")

    monkeypatch.setattr(_dali.DALIDecoder, "_fallback", refuse)
    (tmp_path / "set").mkdir()
    for name in ("a.jpg", "c.webp", "e.bmp", "f.tif", "h.gif"):
        (tmp_path / "set" / name).write_bytes((formats / name).read_bytes())
    for size in (5, 2):  # the GIF beside DALI samples; and alone in its batch (5 = 2 + 2 + 1)
        batches = list(load(tmp_path / "set", backend="dali", batch_size=size))
        assert sum(len(x) for x, _ in batches) == 5
        gif = levels(torch.cat([x for x, _ in batches])[4]).permute(1, 2, 0)
        want = decode_pil((formats / "h.gif").read_bytes(), 16, None, 3)
        assert torch.equal(gif, torch.from_numpy(want.copy()))


@pytest.mark.skipif(not _dali.available(), reason="NVIDIA DALI is not installed")
def test_auto_leaves_a_mostly_gif_set_to_pils_workers(formats, tmp_path, capsys):
    """Beside DALI, GIFs are decoded one at a time in the loader's process: where they are
    most of the set, "auto" takes PIL in DataLoader workers instead, and says why."""
    import fastgan.data.loader as L

    (tmp_path / "set").mkdir()
    for i in range(3):
        (tmp_path / "set" / f"{i}.gif").write_bytes(encode(image(20 + i, "P"), "GIF"))
    (tmp_path / "set" / "a.jpg").write_bytes((formats / "a.jpg").read_bytes())
    budget = L.CACHE_BUDGET["cpu"]
    try:
        L.CACHE_BUDGET["cpu"] = 0  # past the cache: the decoding backend is chosen
        assert load(tmp_path / "set", verbose=True).backend == "cpu"
        assert "3 of its 4 images are in formats only PIL reads (GIF)" in capsys.readouterr().err
        for i in (1, 2):  # 1 GIF of 2, not most: DALI, with PIL beside it
            (tmp_path / "set" / f"{i}.gif").unlink()
        assert load(tmp_path / "set").backend == "dali"
    finally:
        L.CACHE_BUDGET["cpu"] = budget


@pytest.mark.skipif(not _dali.available(), reason="NVIDIA DALI is not installed")
def test_an_encoding_dali_refuses_is_decoded_by_pil(tmp_path):
    # DALI 2.4's WebP parser stops on some lossless WebPs carrying EXIF (this one; others of
    # the same kind decode, depending on the chunks' sizes); PIL reads them all
    exif = Image.Exif()
    exif[0x010F] = "camera"
    (tmp_path / "set").mkdir()
    data = encode(image(9), "WEBP", lossless=True, exif=exif.tobytes())
    (tmp_path / "set" / "exif.webp").write_bytes(data)
    (tmp_path / "set" / "a.jpg").write_bytes(FILES["a.jpg"]())
    loader = load(tmp_path / "set", backend="dali", batch_size=2)
    x, _ = next(iter(loader))
    assert loader.skipped == 0
    d = levels(x[1]).permute(1, 2, 0).int() - torch.from_numpy(decode_pil(data, 16, None, 3).astype(np.int32))
    assert d.abs().max() <= 2  # PIL's pixels (or DALI's, should a later DALI read it)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_float_tiff_is_bad_and_says_why(tmp_path, capsys, backend):
    # PIL's convert() clips float pixels to 0..255: a [0, 1] image would train as black
    (tmp_path / "set").mkdir()
    floats = Image.fromarray(np.linspace(0, 1, 40 * 48, dtype=np.float32).reshape(48, 40), "F")
    (tmp_path / "set" / "f.tif").write_bytes(encode(floats, "TIFF"))
    (tmp_path / "set" / "a.jpg").write_bytes(FILES["a.jpg"]())
    assert main(["data", "validate", str(tmp_path / "set"), "--resolution", "16"]) == 1
    out = capsys.readouterr().out
    assert "2 files: 1 usable, 1 bad" in out and "f.tif: 32-bit float pixels (PIL mode F)" in out, out
    loader = load(tmp_path / "set", backend=backend, batch_size=1)
    assert loader.skipped == 1 and len(list(loader)) == 1


def _png_header(w, h):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


# PIL warns while reading the truncated TIFFs made here on purpose ("Corrupt EXIF data")
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
def test_each_bad_file_has_its_real_reason(tmp_path, capsys):
    (tmp_path / "set").mkdir()
    files = {name: make() for name, make in FILES.items()}
    cut = {"cut.webp": files["c.webp"], "cut.bmp": files["e.bmp"], "cut.gif": files["h.gif"],
           "cut.tif": files["f.tif"], "cut.tiff": files["g.tiff"]}
    for name, data in cut.items():
        (tmp_path / "set" / name).write_bytes(data[:len(data) // 2])
    (tmp_path / "set" / "ok.jpg").write_bytes(files["a.jpg"])
    (tmp_path / "set" / "empty.png").write_bytes(b"")
    (tmp_path / "set" / "huge.png").write_bytes(_png_header(30000, 30000))  # 900 Mpixel header
    (tmp_path / "set" / "notes.txt").write_text("hi")
    assert main(["data", "validate", str(tmp_path / "set"), "--resolution", "16"]) == 1
    out = capsys.readouterr().out
    half = len(files["c.webp"]) // 2
    expected = {
        "cut.webp": f"truncated: {half} bytes, its WEBP header says {len(files['c.webp'])}",
        "cut.bmp": f"truncated: {len(files['e.bmp']) // 2} bytes, its BMP header says {len(files['e.bmp'])}",
        "cut.gif": "truncated: no GIF trailer",
        # an LZW TIFF written by PIL keeps its directory at the end: PIL cannot open the rest
        "cut.tif": "corrupt header: starts as a TIFF file, which PIL cannot read (truncated or damaged)",
        # an uncompressed one opens; a TIFF has no end marker, so only its decode finds it
        "cut.tiff": "corrupt: failed to decode",
        "empty.png": "empty file (0 bytes)",
        "huge.png": "too large to decode: Image size (900000000 pixels) exceeds limit",
        "notes.txt": "not an image by its extension (.txt; images are .jpg, .jpeg, .png, .webp, .bmp, "
                     ".tif, .tiff, .gif)",
    }
    bad = [line for line in out.splitlines() if line.startswith("bad")]
    for name, why in expected.items():
        assert f"bad        {name}: {why}" in out, (name, out)
    assert len(bad) == len(expected) and "9 files: 1 usable, 8 bad, 0 converted" in out
    assert "converted  cut.tiff" not in out  # found corrupt by its decode: bad, not also converted
    assert load(tmp_path / "set", backend="cpu").skipped == 7  # cut.tiff: found when decoded
