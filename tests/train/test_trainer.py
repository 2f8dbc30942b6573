"""The trainer: every model trains a few steps without NaN (fp32 and amp), resume parity for
every model, run-directory safety, EMA, precision, DDP over gloo with 2 processes."""
import json
import math
import os
import re
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

import fastgan
from fastgan import models
from fastgan.train import config as cfgmod
from fastgan.train import trainer as trainer_module
from fastgan.train.checkpoint import list_checkpoints, load_checkpoint
from fastgan.train.trainer import Trainer, load_generator, precision, prepare_run_dir

TINY = {"resolution": 16, "channels": 1, "g_width": 4, "d_width": 4, "z_dim": 8, "batch_size": 8}


# every model with its default arch, and the other image archs
CASES = [(n, None) for n in models.names()] + [("wgan-gp", "resnet")]
CASE_IDS = [n if a is None else f"{n}-{a}" for n, a in CASES]


def _train(tmp_path, name="wgan-gp", resume=False, overwrite=False, arch=None, hyper=None, **settings):
    """hyper: the model's hyperparameters beyond TINY; settings: the trainer's."""
    torch.manual_seed(0)
    model = models.build(name, **TINY, **({} if arch is None else {"arch": arch}), **(hyper or {}))
    cfg = {"steps": 4, "out": str(tmp_path / "run"), "log_every": 1, "sample_every": 2,
           "ckpt_every": 2, "progress": False, "tensorboard": False, "device": "cpu",
           "data_backend": "cache", **settings}
    return Trainer(model, None, cfg, resume=resume, overwrite=overwrite).fit()


def _losses(history):
    return [{k: v for k, v in row.items() if k != "images_per_s"} for row in history]


@pytest.mark.parametrize("name, arch", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("amp", [False, True])
def test_models_train_without_nan(tmp_path, name, arch, amp):
    t = _train(tmp_path, name, amp=amp, arch=arch)
    assert t.step == 4 and [row["step"] for row in t.history] == [1, 2, 3, 4]
    for row in t.history:
        assert all(math.isfinite(v) for v in row.values()), row
    keys = set(t.history[-1])
    assert {"loss/d", "loss/g", "grad_norm/d", "grad_norm/g", "images_per_s"} <= keys
    if name == "wgan-gp":
        assert {"wasserstein", "gp"} <= keys
    run = tmp_path / "run"
    assert [p.name for p in list_checkpoints(run)] == ["step_000000002.pt", "step_000000004.pt"]
    assert (run / "samples" / "step_000000004.png").is_file()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4]
    for p in t.model.generator.parameters():
        assert torch.isfinite(p).all()


def test_n_critic_steps_per_generator_step(tmp_path):
    t = _train(tmp_path, "wgan-gp", steps=2)
    # Adam counts its steps: n_critic = 5 critic steps per generator step (Gulrajani et al. 2017)
    d_state = next(iter(t.opt_d.state.values()))
    g_state = next(iter(t.opt_g.state.values()))
    assert int(d_state["step"]) == 10 and int(g_state["step"]) == 2
    assert t.loader.state_dict()["batch"] == 10 % len(t.loader) or t.loader.epoch > 0


@pytest.mark.parametrize("name, arch", CASES, ids=CASE_IDS)
def test_resume_reproduces_an_uninterrupted_run(tmp_path, name, arch):
    whole = _train(tmp_path / "a", name, steps=6, ckpt_every=3, arch=arch)
    first = _train(tmp_path / "b", name, steps=3, ckpt_every=3, arch=arch)
    assert _losses(first.history) == _losses(whole.history)[:3]
    resumed = _train(tmp_path / "b", name, steps=6, ckpt_every=3, resume=True, arch=arch)
    assert resumed.history[0]["step"] == 4
    assert _losses(resumed.history) == _losses(whole.history)[3:]  # bit-equal losses, step for step
    for a, b in zip(whole.model.generator.state_dict().values(), resumed.model.generator.state_dict().values()):
        assert torch.equal(a, b)
    lines = (tmp_path / "b" / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4, 5, 6]


def test_resume_skips_a_damaged_checkpoint(tmp_path):
    _train(tmp_path, steps=4, ckpt_every=2)
    newest = list_checkpoints(tmp_path / "run")[-1]
    newest.write_bytes(newest.read_bytes()[:100])  # truncated
    with pytest.warns(UserWarning, match="skipping damaged checkpoint"):
        t = _train(tmp_path, steps=4, ckpt_every=2, resume=True)
    assert t.history[0]["step"] == 3 and t.step == 4


def test_checkpoint_holds_everything(tmp_path):
    t = _train(tmp_path, "dcgan", steps=2, ema=0.9)
    state = load_checkpoint(list_checkpoints(tmp_path / "run")[-1])
    assert {"generator", "critic", "opt_g", "opt_d", "scaler", "ema", "extra", "rng", "step",
            "config", "data", "fixed_z"} <= set(state)
    assert state["step"] == 2 and state["config"]["model"] == "dcgan"
    assert state["config"]["lr_g"] == 2e-4 and state["config"]["betas"] == (0.5, 0.999)
    # the EMA moved towards the generator but is not it
    g, ema = t.model.generator.state_dict(), state["ema"]
    key = next(k for k in g if k.endswith("weight"))
    assert not torch.equal(g[key], ema[key])
    gen = load_generator(tmp_path / "run")
    assert torch.equal(gen.state_dict()[key], ema[key]) and not gen.training
    raw = load_generator(tmp_path / "run", ema=False)
    assert torch.equal(raw.state_dict()[key], g[key])
    assert gen(torch.randn(3, gen.z_dim)).shape == (3, 1, 16, 16)


def test_a_run_saved_before_mlp_batchnorm_loads_and_resumes_as_it_ran(tmp_path):
    """A run whose saved config predates the key mlp_batchnorm trained an MLP generator without
    BatchNorm on images: load_generator and `fastgan train --resume` rebuild it that way
    (the key's default would now give that generator BatchNorm, and its weights would not load)."""
    from fastgan.cli import main
    hyper = {"mlp_hidden": 8, "mlp_depth": 2, "mlp_batchnorm": False}
    model = _train(tmp_path, "gan", steps=2, hyper=hyper).model
    run = tmp_path / "run"
    path = run / "config.yaml"
    saved = cfgmod.load_config_file(path)
    assert saved["mlp_batchnorm"] is False
    del saved["mlp_batchnorm"]  # as an older fastgan wrote it
    cfgmod.save_config(saved, path)
    assert "mlp_batchnorm" not in cfgmod.load_config_file(path)
    default = models.build("gan", **TINY, mlp_hidden=8, mlp_depth=2)  # the key's default today
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in default.generator.modules())

    g = load_generator(run)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in g.modules())
    torch.testing.assert_close(g(torch.zeros(2, g.z_dim)), model.generator.eval()(torch.zeros(2, g.z_dim)))
    assert main(["train", "--resume", "--steps", "3", "--out", str(run), "--no-progress"]) == 0
    assert [p.name for p in list_checkpoints(run)][-1] == "step_000000003.pt"
    assert cfgmod.load_config_file(path)["mlp_batchnorm"] is False


