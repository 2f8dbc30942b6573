"""Small image sets made on the fly: CelebA-shaped JPEGs, PNGs, and every kind of bad file."""
import io
import zipfile

import numpy as np
import pytest
from PIL import Image

W, H = 178, 218  # CelebA's aligned faces


def picture(rng, w=W, h=H):
    """A face-free stand-in with photo-like statistics: smooth color fields, a few sharp
    edges, mild noise (pure noise would be the worst case for any resize comparison)."""
    x = np.linspace(0, 1, w)[None, :, None]
    y = np.linspace(0, 1, h)[:, None, None]
    f = rng.uniform(2, 12, (2, 3))
    img = 128 + 90 * np.sin(x * f[0] * np.pi + y * f[1] * np.pi + rng.uniform(0, 6, 3))
    cx, cy, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.3)
    disk = ((x - cx) ** 2 + (y - cy) ** 2 < r * r)
    img = np.where(disk, 255 - img, img) + rng.normal(0, 6, (h, w, 3))
    return Image.fromarray(img.clip(0, 255).astype(np.uint8), "RGB")


def encode(im, fmt="JPEG", **kw):
    b = io.BytesIO()
    im.save(b, fmt, **({"quality": 92} if fmt == "JPEG" else {}) | kw)
    return b.getvalue()


def corrupt_jpeg(rng):
    """Headers intact, a JPEG end marker present, compressed data broken: only a decode finds it."""
    data = encode(picture(rng))
    sos = data.index(b"\xff\xda")
    return data[:sos + 2] + b"\x00\x01" + b"\xff\xd9"


def write_set(root, n_per_class=(7, 5), seed=0):
    """Class folders a/, b/ of 178x218 JPEGs; returns the file count."""
    rng = np.random.default_rng(seed)
    for cls, n in zip("ab", n_per_class):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (root / cls / f"{i:03d}.jpg").write_bytes(encode(picture(rng)))
    return sum(n_per_class)


@pytest.fixture(scope="session")
def faces(tmp_path_factory):
    """24 unlabeled CelebA-shaped JPEGs in one folder."""
    root = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(1)
    for i in range(24):
        (root / f"{i:06d}.jpg").write_bytes(encode(picture(rng)))
    return root


@pytest.fixture(scope="session")
def two_sizes(tmp_path_factory, faces):
    """6 of the faces (178 x 218) and two 100 x 120 JPEGs sorted between them: with
    crop=None the crops of one batch differ in size (178 and 100)."""
    root = tmp_path_factory.mktemp("two_sizes")
    for p in sorted(faces.iterdir())[:6]:
        (root / p.name).write_bytes(p.read_bytes())
    rng = np.random.default_rng(7)
    for name in ("000002a.jpg", "000004a.jpg"):
        (root / name).write_bytes(encode(picture(rng, 100, 120)))
    return root


@pytest.fixture(scope="session")
def labeled(tmp_path_factory):
    """Class folders a/ (7 images) and b/ (5 images)."""
    root = tmp_path_factory.mktemp("labeled")
    write_set(root)
    return root


@pytest.fixture(scope="session")
def mixed(tmp_path_factory):
    """Good and bad files together. Usable with crop=128: 6 RGB JPEGs, a PNG, a grayscale
    JPEG, a CMYK JPEG, a palette PNG (10). Skipped: a .txt, random bytes named .jpg, a
    truncated JPEG, a truncated PNG, a 100x120 JPEG (smaller than 128), and a JPEG whose
    compressed data is broken (found only when decoded)."""
    root = tmp_path_factory.mktemp("mixed")
    rng = np.random.default_rng(2)
    for i in range(6):
        (root / f"good{i}.jpg").write_bytes(encode(picture(rng)))
    (root / "rgb.png").write_bytes(encode(picture(rng), "PNG"))
    (root / "gray.jpg").write_bytes(encode(picture(rng).convert("L")))
    (root / "cmyk.jpg").write_bytes(encode(picture(rng).convert("CMYK")))
    (root / "palette.png").write_bytes(encode(picture(rng).convert("P"), "PNG"))
    (root / "notes.txt").write_text("not an image\n")
    (root / "noise.jpg").write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    full = encode(picture(rng))
    (root / "truncated.jpg").write_bytes(full[:len(full) // 2])
    png = encode(picture(rng), "PNG")
    (root / "truncated.png").write_bytes(png[:len(png) - 30])
    (root / "small.jpg").write_bytes(encode(picture(rng, 100, 120)))
    (root / "broken.jpg").write_bytes(corrupt_jpeg(rng))
    return root


@pytest.fixture
def zip_folder():
    """zip_folder(folder, out): a zip of `folder` with every entry under one top folder,
    like CelebA's img_align_celeba.zip."""
    def make(folder, out, top="img_align_celeba"):
        with zipfile.ZipFile(out, "w") as z:
            for p in sorted(folder.rglob("*")):
                if p.is_file():
                    z.write(p, f"{top}/{p.relative_to(folder).as_posix()}")
        return out
    return make
