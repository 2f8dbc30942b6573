"""Prepared files: exact round trip, and every kind of stale or foreign file refused with its reason."""
import shutil

import pytest
import torch

from fastgan.cli import main
from fastgan.data import make_loader, prepare, prepared
from fastgan.data.loader import _decoder_choice, _make_decoder, decode_all
from fastgan.data._pil import Samples
from fastgan.data._scan import Source


def load(path, **kw):
    return make_loader(path, **{"batch_size": 4, "device": "cpu", "num_workers": 0, "verbose": False, **kw})


@pytest.fixture
def source(tmp_path, labeled):
    return shutil.copytree(labeled, tmp_path / "src")


@pytest.fixture
def made(tmp_path, source):
    out = tmp_path / "set.fgimg"
    assert main(["data", "prepare", str(source), "--resolution", "32", "--out", str(out), "--quiet"]) == 0
    return out


def test_round_trip_is_exact(made, source):
    """prepare -> load gives the bytes the same decoder makes, and batches of exactly them."""
    m = prepared.read_manifest(made)
    assert m["count"] == 12 and m["classes"] == ["a", "b"] and m["crop"] is None
    assert m["files"][0][0] == "a/000.jpg" and m["labels"] == [0] * 7 + [1] * 5
    data, _ = prepared.load(made, "cpu")
    src = Source(source)
    samples = Samples(src, src.files, 32, None, 3)
    sizes = [(178, 218)] * 12
    decoder = _make_decoder(_decoder_choice(torch.device("cpu"))[0], samples, sizes, 256, torch.device("cpu"), 0)
    direct = torch.empty_like(data)
    decode_all(decoder, 12, lambda s, u8, f: direct[s:s + len(u8)].copy_(u8))
    assert torch.equal(data, direct)
    loader = load(made, resolution=32, flip=False)
    assert loader.backend == "cache" and loader.num_classes == 2
    order = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    images, labels = next(iter(loader))
    assert torch.equal((images * 127.5 + 127.5).round().to(torch.uint8), data[order[:4]].permute(0, 3, 1, 2))
    assert torch.equal(labels, torch.tensor(m["labels"])[order[:4]])


def test_refuses_to_overwrite(made, source):
    with pytest.raises(ValueError, match="--overwrite"):
        prepare(source, made, resolution=32, progress=False)
    prepare(source, made, resolution=16, overwrite=True, progress=False)
    assert prepared.read_manifest(made)["resolution"] == 16
    assert not list(made.parent.glob(".*.tmp"))  # no temporary file left behind


def test_the_dataset_itself_as_out_is_refused_even_with_overwrite(source, tmp_path, zip_folder):
    archive = zip_folder(source, tmp_path / "set.zip")
    before = archive.read_bytes()
    with pytest.raises(ValueError, match=r"out '.*set\.zip' is the dataset itself; name another file"):
        prepare(archive, archive, resolution=16, overwrite=True, progress=False)
    assert archive.read_bytes() == before


def test_other_settings_refused(made):
    for kw, word in (({"resolution": 64}, "resolution=32"), ({"resolution": 32, "crop": 128}, "crop=None"),
                     ({"resolution": 32, "channels": 1}, "channels=3")):
        with pytest.raises(ValueError, match=f"made with {word}"):
            load(made, **kw)
    with pytest.raises(ValueError, match="backend='cache'"):
        load(made, resolution=32, backend="cpu")


def test_stale_source_refused(made, source):
    (source / "a" / "000.jpg").unlink()
    with pytest.raises(ValueError, match="stale.*0 files added, 1 removed"):
        load(made, resolution=32)


def test_source_gone_is_fine(made, source):
    shutil.rmtree(source)
    assert load(made, resolution=32).num_samples == 12


def test_corrupt_and_foreign_files_refused(made, tmp_path):
    raw = bytearray(made.read_bytes())
    flipped = tmp_path / "flipped.fgimg"
    flipped.write_bytes(raw[:prepared.DATA_OFFSET + 5] + bytes([raw[prepared.DATA_OFFSET + 5] ^ 1])
                        + raw[prepared.DATA_OFFSET + 6:])
    with pytest.raises(ValueError, match="sha256"):
        load(flipped, resolution=32)
    short = tmp_path / "short.fgimg"
    short.write_bytes(raw[:-10])
    with pytest.raises(ValueError, match="wrong size"):
        load(short, resolution=32)
    with pytest.raises(ValueError, match="foreign header"):
        prepared.read_manifest(tmp_path / "src" / "a" / "000.jpg")
    assert main(["data", "validate", str(flipped)]) == 1