def test_a_run_never_overwrites_another(tmp_path):
    _train(tmp_path, steps=1)
    with pytest.raises(ValueError, match="already exists; pass --resume .* or --overwrite"):
        _train(tmp_path, steps=1)
    t = _train(tmp_path, steps=1, overwrite=True)
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step_000000001.pt"]
    assert t.step == 1
    other = tmp_path / "precious"
    other.mkdir()
    (other / "thesis.tex").write_text("x")
    with pytest.raises(ValueError, match="not a fastgan run .* refusing to delete"):
        prepare_run_dir(other, overwrite=True)
    assert (other / "thesis.tex").exists()
    with pytest.raises(FileNotFoundError, match="holds no fastgan run"):
        prepare_run_dir(tmp_path / "nothing", resume=True)


def test_trainer_rejects_bad_settings(tmp_path):
    model = models.build("wgan-gp", **TINY)
    with pytest.raises(ValueError, match="unknown setting.*lr_gg"):
        Trainer(model, None, {"steps": 1, "lr_gg": 1})
    with pytest.raises(ValueError, match="log_every must be a positive integer"):
        Trainer(model, None, {"steps": 1, "log_every": 0})
    with pytest.raises(ValueError, match="ema is a decay"):
        Trainer(model, None, {"steps": 1, "ema": 1.5})
    with pytest.raises(ValueError, match="lr_schedule must be one of constant, linear, got 'cosine'"):
        Trainer(model, None, {"steps": 1, "lr_schedule": "cosine"})
    for settings, message in [
        ({"steps": 0}, "steps must be a positive integer, got 0"),
        ({"steps": 2.5}, "steps must be a positive integer, got 2.5"),
        ({"epochs": -1}, "epochs must be a number > 0, got -1"),
        ({"steps": 1, "amp": "yes"}, "amp must be true or false, got 'yes'"),
        ({"steps": 1, "cuda_graphs": 1}, "cuda_graphs must be true, false or none"),
        ({"steps": 1, "seed": "0"}, "seed must be an integer in -(2**53-1)..2**53-1, got '0'"),
        ({"steps": 1, "seed": 2**62}, "seed must be an integer in -(2**53-1)..2**53-1, got 4611686018427387904"),
        ({"steps": 1, "seed": -2**53}, "seed must be an integer in -(2**53-1)..2**53-1, got -9007199254740992"),
        ({"steps": 1, "eval_num": 0}, "eval_num must be an integer >= 2 (the metrics' statistics need"),
        ({"steps": 1, "eval_num": 1}, "eval_num must be an integer >= 2"),  # passed, then failed in the metrics
        ({"steps": 1, "out": 2024}, "out must be a path (a string), got 2024"),  # a TypeError's traceback
        ({"steps": 1, "data": [1, 2]}, "data must be a path or a dataset name (a string), got [1, 2]"),
        ({"steps": 1, "inception": 5}, "inception must be a path (a string), got 5"),
        ({"steps": 1, "eval_ref": 1.5}, "eval_ref must be a path (a string), got 1.5"),
        ({"steps": 1, "data_backend": "pil"}, "data_backend must be one of auto, dali, nvjpeg, cpu, cache"),
        ({"steps": 1, "metrics": "fid,fod"}, "metrics: unknown metric 'fod'"),
        ({"steps": 1, "device": "tpu"}, "device 'tpu' is not a device name"),
        ({"steps": 1, "device": "cuda:99"}, "device 'cuda:99'"),
        ({"steps": 1, "device": "mps"}, "device 'mps' is not supported: fastgan runs on cpu or cuda"),
        ({"steps": 1, "device": "meta"}, "device 'meta' is not supported: fastgan runs on cpu or cuda"),
        ({"steps": 1, "device": "cpu:1"}, "device 'cpu:1': there is one CPU device; use --device cpu"),
        ({"steps": 1, "ema": None}, "ema is a decay in [0, 1), got None"),
        ({"steps": 1, "ema": "abc"}, "ema is a decay in [0, 1), got 'abc'"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            Trainer(model, None, settings)


def test_a_failed_setup_leaves_no_run_and_keeps_the_one_it_would_overwrite(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _train(tmp_path, steps=1, data=str(tmp_path / "no_such_data"))
    assert not (tmp_path / "run").exists()
    _train(tmp_path, steps=1)
    before = sorted(p.name for p in (tmp_path / "run").iterdir())
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _train(tmp_path, steps=1, overwrite=True, data=str(tmp_path / "no_such_data"))
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == before
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step_000000001.pt"]


def test_precision_choice():
    assert precision(torch.device("cpu"), False) == (None, False)
    assert precision(torch.device("cpu"), True) == (torch.bfloat16, False)  # bf16 on CPU


def test_models_follow_their_papers():
    d = models.build("dcgan")
    assert d.config["lr_g"] == 2e-4 and d.config["betas"] == (0.5, 0.999) and d.config["batch_size"] == 128
    assert d.config["z_dim"] == 100 and d.n_critic == 1
    # 4x4x1024 -> 8x8x512 -> 16x16x256 -> 32x32x128 -> 64x64x3 (Radford et al. 2015, fig. 1)
    convs = [m for m in d.generator.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [m.out_channels for m in convs] == [1024, 512, 256, 128, 3]
    bns = [m for m in d.critic.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 3  # none on the first layer
    w = models.build("wgan-gp")
    assert w.config["lr_d"] == 1e-4 and w.config["betas"] == (0.0, 0.9) and w.n_critic == 5
    assert w.config["gp_weight"] == 10.0 and w.config["batch_size"] == 64
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in w.critic.modules())
    with pytest.raises(ValueError, match="unknown model 'nope'; expected one of gan, dcgan, lsgan"):
        models.build("nope")
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        models.build("dcgan", gp_weight=1.0)
    with pytest.raises(ValueError, match="resolution must be 16, 32, 64 or 128"):
        models.build("dcgan", resolution=48)


def test_fused_and_stock_models_agree():
    torch.manual_seed(0)
    fused = models.build("wgan-gp", **TINY)
    stock = models.build("wgan-gp", **TINY, fused=False)
    stock.generator.load_state_dict(fused.generator.state_dict())
    # the fused critic keeps each bias in its BiasLeakyReLU (layer k), the stock one in the conv (k - 1)
    acts = {str(i) for i, m in enumerate(fused.critic) if isinstance(m, fastgan.nn.BiasLeakyReLU)}
    renamed = {(f"{int(k.split('.')[0]) - 1}.bias" if k.split(".")[0] in acts else k): v
               for k, v in fused.critic.state_dict().items()}
    stock.critic.load_state_dict(renamed)
    z = torch.randn(8, 8)
    real = torch.rand(8, 1, 16, 16) * 2 - 1
    torch.testing.assert_close(fused.generator(z), stock.generator(z))
    fake = fused.generator(z).detach()
    torch.manual_seed(1)
    lf, _ = fused.critic_loss(fused.critic, real, fake)
    torch.manual_seed(1)
    ls, _ = stock.critic_loss(stock.critic, real, fake)
    torch.testing.assert_close(lf, ls, rtol=1e-5, atol=1e-5)


def test_config_layers():
    c = cfgmod.resolve("wgan-gp")
    assert c["resolution"] == 16 and c["channels"] == 1 and c["steps"] == 5000  # the digits defaults
    c = cfgmod.resolve("wgan-gp", {"data": "/celeba"})
    assert c["resolution"] == 64 and c["channels"] == 3 and c["g_width"] == 64
    c = cfgmod.resolve("wgan-gp", {"lr_d": 3e-4}, {"lr_d": 5e-4, "epochs": 2})
    assert c["lr_d"] == 5e-4 and c["epochs"] == 2 and c["steps"] is None
    # a resumed run's saved length yields to a new one in either unit
    c = cfgmod.resolve("wgan-gp", {"steps": 100, "epochs": None}, {"epochs": 3})
    assert c["epochs"] == 3 and c["steps"] is None
    with pytest.raises(ValueError, match="steps or epochs, not both"):
        cfgmod.resolve("wgan-gp", {"steps": 100, "epochs": 3})
    assert cfgmod.parse_set(["betas=[0, 0.99]", "amp=true", "out=runs/x", "ema=none"]) == {
        "betas": [0, 0.99], "amp": True, "out": "runs/x", "ema": None}
    with pytest.raises(ValueError, match="expected key=value"):
        cfgmod.parse_set(["lr_d"])
    with pytest.raises(ValueError, match="unknown setting"):
        cfgmod.resolve("dcgan", {"gp_weight": 1})
    # a path keeps its text (the folder 2024, not the number; a TypeError's traceback before)
    assert cfgmod.parse_set(["out=2024", "data=[1, 2]", "inception=none", "eval_ref= 3.npz "]) == {
        "out": "2024", "data": "[1, 2]", "inception": None, "eval_ref": "3.npz"}
    with pytest.raises(ValueError, match=r"^data must be a path or a dataset name \(a string\), got \[1, 2\]"):
        cfgmod.resolve("dcgan", {"data": [1, 2]})  # from a config file


def test_config_files(tmp_path):
    (tmp_path / "a.yaml").write_text("model:\n  lr_d: 0.001\n  betas: [0.5, 0.9]\ntrain:\n  ema: 0.999\n")
    (tmp_path / "b.toml").write_text("lr_g = 0.002\n[train]\nseed = 3\n")
    assert cfgmod.load_config_file(tmp_path / "a.yaml") == {"lr_d": 0.001, "betas": (0.5, 0.9), "ema": 0.999}
    assert cfgmod.load_config_file(tmp_path / "b.toml") == {"lr_g": 0.002, "seed": 3}
    with pytest.raises(ValueError, match="expected a .yaml, .yml or .toml"):
        (tmp_path / "c.json").write_text("{}")
        cfgmod.load_config_file(tmp_path / "c.json")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cfgmod.load_config_file(tmp_path / "missing.yaml")


def test_public_api():
    assert fastgan.Trainer is Trainer and fastgan.load_generator is load_generator
    assert fastgan.models.build is models.build


_DDP_SCRIPT = textwrap.dedent("""
    import json, os, sys, torch
    from torch import distributed as dist
    from fastgan import models
    from fastgan.train.trainer import Trainer
    torch.manual_seed(0)
    model = models.build("wgan-gp", resolution=16, channels=1, g_width=4, d_width=4, z_dim=8, batch_size=8)
    t = Trainer(model, None, {"steps": 3, "out": sys.argv[1], "log_every": 1, "progress": False,
                              "tensorboard": False, "device": "cpu", "data_backend": "cache"}).fit()
    flat = torch.cat([p.detach().flatten() for p in model.critic.parameters()]
                     + [p.detach().flatten() for p in model.generator.parameters()])
    both = [torch.zeros_like(flat) for _ in range(2)]
    dist.all_gather(both, flat)
    rank = dist.get_rank()
    out = {"rank": rank, "world": t.world, "same": bool(torch.equal(both[0], both[1])),
           "samples": t.loader.num_samples, "batch": t.loader.batch_size, "steps": t.step}
    with open(os.path.join(sys.argv[2], f"rank{rank}.json"), "w") as f:
        json.dump(out, f)
    dist.destroy_process_group()
""")


def test_two_process_gloo_run(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(_DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        "--standalone", str(script), str(tmp_path / "run"), str(tmp_path)],
                       capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in range(2)]
    for d in ranks:
        assert d["world"] == 2 and d["steps"] == 3 and d["same"]  # DDP kept the replicas equal
        assert d["batch"] == 4  # the global batch of 8 split over 2 processes
    assert ranks[0]["samples"] + ranks[1]["samples"] <= 1797
    # rank 0 alone logs and checkpoints
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step_000000003.pt"]
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 3


_FAILING_RANK0_SCRIPT = textwrap.dedent("""
    import os, sys, torch
    from fastgan import models
    from fastgan.train import trainer
    run, where = sys.argv[1], sys.argv[2]
    if where == "checkpoint" and os.environ["RANK"] == "0":
        def full_disk(*args, **kwargs):
            raise OSError(28, "No space left on device")
        trainer.ckpt.save_checkpoint = full_disk
    if where == "log" and os.environ["RANK"] == "0":
        from fastgan.train.logging import RunLogger
        def full_disk(*args, **kwargs):
            raise OSError(28, "No space left on device")
        RunLogger.scalars = full_disk
    model = models.build("wgan-gp", resolution=16, channels=1, g_width=4, d_width=4, z_dim=8, batch_size=8)
    try:
        trainer.Trainer(model, None, {"steps": 4, "out": run, "ckpt_every": 2, "progress": False,
                                      "tensorboard": False, "device": "cpu", "data_backend": "cache"}).fit()
    finally:  # gloo may abort a process that exits with its group alive after its peer left
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
""")


@pytest.mark.parametrize("where, theirs, failed", [
    ("run-dir", "ValueError", "checking its run directory"),
    ("checkpoint", "OSError", "writing the checkpoint of step 2"),
    ("log", "OSError", "writing the log of step 4")])
def test_an_error_on_process_0_alone_stops_the_others(tmp_path, where, theirs, failed):
    # two processes started as srun would (no torchrun to end the others when one fails).
    # Rank 0 alone checks and writes the run directory; when that fails, rank 1 must stop
    # with an error that says so. Before, it went on to its next collective: over gloo that
    # failed with "Connection closed by peer", over NCCL it would wait for DIST_TIMEOUT (1 h)
    run = tmp_path / "run"
    if where == "run-dir":
        run.mkdir()
        (run / "someone_elses.txt").write_text("x")
    script = tmp_path / "fail.py"
    script.write_text(_FAILING_RANK0_SCRIPT)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank)}
        procs.append(subprocess.Popen([sys.executable, str(script), str(run), where], env=env, cwd=tmp_path,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    errs = []
    try:
        for proc in procs:
            errs.append(proc.communicate(timeout=240)[1])
    finally:
        for proc in procs:
            proc.kill()
    assert [proc.returncode for proc in procs] == [1, 1], errs
    last = [re.sub(r"^\[rank\d\]: ", "", err.rstrip().splitlines()[-1]) for err in errs]  # torch's prefix
    assert last[0].startswith(f"{theirs}:"), errs[0][-2000:]
    assert last[1] == (f"RuntimeError: process 0 failed {failed} (its error is in its output); "
                       "process 1 stops too"), errs[1][-2000:]
    if where == "run-dir":
        assert (run / "someone_elses.txt").is_file()
    elif where == "checkpoint":
        assert not list_checkpoints(run)


def _bare_trainer(monkeypatch, world, rank, local, device):
    """A Trainer with only what _setup_distributed and _setup_data read, as process `rank`
    of `world` under torchrun (its environment); the process group stands initialized."""
    for key, value in (("WORLD_SIZE", world), ("RANK", rank), ("LOCAL_RANK", local)):
        monkeypatch.setenv(key, str(value))
    monkeypatch.setattr(trainer_module.dist, "is_initialized", lambda: True)
    t = Trainer.__new__(Trainer)
    t.cfg = {**cfgmod.TRAIN_DEFAULTS, "device": device, "steps": 4}
    t.resume = False
    return t


@pytest.mark.parametrize("device, want", [("cuda", "cuda:1"), (None, "cuda:1"), ("cuda:1", "cuda:1"),
                                          ("cuda:0", "LOCAL_RANK is 1")])
def test_each_process_takes_its_own_gpu(monkeypatch, device, want):
    """Under torchrun, device 'cuda' is the process's cuda:LOCAL_RANK: it was the current
    device, GPU 0 in every process (NCCL refuses a GPU twice). Another index is refused."""
    monkeypatch.setattr(trainer_module, "check_device", lambda d, where: d)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: None)
    t = _bare_trainer(monkeypatch, world=2, rank=1, local=1, device=device)
    if want.startswith("cuda"):
        t._setup_distributed()
        assert t.device == torch.device(want) and t.world == 2 and not t.main
    else:
        with pytest.raises(ValueError, match=f"device cuda:0 in process 1 of 2, whose {want}"):
            t._setup_distributed()


def test_sync_bn_off_cuda_is_refused_in_fastgans_words(monkeypatch):
    t = _bare_trainer(monkeypatch, world=2, rank=0, local=0, device="cpu")
    t.cfg["sync_bn"] = True
    with pytest.raises(ValueError, match="sync_bn needs CUDA devices .*device is cpu"):
        t._setup_distributed()


def test_a_loader_passed_in_must_be_the_processs_shard(monkeypatch):
    """A loader passed to the Trainer under several processes was used as it was: every
    process trained on the same batches at the whole batch size. It must be the process's
    shard with its share of the batch."""
    from fastgan.data import toy
    t = _bare_trainer(monkeypatch, world=2, rank=1, local=1, device="cpu")
    t._setup_distributed()
    t.model = models.build("gan", arch="mlp", resolution=1, channels=2, z_dim=2, batch_size=8)
    t.loader = toy.ToyLoader("ring8", batch_size=8, device="cpu")
    with pytest.raises(ValueError, match=r"process 1's shard with batch_size 8 // 2: .*shard=\(1, 2\)\); "
                                         r"it has rank=0, world_size=1, batch_size=8"):
        t._setup_data()
    t.loader = toy.ToyLoader("ring8", batch_size=4, device="cpu", shard=(1, 2))
    t._setup_data()
    assert t.loader.batch_size == 4 and t.total == 4


def test_a_loader_without_a_state_is_refused_before_training(tmp_path):
    """A torch DataLoader passed in trained until its first checkpoint (ckpt_every steps, or
    a Ctrl-C) and failed there: checkpoints keep the loader's position."""
    images = torch.zeros(16, 1, 16, 16)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, torch.zeros(16)), batch_size=8)
    model = models.build("dcgan", **TINY)
    cfg = {"steps": 2, "out": str(tmp_path / "run"), "progress": False, "tensorboard": False, "device": "cpu"}
    with pytest.raises(ValueError, match=r"the loader \(DataLoader\) has no state_dict:"):
        Trainer(model, loader, cfg).fit()
    assert not (tmp_path / "run").exists()

    class Saves:  # saves its position, cannot be put back: enough for a run, not for a resume
        def __init__(self):
            self.batch_size = 8
        def __len__(self):
            return 2
        def __iter__(self):
            return iter([(images[:8], None), (images[8:], None)])
        def state_dict(self):
            return {}
    Trainer(models.build("dcgan", **TINY), Saves(), cfg).fit()
    with pytest.raises(ValueError, match=r"the loader \(Saves\) has no load_state_dict:"):
        Trainer(models.build("dcgan", **TINY), Saves(), {**cfg, "steps": 3}, resume=True).fit()


def test_epochs_count_the_critic_steps_of_wgans_boost(monkeypatch):
    """--epochs counts the critic's passes over the data: WGAN's critic_boost runs 100 critic
    steps in each of the first 25 generator steps (and every 500th), which the length in
    epochs ignored (one epoch of 30 batches took 6 steps: 600 critic batches, 20 epochs)."""
    from fastgan.data import toy
    for boost in (False, True):
        t = _bare_trainer(monkeypatch, world=1, rank=0, local=0, device="cpu")
        t.cfg.update(steps=None)
        t._setup_distributed()
        t.model = models.build("wgan", arch="mlp", resolution=1, channels=2, z_dim=2, batch_size=8,
                               critic_boost=boost)
        t.loader = toy.ToyLoader("ring8", batch_size=8, device="cpu")
        for epochs in (0.01, 1, 2):
            t.cfg["epochs"] = epochs
            t._setup_data()
            need = epochs * len(t.loader)
            # the fewest generator steps whose critic steps make the passes
            assert sum(t.model.critic_steps(s) for s in range(t.total)) >= need, (boost, epochs)
            assert sum(t.model.critic_steps(s) for s in range(t.total - 1)) < need, (boost, epochs)
            if not boost:
                assert t.total == math.ceil(need / 5)


def test_ema_is_the_decayed_average_of_the_generators_weights(tmp_path):
    """EMA after one step: ema * d + g * (1 - d), the generator's weights before the step
    weighted d (0.9 here: a swapped decay, g * d + ema * (1 - d), passed every test)."""
    torch.manual_seed(0)
    before = [p.detach().clone() for p in models.build("gan", **TINY, arch="mlp").generator.parameters()]
    t = _train(tmp_path, "gan", arch="mlp", steps=1, ema=0.9)
    after = list(t.model.generator.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(after, before))  # the step moved the generator
    for e, b, a in zip(t.ema.parameters(), before, after):
        torch.testing.assert_close(e, 0.9 * b + 0.1 * a.detach(), rtol=1e-6, atol=1e-7)


def test_the_logged_gradient_norm_is_the_global_l2_norm(tmp_path):
    """grad_norm/g of a log step: the L2 norm of all the generator's gradients together (the
    gradients stay on the parameters after the run's last step)."""
    t = _train(tmp_path, "gan", arch="mlp", steps=2)
    grads = torch.cat([p.grad.flatten() for p in t.model.generator.parameters() if p.grad is not None])
    assert math.isclose(t.history[-1]["grad_norm/g"], float(torch.linalg.vector_norm(grads)), rel_tol=1e-5)


def test_ema_of_a_generator_without_buffers(tmp_path):
    # an MLP generator without BatchNorm: EMA averages its parameters and has no buffers to copy
    t = _train(tmp_path, "gan", arch="mlp", steps=2, ema=0.5, hyper={"mlp_batchnorm": False})
    assert not list(t.model.generator.buffers())
    for e, g in zip(t.ema.parameters(), t.model.generator.parameters()):
        assert torch.isfinite(e).all() and not torch.equal(e, g)  # averaged, not copied


class _LrRecorder(Trainer):
    """Records both optimizers' learning rates as each generator step starts."""

    def _schedule_lr(self):
        super()._schedule_lr()
        self.lrs = getattr(self, "lrs", [])
        self.lrs.append([float(g["lr"]) for opt in (self.opt_g, self.opt_d) for g in opt.param_groups])


@pytest.mark.parametrize("name", ["wgan-gp", "wgan"])  # Adam; RMSprop with the fused clip
@pytest.mark.parametrize("schedule", ["constant", "linear"])
def test_lr_schedule(tmp_path, name, schedule):
    model = models.build(name, **TINY)
    base = [model.config["lr_g"], model.config["lr_d"]]
    cfg = {"steps": 4, "out": str(tmp_path / "run"), "progress": False, "tensorboard": False,
           "device": "cpu", "data_backend": "cache", "lr_schedule": schedule}
    t = _LrRecorder(model, None, cfg).fit()
    factors = [1 - s / 4 for s in range(4)] if schedule == "linear" else [1.0] * 4
    assert t.lrs == [[pytest.approx(b * f, rel=1e-12) for b in base] for f in factors]
    if schedule == "linear":  # the base rides in the optimizer's state (and so in checkpoints)
        assert [g["initial_lr"] for opt in (t.opt_g, t.opt_d) for g in opt.param_groups] == base
        state = load_checkpoint(list_checkpoints(tmp_path / "run")[-1])
        assert state["opt_d"]["param_groups"][0]["initial_lr"] == base[1]


class _Interrupted(Trainer):
    """Ctrl-C as generator step `at` starts."""
    at = 3

    def train_step(self, measure_norms=False):
        if self.step == self.at:
            raise KeyboardInterrupt
        return super().train_step(measure_norms)


def test_linear_lr_schedule_resumes_exactly(tmp_path):
    # the schedule runs over the configured steps: the interrupted run was a 6-step run
    whole = _train(tmp_path / "a", "wgan", steps=6, ckpt_every=10, lr_schedule="linear")
    torch.manual_seed(0)
    cfg = {"steps": 6, "out": str(tmp_path / "b" / "run"), "log_every": 1, "ckpt_every": 10,
           "progress": False, "tensorboard": False, "device": "cpu", "data_backend": "cache",
           "lr_schedule": "linear"}
    with pytest.raises(KeyboardInterrupt):
        _Interrupted(models.build("wgan", **TINY), None, cfg).fit()
    resumed = _train(tmp_path / "b", "wgan", steps=6, ckpt_every=10, resume=True, lr_schedule="linear")
    assert _losses(resumed.history) == _losses(whole.history)[3:]
    assert resumed.opt_d.param_groups[0]["lr"] == whole.opt_d.param_groups[0]["lr"] == pytest.approx(5e-5 / 6)


def test_began_halving_scales_the_linear_schedule(tmp_path):
    model = models.build("began", **TINY, lr_patience=10)
    cfg = {"steps": 4, "out": str(tmp_path / "run"), "progress": False, "tensorboard": False,
           "device": "cpu", "data_backend": "cache", "lr_schedule": "linear"}
    t = Trainer(model, None, cfg)
    t._setup()
    t._schedule_lr()                      # step 0: the base is the paper's 1e-4
    model.on_log(1, {"convergence": 1.0})
    model.on_log(11, {"convergence": 1.0})  # no 1% improvement in lr_patience steps: halve
    t.step = 2
    t._schedule_lr()
    for opt in (t.opt_g, t.opt_d):
        assert opt.param_groups[0]["initial_lr"] == pytest.approx(5e-5)
        assert opt.param_groups[0]["lr"] == pytest.approx(5e-5 * (1 - 2 / 4))


def test_overwrite_deletes_only_a_directory_a_run_wrote(tmp_path):
    # a project folder with a config.yaml of its own is not a run
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "config.yaml").write_text("name: my project\n")
    (project / "src" / "main.py").write_text("print(1)\n")
    with pytest.raises(ValueError, match=r"names no fastgan model \(model: None\)\); refusing to delete"):
        _train(tmp_path, steps=1, out=str(project), overwrite=True)
    # a run with something else beside it: refused, naming what
    _train(tmp_path, steps=1)
    run = tmp_path / "run"
    (run / "notes.txt").write_text("mine\n")
    with pytest.raises(ValueError, match=r"also holds notes.txt, which a run does not write"):
        _train(tmp_path, steps=1, overwrite=True)
    assert (project / "src" / "main.py").is_file() and (run / "notes.txt").is_file()
    (run / "notes.txt").unlink()
    # the temporaries of writes a killed run left are the run's own (they blocked --overwrite)
    (run / ".notes.txt.k2j3.tmp").write_text("x")
    with pytest.raises(ValueError, match=r"also holds .notes.txt.k2j3.tmp, which a run does not write"):
        _train(tmp_path, steps=1, overwrite=True)
    (run / ".notes.txt.k2j3.tmp").unlink()
    for name in (".best.pt.k2j3h.tmp", ".metrics.jsonl.x1.tmp", ".best.json.q9.tmp"):
        (run / name).write_text("cut short")
    assert _train(tmp_path, steps=1, overwrite=True).step == 1
    assert not list(run.glob(".*.tmp"))


