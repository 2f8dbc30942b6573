"""The `fastgan` command line: entry points, help, info, one-line errors."""
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest
import torch


def _run(*args):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=300,
                          cwd=tempfile.gettempdir())  # not the checkout: test the installed package


@pytest.fixture(params=["script", "module"])
def fastgan_cmd(request):
    if request.param == "script":
        exe = shutil.which("fastgan")
        assert exe, "the fastgan console script is not on PATH"
        return [exe]
    return [sys.executable, "-m", "fastgan"]


def test_info_lists_every_backend(fastgan_cmd):
    r = _run(*fastgan_cmd, "info")
    assert r.returncode == 0, r.stderr
    for word in ("fastgan", "torch", "triton", "extension", "reference", "cpp", "cuda"):
        assert word in r.stdout


def test_info_json(fastgan_cmd):
    r = _run(*fastgan_cmd, "info", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["backends"]["reference"]["cpu"]["available"] is True


@pytest.mark.parametrize("args", [["--help"], ["info", "--help"]])
def test_help(fastgan_cmd, args):
    r = _run(*fastgan_cmd, *args)
    assert r.returncode == 0
    assert "usage: fastgan" in r.stdout


def test_version(fastgan_cmd):
    import fastgan

    r = _run(*fastgan_cmd, "--version")
    assert r.returncode == 0 and r.stdout.strip() == f"fastgan {fastgan.__version__}"


@pytest.mark.parametrize(("args", "words"), [
    ([], "required: COMMAND"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["info", "--colour"], "unrecognized arguments: --colour"),
])
def test_errors_are_one_line_and_nonzero(fastgan_cmd, args, words):
    r = _run(*fastgan_cmd, *args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert words in lines[0] and "--help" in lines[0]


# -- train, sample, models --------------------------------------------------------------------

TINY = ["--set", "g_width=4", "--set", "d_width=4", "--set", "z_dim=8", "--batch-size", "8",
        "--no-progress", "--device", "cpu", "--set", "tensorboard=false"]


def test_train_then_sample(tmp_path):
    run = tmp_path / "run"
    r = _run(sys.executable, "-m", "fastgan", "train", "--model", "wgan-gp", "--steps", "2", "--amp",
             "--out", str(run), *TINY)
    assert r.returncode == 0, r.stderr
    assert "training wgan-gp for 2 steps" in r.stderr and "bfloat16 autocast" in r.stderr
    config = (run / "config.yaml").read_text()
    assert "gp_weight: 10.0" in config and "resolution: 16" in config and "amp: true" in config
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_000000002.pt"]
    out = tmp_path / "grid.png"
    r = _run(sys.executable, "-m", "fastgan", "sample", "--run", str(run), "--num", "16",
             "--out", str(out), "--interpolate")
    assert r.returncode == 0, r.stderr
    from PIL import Image
    with Image.open(out) as im:  # 2 rows of 8 interpolated 16 x 16 samples, 2-pixel padding
        assert im.size == (8 * 18 + 2, 2 * 18 + 2)
    # the same run again: refused; --resume continues it to 3 steps
    r = _run(sys.executable, "-m", "fastgan", "train", "--model", "wgan-gp", "--steps", "2",
             "--out", str(run), *TINY)
    assert r.returncode == 2 and "already exists; pass --resume" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = _run(sys.executable, "-m", "fastgan", "train", "--resume", "--steps", "3", "--out", str(run),
             "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stderr and "step_000000003.pt" in " ".join(
        p.name for p in (run / "checkpoints").iterdir())


def test_models_lists_papers_and_defaults(fastgan_cmd):
    r = _run(*fastgan_cmd, "models")
    assert r.returncode == 0, r.stderr
    for text in ("gan ", "lsgan ", "wgan ", "ebgan ", "began ", "dragan ", "arXiv:1511.06434",
                 "arXiv:1704.00028", "RMSprop 5e-05, clip 0.01", "Adam 0.0001, betas (0, 0.9)"):
        assert text in r.stdout
    r = _run(*fastgan_cmd, "models", "dcgan", "wgan-gp")
    assert r.returncode == 0, r.stderr
    for text in ("dcgan:", "wgan-gp:", "n_critic = 5", "betas = (0.0, 0.9)", "lr_g = 0.0002"):
        assert text in r.stdout
    r = _run(*fastgan_cmd, "models", "nope")
    assert r.returncode == 2 and "unknown model 'nope'" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["train", "--model", "nope"], "unknown model 'nope'"),
    (["train", "--model", "dcgan", "--data", "/no/such/folder"], "/no/such/folder"),
    (["train", "--model", "dcgan", "--resolution", "48"], "resolution must be 16, 32, 64 or 128"),
    (["train", "--model", "dcgan", "--set", "lr_dd=1"], "unknown setting(s) lr_dd"),
    (["train", "--model", "dcgan", "--set", "lr_d"], "expected key=value"),
    (["train"], "name a model with --model"),
    (["train", "--model", "dcgan", "--steps", "1", "--epochs", "1"], "not allowed with argument"),
    (["train", "--model", "dcgan", "--resume", "--out", "/no/such/run"], "holds no fastgan run"),
    (["sample", "--run", "/no/such/run"], "holds no fastgan run"),
    # values of the wrong type or range: refused before anything is set up, never a traceback
    (["train", "--model", "dcgan", "--steps", "0"], "steps must be a positive integer, got 0"),
    (["train", "--model", "dcgan", "--epochs", "-2"], "epochs must be a number > 0, got -2.0"),
    (["train", "--model", "dcgan", "--set", "lr_d=abc"], "lr_d must be a finite number > 0, got 'abc'"),
    (["train", "--model", "dcgan", "--set", "betas=0.5"], "betas must be a pair [beta1, beta2]"),
    (["train", "--model", "wgan", "--set", "clip=abc"], "clip must be none (no clipping) or a finite"),
    (["train", "--model", "lsgan", "--set", "a=abc"], "a must be a finite number, got 'abc'"),
    (["train", "--model", "dcgan", "--device", "tpu"], "device 'tpu' is not a device name"),
    (["train", "--model", "dcgan", "--device", "mps"],
     "device 'mps' is not supported: fastgan runs on cpu or cuda (cuda, cuda:1, ...)"),
    (["train", "--model", "dcgan", "--device", "xpu"], "device 'xpu' is not supported"),
    (["train", "--model", "dcgan", "--device", "meta"], "device 'meta' is not supported"),
    (["train", "--model", "dcgan", "--device", "cpu:1"], "device 'cpu:1': there is one CPU device"),
    (["train", "--model", "dcgan", "--metrics", "bogus"], "unknown metric 'bogus'"),
    (["train", "--model", "dcgan", "--set", "amp=maybe"], "amp must be true or false, got 'maybe'"),
    (["train", "--model", "wgan-gp", "--data", "ring8", "--arch", "dcgan"],
     "data 'ring8' is 2-D toy points, which only arch 'mlp' (small fully connected networks) takes; "
     "got arch 'dcgan'"),
    (["train", "--model", "began", "--data", "grid25", "--arch", "began"], "got arch 'began'"),
])
def test_train_and_sample_errors_are_one_line(args, message, tmp_path):
    if args[0] == "train" and "--out" not in args:
        args = [*args, "--out", str(tmp_path / "run")]  # never runs/ under the working directory
    r = _run(sys.executable, "-m", "fastgan", *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "run").exists()  # a refused run leaves no directory behind


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
@pytest.mark.parametrize("command", ["train", "eval"])
def test_cuda_without_cuda_says_so(command, tmp_path):
    if command == "train":
        args = ["train", "--model", "dcgan", "--device", "cuda", "--out", str(tmp_path / "run")]
    else:
        args = ["eval", "--run", str(tmp_path / "run"), "--device", "cuda"]
    r = _run(sys.executable, "-m", "fastgan", *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "device 'cuda'" in r.stderr and "--device cpu" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.parametrize("device, message", [("tpu", "device 'tpu' is not a device name"),
                                             ("mps", "device 'mps' is not supported")])
def test_eval_names_a_bad_device(tmp_path, device, message):
    r = _run(sys.executable, "-m", "fastgan", "eval", "--run", str(tmp_path), "--device", device)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.parametrize("args", [["train", "--help"], ["sample", "--help"], ["models", "--help"]])
def test_subcommand_help(args):
    r = _run(sys.executable, "-m", "fastgan", *args)
    assert r.returncode == 0 and "usage: fastgan" in r.stdout


def test_train_and_sample_on_2d_toy_data(tmp_path):
    run = tmp_path / "toy"
    r = _run(sys.executable, "-m", "fastgan", "train", "--model", "began", "--data", "ring8", "--steps", "6",
             "--out", str(run), "--no-progress", "--set", "mlp_hidden=16", "--set", "tensorboard=false",
             "--set", "sample_every=3", "--set", "num_samples=100")
    assert r.returncode == 0, r.stderr
    assert "backend 'toy': mixture 'ring8'" in r.stderr
    cfg = (run / "config.yaml").read_text()
    assert "arch: mlp" in cfg and "channels: 2" in cfg and "resolution: 1" in cfg
    assert (run / "samples" / "step_000000006.png").is_file()
    out = tmp_path / "points.png"
    r = _run(sys.executable, "-m", "fastgan", "sample", "--run", str(run), "--out", str(out), "--num", "300")
    assert r.returncode == 0, r.stderr
    from PIL import Image
    with Image.open(out) as im:
        assert im.size == (256, 256) and im.mode == "RGB"
    assert "300 points" in r.stdout


def _toy_run(tmp_path, name, data="ring8", steps=2):
    from fastgan.cli import main
    run = tmp_path / name
    assert main(["train", "--model", "gan", "--data", data, "--steps", str(steps), "--out", str(run),
                 "--no-progress", "--set", "mlp_hidden=8", "--set", "tensorboard=false"]) == 0
    return run


def test_sample_never_replaces_a_file_unasked(tmp_path, capsys):
    from fastgan.cli import main
    run = _toy_run(tmp_path, "run")
    ckpt = run / "checkpoints" / "step_000000002.pt"
    before = ckpt.read_bytes()
    for out, words in ((ckpt, "--out must name a .png file"), (run / "config.yaml", "--out must name a .png file"),
                       (run / "samples", "is a folder")):
        assert main(["sample", "--run", str(run), "--out", str(out)]) == 2
        assert words in capsys.readouterr().err
    assert ckpt.read_bytes() == before
    assert main(["sample", "--run", str(run), "--num", "8"]) == 0  # named by step and seed
    made = run / "samples" / "sample_step000000002_seed0.png"
    assert made.is_file() and f"wrote {made}" in capsys.readouterr().out
    assert main(["sample", "--run", str(run), "--num", "8"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(["sample", "--run", str(run), "--num", "8", "--overwrite"]) == 0
    for num in ("0", "10001"):
        assert main(["sample", "--run", str(run), "--num", num, "--overwrite"]) == 2
        assert "--num must be in 1..10000" in capsys.readouterr().err


def test_the_run_is_named_alone_or_with_run(tmp_path, capsys):
    """sample and eval take the run directory as RUN or as --run RUN; both at once must name
    the same one, and neither is a one-line usage error."""
    from fastgan.cli import main
    run = _toy_run(tmp_path, "run")
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert main(["sample", str(run), "--num", "8", "--out", str(a)]) == 0
    assert main(["sample", "--run", str(run), str(run), "--num", "8", "--out", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()
    assert main(["eval", str(run), "--num", "100"]) == 0
    assert len((run / "eval.jsonl").read_text().splitlines()) == 1
    capsys.readouterr()
    for cmd in ("sample", "eval"):
        for args, words in (([], "the run directory is required: RUN or --run RUN"),
                            ([str(run), "--run", str(tmp_path / "other")],
                             f"two run directories given: {run} and --run {tmp_path / 'other'}")):
            with pytest.raises(SystemExit) as exc:
                main([cmd, *args])
            err = capsys.readouterr().err.strip()
            assert exc.value.code == 2 and err.startswith(f"fastgan {cmd}: error: {words}"), err
            assert len(err.splitlines()) == 1, err


def test_a_checkpoint_of_another_run_is_refused(tmp_path, capsys):
    from fastgan.cli import main
    ring, grid = _toy_run(tmp_path, "ring"), _toy_run(tmp_path, "grid", data="grid25")
    other = grid / "checkpoints" / "step_000000002.pt"
    for cmd in (["sample", "--out", str(tmp_path / "x.png")], ["eval", "--num", "100"]):
        assert main([cmd[0], "--run", str(ring), "--checkpoint", str(other), *cmd[1:]]) == 2
        err = capsys.readouterr().err
        assert f"{other} is not a checkpoint of {ring}: its data is 'grid25', the run's is 'ring8'" in err
    assert not (ring / "eval.jsonl").exists()


def test_models_into_a_closed_pipe_is_not_an_error(tmp_path):
    r = subprocess.run(f"{sys.executable} -m fastgan models | head -1", shell=True, capture_output=True,
                       text=True, cwd=tmp_path)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr


# -- messages a user meets first: the subcommand's name, defaults in --help ----------------------

@pytest.mark.parametrize(("args", "prog", "unknown"), [
    (["train", "--model", "wgan-gp", "--stpes", "5"], "fastgan train", "--stpes 5"),
    (["sample", "--run", "x", "--bogus"], "fastgan sample", "--bogus"),
    (["data", "validate", "digits", "--bogus"], "fastgan data validate", "--bogus"),
])
def test_an_unknown_argument_is_named_by_its_subcommand(args, prog, unknown, capsys):
    from fastgan.cli import main
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{prog}: error: unrecognized arguments: {unknown} "), err
    assert err.endswith(f"(see {prog} --help)") and len(err.splitlines()) == 1, err


def test_train_help_shows_the_defaults(capsys):
    from fastgan.cli import main
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the lines
    for text in ("default 5000 on the built-in digits and 2-D data, else 100000",
                 "default 64; 16 on the built-in digits", "default: the model's",
                 "default 0.999 on the built-in digits, else none", "default: the CPU count"):
        assert text in out, text


def test_data_prepare_into_a_folder_is_refused_before_decoding(tmp_path, capsys):
    from fastgan.cli import main
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):  # never "exists; pass --overwrite", then a traceback
        assert main(["data", "prepare", "digits", "--resolution", "16", "--out", str(folder),
                     "--quiet", *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"fastgan data prepare: error: --out {folder} is a folder; name the file to "
                       f"write, e.g. {folder / 'data.fgimg'}"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]


def test_data_errors_name_the_action_and_validate_names_the_crop(tmp_path, capsys):
    from fastgan.cli import main
    assert main(["data", "validate", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.startswith("fastgan data validate: error: ")
    out = tmp_path / "d.fgimg"
    assert main(["data", "prepare", "digits", "--resolution", "16", "--channels", "1", "--out", str(out),
                 "--quiet"]) == 0
    assert "crop largest square" in capsys.readouterr().out
    assert main(["data", "prepare", "digits", "--resolution", "16", "--out", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("fastgan data prepare: error: ")
    assert main(["data", "validate", str(out), "--resolution", "16", "--channels", "1"]) == 0
    text = capsys.readouterr().out
    assert "crop largest square" in text and "crop None" not in text, text


def test_an_unwritable_output_is_a_one_line_error(tmp_path, capsys):
    from fastgan.cli import main
    (tmp_path / "a_file").write_text("not a folder\n")
    assert main(["train", "--model", "wgan-gp", "--steps", "1", "--out", str(tmp_path / "a_file" / "run"),
                 *TINY]) == 2
    err = capsys.readouterr().err  # refused before the data is read: the one line alone
    assert err == (f"fastgan train: error: run directory {tmp_path / 'a_file' / 'run'} cannot be created: "
                   f"{tmp_path / 'a_file'} is a file\n"), err
    if pathlib.Path("/sys/kernel").is_dir():  # sysfs: no folder can be made there, root or not
        assert main(["train", "--model", "wgan-gp", "--steps", "1", "--out", "/sys/kernel/fastgan-run",
                     *TINY]) == 2
        err = capsys.readouterr().err
        assert err.startswith("fastgan train: error: run directory /sys/kernel/fastgan-run cannot be "
                              "created") and len(err.splitlines()) == 1, err
    run = tmp_path / "run"
    assert main(["train", "--model", "wgan-gp", "--steps", "1", "--out", str(run), *TINY]) == 0
    capsys.readouterr()
    assert not list(tmp_path.glob(".fastgan-probe-*"))  # the probe folder is gone
    assert main(["sample", "--run", str(run), "--out", str(tmp_path / "a_file" / "s.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastgan sample: error: ") and len(err.strip().splitlines()) == 1, err


def test_fastgans_own_warnings_are_one_line_like_its_errors(tmp_path):
    run = tmp_path / "run"
    r = _run(sys.executable, "-m", "fastgan", "train", "--model", "wgan-gp", "--steps", "2", "--out", str(run),
             "--set", "ckpt_every=1", "--set", "keep=2", *TINY)
    assert r.returncode == 0, r.stderr
    newest = run / "checkpoints" / "step_000000002.pt"
    newest.write_bytes(newest.read_bytes()[:100])  # truncated: the resume skips it
    r = _run(sys.executable, "-m", "fastgan", "train", "--model", "wgan-gp", "--resume", "--steps", "3",
             "--out", str(run), *TINY)
    assert r.returncode == 0, r.stderr
    warned = [line for line in r.stderr.splitlines() if "skipping damaged checkpoint" in line]
    assert len(warned) == 1 and warned[0].startswith("fastgan train: warning: skipping damaged checkpoint "), r.stderr
    assert "UserWarning" not in r.stderr and "warnings.warn" not in r.stderr, r.stderr


def test_a_scored_run_is_still_a_run_for_overwrite(tmp_path, capsys):
    from fastgan.cli import main
    run = tmp_path / "run"
    assert main(["train", "--model", "wgan-gp", "--steps", "1", "--out", str(run), *TINY]) == 0
    assert main(["eval", "--run", str(run), "--metrics", "digits", "--num", "10", "--device", "cpu"]) == 0
    assert (run / "eval.jsonl").is_file()
    capsys.readouterr()
    assert main(["train", "--model", "wgan-gp", "--steps", "1", "--out", str(run), "--overwrite", *TINY]) == 0, \
        capsys.readouterr().err
    assert not (run / "eval.jsonl").exists()  # the old run's files went with it


def test_eval_of_a_digits_run_names_its_data(tmp_path, capsys):
    from fastgan.cli import main
    run = tmp_path / "digits"
    assert main(["train", "--model", "wgan-gp", "--steps", "1", "--out", str(run), *TINY]) == 0
    capsys.readouterr()
    assert main(["eval", "--run", str(run), "--metrics", "mixture", "--num", "10"]) == 2
    err = capsys.readouterr().err
    assert "this data is 'digits'" in err and "None" not in err, err


# -- devices, resume lengths, YAML numbers, prepared files ----------------------------------------

def _files(run):
    """Every file of a run directory but its lock (rewritten by whoever takes it), with its bytes."""
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def test_train_and_eval_take_cpu_0_as_the_cpu(tmp_path, capsys):
    from fastgan.cli import main
    run = tmp_path / "run"
    tiny = [a if a != "cpu" else "cpu:0" for a in TINY]
    assert main(["train", "--model", "dcgan", "--steps", "1", "--out", str(run), *tiny]) == 0
    assert "training dcgan for 1 step (from 0) on cpu, run directory" in capsys.readouterr().err
    assert main(["eval", "--run", str(run), "--metrics", "digits", "--num", "10", "--device", "cpu:0",
                 "--no-progress"]) == 0
    assert "digits_fd" in capsys.readouterr().out


def test_resume_with_steps_not_past_the_run_is_refused_and_a_complete_run_says_so(tmp_path, capsys):
    from fastgan.cli import main
    run = tmp_path / "run"
    assert main(["train", "--model", "dcgan", "--steps", "2", "--out", str(run), *TINY]) == 0
    before = _files(run)
    capsys.readouterr()
    for steps in ("1", "2"):  # --steps 2 is the run's own length: it extends nothing either
        code = main(["train", "--resume", "--out", str(run), "--steps", steps, "--no-progress"])
        err = capsys.readouterr().err
        if steps == "1":
            assert code == 2
            assert err.splitlines()[-1] == (
                f"fastgan train: error: --resume: {run} is at step 2; --steps 1 would train nothing "
                "(nothing was changed); --steps M with M > 2 extends it")
        else:
            assert code == 0
            assert f"{run} is already complete at step 2; nothing to train (--steps M with M > 2 " \
                   "extends it)" in err
        assert _files(run) == before  # config.yaml still says steps: 2
    assert main(["train", "--resume", "--out", str(run), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"--resume: {run} is already complete at step 2; nothing to train (--steps M with M > 2 " \
           "extends it)" in err and "done" not in err
    assert _files(run) == before
    assert main(["train", "--resume", "--out", str(run), "--steps", "3", "--no-progress"]) == 0
    assert "done: step 3, 1 step in " in capsys.readouterr().err


def test_yaml_numbers_without_a_dot_are_numbers(tmp_path, capsys):
    """PyYAML (YAML 1.1) reads 1e-4 as the string "1e-4": real-valued settings take it as 1e-4."""
    import yaml

    from fastgan.cli import main
    config = tmp_path / "c.yaml"
    config.write_text("lr_d: 1e-4\nlr_g: 3E-4\nbetas: [0.5, 9.9e-1]\nema: 9e-1\n")
    assert yaml.safe_load(config.read_text())["lr_d"] == "1e-4"  # what PyYAML gives
    run = tmp_path / "run"
    assert main(["train", "--model", "dcgan", "--config", str(config), "--steps", "1", "--out", str(run),
                 *TINY]) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["lr_d"] == 1e-4 and saved["lr_g"] == 3e-4 and saved["betas"] == [0.5, 0.99]
    assert saved["ema"] == 0.9
    from fastgan.train.checkpoint import load_checkpoint
    state = load_checkpoint(run / "checkpoints" / "step_000000001.pt")
    assert state["opt_d"]["param_groups"][0]["lr"] == 1e-4
    assert state["opt_g"]["param_groups"][0]["lr"] == 3e-4
    capsys.readouterr()
    for text in ("1e-4x", "nan", "1_0"):  # text that is no plain decimal number stays refused
        config.write_text(f"lr_d: '{text}'\n")
        assert main(["train", "--model", "dcgan", "--config", str(config), "--steps", "1",
                     "--out", str(tmp_path / "refused"), *TINY]) == 2
        assert f"lr_d must be a finite number > 0, got '{text}'" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()


def test_a_prepared_file_sets_the_resolution(tmp_path, capsys):
    from fastgan.cli import main
    data = tmp_path / "d.fgimg"
    assert main(["data", "prepare", "digits", "--resolution", "32", "--channels", "1", "--out", str(data),
                 "--quiet"]) == 0
    run = tmp_path / "run"
    assert main(["train", "--model", "dcgan", "--data", str(data), "--steps", "1", "--out", str(run),
                 *TINY]) == 0
    config = (run / "config.yaml").read_text()
    assert "resolution: 32" in config and "channels: 1" in config
    capsys.readouterr()
    assert main(["train", "--model", "dcgan", "--data", str(data), "--resolution", "16", "--steps", "1",
                 "--out", str(tmp_path / "other"), *TINY]) == 2
    assert "was made with resolution=32 but resolution=16 is asked" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


def test_a_prepared_file_no_arch_builds_names_the_file(tmp_path, capsys):
    from fastgan.cli import main
    data = tmp_path / "d24.fgimg"
    assert main(["data", "prepare", "digits", "--resolution", "24", "--channels", "1", "--out", str(data),
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["train", "--model", "dcgan", "--data", str(data), "--steps", "1",
                 "--out", str(tmp_path / "run"), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"fastgan train: error: data {data} holds 24x24 images, which arch 'dcgan' of model "
                   "'dcgan' cannot build (DCGANGenerator: resolution must be 16, 32, 64 or 128, got 24); "
                   "prepare the data at a resolution it builds, or train with --arch mlp"], err
    assert not (tmp_path / "run").exists()
    assert main(["train", "--model", "dcgan", "--arch", "mlp", "--data", str(data), "--steps", "1",
                 "--out", str(tmp_path / "mlp"), *TINY]) == 0


def test_a_mixture_metric_on_the_digits_names_the_digits(tmp_path, capsys):
    from fastgan.cli import main
    assert main(["train", "--model", "dcgan", "--steps", "1", "--out", str(tmp_path / "run"),
                 "--eval-every", "1", "--metrics", "mixture", *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == ("fastgan train: error: the mixture metric scores 2-D samples of ring8 or grid25; "
                   "this data is 'digits'"), err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, message", [
    (["--set", "seed=abc"], "Trainer: seed must be an integer in -(2**53-1)..2**53-1, got 'abc'"),
    (["--seed", "99999999999999999999"], "Trainer: seed must be an integer in -(2**53-1)..2**53-1"),
    (["--set", "metrics=5"], "metrics: expected names like 'fid,kid' or a list of them, got 5"),
])
def test_bad_seed_and_metrics_settings_are_named(tmp_path, monkeypatch, capsys, args, message):
    """Were a Python traceback (metrics=5) and errors naming no setting (the seed was used
    before it was checked: "invalid literal for int()", "Overflow when unpacking long")."""
    from fastgan.cli import main
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--model", "gan", "--steps", "1", "--out", str(tmp_path / "run"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_a_folder_that_is_not_a_run_is_not_offered_resume_or_overwrite(tmp_path, capsys):
    """The error named --resume and --overwrite as remedies, both of which then refused."""
    from fastgan.cli import main
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "important.txt").write_text("keep")
    assert main(["train", "--model", "gan", "--steps", "1", "--out", str(tmp_path / "mine")]) == 2
    err = capsys.readouterr().err
    assert "is not a fastgan run" in err and "choose another --out" in err and "--overwrite" not in err
    assert (tmp_path / "mine" / "important.txt").read_text() == "keep"