def test_prepare_skips_bad_files(mixed, tmp_path):
    m = prepare(mixed, tmp_path / "m.fgimg", crop=128, progress=False)
    assert m["count"] == 10 and len(m["skipped"]) == 6
    reasons = {name: why for name, _, why in m["skipped"]}
    assert "truncated" in reasons["truncated.jpg"] and "corrupt" in reasons["broken.jpg"]
    loader = load(tmp_path / "m.fgimg", crop=128)
    assert loader.skipped == 6 and loader.num_samples == 10


def test_a_tampered_manifest_is_refused(made, tmp_path):
    # labels live in the manifest, outside the images' sha256: the header holds the manifest's
    raw = made.read_bytes()
    at = raw.rindex(b'"labels":[0') + len(b'"labels":[')
    bad = tmp_path / "labels.fgimg"
    bad.write_bytes(raw[:at] + b"1" + raw[at + 1:])  # one label 0 -> 1, same size
    with pytest.raises(ValueError, match="corrupt manifest.*sha256"):
        load(bad, resolution=32)
    assert main(["data", "validate", str(bad)]) == 1


def test_a_version_1_file_is_refused_saying_why(made, tmp_path):
    # version 1 resized the crop's box within the whole image: other border pixels
    import struct
    raw = made.read_bytes()
    m = prepared.read_manifest(made)
    end = m["data_offset"] + m["data_bytes"]
    text = raw[end:]
    old = text.replace(b'"version":2', b'"version":1')
    assert old != text
    head = bytearray(raw[:end])
    head[len(prepared.MAGIC):len(prepared.MAGIC) + 16] = struct.pack("<QQ", end, len(old))
    head[len(prepared.MAGIC) + 16:len(prepared.MAGIC) + 48] = bytes(32)  # no manifest digest
    v1 = tmp_path / "v1.fgimg"
    v1.write_bytes(bytes(head) + old)
    with pytest.raises(ValueError, match="is version 1, made by an older fastgan whose resize read pixels "
                                         "past the crop.*prepare it again"):
        load(v1, resolution=32)
    assert main(["data", "validate", str(v1)]) == 1


def test_truncated_file_and_missing_manifest_key_refused(made, tmp_path, capsys):
    stub = tmp_path / "stub.fgimg"
    stub.write_bytes(made.read_bytes()[:12])
    assert main(["data", "validate", str(stub)]) == 1
    assert "is truncated" in capsys.readouterr().out
    raw = made.read_bytes()
    m = prepared.read_manifest(made)
    text = raw[m["data_offset"] + m["data_bytes"]:]
    lean = text.replace(b'"crop":null,', b'')
    assert lean != text
    keyless = tmp_path / "keyless.fgimg"
    head = bytearray(raw[:m["data_offset"] + m["data_bytes"]])
    import struct
    head[len(prepared.MAGIC):len(prepared.MAGIC) + 16] = struct.pack("<QQ", len(head), len(lean))
    head[len(prepared.MAGIC) + 16:len(prepared.MAGIC) + 48] = bytes(32)  # as files from before the digest
    keyless.write_bytes(bytes(head) + lean)
    with pytest.raises(ValueError, match="manifest without crop"):
        load(keyless, resolution=32)


def test_prepared_file_inside_its_source_is_not_stale(source, capsys):
    out = source / "set.fgimg"
    for extra in ([], ["--overwrite"]):  # the second run finds the first file in its source
        assert main(["data", "prepare", str(source), "--resolution", "16", "--out", str(out), "--quiet",
                     *extra]) == 0
        assert "0 files skipped" in capsys.readouterr().out
    assert main(["data", "validate", str(out)]) == 0
    assert load(out, resolution=16).num_samples == 12