def test_resume_refuses_other_settings_before_writing_anything(tmp_path):
    _train(tmp_path, steps=2, seed=0)
    run = tmp_path / "run"
    config = (run / "config.yaml").read_text()
    for settings, hyper, what in [({"seed": 3}, {}, "seed: 0 in the run, 3 now"),
                                  ({}, {"z_dim": 4}, "z_dim: 8 in the run, 4 now"),
                                  ({"ema": 0.5}, {}, "ema: 0.0 in the run, 0.5 now"),
                                  ({"data": "ring8"}, {}, "data: None in the run, 'ring8' now")]:
        torch.manual_seed(0)
        model = models.build("wgan-gp", **{**TINY, **hyper})
        cfg = {"steps": 4, "out": str(run), "progress": False, "tensorboard": False, "device": "cpu",
               "data_backend": "cache", "log_every": 1, "sample_every": 2, "ckpt_every": 2, "seed": 0,
               **settings}
        with pytest.raises(ValueError, match=re.escape(what) + ".*a resume may change only .* and a data "
                           r"path \(for a dataset that moved\)\. Start a new run"):
            Trainer(model, None, cfg, resume=True).fit()
        assert (run / "config.yaml").read_text() == config  # untouched: the run still resumes
    t = _train(tmp_path, steps=4, resume=True, log_every=2, num_workers=0)  # allowed changes
    assert t.step == 4


