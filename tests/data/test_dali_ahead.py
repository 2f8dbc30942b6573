"""The DALI backend runs its pipeline ahead of the caller (fastgan/data/_dali.py): batches in
flight must never reach the wrong caller. Every batch here is checked against PIL decoding
the same files (fastgan's "cpu" backend: within a level on average, while a wrong image is
tens of levels away)."""
import subprocess
import sys

import pytest
import torch

from fastgan.data import _dali, make_loader

pytestmark = pytest.mark.skipif(not _dali.available(),
                                reason='NVIDIA DALI is not installed (pip install "fastgan[dali]")')


def decoder(path, batch_size=4):
    loader = make_loader(path, batch_size=batch_size, backend="dali", device="cpu", num_workers=2,
                         resolution=16, shuffle=False, verbose=False)
    return loader._decoder


def check(dec, lists, got):
    """Each (uint8 batch, failed) in `got` is PIL's decoding of its list of `lists`."""
    assert len(got) == len(lists)
    for ix, (u8, failed) in zip(lists, got):
        want, want_failed = dec.samples.__getitems__(ix)
        assert u8.shape == want.shape and torch.equal(failed, want_failed), ix
        ok = ~want_failed
        assert (u8[ok].float() - want[ok].float()).abs().mean() < 1.0, ix


@pytest.fixture(params=["folder", "zip"])
def source(request, faces, tmp_path, zip_folder):
    # a folder's files are read by the pipeline; a zip's members in Python, ahead of their batch
    return faces if request.param == "folder" else zip_folder(faces, tmp_path / "faces.zip")


def test_a_generator_left_early_leaves_nothing_for_the_next(source):
    dec = decoder(source)
    first = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    gen = dec.batches(first)
    check(dec, first[:1], [next(gen)])   # batch 1 (and 2) are in flight now
    gen.close()
    later = [[20, 21, 22, 23], [12, 13, 14, 15], [16, 17, 18, 19]]
    check(dec, later, list(dec.batches(later)))
    gen = dec.batches(first)
    check(dec, first[:2], [next(gen), next(gen)])
    # left open (a notebook's peek): the next call takes what it left in flight, and owns the
    # pipeline from then on
    newer = dec.batches(later)
    check(dec, later[:1], [next(newer)])
    with pytest.raises(RuntimeError, match="left for a newer call"):
        next(gen)
    gen.close()  # the stale generator's end takes nothing of the newer one's
    check(dec, later[1:], list(newer))
    check(dec, first, list(dec.batches(first)))


def test_fewer_batches_than_the_pipeline_holds(source):
    dec = decoder(source)
    for lists in ([[5, 6, 7]], [[0, 1, 2, 3], [8, 9]], [[9, 10, 11, 12]], [], [[1], [2], [3], [4]]):
        check(dec, lists, list(dec.batches(lists)))


def test_a_batch_dali_cannot_decode_does_not_upset_the_ones_behind_it(faces, tmp_path):
    files = sorted(faces.iterdir())[:16]
    for i, f in enumerate(files):
        data = f.read_bytes()
        if i == 5:  # headers and end marker intact, compressed data broken: found only when decoded
            sos = data.index(b"\xff\xda")
            data = data[:sos + 2] + b"\x00\x01" + b"\xff\xd9"
        (tmp_path / f.name).write_bytes(data)
    dec = decoder(tmp_path)
    lists = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]
    got = list(dec.batches(lists))
    check(dec, lists, got)
    assert [f.tolist() for _, f in got] == [[False] * 4, [False, True, False, False], [False] * 4, [False] * 4]
    check(dec, lists[2:], list(dec.batches(lists[2:])))  # the rebuilt pipeline serves the next call


def test_the_files_dali_stopped_on_are_pils_from_the_next_epoch(faces, tmp_path, monkeypatch):
    """A corrupt JPEG stops DALI's pipeline: its batch falls back to PIL and the pipeline is
    rebuilt. The next epochs leave that file to PIL beside DALI, without either."""
    files = sorted(faces.iterdir())[:12]
    for i, f in enumerate(files):
        data = f.read_bytes()
        if i == 6:
            sos = data.index(b"\xff\xda")
            data = data[:sos + 2] + b"\x00\x01" + b"\xff\xd9"
        (tmp_path / f.name).write_bytes(data)
    dec = decoder(tmp_path)
    fallbacks = []
    real = _dali.DALIDecoder._fallback
    monkeypatch.setattr(_dali.DALIDecoder, "_fallback",
                        lambda self, indices: fallbacks.append(indices) or real(self, indices))
    lists = [[3, 9, 6, 0], [1, 2, 4, 5], [7, 8, 10, 11]]
    first = list(dec.batches(lists))
    assert fallbacks == [[3, 9, 6, 0]] and dec.decoder.pil_only == {6}
    check(dec, lists, first)
    second = list(dec.batches(lists))
    assert fallbacks == [[3, 9, 6, 0]]  # no second fallback
    check(dec, lists, second)
    assert [f.tolist() for _, f in second] == [[False, False, True, False], [False] * 4, [False] * 4]
    # the batches DALI decoded both times are the same; the first epoch's first batch was
    # all PIL's (the fallback), the second's DALI's but for the corrupt file
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(first[1:], second[1:]))


def test_a_torch_error_in_the_resize_is_not_taken_for_a_bad_batch(faces, monkeypatch):
    """Only DALI's own calls are handled as a batch it could not decode: an error of torch's
    resize after them (out of memory on a GPU, say) reaches the caller as it is. It was
    caught with DALI's, the batch decoded again by PIL and all its files made PIL's for good,
    with no message (found by reading, 2026-11-24)."""
    dec = decoder(faces)
    real, calls = _dali.resize_crops, []

    def resize(*args):
        calls.append(1)
        if len(calls) == 2:
            raise torch.OutOfMemoryError("CUDA out of memory (stand-in)")
        return real(*args)

    monkeypatch.setattr(_dali, "resize_crops", resize)
    lists = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    gen = dec.batches(lists)
    check(dec, lists[:1], [next(gen)])
    with pytest.raises(torch.OutOfMemoryError, match="stand-in"):
        next(gen)
    assert dec.decoder.pil_only == set()
    monkeypatch.undo()
    check(dec, lists, list(dec.batches(lists)))  # the pipeline serves the next call


def test_exiting_with_a_loader_left_mid_epoch_is_quiet(faces, tmp_path):
    """A script that stops iterating (a step budget reached) and exits leaves batches in
    flight; at interpreter exit DALI has torn its pipeline down before the generator closes.
    That close printed "Exception ignored in" with an AttributeError traceback."""
    script = ("import sys\nfrom fastgan.data import make_loader\n"
              f"loader = make_loader({str(faces)!r}, batch_size=4, backend='dali', device='cpu', "
              "num_workers=2, resolution=16, verbose=False)\n"
              "it = iter(loader)\nnext(it)\nnext(it)\nprint('left')\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)  # not the checkout: the installed package
    assert proc.returncode == 0 and proc.stdout.strip() == "left", proc.stderr[-2000:]
    assert "Exception ignored" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