@pytest.mark.parametrize("name", ["set.jpg", "SET.PNG", "set.webp"])
def test_an_image_name_for_the_prepared_file_is_refused_before_anything(source, tmp_path, capsys, name,
                                                                        monkeypatch):
    # Under an image's name the file would be listed as an image of its folder: a bad one,
    # and, inside its own source, a new file that makes it stale.
    import fastgan.data.tools as tools

    def no_scan(*args, **kwargs):
        raise AssertionError("the source was scanned")
    monkeypatch.setattr(tools, "check_all", no_scan)
    for out in (source / name, tmp_path / name):
        assert main(["data", "prepare", str(source), "--resolution", "16", "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"has an image file's extension ({out.suffix})" in err and "name it *.fgimg" in err, err
        assert not out.exists() and not list(out.parent.glob(".*" + name + "*"))


def test_a_prepared_file_renamed_as_an_image_is_named_for_what_it_is(made, source, capsys):
    shutil.copyfile(made, source / "a" / "renamed.jpg")
    assert main(["data", "validate", str(source)]) == 1
    out = capsys.readouterr().out
    assert "a/renamed.jpg: a fastgan prepared file under an image's name: rename it *.fgimg" in out, out


def test_prepared_files_in_their_source_are_no_files_of_it(source, capsys):
    """Two prepared files written into their source folder (and one under another name):
    the folder validates clean, trains with nothing skipped, and neither file goes stale
    for the other (the first was stale once the second was written beside it)."""
    for out in ("celeba16.fgimg", "celeba8.fgimg", "named.bin"):
        res = "8" if out == "celeba8.fgimg" else "16"
        assert main(["data", "prepare", str(source), "--resolution", res, "--out", str(source / out),
                     "--quiet"]) == 0
        assert "0 files skipped" in capsys.readouterr().out
    assert main(["data", "validate", str(source), "--resolution", "16"]) == 0
    assert "12 files: 12 usable, 0 bad" in capsys.readouterr().out
    assert load(source, resolution=16, backend="cpu").skipped == 0
    assert Source(source).ignored == ["celeba16.fgimg", "celeba8.fgimg", "named.bin"]
    for out in ("celeba16.fgimg", "celeba8.fgimg", "named.bin"):
        assert main(["data", "validate", str(source / out)]) == 0, capsys.readouterr().out
        m = prepared.read_manifest(source / out)
        assert m["count"] == 12 and not m["skipped"]
    assert load(source / "celeba16.fgimg", resolution=16).num_samples == 12
    (source / "a" / "000.jpg").unlink()  # the source's own files still count
    with pytest.raises(ValueError, match="stale.*0 files added, 1 removed"):
        load(source / "celeba16.fgimg", resolution=16)


def test_a_manifest_that_lists_a_prepared_file_of_its_source_still_loads(source):
    """Before prepared files were left out of a source, one prepared beside another listed
    that other among its skipped files ("not an image (extension)"); such a file is not stale."""
    first = source / "first.fgimg"
    prepare(source, first, resolution=16, progress=False)
    data, m = prepared.load(first, "cpu")
    old = source / "second.fgimg"
    with prepared.Writer(old) as w:
        w.write(data)
        w.commit({k: m[k] for k in ("count", "resolution", "crop", "channels", "labels", "classes",
                                     "source", "files", "decoder")}
                 | {"skipped": [["first.fgimg", first.stat().st_size, "not an image (extension)"]],
                    "inside_source": "second.fgimg"})
    assert load(old, resolution=16).num_samples == 12
    first.unlink()  # what is gone is no file of the source either: still not stale
    assert load(old, resolution=16).num_samples == 12


def test_a_folder_of_prepared_files_only_says_so(tmp_path, made):
    (tmp_path / "only").mkdir()
    shutil.copy(made, tmp_path / "only" / "set.fgimg")
    with pytest.raises(ValueError, match=r"holds only prepared files \(set.fgimg\); load one of them"):
        load(tmp_path / "only")


def test_an_output_that_cannot_be_written_is_one_line(source, tmp_path, capsys):
    import os

    out = tmp_path / "set.fgimg"
    (tmp_path / f".set.fgimg.{os.getpid()}.tmp").mkdir()  # where the temporary file would go
    assert main(["data", "prepare", str(source), "--resolution", "8", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write" in err and "Is a directory" in err
    assert not out.exists()
    (tmp_path / "file").write_text("in the way")
    assert main(["data", "prepare", str(source), "--out", str(tmp_path / "file" / "x.fgimg"), "--quiet"]) == 2
    assert f"folder {str(tmp_path / 'file')!r} of the output file is not a folder" in capsys.readouterr().err


# room on the disk: for part of the 12 images; for all of them and not the manifest
@pytest.mark.parametrize("room", [4096 + 1000, 4096 + 12 * 8 * 8 * 3 + 10])
def test_a_full_disk_is_one_line_and_leaves_nothing(source, tmp_path, capsys, monkeypatch, room):
    """The disk fills while the images (or the manifest) are written: one line naming the
    file and the reason, no temporary file left, and an older output untouched."""
    import errno
    import io

    from fastgan.data import prepared as prepared_module

    class Full(io.FileIO):
        def write(self, data):
            if self.tell() + len(data) > room:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(data)

    out = tmp_path / "set.fgimg"
    out.write_bytes(b"an older output")
    monkeypatch.setattr(prepared_module, "open", lambda path, mode: Full(path, mode.replace("b", "")),
                        raising=False)
    assert main(["data", "prepare", str(source), "--resolution", "8", "--out", str(out), "--quiet",
                 "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "was not changed" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set.fgimg", "src"]
    assert out.read_bytes() == b"an older output"


def test_nothing_usable_writes_nothing(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.jpg").write_bytes(b"\xff\xd8 not really")
    (tmp_path / "bad" / "b.png").write_bytes(b"")
    with pytest.raises(ValueError, match="none of its 2 image files is usable.*nothing written"):
        prepare(tmp_path / "bad", tmp_path / "out.fgimg", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]