def test_resume_never_starts_over_when_checkpoints_do_not_load(tmp_path, capsys):
    _train(tmp_path, steps=4, ckpt_every=2)
    run = tmp_path / "run"
    for path in list_checkpoints(run):
        path.write_bytes(path.read_bytes()[:100])  # every one damaged
    lines = (run / "metrics.jsonl").read_text()
    with pytest.warns(UserWarning, match="skipping damaged"):
        with pytest.raises(ValueError, match=r"none of the 2 checkpoint\(s\) .* loads"):
            _train(tmp_path, steps=4, ckpt_every=2, resume=True)
    assert len(list_checkpoints(run)) == 2 and (run / "metrics.jsonl").read_text() == lines


def test_resume_refuses_to_skip_a_checkpoint_of_another_version(tmp_path, monkeypatch):
    from fastgan.train import checkpoint as ckpt
    _train(tmp_path, steps=4, ckpt_every=2)
    newest = list_checkpoints(tmp_path / "run")[-1]
    state = load_checkpoint(newest)
    monkeypatch.setattr(ckpt, "VERSION", 2)  # as a newer fastgan writes it
    ckpt.save_file(newest, 4, state)
    monkeypatch.undo()
    with pytest.warns(UserWarning, match="unsupported version 2"):
        with pytest.raises(ValueError, match=r"step_000000004.pt is intact but unsupported version 2"):
            _train(tmp_path, steps=6, ckpt_every=2, resume=True)
    assert newest.is_file()  # not deleted by a resume from step 2


