"""Bad inputs: one clear error for a missing or empty dataset; bad files skipped and counted,
never a crash mid-epoch; `fastgan data validate` lists each with its reason."""
import re

import pytest
import torch

from fastgan.cli import main
from fastgan.data import _dali, make_loader
from fastgan.data._pil import Samples

BACKENDS = ["cpu", "cache"] + (["dali"] if _dali.available() else [])
# The `mixed` set with crop=128: 10 usable files; 5 skipped by the header check (a .txt,
# random bytes named .jpg, a truncated JPEG, a truncated PNG, a 100x120 JPEG); 1 more
# (broken.jpg) passes it and is found only when decoded.
USABLE, HEADER_SKIPS = 10, 5


def load(path, **kw):
    return make_loader(path, **{"batch_size": 4, "device": "cpu", "num_workers": 0, "verbose": False, **kw})


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        load(tmp_path / "nope")


def test_empty_folder(tmp_path):
    with pytest.raises(ValueError, match=f"{tmp_path.name}.* is empty"):
        load(tmp_path)


def test_folder_without_images(tmp_path):
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(ValueError, match="holds no .jpg/.jpeg/.png/.webp/.bmp/.tif/.tiff/.gif images"):
        load(tmp_path)


def test_no_usable_image(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"\xff\xd8 not really")
    with pytest.raises(ValueError, match="none of its 1 image files is usable"):
        load(tmp_path)


def test_root_images_and_class_folders_mixed(tmp_path, labeled):
    import shutil

    shutil.copytree(labeled, tmp_path / "d")
    shutil.copy(next((labeled / "a").iterdir()), tmp_path / "d" / "stray.jpg")
    with pytest.raises(ValueError, match="mixes images in its root"):
        load(tmp_path / "d")


