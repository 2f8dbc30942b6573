"""The `fastgan` command (also `python -m fastgan`, which torchrun needs).

Subcommands: train, sample, eval, models, data, info.
Errors are one line on stderr and a non-zero exit.
"""
import argparse
import functools
import json
import pathlib
import sys
import warnings

from fastgan._backend import BackendUnavailable
from fastgan.train.checkpoint import CheckpointError
from fastgan.train.config import LR_SCHEDULES


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


MAX_SAMPLES = 10_000  # fastgan sample's picture: a 100 x 100 grid


def _info(args):
    import fastgan
    from fastgan._info import format_info

    d = fastgan.info()
    print(json.dumps(d, indent=2) if args.json else format_info(d))
    return 0


def _train(args):
    import torch

    from fastgan import models
    from fastgan.train import config as cfgmod
    from fastgan.train.trainer import Trainer, check_seed, default_run_dir, read_run_config

    flags = {k: v for k, v in {
        "arch": args.arch, "data": args.data, "resolution": args.resolution,
        "batch_size": args.batch_size, "steps": args.steps, "epochs": args.epochs,
        "amp": True if args.amp else None, "out": args.out, "seed": args.seed,
        "device": args.device, "ema": args.ema, "data_backend": args.data_backend,
        "num_workers": args.num_workers, "progress": False if args.no_progress else None,
        "eval_every": args.eval_every, "metrics": args.metrics, "inception": args.inception,
        "cuda_graphs": args.cuda_graphs, "lr_schedule": args.lr_schedule,
    }.items() if v is not None}
    layers = []
    if args.config:
        layers.append(cfgmod.load_config_file(args.config))
    layers.append(cfgmod.parse_set(args.set))
    layers.append(flags)
    name = args.model
    for layer in layers:
        if layer.get("model") is not None:
            if name is not None and layer["model"] != name:
                raise CLIError(f"--model {name} but the config says model {layer['model']!r}")
            name = name or layer["model"]
    if args.resume:
        out = next((layer["out"] for layer in reversed(layers) if layer.get("out")), None)
        run_dir = pathlib.Path(out or default_run_dir({"model": name}))
        if name is None and out is None:
            raise CLIError("--resume: name the run with --out DIR (or --model for runs/<model>)")
        saved = read_run_config(run_dir, "--resume: ")
        if name is not None and saved["model"] != name:
            raise CLIError(f"--resume: {run_dir} is a {saved['model']!r} run, not {name!r}")
        name = saved["model"]
        layers.insert(0, saved)
    if name is None:
        raise CLIError("name a model with --model (see `fastgan models`)")
    models.get(name)  # unknown model: one line
    config = cfgmod.resolve(name, *layers)
    hyper, train = cfgmod.split(config, models.get(name))
    check_seed(train["seed"])  # before it seeds the model's initialization
    torch.manual_seed(train["seed"])
    try:
        model = models.build(name, **hyper)
    except ValueError as exc:
        prepared = cfgmod.prepared_defaults(config["data"])
        if prepared and "resolution" in str(exc):  # the file decides the resolution
            r = prepared["resolution"]
            raise CLIError(f"data {config['data']} holds {r}x{r} images, which arch {hyper['arch']!r} of "
                           f"model {name!r} cannot build ({exc}); prepare the data at a resolution it "
                           "builds, or train with --arch mlp") from None
        raise
    Trainer(model, None, train, resume=args.resume, overwrite=args.overwrite).fit()
    # under torchrun: the group the trainer joined ends with a run that ended well (torch warns
    # else); not after an error, where the other processes may be waiting in a collective
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    return 0


