"""Run control (fastgan.train.control): one process per run directory, and SIGINT/SIGTERM
stopping a run at a step boundary with a checkpoint whose resume matches an uninterrupted run."""
import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from fastgan import models
from fastgan.train.checkpoint import list_checkpoints
from fastgan.train.control import LOCK_NAME, Interrupted, RunLock, Terminated
from fastgan.train import trainer as trainer_module
from fastgan.train.trainer import Trainer

TINY = {"resolution": 16, "channels": 1, "g_width": 4, "d_width": 4, "z_dim": 8, "batch_size": 8}


def _cfg(run, **settings):
    return {"steps": 6, "out": str(run), "log_every": 1, "sample_every": 100, "ckpt_every": 100,
            "progress": False, "tensorboard": False, "device": "cpu", "data_backend": "cache", **settings}


def _fit(run, cls=Trainer, resume=False, overwrite=False, **settings):
    torch.manual_seed(0)
    return cls(models.build("wgan-gp", **TINY), None, _cfg(run, **settings), resume=resume,
               overwrite=overwrite).fit()


def _losses(history):
    return [{k: v for k, v in row.items() if k != "images_per_s"} for row in history]


@pytest.fixture
def held_by_child(tmp_path):
    """start(run): a child process that holds run's lock until the test ends."""
    children = []

    def start(run):
        code = textwrap.dedent(f"""
            import fcntl, os, sys, time
            fd = os.open({str(run / LOCK_NAME)!r}, os.O_RDWR | os.O_CREAT)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0); os.write(fd, str(os.getpid()).encode())
            print("held", flush=True)
            time.sleep(120)
        """)
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        children.append(child)
        assert child.stdout.readline().strip() == "held"
        return child
    yield start
    for child in children:
        child.kill()
        child.wait()


def test_a_live_run_directory_is_not_resumed_or_overwritten(tmp_path, held_by_child):
    run = tmp_path / "run"
    _fit(run, steps=2, ckpt_every=2)
    before = sorted(p.name for p in run.rglob("*"))
    child = held_by_child(run)
    for kw in (dict(resume=True, steps=4), dict(overwrite=True, steps=2)):
        with pytest.raises(ValueError, match=rf"{run} is in use by another fastgan process \(pid {child.pid}\)"):
            _fit(run, **kw)
    assert sorted(p.name for p in run.rglob("*")) == before  # nothing written, nothing deleted
    child.kill()
    child.wait()
    # the kernel drops a dead process's lock: the lock file left behind does not block
    t = _fit(run, resume=True, steps=4, ckpt_every=2)
    assert t.step == 4 and [p.name for p in list_checkpoints(run)][-1] == "step_000000004.pt"