def test_random_file_is_not_a_dataset(tmp_path):
    (tmp_path / "data.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="neither a .zip"):
        load(tmp_path / "data.bin")


def test_a_path_that_is_no_dataset_says_what_it_is(tmp_path, capsys):
    import zipfile

    one = _image()
    (tmp_path / "one.jpg").write_bytes(one)
    with zipfile.ZipFile(tmp_path / "set.zip", "w") as z:
        for i in range(3):
            z.writestr(f"{i}.jpg", one)
    whole = (tmp_path / "set.zip").read_bytes()
    (tmp_path / "cut.zip").write_bytes(whole[:len(whole) // 2])
    at = whole.rindex(b"PK\x01\x02")  # the central directory's last entry: zipfile raised BadZipFile
    (tmp_path / "directory.zip").write_bytes(whole[:at] + b"XX" + whole[at + 2:])
    (tmp_path / "short.fgimg").write_bytes(b"FGIM")  # a prepared file cut inside its magic
    cases = {"one.jpg": "is one image; a dataset is a folder of images, a .zip of them",
             "cut.zip": "is not a readable zip (no central directory at its end: truncated or damaged)",
             "directory.zip": "is not a readable zip (Bad magic number for central directory)",
             "short.fgimg": "is named like a prepared file but lacks its header (4 bytes): truncated",
             "/dev/null": "is neither a folder nor a file"}
    for name, why in cases.items():
        path = tmp_path / name  # an absolute name stays itself
        assert main(["data", "validate", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{str(path)!r} {why}" in err, (name, err)
        with pytest.raises(ValueError, match=re.escape(why)):
            load(path)


def test_a_folder_that_cannot_be_listed_is_refused(labeled, monkeypatch):
    """Its images were silently left out (os.walk skips what it cannot list), and with a
    class folder its whole class, shifting every later label. (Tests run as root here, so
    the permission error is made, not provoked with chmod.)"""
    import os

    scandir = os.scandir

    def refuse_b(path):
        if os.fspath(path).endswith("/b"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refuse_b)
    with pytest.raises(ValueError, match=r"dataset folder '.*/b' cannot be listed: Permission denied"):
        load(labeled)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_files_skipped_and_counted(mixed, backend, capsys):
    loader = make_loader(mixed, batch_size=4, crop=128, backend=backend, device="cpu", num_workers=0)
    assert "5 of 16 files" in capsys.readouterr().err  # said once, before the run
    for _ in range(2):  # two epochs, no crash; shapes never change
        for images, labels in loader:
            assert images.shape == (4, 3, 64, 64) and labels is None
            assert torch.isfinite(images).all()
    if backend == "cache":  # decoded up front: the broken file is dropped from the dataset
        assert loader.num_samples == USABLE and len(loader) == 2
    else:                   # found in the first epoch, replaced in its batch by another sample
        assert loader.num_samples == USABLE + 1 and len(loader) == 2
    assert loader.skipped == HEADER_SKIPS + 1  # broken.jpg, met in the first epoch, counted once


def test_decode_failure_is_replaced_within_its_batch(labeled, monkeypatch):
    """A sample that fails to decode takes the images and label of its batch's first good one."""
    real = Samples.crop_of

    def crop_of(self, i):
        if self.files[i].startswith("b/"):
            raise OSError("bad data")
        return real(self, i)

    monkeypatch.setattr(Samples, "crop_of", crop_of)
    loader = load(labeled, backend="cpu", batch_size=12, shuffle=False, verbose=True)
    images, labels = next(iter(loader))
    assert loader.skipped == 5
    assert labels.tolist() == [0] * 12   # the 5 of class b replaced by the first image, class a
    assert all(torch.equal(images[k], images[0]) for k in range(7, 12))


def test_grayscale_and_cmyk_are_converted(mixed):
    from fastgan.data._pil import decode_pil

    for name in ("gray.jpg", "cmyk.jpg", "palette.png"):
        out = decode_pil((mixed / name).read_bytes(), 64, None, 3)
        assert out.shape == (64, 64, 3) and out.std() > 5
    gray = decode_pil((mixed / "gray.jpg").read_bytes(), 64, None, 3)
    assert (gray[..., 0] == gray[..., 1]).all()


def test_small_image_only_skipped_when_a_crop_asks_more(mixed):
    assert load(mixed, crop=None, backend="cpu").skipped == HEADER_SKIPS - 1  # small.jpg is then fine
    assert load(mixed, crop=128, backend="cpu").skipped == HEADER_SKIPS


def test_validate_lists_every_bad_file(mixed, capsys):
    assert main(["data", "validate", str(mixed), "--crop", "128"]) == 1
    out = capsys.readouterr().out
    expected = {"notes.txt": "not an image by its extension (.txt;",
                "noise.jpg": "not an image (unrecognized data)", "truncated.jpg": "truncated",
                "truncated.png": "truncated", "small.jpg": "too small for the crop: 100x120",
                "broken.jpg": "corrupt"}
    bad = [line for line in out.splitlines() if line.startswith("bad")]
    assert len(bad) == len(expected)
    for name, why in expected.items():
        assert any(name in line and why in line for line in bad), (name, out)
    for name in ("gray.jpg", "cmyk.jpg", "palette.png"):
        assert any(line.startswith("converted") and name in line for line in out.splitlines())
    assert "16 files: 10 usable, 6 bad, 3 converted" in out


def test_validate_clean_folder_exits_0(labeled, capsys):
    assert main(["data", "validate", str(labeled)]) == 0
    assert "12 files: 12 usable, 0 bad" in capsys.readouterr().out


def test_validate_missing_path_is_one_line(tmp_path, capsys):
    assert main(["data", "validate", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err



def _image(fmt="JPEG", w=40, h=48, seed=0, **save):
    """A small image's bytes: a smooth gradient plus noise."""
    import io

    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(seed)
    img = (np.linspace(0, 200, w)[None, :, None] + rng.normal(0, 10, (h, w, 3))).clip(0, 255)
    buf = io.BytesIO()
    Image.fromarray(img.astype(np.uint8), "RGB").save(buf, fmt, **save)
    return buf.getvalue()


def test_a_zip_member_that_fails_to_read_is_listed_not_a_crash(tmp_path, capsys):
    # zipfile raises BadZipFile (not an OSError) on a member whose CRC does not match
    import zipfile

    good = _image()
    with zipfile.ZipFile(tmp_path / "set.zip", "w", zipfile.ZIP_STORED) as z:
        for i in range(5):
            z.writestr(f"{i}.jpg", good)
    raw = bytearray((tmp_path / "set.zip").read_bytes())
    at = raw.index(good) + len(good) // 2  # inside member 0's stored data
    raw[at] ^= 0xFF
    (tmp_path / "set.zip").write_bytes(bytes(raw))
    assert main(["data", "validate", str(tmp_path / "set.zip"), "--resolution", "16"]) == 1
    out = capsys.readouterr().out
    assert "bad        0.jpg: unreadable: Bad CRC-32" in out and "5 files: 4 usable, 1 bad" in out
    assert load(tmp_path / "set.zip", resolution=16, backend="cpu").skipped == 1


def test_16_bit_grayscale_png_is_scaled_not_clipped(tmp_path):
    import io

    import numpy as np
    from PIL import Image

    from fastgan.data._pil import decode_pil
    buf = io.BytesIO()
    Image.fromarray(np.full((20, 20), 100 * 257, np.uint16)).save(buf, "PNG")  # mode I;16
    assert Image.open(io.BytesIO(buf.getvalue())).mode.startswith("I")
    for channels in (1, 3):
        out = decode_pil(buf.getvalue(), 8, None, channels)
        assert out.shape == (8, 8, channels) and (out == 100).all()  # was 255 everywhere
    (tmp_path / "g16").mkdir()
    (tmp_path / "g16" / "a.png").write_bytes(buf.getvalue())
    for backend in BACKENDS:
        x, _ = next(iter(load(tmp_path / "g16", resolution=8, batch_size=1, backend=backend)))
        assert torch.allclose(x, torch.full_like(x, 100 / 127.5 - 1)), backend


def test_large_metadata_is_not_a_corrupt_header(tmp_path, capsys):
    # a 200 kB ICC profile: the header check once read only the first 64 kB
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "icc.jpg").write_bytes(_image(icc_profile=bytes(200_000)))
    (tmp_path / "big" / "plain.jpg").write_bytes(_image(seed=1))
    assert main(["data", "validate", str(tmp_path / "big"), "--resolution", "16"]) == 0
    assert "2 files: 2 usable, 0 bad" in capsys.readouterr().out


def test_data_after_the_end_marker_is_not_truncation(tmp_path, capsys):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "trailer.jpg").write_bytes(_image() + b"\x00" * 1000)  # a camera's trailer
    (tmp_path / "t" / "cut.jpg").write_bytes(_image(seed=1)[:-300])
    assert main(["data", "validate", str(tmp_path / "t"), "--resolution", "16"]) == 1
    out = capsys.readouterr().out
    assert "bad        cut.jpg: truncated" in out and "2 files: 1 usable, 1 bad" in out


def test_symlinked_class_folders_are_followed_once(tmp_path, capsys):
    import os

    root, elsewhere = tmp_path / "set", tmp_path / "elsewhere"
    (root / "cats").mkdir(parents=True)
    elsewhere.mkdir()
    for i in range(2):
        (root / "cats" / f"{i}.jpg").write_bytes(_image(seed=i))
        (elsewhere / f"{i}.jpg").write_bytes(_image(seed=10 + i))
    os.symlink(elsewhere, root / "dogs")                  # a class that lives elsewhere
    os.symlink(root, root / "cats" / "loop")              # a link back up the tree: no loop
    os.symlink(tmp_path / "gone.jpg", root / "cats" / "broken.jpg")
    loader = load(root, resolution=16, backend="cpu")
    assert loader.num_samples == 4 and loader.skipped == 1
    labels = torch.cat([y for _, y in load(root, resolution=16, backend="cpu", shuffle=False)])
    assert labels.tolist() == [0, 0, 1, 1]
    assert main(["data", "validate", str(root), "--resolution", "16"]) == 1
    assert "bad        cats/broken.jpg: unreadable" in capsys.readouterr().out


def test_two_names_for_one_class_folder_keep_the_first_in_sorted_order(tmp_path, monkeypatch):
    # the file system's listing order must not pick which name (and so the class names and
    # labels) survives: here the listing is reversed
    import os

    root = tmp_path / "set"
    for cls in ("b_real", "c_other"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            (root / cls / f"{i}.jpg").write_bytes(_image(seed=i))
    os.symlink(root / "b_real", root / "a_link")
    scandir = os.scandir

    def reversed_listing(path="."):
        class Listing:  # what os.scandir returns: an iterator and a context manager
            def __init__(self):
                with scandir(path) as it:
                    self.entries = iter(sorted(it, key=lambda e: e.name, reverse=True))

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def __iter__(self):
                return self

            def __next__(self):
                return next(self.entries)

            def close(self):
                pass
        return Listing()
    monkeypatch.setattr(os, "scandir", reversed_listing)
    from fastgan.data._scan import Source
    assert Source(root).classes == ["a_link", "c_other"]


def test_settings_that_fit_no_image_are_refused_by_validate(labeled, capsys):
    for flag, value in (("--resolution", "0"), ("--crop", "0"), ("--crop", "-4")):
        assert main(["data", "validate", str(labeled), flag, value]) == 2
        err = capsys.readouterr().err
        assert f"{flag[2:]} must be" in err and "bad" not in err


def test_large_seed_and_a_shard_without_images(labeled):
    x, _ = next(iter(load(labeled, resolution=16, backend="cpu", seed=2**45)))
    assert x.shape == (4, 3, 16, 16)
    # a seed whose epoch seed is just below 2^64: the flips' seed (2^32 above it) wraps too
    x, _ = next(iter(load(labeled, resolution=16, backend="cpu", seed=18446688733643, flip=True)))
    assert x.shape == (4, 3, 16, 16)
    with pytest.raises(ValueError, match=r"shard 0 of 16 has 0 images, since its 12 usable images are "
                                         r"fewer than the 16 processes"):
        load(labeled, resolution=16, backend="cpu", shard=(0, 16), drop_last=False)
    with pytest.raises(ValueError, match=r"has 2 images, fewer than batch_size=4 with drop_last=True"):
        load(labeled, resolution=16, backend="cpu", shard=(0, 6))


def test_a_disks_lost_and_found_is_no_class_folder(tmp_path, labeled):
    """A dataset at a disk's root has lost+found beside its images (unreadable to users,
    which would refuse the dataset): it is no part of it, like a hidden folder."""
    for f in sorted(labeled.glob("a/*.jpg"))[:5]:
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "lost+found").mkdir()
    (tmp_path / "lost+found" / "#1234.jpg").write_bytes(next(labeled.glob("b/*.jpg")).read_bytes())
    loader = load(tmp_path, batch_size=5)
    assert loader.num_samples == 5 and loader.num_classes == 0 and loader.skipped == 0
