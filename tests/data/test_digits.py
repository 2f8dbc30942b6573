"""The built-in digits: written once as PNGs, reused, loaded through the normal path."""
import importlib
import os

import torch

from fastgan.data import DEFAULT_DATASET, digits, make_loader


def test_digits_written_once(tmp_path):
    root = digits(tmp_path)
    files = sorted(root.glob("*/*.png"))
    assert root == tmp_path / "digits" and len(files) == 1797
    assert sorted(p.name for p in root.iterdir()) == [str(i) for i in range(10)]
    stamp = files[0].stat().st_mtime_ns
    assert digits(tmp_path) == root and files[0].stat().st_mtime_ns == stamp  # reused
    os.unlink(files[5])
    assert len(list(digits(tmp_path).glob("*/*.png"))) == 1797                 # incomplete: rebuilt
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]       # no temp folders left


def test_a_folder_another_process_completed_meanwhile_is_not_replaced(tmp_path, monkeypatch):
    # Processes starting together (DDP ranks on a fresh machine) each write the digits; one
    # that finishes second must not move aside and delete the folder the first one returned
    # and is reading. Here the folder is complete by the time this call has written its own.
    module = importlib.import_module("fastgan.data.digits")  # fastgan.data.digits is also the function
    root = digits(tmp_path)
    inode = root.stat().st_ino
    real, calls = module._complete, []
    monkeypatch.setattr(module, "_complete", lambda f: bool(calls.append(f)) or (len(calls) > 1 and real(f)))
    assert digits(tmp_path) == root and len(calls) == 2  # wrote its own, saw the other's, kept it
    assert root.stat().st_ino == inode
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # its own is gone


def test_the_digits_folder_has_the_mode_the_umask_gives(tmp_path):
    old = os.umask(0o022)  # the folder is built in a private mkdtemp (0700), then renamed
    try:
        root = digits(tmp_path)
    finally:
        os.umask(old)
    assert oct(root.stat().st_mode & 0o777) == oct(0o755)
    assert oct(next(root.glob("*/*.png")).stat().st_mode & 0o777) == oct(0o644)


def test_default_dataset_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTGAN_CACHE_DIR", str(tmp_path))
    loader = make_loader(DEFAULT_DATASET, batch_size=64, device="cpu", verbose=False)
    assert (tmp_path / "digits").is_dir()
    assert loader.num_samples == 1797 and loader.num_classes == 10 and loader.skipped == 0
    images, labels = next(iter(loader))
    assert images.shape == (64, 3, 64, 64) and set(labels.tolist()) <= set(range(10))
    assert torch.equal(images[:, 0], images[:, 1])           # gray -> RGB
    assert images.min() == -1 and images.max() > 0.9        # black background, white strokes


def test_a_cache_folder_that_cannot_be_made_is_one_line(tmp_path, monkeypatch, capsys):
    from fastgan.cli import main

    (tmp_path / "file").write_text("in the way")
    monkeypatch.setenv("FASTGAN_CACHE_DIR", str(tmp_path / "file" / "cache"))
    assert main(["data", "validate", "digits"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot create fastgan's cache folder" in err
    assert "point $FASTGAN_CACHE_DIR to a writable folder" in err