def test_the_lock_is_held_while_training_and_released_after(tmp_path):
    seen = []

    class Probe(Trainer):
        def train_step(self, measure_norms=False):
            fd = os.open(self.run_dir / LOCK_NAME, os.O_RDONLY)  # a second open file description
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                seen.append("free")
            except BlockingIOError:
                seen.append("held")
            finally:
                os.close(fd)
            return super().train_step(measure_norms)

    run = tmp_path / "run"
    _fit(run, cls=Probe, steps=2)
    assert seen == ["held", "held"]
    assert (run / LOCK_NAME).read_text().strip() == str(os.getpid())
    RunLock.check_free(run)  # released: no error
    assert RunLock(run).acquire().held


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (DataLoader workers are forked)")
def test_a_forked_worker_does_not_keep_a_dead_trainers_lock(tmp_path):
    """A forked child (a DataLoader worker) shared the lock's open file: when the trainer
    died (SIGKILL), the lock stayed held until every worker had exited, and a --resume was
    refused naming the dead pid. The child now closes its copy at the fork; the parent's
    lock is untouched by that."""
    tmp_path.mkdir(exist_ok=True)
    lock = RunLock(tmp_path).acquire()
    read, write = os.pipe()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker (past the fork's handlers): alive until the parent has checked
        try:
            os.close(write)
            os.write(ready_w, b"r")
            os.read(read, 1)
        finally:
            os._exit(0 if not lock.held else 1)
    os.close(read)
    os.close(ready_w)
    assert os.read(ready_r, 1) == b"r"
    os.close(ready_r)
    try:
        with pytest.raises(ValueError, match="is in use by another fastgan process"):
            RunLock.check_free(tmp_path)  # the parent still holds it
        os.close(lock._fd)  # the trainer dies: its descriptor closes, no unlock
        lock._fd = None
        RunLock.check_free(tmp_path)  # free at once, though the worker lives on
    finally:
        os.write(write, b"x")
        os.close(write)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0  # in the child the lock was not held


def test_overwrite_keeps_the_lock_file_and_replaces_the_rest(tmp_path):
    run = tmp_path / "run"
    _fit(run, steps=2, ckpt_every=1)
    _fit(run, overwrite=True, steps=1, ckpt_every=1)
    assert [p.name for p in list_checkpoints(run)] == ["step_000000001.pt"]
    assert (run / LOCK_NAME).is_file()


class _Signalled(Trainer):
    """Sends itself `sig` (once, or twice) in the middle of generator step `at` (counted from 0),
    between its critic steps and its generator step."""
    sig, at, times = signal.SIGTERM, 3, 1

    def _generator_step(self, norms):
        if self.step == self.at:
            for _ in range(self.times):
                os.kill(os.getpid(), self.sig)
        return super()._generator_step(norms)


@pytest.mark.parametrize("sig, exc", [(signal.SIGTERM, Terminated), (signal.SIGINT, Interrupted)],
                         ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_at_the_step_boundary_and_resume_is_exact(tmp_path, sig, exc, capsys):
    whole = _fit(tmp_path / "a" / "run")
    cls = type("Stopped", (_Signalled,), {"sig": sig})
    previous = signal.getsignal(sig)
    with pytest.raises(exc):
        _fit(tmp_path / "b" / "run", cls=cls)
    assert signal.getsignal(sig) is previous  # the handlers are restored
    assert f"{signal.Signals(sig).name} at step 4; saving a checkpoint" in capsys.readouterr().err
    # the signal came inside step 4 (counted from 1): the step finished, then the run stopped
    assert [p.name for p in list_checkpoints(tmp_path / "b" / "run")] == ["step_000000004.pt"]
    resumed = _fit(tmp_path / "b" / "run", resume=True)
    assert _losses(resumed.history) == _losses(whole.history)[4:]
    for p, q in zip(resumed.model.generator.parameters(), whole.model.generator.parameters()):
        assert torch.equal(p, q)


def test_a_signal_on_a_checkpoint_step_writes_that_checkpoint_once(tmp_path, capsys, monkeypatch):
    written = []
    save = trainer_module.ckpt.save_checkpoint
    monkeypatch.setattr(trainer_module.ckpt, "save_checkpoint",
                        lambda run_dir, step, state, **kw: written.append(step) or save(run_dir, step, state, **kw))
    with pytest.raises(Terminated):
        _fit(tmp_path / "run", cls=_Signalled, ckpt_every=2)
    assert written == [2, 4]
    assert "SIGTERM at step 4; its checkpoint is written" in capsys.readouterr().err
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step_000000002.pt", "step_000000004.pt"]


def test_a_second_sigint_stops_at_once_without_saving_a_partial_step(tmp_path, capsys):
    run = tmp_path / "run"
    cls = type("Twice", (_Signalled,), {"sig": signal.SIGINT, "times": 2})
    with pytest.raises(KeyboardInterrupt) as info:
        _fit(run, cls=cls, ckpt_every=2)
    assert type(info.value) is KeyboardInterrupt  # raised by the handler, not a boundary stop
    assert "stopped inside step 4: no checkpoint of a partial step (the newest is step_000000002.pt)" \
        in capsys.readouterr().err
    assert [p.name for p in list_checkpoints(run)] == ["step_000000002.pt"]


def test_a_second_sigint_while_a_log_row_is_written_saves_no_checkpoint_of_that_step(tmp_path, capsys):
    """The step's log row (and the model's on_log, BEGAN's rate control) belongs to the step:
    a second Ctrl-C while it was written saved the step's checkpoint with its log window
    already emptied, so the row was lost for good after a resume."""
    class LogTwice(Trainer):
        def _flush_logs(self, t_start, images):
            if self.step == 3:
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGINT)
            return super()._flush_logs(t_start, images)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        _fit(run, cls=LogTwice, ckpt_every=2)
    assert "stopped while logging step 3: no checkpoint of a partial step (the newest is step_000000002.pt)" \
        in capsys.readouterr().err
    assert [p.name for p in list_checkpoints(run)] == ["step_000000002.pt"]


def test_a_stop_is_saved_before_the_steps_evaluation(tmp_path, capsys, monkeypatch):
    """A SIGTERM waited for the step's evaluation (a 50k-sample FID: minutes) before its
    checkpoint was written, past a scheduler's grace period; the evaluation is skipped now."""
    evaluated = []
    monkeypatch.setattr(Trainer, "evaluate", lambda self: evaluated.append(self.step))
    with pytest.raises(Terminated):
        _fit(tmp_path / "run", cls=_Signalled, eval_every=2, metrics="digits")
    assert evaluated == [2]  # not step 4, where the stop came
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step_000000004.pt"]


def _start_training(run, args, **popen):
    """`fastgan train ... --out run` in a child, once it trains (its run log exists); returns
    the process and what it has written to stderr so far."""
    proc = subprocess.Popen([sys.executable, "-m", "fastgan", "train", *args, "--out", str(run),
                             "--no-progress", "--set", "tensorboard=false"],
                            stderr=subprocess.PIPE, text=True, cwd=run.parent,  # not the checkout:
                            **popen)                                            # the installed package
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("fastgan: training "):
            break
    deadline = time.time() + 120
    while not (run / "metrics.jsonl").is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    return proc, "".join(lines)


def test_cli_sigterm_saves_and_exits_143(tmp_path):
    run = tmp_path / "run"
    proc, err = _start_training(run, ["--model", "wgan-gp", "--data", "ring8", "--steps", "100000",
                                      "--set", "mlp_hidden=8", "--set", "log_every=10"])
    proc.send_signal(signal.SIGTERM)
    err += proc.stderr.read()
    assert proc.wait(timeout=60) == 143, err
    assert "SIGTERM at step" in err and "terminated (SIGTERM)" in err
    (ckpt,) = list_checkpoints(run)
    assert 0 < int(ckpt.stem.split("_")[1]) < 100000


def test_ctrl_c_to_the_process_group_with_decoding_workers(tmp_path):
    # A terminal sends Ctrl-C to every process of the group, the cpu backend's decoding
    # workers included: the trainer finishes the step, saves and exits 130. WGAN's
    # critic_boost runs 100 critic steps per generator step early on, more batches than the
    # workers have prefetched, so the step after the signal needs live workers (one killed by
    # the Ctrl-C would end the run in a "worker exited unexpectedly" error inside the step).
    run = tmp_path / "run"
    proc, err = _start_training(run, ["--model", "wgan", "--steps", "100000", "--data-backend", "cpu",
                                      "--num-workers", "2", "--set", "log_every=1", "--set", "g_width=8",
                                      "--set", "d_width=8", "--set", "critic_boost=true"],
                                start_new_session=True)
    os.killpg(proc.pid, signal.SIGINT)
    err += proc.stderr.read()
    assert proc.wait(timeout=120) == 130, err
    assert "SIGINT at step" in err and "interrupted" in err and "unexpectedly" not in err, err
    (ckpt,) = list_checkpoints(run)
    assert 0 < int(ckpt.stem.split("_")[1]) < 25  # inside the boosted steps


def test_a_filesystem_without_locks_warns_and_trains(tmp_path, monkeypatch):
    def no_locks(fd, op):
        raise OSError(37, "No locks available")
    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.warns(RuntimeWarning, match="cannot lock it"):
        t = _fit(tmp_path / "run", steps=1)
    assert t.step == 1


_DDP_SIGNAL_SCRIPT = textwrap.dedent("""
    import json, os, signal, sys, torch
    from torch import distributed as dist
    from fastgan import models
    from fastgan.train.control import Terminated
    from fastgan.train.trainer import Trainer
    run, out, steps, signalled_rank, resume = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"

    class Signalled(Trainer):
        # one rank alone sends itself SIGTERM inside generator step 3 (counted from 1)
        def _generator_step(self, norms):
            if self.step == 2 and dist.get_rank() == signalled_rank:
                os.kill(os.getpid(), signal.SIGTERM)
            return super()._generator_step(norms)

    torch.manual_seed(0)
    model = models.build("wgan-gp", resolution=16, channels=1, g_width=4, d_width=4, z_dim=8, batch_size=8)
    t = Signalled(model, None, {"steps": steps, "out": run, "log_every": 2, "ckpt_every": 100,
                                "sample_every": 100, "progress": False, "tensorboard": False,
                                "device": "cpu", "data_backend": "cache"}, resume=resume)
    stopped = None
    try:
        t.fit()
    except Terminated as exc:
        stopped = type(exc).__name__
    rank = dist.get_rank()
    out_d = {"rank": rank, "step": t.step, "stopped": stopped, "history": t.history,
             "params": [p.detach().flatten().tolist() for p in model.generator.parameters()]}
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(out_d, f)
    dist.destroy_process_group()
""")


def _ddp(tmp_path, name, steps, signalled_rank=-1, resume=False):
    """The script above under torch.distributed.run with 2 processes over gloo; each rank's
    report {"step", "stopped", "history", "params"}."""
    script, out = tmp_path / "ddp_signal.py", tmp_path / f"out_{name}"
    script.write_text(_DDP_SIGNAL_SCRIPT)
    out.mkdir(exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        "--standalone", str(script), str(tmp_path / name), str(out), str(steps),
                        str(signalled_rank), "1" if resume else "0"],
                       capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    return [json.loads((out / f"rank{i}.json").read_text()) for i in range(2)], r.stderr


def test_a_signal_to_one_of_two_processes_stops_both_at_the_same_log_step(tmp_path):
    # SIGTERM reaches rank 1 alone, inside step 3; log steps are 2, 4, 6. Rank 0 learns of it
    # through the all-reduce at step 4, so both stop after step 4 (none after step 3 alone,
    # which would leave rank 0 waiting in DDP's all-reduce of step 4 forever), rank 0 saves
    # step 4, and resuming both from it reproduces the uninterrupted run.
    whole, _ = _ddp(tmp_path, "whole", 6)
    stopped, err = _ddp(tmp_path, "run", 6, signalled_rank=1)
    assert [(d["step"], d["stopped"]) for d in stopped] == [(4, "Terminated")] * 2, err
    assert "SIGTERM at step 4; saving a checkpoint" in err
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step_000000004.pt"]
    with pytest.raises(ValueError, match=r"saved by a run over 2 process\(es\), this one has 1"):
        _fit(tmp_path / "run", resume=True, log_every=2)  # another world size: refused, not skewed
    resumed, _ = _ddp(tmp_path, "run", 6, resume=True)
    for r, w in zip(resumed, whole):
        assert r["step"] == 6 and r["stopped"] is None
        assert _losses(r["history"]) == _losses(w["history"])[2:]  # the log row of step 6
        assert r["params"] == w["params"]