def test_resume_refuses_to_skip_a_checkpoint_it_cannot_open(tmp_path, monkeypatch):
    """A checkpoint the file system will not give (permissions, an I/O error) may be intact:
    it was skipped as damaged, and the resume's first save replaced it (found by a review,
    2026-11-24). A resume now refuses; one removed meanwhile is still skipped."""
    from fastgan.train import checkpoint as ckpt
    _train(tmp_path, steps=4, ckpt_every=2)
    newest = list_checkpoints(tmp_path / "run")[-1]
    before, load = newest.read_bytes(), ckpt.load_checkpoint

    def failing(exc):  # load_checkpoint, but `exc` for the newest checkpoint
        def fake(path, **kw):
            if path == newest:
                raise exc
            return load(path, **kw)
        return fake
    monkeypatch.setattr(ckpt, "load_checkpoint", failing(PermissionError(13, "Permission denied", str(newest))))
    with pytest.warns(UserWarning, match="skipping checkpoint .*step_000000004.pt: cannot be opened"):
        with pytest.raises(ValueError, match=r"step_000000004.pt cannot be opened: PermissionError.*"
                                             r"nothing was changed"):
            _train(tmp_path, steps=6, ckpt_every=2, resume=True)
    assert newest.read_bytes() == before
    monkeypatch.setattr(ckpt, "load_checkpoint", failing(FileNotFoundError(2, "No such file", str(newest))))
    with pytest.warns(UserWarning, match="skipping checkpoint .*step_000000004.pt: removed meanwhile"):
        t = _train(tmp_path, steps=4, ckpt_every=2, resume=True)
    assert t.history[0]["step"] == 3


