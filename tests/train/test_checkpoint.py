"""Checkpoints: exact round trip, pruning, damaged files skipped, a write killed before its
rename, and RNG streams restored."""
import os
import random
import signal
import subprocess
import sys
import textwrap
import warnings
from collections import OrderedDict

import numpy as np
import pytest
import torch

from fastgan.train.checkpoint import (CheckpointError, list_checkpoints, load_checkpoint,
                                      load_latest, rng_state, save_checkpoint, set_rng_state)


def _state(seed=0):
    g = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.BatchNorm1d(7))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.0, 0.9))
    model(torch.randn(4, 5, generator=g)).square().mean().backward()
    opt.step()
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "k_t": torch.tensor(0.0123, dtype=torch.float64),
        "odd": torch.randn(3, 113, generator=g).to(torch.bfloat16),
        "mask": torch.rand(17, generator=g) > 0.5,
        "nested": {"a": [1, 2.5, "three", None, (4, 5)], "b": {"c": torch.arange(9).view(3, 3)}},
        "config": OrderedDict(model="wgan-gp", lr=1e-4, amp=True),
        "rng": rng_state(),
    }


def _assert_same(a, b, where="state"):
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_round_trip_is_exact(tmp_path):
    state = _state()
    path = save_checkpoint(tmp_path, 42, state)
    assert path == tmp_path / "checkpoints" / "step_000000042.pt"
    _assert_same(state, load_checkpoint(path))


def test_save_file_any_name_same_format_not_rotated(tmp_path, monkeypatch):
    from fastgan.train.checkpoint import save_file
    state = _state()
    save_checkpoint(tmp_path, 1, {"v": 1}, keep=1)
    best = save_file(tmp_path / "best.pt", 7, state)
    assert best == tmp_path / "best.pt"
    _assert_same(state, load_checkpoint(best))
    save_checkpoint(tmp_path, 2, {"v": 2}, keep=1)              # rotation leaves it alone
    assert best.is_file() and [p.name for p in list_checkpoints(tmp_path)] == ["step_000000002.pt"]
    monkeypatch.setattr(os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError("disk gone")))
    with pytest.raises(OSError, match="disk gone"):
        save_file(best, 8, {"v": 8})
    monkeypatch.undo()
    _assert_same(state, load_checkpoint(best))                 # the old file, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "checkpoints"]  # no temporary
    with pytest.raises(ValueError, match="step"):
        save_file(best, -1, {})
    with pytest.raises(TypeError, match="state must be a dict"):
        save_file(best, 1, [1])


def test_list_orders_by_step_and_ignores_other_files(tmp_path):
    for step in (7, 999_999_999, 1_000_000_000):  # by name, the 10-digit step would sort first
        save_checkpoint(tmp_path, step, {"s": step}, keep=10)
    d = tmp_path / "checkpoints"
    (d / ".step_000000099.123.tmp").write_bytes(b"partial")
    (d / "step_12.pt").write_bytes(b"")          # too few digits: not ours
    (d / "notes.txt").write_text("hello")
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "step_000000007.pt", "step_999999999.pt", "step_1000000000.pt"]
    assert list_checkpoints(tmp_path / "nothing-here") == []


def test_keep_prunes_all_but_newest(tmp_path):
    for step in range(1, 6):
        save_checkpoint(tmp_path, step * 10, {"step": step}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_000000040.pt", "step_000000050.pt"]
    save_checkpoint(tmp_path, 60, {}, keep=1)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_000000060.pt"]


@pytest.mark.parametrize("keep", [0, -1, 1.5, None])
def test_bad_keep_is_rejected(tmp_path, keep):
    with pytest.raises(ValueError, match="keep"):
        save_checkpoint(tmp_path, 1, {}, keep=keep)
    assert not (tmp_path / "checkpoints").exists()


def test_bad_step_and_state_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="step"):
        save_checkpoint(tmp_path, -1, {})
    with pytest.raises(TypeError, match="state must be a dict"):
        save_checkpoint(tmp_path, 1, [1, 2])


