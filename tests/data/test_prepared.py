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


def test_nothing_usable_writes_nothing(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.jpg").write_bytes(b"\xff\xd8 not really")
    (tmp_path / "bad" / "b.png").write_bytes(b"")
    with pytest.raises(ValueError, match="none of its 2 image files is usable.*nothing written"):
        prepare(tmp_path / "bad", tmp_path / "out.fgimg", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]