def test_the_first_log_row_after_a_resume_averages_the_whole_window(tmp_path):
    # a checkpoint inside a log window (Ctrl-C after step 4 of the window 4-6) carries the
    # window's sums (a run that ends logs its last step, so the stop must come first)
    whole = _train(tmp_path / "a", steps=6, log_every=3, ckpt_every=100)
    torch.manual_seed(0)
    model = models.build("wgan-gp", **TINY)
    cfg = {"steps": 6, "out": str(tmp_path / "b" / "run"), "log_every": 3, "ckpt_every": 100,
           "progress": False, "tensorboard": False, "device": "cpu", "data_backend": "cache"}
    with pytest.raises(KeyboardInterrupt):
        type("At4", (_Interrupted,), {"at": 4})(model, None, cfg).fit()
    assert [p.name for p in list_checkpoints(tmp_path / "b" / "run")] == ["step_000000004.pt"]
    resumed = _train(tmp_path / "b", steps=6, log_every=3, ckpt_every=100, resume=True)
    assert [r["step"] for r in resumed.history] == [6]
    assert _losses(resumed.history) == _losses(whole.history)[1:]


def test_a_runs_files_have_the_modes_the_umask_gives(tmp_path):
    # checkpoints and sample grids are written to private temporaries (mkstemp: 0600) and
    # renamed: they must end up as open() would have made them, readable by the group here
    old = os.umask(0o027)
    try:
        _train(tmp_path, "dcgan", steps=2)
    finally:
        os.umask(old)
    run = tmp_path / "run"
    kinds = {p.suffix for p in run.rglob("*") if p.is_file()}
    assert {".pt", ".png", ".yaml"} <= kinds
    modes = {str(p.relative_to(run)): oct(p.stat().st_mode & 0o777) for p in run.rglob("*")}
    assert modes == {name: oct(0o750 if (run / name).is_dir() else 0o640) for name in modes}


def test_model_hyperparameters_in_the_trainer_config_must_match_the_model(tmp_path):
    model = models.build("wgan-gp", **TINY)
    with pytest.raises(ValueError, match=r"z_dim=3 differ\(s\) from the model's \(z_dim=8\).*models.build"):
        Trainer(model, None, {"steps": 1, "z_dim": 3})
    Trainer(model, None, {"steps": 1, "z_dim": 8, "betas": list(model.config["betas"])})  # the same: fine
    with pytest.raises(ValueError, match="log_every must be a positive integer, got True"):
        Trainer(model, None, {"steps": 1, "log_every": True})