def test_every_accepted_type_loads_back(tmp_path):
    state = {"set": {1, 2}, "complex": 1 + 2j, "bytes": b"\x00\xff", "bool": False, "big": 2**70,
             "nan": float("nan"), "device": torch.device("cpu"), "dtype": torch.bfloat16,
             "size": torch.Size([2, 3]), "param": torch.nn.Parameter(torch.ones(2)), 7: "int key"}
    loaded = load_checkpoint(save_checkpoint(tmp_path, 1, state))
    nan, param = loaded.pop("nan"), loaded.pop("param")
    assert nan != nan and type(param) is torch.nn.Parameter and torch.equal(param, state.pop("param"))
    state.pop("nan")
    assert loaded == state


@pytest.mark.parametrize("value, kind", [(np.zeros(3), "numpy.ndarray"),
                                         (np.float64(1.0), "numpy.float64"),
                                         (frozenset({1}), "frozenset"),
                                         (os.path, "module")])
def test_state_that_weights_only_load_cannot_read_is_rejected(tmp_path, value, kind):
    with pytest.raises(TypeError, match=rf"state\['cfg'\]\['x'\]\[1\] is a .*{kind}"):
        save_checkpoint(tmp_path, 1, {"cfg": {"x": [0, value]}})
    assert not (tmp_path / "checkpoints").exists()


def test_saving_an_earlier_step_drops_the_abandoned_later_ones(tmp_path):
    for step in (10, 20, 30):
        save_checkpoint(tmp_path, step, {"step": step})
    # Resumed from 10 (say 20 and 30 were damaged) and reached 15.
    save_checkpoint(tmp_path, 15, {"step": 15})
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_000000010.pt", "step_000000015.pt"]
    assert load_latest(tmp_path)[1] == {"step": 15}


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _zero_length(path):
    path.write_bytes(b"")


def _drop_last_byte(path):
    path.write_bytes(path.read_bytes()[:-1])


def _plain_torch_save(path):
    torch.save({"step": 2}, path)


@pytest.mark.parametrize("damage, why", [
    (_truncate, "truncated"),
    (_flip_byte, "checksum mismatch"),
    (_zero_length, "zero length"),
    (_drop_last_byte, "truncated"),
    (_plain_torch_save, "not a fastgan checkpoint"),
])
def test_damaged_newest_is_skipped_with_a_warning(tmp_path, damage, why):
    save_checkpoint(tmp_path, 1, {"w": torch.ones(1000)})
    newest = save_checkpoint(tmp_path, 2, {"w": torch.zeros(1000)})
    damage(newest)

    with pytest.raises(CheckpointError, match=why) as info:
        load_checkpoint(newest)
    assert str(newest) in str(info.value)
    with pytest.warns(UserWarning, match=rf"skipping damaged checkpoint .*step_000000002\.pt: .*{why}"):
        path, state = load_latest(tmp_path)
    assert path.name == "step_000000001.pt" and torch.equal(state["w"], torch.ones(1000))


def test_no_valid_checkpoint(tmp_path):
    assert load_latest(tmp_path) == (None, None)
    save_checkpoint(tmp_path, 1, {})
    _flip_byte(list_checkpoints(tmp_path)[0])
    with pytest.warns(UserWarning, match="skipping damaged checkpoint"):
        assert load_latest(tmp_path) == (None, None)
    with pytest.raises(FileNotFoundError, match="step_000000009.pt"):
        load_checkpoint(tmp_path / "checkpoints" / "step_000000009.pt")
    with pytest.raises(IsADirectoryError, match="is a directory, not a checkpoint file: .*load_latest"):
        load_checkpoint(tmp_path)  # it said "not found" of a directory that exists