def _sample(args):
    import torch

    from fastgan.train.logging import save_samples
    from fastgan.train.trainer import load_generator

    if not 1 <= args.num <= MAX_SAMPLES:
        raise CLIError(f"--num must be in 1..{MAX_SAMPLES} (one picture), got {args.num}")
    if not 0 <= args.seed < 2**63:
        raise CLIError(f"--seed must be in 0..2**63-1, got {args.seed}")
    if args.out is not None:
        out = pathlib.Path(args.out)
        if out.is_dir():
            raise CLIError(f"--out {args.out} is a folder; name the .png file")
        if out.suffix.lower() != ".png":
            raise CLIError(f"--out must name a .png file, got {args.out}")
        if out.exists() and not args.overwrite:
            raise CLIError(f"--out {args.out} exists; pass --overwrite to replace it")
    g = load_generator(args.run, checkpoint=args.checkpoint, ema=not args.no_ema)
    gen = torch.Generator().manual_seed(args.seed)
    if args.interpolate:
        cols = 8
        rows = max(1, args.num // cols)
        a, b = (g.sample_z(rows, generator=gen).unsqueeze(1) for _ in range(2))
        t = torch.linspace(0, 1, cols).view(1, cols, 1)
        z = (a + (b - a) * t).reshape(rows * cols, g.z_dim)  # straight lines in z
    else:
        cols = None
        z = g.sample_z(args.num, generator=gen)
    with torch.no_grad():
        images = g(z).float()
    if args.out is None:  # named by what made it: another checkpoint or seed never replaces it
        kind = ("_interp" if args.interpolate else "") + ("_raw" if args.no_ema else "")
        out = pathlib.Path(args.run) / "samples" / f"sample_step{g.fastgan_step:09d}_seed{args.seed}{kind}.png"
        if out.exists() and not args.overwrite:
            raise CLIError(f"{out} exists; pass --overwrite to replace it, or --out")
    from fastgan.data import toy
    from fastgan.train.config import load_config_file
    data = load_config_file(pathlib.Path(args.run) / "config.yaml").get("data")
    # images as a grid; 2-D points as a scatter plot with their mixture's centers marked
    save_samples(images, out, nrow=cols, mixture=data if data in toy.MIXTURES else None)
    what = "points" if images.shape[1:] == (2, 1, 1) else "images"
    print(f"wrote {out} ({images.shape[0]} {what} from {g.fastgan_checkpoint})")
    return 0


def _format_results(results):
    rows = []
    for k, v in results.items():
        if isinstance(v, float):
            v = f"{v:.6g}"
        elif isinstance(v, list):
            v = " ".join(str(x) for x in v)
        rows.append((k, str(v)))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _eval(args):
    import datetime

    import torch

    from fastgan._devices import check_device
    from fastgan.metrics.evaluate import Evaluator, default_metrics
    from fastgan.train.trainer import load_generator

    run = pathlib.Path(args.run)
    device = check_device(args.device) or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    g = load_generator(run, checkpoint=args.checkpoint, device=device, ema=not args.no_ema)
    cfg = g.fastgan_config
    from fastgan.data import DEFAULT_DATASET
    data = cfg.get("data") or DEFAULT_DATASET  # None in config.yaml: the built-in digits
    metrics = args.metrics or ",".join(default_metrics(data))
    ev = Evaluator(metrics, data=data, resolution=cfg["resolution"], channels=cfg["channels"],
                   crop=cfg.get("crop"), num=args.num, ref=args.ref, ref_num=args.ref_num,
                   inception=args.inception, device=device, batch_size=args.batch_size,
                   seed=args.seed, amp=args.amp,
                   progress=not args.no_progress)
    if ev.uses_inception:
        ev.inception()  # a missing weights file: one line, before anything else
    if ev.uses_inception and ev.device.type == "cpu" and ev.num > 2000:
        # about 0.08 s per image on two threads of a 2-core AMD EPYC, 0.15 on one (2026-11-24)
        print(f"fastgan eval: {ev.num} samples through the Inception network on the CPU take a long "
              f"time (about 0.1 s each on 2 cores: {ev.num * 0.1 / 60:.0f} minutes there); a GPU, or a "
              "smaller --num, is faster", file=sys.stderr)
    results = ev(g)
    record = {"time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "checkpoint": str(g.fastgan_checkpoint), "step": g.fastgan_step,
              "ema": g.fastgan_ema, "metrics": ev.metrics, "ref": args.ref or data,
              "seed": args.seed, **results}
    with open(run / "eval.jsonl", "a", encoding="utf-8") as f:  # appended: earlier results stay
        f.write(json.dumps(record) + "\n")
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print(f"{run} step {g.fastgan_step} ({g.fastgan_checkpoint}), {results['num_samples']} samples:")
        print(_format_results({k: v for k, v in results.items() if k != "num_samples"}))
        print(f"(appended to {run / 'eval.jsonl'})")
    return 0


def _models(args):
    from fastgan import models
    if args.names:
        print("\n\n".join(models.get(n).describe() for n in args.names))
    else:
        print(models.table(markdown=False))
        print("\n`fastgan models NAME` shows a model's paper, architectures and every default.")
    return 0


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line and exit 2, instead of argparse's usage block.
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    from fastgan._version import __version__

    parser = _Parser(
        prog="fastgan", description="Train the classic GAN family fast on one GPU or many.")
    parser.add_argument("--version", action="version", version=f"fastgan {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                parser_class=_Parser)

    p = sub.add_parser("info", help="versions, devices and which kernel backends run here",
                       description="Report fastgan's, torch's and triton's versions, the devices, "
                                   "the compiled extension, and which backends are available "
                                   "on each device type (and why any is not).")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_info, parser=p)
    from fastgan.data.cli import register as register_data
    register_data(sub)

    p = sub.add_parser(
        "train", help="train a model",
        description="Train a model with its paper's defaults (see `fastgan models`). Every "
                    "hyperparameter can be set by --config FILE (YAML or TOML) and --set key=value; "
                    "explicit flags win. Without --data the built-in digits are used, at 16 px "
                    "with a small network. The resolved config is saved as DIR/config.yaml.")
    p.add_argument("--model", help="the model (fastgan models lists them)")
    p.add_argument("--arch", help="the model's architecture (default: its first)")
    p.add_argument("--data", help="a folder or zip of images, a prepared cache file, 'digits' "
                                  "(default: the built-in digits), or 'ring8'/'grid25' (2-D "
                                  "mixtures of Gaussians, with --arch mlp)")
    p.add_argument("--resolution", type=int,
                   help="image side: 16, 32, 64 or 128 (default 64; 16 on the built-in digits, "
                        "1 on 2-D data, a prepared file's own)")
    p.add_argument("--batch-size", type=int,
                   help="global batch size, split over processes (default: the model's, see "
                        "`fastgan models`; 256 on 2-D data)")
    steps = p.add_mutually_exclusive_group()
    steps.add_argument("--steps", type=int,
                       help="generator steps, each running n_critic critic steps (default 5000 on "
                            "the built-in digits and 2-D data, else 100000)")
    steps.add_argument("--epochs", type=float, help="passes over the data by the critic")
    p.add_argument("--amp", action="store_true",
                   help="mixed precision: bf16 autocast (fp16 + loss scaling on GPUs without bf16)")
    p.add_argument("--out", help="run directory (default: runs/<model>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its newest valid checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--config", help="a YAML or TOML file of settings")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="set any hyperparameter or trainer setting, e.g. --set lr_d=2e-4 --set ema=0.999")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--ema", type=float, help="keep an EMA of the generator's weights with this decay "
                                             "(default 0.999 on the built-in digits, else none)")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES,
                   help="constant (the default; linear on the 2-D toy data): the model's learning "
                        "rates; linear: both fall linearly to 0 over the run")
    p.add_argument("--data-backend", choices=("auto", "dali", "nvjpeg", "cpu", "cache"),
                   help="how images are decoded (default auto)")
    p.add_argument("--num-workers", type=int,
                   help="decoding workers (cpu backend) or threads (dali) (default: the CPU count, "
                        "at most 8)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    graphs = p.add_mutually_exclusive_group()
    graphs.add_argument("--cuda-graphs", dest="cuda_graphs", action="store_const", const=True,
                        help="require whole-step CUDA graphs (default: on where capture works, "
                             "else eager with the reason)")
    graphs.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_const", const=False,
                        help="run every step eagerly")
    p.add_argument("--eval-every", type=int, metavar="N",
                   help="score the generator every N steps and at the end (--metrics); keeps the "
                        "best as DIR/best.pt")
    p.add_argument("--metrics", help="what --eval-every scores: some of fid,kid,is,pr,digits,mixture "
                                     "(default: mixture for 2-D data, digits for the digits, else fid)")
    p.add_argument("--inception", metavar="PATH",
                   help="the FID Inception weights, pt_inception-2015-12-05-6726825d.pth "
                        "(default: $FASTGAN_INCEPTION_WEIGHTS)")
    p.set_defaults(func=_train, parser=p)

    p = sub.add_parser("sample", help="a PNG grid of samples from a trained run",
                       description="Write a PNG grid of samples from a run's newest (or a chosen) "
                                   "checkpoint, with its EMA weights when it kept them.")
    _add_run(p)
    p.add_argument("--num", type=int, default=64, help=f"number of samples (default 64, at most {MAX_SAMPLES})")
    p.add_argument("--out", help="output PNG (default: RUN/samples/sample_step<STEP>_seed<N>[_interp][_raw].png)")
    p.add_argument("--overwrite", action="store_true", help="replace the output PNG if it exists")
    p.add_argument("--seed", type=int, default=0, help="seed of z (default 0)")
    p.add_argument("--interpolate", action="store_true",
                   help="rows of 8 samples along straight lines between two random z "
                        "(num // 8 rows, at least one)")
    p.add_argument("--checkpoint", help="a checkpoint file (default: the newest valid one)")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights even when EMA ones exist")
    p.set_defaults(func=_sample, parser=p)

    p = sub.add_parser(
        "eval", help="score a trained run: FID, KID, IS, precision/recall, digits, mixture",
        description="Score a run's newest (or a chosen) checkpoint, with its EMA weights when it "
                    "kept them. fid, kid, is and pr use the Inception-v3 of the standard FID code, "
                    "whose weights file you supply (--inception or $FASTGAN_INCEPTION_WEIGHTS; "
                    "nothing is downloaded); fid, kid and pr compare with the run's training data "
                    "(or --ref), whose statistics are computed once and cached. digits and mixture "
                    "need no weights. The results are printed and appended to RUN/eval.jsonl.")
    _add_run(p)
    p.add_argument("--metrics", help="some of fid,kid,is,pr,digits,mixture (default: mixture for "
                                     "2-D data, digits for the digits, else fid)")
    p.add_argument("--ref", metavar="PATH",
                   help="reference: a dataset (folder, zip, prepared file, 'digits') or a statistics "
                        ".npz (mu, sigma; pytorch-fid's work for FID) (default: the run's data)")
    p.add_argument("--num", type=int, help="generated samples (default 50,000 for Inception metrics, else 10,000)")
    p.add_argument("--ref-num", type=int, help="reference images at most (default 50,000)")
    p.add_argument("--inception", metavar="PATH",
                   help="pt_inception-2015-12-05-6726825d.pth (default: $FASTGAN_INCEPTION_WEIGHTS)")
    p.add_argument("--checkpoint", help="a checkpoint file, e.g. RUN/best.pt (default: the newest valid one)")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights even when EMA ones exist")
    p.add_argument("--batch-size", type=int, default=250, help="images per batch (default 250)")
    p.add_argument("--seed", type=int, default=0, help="seed of z and of KID's subsets (default 0)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    amp = p.add_mutually_exclusive_group()
    amp.add_argument("--amp", action="store_true",
                     help="Inception under float16 autocast on CUDA: faster, but not the float32 features of "
                          "pytorch-fid, whose FIDs papers report")
    amp.add_argument("--no-amp", action="store_true", help="Inception in float32 (the default)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_eval, parser=p)

    p = sub.add_parser("models", help="list the models with their papers and defaults",
                       description="The models with their papers and main defaults; with names, "
                                   "each one's every default hyperparameter.")
    p.add_argument("names", nargs="*", metavar="NAME", help="models to describe in full")
    p.set_defaults(func=_models, parser=p)
    return parser


_PACKAGE = pathlib.Path(__file__).resolve().parent


def _format_warning(command, plain_format, message, category, filename, lineno, line=None):
    """fastgan's own warnings as one line, like its errors: `fastgan train: warning: ...`
    (a category other than UserWarning named); anyone else's in Python's own format."""
    try:
        ours = pathlib.Path(filename).resolve().is_relative_to(_PACKAGE)
    except (OSError, ValueError):
        ours = False
    if not ours:
        return plain_format(message, category, filename, lineno, line)
    kind = "" if category is UserWarning else f" ({category.__name__})"
    return f"fastgan {command}: warning{kind}: {message}\n"


def _add_run(p):
    """The run directory of sample and eval: `--run RUN`, or RUN alone."""
    p.add_argument("run_pos", nargs="?", metavar="RUN", help="the run directory (or --run RUN)")
    p.add_argument("--run", help="the run directory")


def _resolve_run(args, parser):
    if not hasattr(args, "run_pos"):
        return
    if args.run is None and args.run_pos is None:
        parser.error("the run directory is required: RUN or --run RUN")
    if args.run is not None and args.run_pos is not None and args.run != args.run_pos:
        parser.error(f"two run directories given: {args.run_pos} and --run {args.run}")
    args.run = args.run if args.run is not None else args.run_pos


def main(argv=None):
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # named by the subcommand that refused it: `fastgan train: ... (see fastgan train --help)`
        getattr(args, "parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    _resolve_run(args, getattr(args, "parser", parser))
    command = " ".join(c for c in (args.command, getattr(args, "data_command", None)) if c)
    plain_format = warnings.formatwarning
    warnings.formatwarning = functools.partial(_format_warning, command, plain_format)
    try:
        return args.func(args)
    except BrokenPipeError:  # `fastgan models | head`: the reader left; not an error
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    # OSError: a path missing, unreadable or unwritable (FileNotFoundError, PermissionError, ...)
    except (CLIError, ValueError, OSError, BackendUnavailable, CheckpointError) as exc:
        print(f"fastgan {command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        from fastgan.train.control import Terminated
        if isinstance(exc, Terminated):
            print(f"fastgan {command}: terminated (SIGTERM)", file=sys.stderr)
            return 143  # 128 + SIGTERM, as a shell reports a process the signal ended
        print(f"fastgan {command}: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = plain_format


if __name__ == "__main__":
    sys.exit(main())