def test_a_missing_eval_ref_fails_before_the_run_starts(tmp_path):
    with pytest.raises(FileNotFoundError, match="reference data .*missing does not exist"):
        _train(tmp_path, "dcgan", steps=2, eval_every=1, metrics="digits,fid",
               eval_ref=str(tmp_path / "missing"))
    assert not (tmp_path / "run").exists()


def test_an_eval_ref_file_of_other_images_fails_before_the_run_starts(tmp_path):
    # reference statistics of 8 px images for a 16 px run: refused as the trainer sets up,
    # not at the first evaluation, and no run directory is made
    from fastgan.metrics import evaluate
    from fastgan.metrics.inception import random_inception
    net = random_inception(seed=0)
    torch.save(net.state_dict(), tmp_path / "inception.pth")
    ref = evaluate.reference_stats("digits", net, resolution=8, channels=1, num=2, batch_size=2,
                                   cache_root=tmp_path / "cache", progress=False, verbose=False)["path"]
    with pytest.raises(ValueError, match="holds statistics of images at resolution=8; the images scored "
                                         "are at resolution=16"), \
            pytest.warns(UserWarning, match="are not the standard pt_inception"):  # random weights
        _train(tmp_path, "dcgan", steps=2, eval_every=1, metrics="fid", eval_ref=ref,
               inception=str(tmp_path / "inception.pth"))
    assert not (tmp_path / "run").exists()


def test_cli_resume_finds_the_run_named_in_the_config_file(tmp_path, monkeypatch, capsys):
    from fastgan.cli import main
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text("model: gan\ndata: ring8\nout: cfgrun\nsteps: 2\nmlp_hidden: 8\n"
                                     "tensorboard: false\n")
    assert main(["train", "--config", "c.yaml", "--no-progress"]) == 0
    assert main(["train", "--config", "c.yaml", "--resume", "--steps", "3", "--no-progress"]) == 0
    assert [p.name for p in list_checkpoints(tmp_path / "cfgrun")][-1] == "step_000000003.pt"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.yaml").write_text("name: a project\n")
    assert main(["train", "--resume", "--out", "other"]) == 2
    assert "other/config.yaml is not a fastgan run's config: it names no fastgan model (model: None)" in capsys.readouterr().err


def test_evaluation_settings_without_eval_every_are_reported(tmp_path, capsys):
    _train(tmp_path, steps=1, metrics="digits", eval_num=100)
    assert "metrics, eval_num set but eval_every is 0: this run scores nothing" in capsys.readouterr().err


def test_evaluations_draw_nothing_from_the_runs_rng(tmp_path, monkeypatch):
    """The digit classifier built at a process's first evaluation drew its initial weights
    from the global RNG: a resumed run (whose first evaluation comes later) drifted from the
    uninterrupted one, and a fresh run trained differently with the classifier's cache file
    than without. A run with evaluations now trains as one without them. (The first run
    with evaluations trains the classifier and writes its cache, the next two load it.)"""
    from fastgan.metrics import digits
    monkeypatch.setattr(digits, "_cache_file", lambda root: tmp_path / "cache" / digits.CACHE_NAME)
    plain = _train(tmp_path / "plain", "dcgan", steps=6, ckpt_every=3)
    whole = _train(tmp_path / "a", "dcgan", steps=6, ckpt_every=3, eval_every=2, metrics="digits", eval_num=64)
    assert _losses(whole.history) == _losses(plain.history)
    _train(tmp_path / "b", "dcgan", steps=3, ckpt_every=3, eval_every=2, metrics="digits", eval_num=64)
    resumed = _train(tmp_path / "b", "dcgan", steps=6, ckpt_every=3, eval_every=2, metrics="digits",
                     eval_num=64, resume=True)
    assert _losses(resumed.history) == _losses(whole.history)[3:]


def test_resume_keeps_a_best_evaluation_past_its_checkpoint(tmp_path):
    # best.pt/best.json written at step 4, then a crash before the step-4 checkpoint: the
    # resumed run ranks new evaluations against that best, not the checkpoint's older one
    _train(tmp_path, "dcgan", steps=4, ckpt_every=2, eval_every=4, metrics="digits", eval_num=64)
    run = tmp_path / "run"
    assert json.loads((run / "best.json").read_text())["step"] == 4
    list_checkpoints(run)[-1].unlink()  # the crash
    t = _train(tmp_path, "dcgan", steps=3, ckpt_every=2, resume=True, metrics="digits", eval_num=64)
    assert t.best["step"] == 4 and (run / "best.pt").is_file()