def test_failed_rename_leaves_previous_checkpoint_and_no_temporary(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, 1, {"v": 1})

    def replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="disk gone"):
        save_checkpoint(tmp_path, 2, {"v": 2})
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_000000001.pt"]
    assert load_latest(tmp_path)[1] == {"v": 1}


def test_a_full_disk_is_one_clear_oserror(tmp_path, monkeypatch):
    """ENOSPC inside torch.save reached the user as torch's zip writer's RuntimeError
    ('unexpected pos ...', no cause named) and a traceback; it is an OSError that says what
    failed, the temporary gone and the checkpoint before intact."""
    save_checkpoint(tmp_path, 1, {"v": 1})
    fdopen = os.fdopen

    class Full:
        def __init__(self, f):
            self.f, self.n = f, 0

        def write(self, data):
            self.n += len(data)
            if self.n > 300:
                raise OSError(28, "No space left on device")
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: Full(fdopen(fd, mode)))
    with pytest.raises(OSError, match=r"cannot write checkpoint .*step_000000002.pt: No space left on "
                                      r"device; what was saved before is intact") as caught:
        save_checkpoint(tmp_path, 2, {"v": torch.zeros(1000)})
    monkeypatch.undo()
    assert caught.value.errno == 28
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_000000001.pt"]
    assert load_latest(tmp_path)[1] == {"v": 1}


def test_process_killed_between_write_and_rename(tmp_path):
    save_checkpoint(tmp_path, 1, {"v": torch.arange(10)})
    script = textwrap.dedent(f"""
        import os, signal, torch
        from fastgan.train.checkpoint import save_checkpoint
        os.replace = lambda src, dst: os.kill(os.getpid(), signal.SIGKILL)
        save_checkpoint({str(tmp_path)!r}, 2, {{"v": torch.arange(20)}})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)  # not the checkout: import the installed fastgan
    assert proc.returncode == -signal.SIGKILL, proc.stderr

    d = tmp_path / "checkpoints"
    tmps = [p.name for p in d.iterdir() if p.name.endswith(".tmp")]
    assert len(tmps) == 1 and tmps[0].startswith(".step_000000002.")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_000000001.pt"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the leftover temporary is not even worth a warning
        path, state = load_latest(tmp_path)
    assert path.name == "step_000000001.pt" and torch.equal(state["v"], torch.arange(10))

    save_checkpoint(tmp_path, 2, {"v": torch.arange(20)})
    assert sorted(p.name for p in d.iterdir()) == ["step_000000001.pt", "step_000000002.pt"]


def _draws():
    return (random.random(), np.random.standard_normal(3).tolist(), torch.randn(4).tolist())


def test_rng_state_restores_every_stream_through_a_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's state
    save_checkpoint(tmp_path, 1, {"rng": rng_state()})
    expected = _draws()

    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    assert _draws() != expected
    set_rng_state(load_latest(tmp_path)[1]["rng"])
    assert _draws() == expected


def test_set_rng_state_rejects_non_dict():
    with pytest.raises(TypeError, match="rng_state"):
        set_rng_state([1, 2])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the path where no CUDA device is visible")
def test_cuda_states_without_cuda_warn():
    with pytest.warns(UserWarning, match="CUDA RNG states for 2 devices, 0 visible"):
        set_rng_state({"cuda": [torch.zeros(16, dtype=torch.uint8)] * 2})


@pytest.mark.gpu
def test_rng_state_restores_cuda_streams(tmp_path):
    torch.cuda.manual_seed_all(5)
    torch.randn(1, device="cuda")  # CUDA initialized: rng_state() includes every device
    save_checkpoint(tmp_path, 1, {"rng": rng_state()})
    expected = torch.randn(8, device="cuda").cpu()
    torch.cuda.manual_seed_all(6)
    state = load_latest(tmp_path)[1]["rng"]
    assert len(state["cuda"]) == torch.cuda.device_count()
    set_rng_state(state)
    assert torch.equal(torch.randn(8, device="cuda").cpu(), expected)