@pytest.mark.parametrize("name, text, message", [
    ("bad.yaml", "lr_g: [1\n", "not valid YAML (line 2, column 1)"),
    ("tab.yaml", "steps: 1\n\tlr_g: 2\n", "not valid YAML (line 2, column 1)"),
    ("bad.toml", "lr_g = [\n", "not valid TOML"),
    ("bytes.yaml", b"\xff\xfe", "not UTF-8 text"),
])
def test_a_config_file_that_does_not_parse_is_named_without_a_traceback(tmp_path, monkeypatch, capsys,
                                                                          name, text, message):
    from fastgan.cli import main
    monkeypatch.chdir(tmp_path)
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert main(["train", "--model", "gan", "--config", name, "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert f"config file {name}: {message}" in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["sample", "eval"])
def test_sample_and_eval_name_a_run_dir_that_is_not_a_run(tmp_path, monkeypatch, capsys, command):
    # its config names no model: said so, not "has no valid checkpoint"
    from fastgan.cli import main
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.yaml").write_text("model: foo\n")
    assert main([command, "--run", "a"]) == 2
    assert "a/config.yaml is not a fastgan run's config: it names no fastgan model (model: 'foo')" \
        in capsys.readouterr().err
    # a config that does not parse: said so, never a traceback
    (tmp_path / "a" / "config.yaml").write_text("model: [1\n")
    assert main([command, "--run", "a"]) == 2
    err = capsys.readouterr().err
    assert "a/config.yaml is not a fastgan run's config: config file" in err and "not valid YAML" in err


def _tree(run):
    """Every file of a run directory but its lock (rewritten by whoever takes it), with its bytes."""
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.mark.parametrize("device", ["mps", "xpu", "meta"])
def test_an_unsupported_device_is_refused_before_the_run_directory(tmp_path, device):
    with pytest.raises(ValueError, match=f"Trainer: device '{device}' is not supported: fastgan "
                                         r"runs on cpu or cuda \(cuda, cuda:1, ...\)"):
        _train(tmp_path, steps=1, device=device)
    assert not (tmp_path / "run").exists()


def test_cpu_0_is_the_cpu(tmp_path):
    t = _train(tmp_path, steps=1, device="cpu:0")
    assert t.device == torch.device("cpu") and t.step == 1
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step_000000001.pt"]


class _NoLock(trainer_module.RunLock):
    """A RunLock that fails the test when a trainer takes it (its check_free still checks)."""

    def __init__(self, *args, **kwargs):
        raise AssertionError("the run's lock was taken")


def test_resume_to_a_step_already_reached_is_refused_and_changes_nothing(tmp_path, monkeypatch):
    _train(tmp_path, steps=4, ckpt_every=1)
    run = tmp_path / "run"
    list_checkpoints(run)[-1].unlink()  # stopped at step 3 of its 4
    before = _tree(run)
    monkeypatch.setattr(trainer_module, "RunLock", _NoLock)  # every refusal comes before the lock
    for steps in (2, 3):
        with pytest.raises(ValueError, match=re.escape(
                f"--resume: {run} is at step 3; --steps {steps} would train nothing (nothing was "
                "changed); --steps M with M > 3 extends it")):
            _train(tmp_path, steps=steps, ckpt_every=1, resume=True)
        assert _tree(run) == before
    # a length in epochs: refused after the data is scanned
    with pytest.raises(ValueError, match=re.escape("is at step 3; --epochs 0.001 (1 step) would train nothing")):
        _train(tmp_path, steps=None, epochs=0.001, ckpt_every=1, resume=True)
    assert _tree(run) == before


def test_resume_of_a_complete_run_says_so_and_writes_nothing(tmp_path, capsys, monkeypatch):
    _train(tmp_path, steps=2)
    run = tmp_path / "run"
    before = _tree(run)
    capsys.readouterr()
    with monkeypatch.context() as m:
        m.setattr(trainer_module, "RunLock", _NoLock)
        t = _train(tmp_path, steps=2, resume=True)  # its own length: complete, not refused
    assert t.complete and t.step == 2 and t.history == []
    assert t.loader is None  # said before the data (and, _NoLock, before the lock)
    err = capsys.readouterr().err
    assert f"--resume: {run} is already complete at step 2; nothing to train (--steps M with M > 2 " \
           "extends it)" in err
    assert "done:" not in err and "training" not in err
    assert _tree(run) == before
    t = _train(tmp_path, steps=3, resume=True)  # extended
    assert not t.complete and t.step == 3 and [row["step"] for row in t.history] == [3]


def test_resume_of_a_run_complete_in_epochs_says_so_before_the_lock(tmp_path, capsys, monkeypatch):
    first = _train(tmp_path, steps=None, epochs=0.002, ckpt_every=1)
    run = tmp_path / "run"
    before = _tree(run)
    capsys.readouterr()
    monkeypatch.setattr(trainer_module, "RunLock", _NoLock)
    t = _train(tmp_path, steps=None, epochs=0.002, ckpt_every=1, resume=True)
    assert t.complete and t.step == first.step == t.total and t.loader is not None  # needs the data
    assert _tree(run) == before
    assert f"--resume: {run} is already complete at step {first.step}; nothing to train" in capsys.readouterr().err


def test_resume_in_epochs_on_a_smaller_copy_of_the_data_is_refused_not_complete(tmp_path, monkeypatch):
    # 64 images make 8 batches an epoch, 32 make 4; wgan-gp takes 5 a step. --epochs 4 is 7
    # steps on the 64 and would be 4 on the 32: cut off at step 5, the run must not be called
    # complete on the smaller copy (a data path may change on resume, for a dataset that moved)
    from PIL import Image
    full, half = tmp_path / "full", tmp_path / "half"
    for folder, n in ((full, 64), (half, 32)):
        folder.mkdir()
        for i in range(n):
            Image.fromarray(((torch.arange(256).reshape(16, 16) * (i + 1)) % 256).byte().numpy(), "L") \
                .save(folder / f"{i}.png")
    assert _train(tmp_path, steps=None, epochs=4, ckpt_every=1, data=str(full)).total == 7
    run = tmp_path / "run"
    for p in list_checkpoints(run):
        if int(p.stem.split("_")[1]) > 5:
            p.unlink()
    assert int(list_checkpoints(run)[-1].stem.split("_")[1]) == 5
    before = _tree(run)
    monkeypatch.setattr(trainer_module, "RunLock", _NoLock)  # refused before the lock
    with pytest.raises(ValueError, match="the state has num_samples=64 but this loader has 32"):
        _train(tmp_path, steps=None, epochs=4, ckpt_every=1, data=str(half), resume=True)
    assert _tree(run) == before


def test_messages_count_steps_and_the_summary_gives_the_time_and_speed(tmp_path, capsys):
    _train(tmp_path, steps=1)
    err = capsys.readouterr().err
    # "1 steps" is never written; a speed such as "14.1 steps/s" is not that
    assert "training wgan-gp for 1 step (from 0) on cpu" in err and not re.search(r"(?<![\d.])1 steps", err)
    assert re.search(r"done: step 1, 1 step in \d+\.\d s, \S+ (steps/s|s/step) \(setup \d+\.\d s\); "
                     "samples and checkpoints in ", err), err
    _train(tmp_path, steps=3, resume=True)
    err = capsys.readouterr().err
    assert "training wgan-gp for 3 steps (from 1)" in err
    assert re.search(r"done: step 3, 2 steps in \d+\.\d s, \S+ (steps/s|s/step)", err), err


@pytest.mark.parametrize("supported", [False, True])
def test_amp_on_a_cpu_without_bf16_hardware_says_it_is_emulated(tmp_path, capsys, monkeypatch, supported):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: supported)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    t = _train(tmp_path, steps=1, amp=True)
    assert t.amp_dtype == torch.bfloat16  # kept: the user asked for it
    said = [line for line in capsys.readouterr().err.splitlines() if "emulates bf16" in line]
    if supported:
        assert said == []
    else:
        assert said == ["fastgan: --amp: this CPU has no bfloat16 hardware (AVX512-BF16 or AMX): torch "
                        "emulates bf16 and training runs several times slower than float32; leave "
                        "--amp off here"]
    _train(tmp_path, steps=1, amp=False, overwrite=True)  # float32: nothing to say
    assert "emulates bf16" not in capsys.readouterr().err


def test_bf16_hardware_is_avx512_bf16_or_amx_and_a_torch_without_the_checks_is_taken_at_its_word(
        monkeypatch):
    from fastgan._devices import cpu_has_bf16

    for avx512_bf16, amx, want in [(False, False, False), (True, False, True), (False, True, True)]:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert cpu_has_bf16() is want, (avx512_bf16, amx)
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    assert cpu_has_bf16() is True  # no warning on a guess


def test_real_valued_trainer_settings_read_as_text_are_taken_as_numbers(tmp_path):
    t = _train(tmp_path, steps=1, ema="9e-1")
    assert t.cfg["ema"] == 0.9 and t.ema is not None
    assert cfgmod.load_config_file(tmp_path / "run" / "config.yaml")["ema"] == 0.9
