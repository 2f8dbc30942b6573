"""The one trainer: every model's n_critic loop, precision, EMA, checkpoints, logging, DDP.

    model = fastgan.models.build("wgan-gp", resolution=32, channels=1)
    fastgan.Trainer(model, loader, {"steps": 1000, "amp": True, "out": "runs/mine"}).fit()

One generator step ("step", the papers' iteration) is the model's critic steps (n_critic,
or model.critic_steps(step) where a paper varies it), each on a fresh real batch and fresh
z, then one generator step on fresh z. The step never waits for the
host: logged values are summed on the device and read back once every `log_every` steps
(with the gradient norms, which are computed only on those steps).

Precision (amp=True): bfloat16 autocast where the device supports it (every CPU, CUDA
devices with bf16), else float16 autocast with a GradScaler. channels_last: on CUDA by
default.

Learning rates (lr_schedule): "constant" keeps the model's rates (and whatever the model
changes, as BEGAN's halving); "linear" sets both to initial_lr * (1 - step / total) before
each generator step, as WGAN-GP's released CIFAR-10 code does. initial_lr is kept in the
optimizers' param groups, so a resumed run continues the same schedule; a resume that
changes the run's length (--steps) changes `total`, and the rate moves at once to the
new schedule's value at that step.

CUDA graphs (cuda_graphs, fastgan.train.graphs): on a CUDA device the critic step and the
generator step are captured after a few eager steps and replayed, one launch each; log
steps and anything that cannot be captured run eagerly, with the reason said once.

Multi-GPU: started by torchrun (WORLD_SIZE > 1 in the environment) the trainer joins the
process group (NCCL on CUDA, gloo on CPU), wraps the networks in DistributedDataParallel,
shards the data, splits the batch size over the processes (batch_size is the global
batch, as in the papers) and logs and checkpoints on rank 0 only. Each process trains on
cuda:LOCAL_RANK; a loader passed in must be the process's shard (_check_shard).

Checkpoints hold everything a run needs to continue exactly: networks, optimizers, scaler,
EMA, the model's extra state, every RNG state, the step, the config and the data position;
a resumed CPU run gives the same losses, step for step, as an uninterrupted one.
"""
import contextlib
import copy
import datetime
import json
import math
import numbers
import os
import pathlib
import shutil
import sys
import tempfile
import time

import torch
from torch import distributed as dist

from fastgan._devices import check_device, cpu_has_bf16
from fastgan.models.base import GANModel, number_from_text
from fastgan.train import checkpoint as ckpt
from fastgan.train import graphs
from fastgan.train.config import LR_SCHEDULES, TRAIN_DEFAULTS, TRAIN_KEYS, check_paths, plain, save_config
from fastgan.train.control import LOCK_NAME, Interrupted, RunLock, StopRequests, Terminated

CONFIG_FILE = "config.yaml"
# How long processes wait for one another in a collective. Evaluation runs on rank 0 while
# the others wait for it (Trainer._main_does), and its first one also computes the data's
# reference statistics: longer than NCCL's default of 10 minutes can be (gloo's is 30).
DIST_TIMEOUT = datetime.timedelta(hours=1)


def default_run_dir(config):
    return pathlib.Path("runs") / str(config.get("model") or "run")


def prepare_run_dir(run_dir, *, resume=False, overwrite=False, lock=None):
    """Checks that a run may write to run_dir (never another run's, unless asked, and never
    one a live process holds), creates it, takes `lock` (a control.RunLock of it) when
    given, then empties it for --overwrite."""
    run_dir = check_run_dir(run_dir, resume=resume, overwrite=overwrite)
    run_dir.mkdir(parents=True, exist_ok=True)
    if lock is not None:
        lock.acquire()  # before the deletion: no other process starts writing meanwhile
    if not resume and overwrite:
        for child in run_dir.iterdir():
            if child.name == LOCK_NAME:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    return run_dir


def check_run_dir(run_dir, *, resume=False, overwrite=False):
    """prepare_run_dir's checks alone, changing nothing: the trainer runs them before its
    setup and prepares the directory after it, so a setup that fails (a bad data path, say)
    neither leaves a run directory behind nor has deleted the one --overwrite named."""
    run_dir = pathlib.Path(run_dir)
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other")
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"run directory {run_dir} is a file")
    if not run_dir.exists():  # it will be created: its nearest existing ancestor must allow that
        parent = next(p for p in run_dir.absolute().parents if p.exists())
        if not parent.is_dir():
            raise ValueError(f"run directory {run_dir} cannot be created: {parent} is a file")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ValueError(f"run directory {run_dir} cannot be created: {parent} is not writable")
        try:  # the permission bits can pass where a folder still cannot be made (root in /sys)
            os.rmdir(tempfile.mkdtemp(prefix=".fastgan-probe-", dir=parent))
        except OSError as exc:
            raise ValueError(f"run directory {run_dir} cannot be created in {parent}: "
                             f"{exc.strerror or exc}") from None
    used = run_dir.exists() and any(p.name != LOCK_NAME for p in run_dir.iterdir())
    if run_dir.exists():
        RunLock.check_free(run_dir)
    if resume:
        read_run_config(run_dir, "--resume: ")
    elif used:
        why = _not_a_run(run_dir)
        if not overwrite and why:  # neither --resume nor --overwrite would take it
            raise ValueError(f"run directory {run_dir} exists, is not empty and is not a fastgan run "
                             f"({why}); choose another --out")
        if not overwrite:
            raise ValueError(f"run directory {run_dir} already exists; pass --resume to continue "
                             "that run or --overwrite to replace it")
        if why:
            raise ValueError(f"--overwrite: {run_dir} is not empty and is not a fastgan run ({why}); "
                             "refusing to delete it")
    return run_dir


def read_run_config(run_dir, what=""):
    """The saved config of the run in run_dir. FileNotFoundError without a config.yaml,
    ValueError when it cannot be read or names no fastgan model: the one check of "is this
    a fastgan run" for --resume, --overwrite, sample, eval and load_generator. `what`
    prefixes the message (e.g. "--resume: ")."""
    from fastgan import models
    from fastgan.train.config import load_run_config
    path = pathlib.Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{what}{run_dir} holds no fastgan run (no {CONFIG_FILE})")
    try:
        saved = load_run_config(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{what}{path} is not a fastgan run's config: {exc}") from None
    if saved.get("model") not in models.names():
        raise ValueError(f"{what}{path} is not a fastgan run's config: it names no fastgan model "
                         f"(model: {saved.get('model')!r})")
    return saved


# What a run writes into its directory (RunLogger's sample PNGs go under samples/), and
# eval.jsonl, which `fastgan eval` appends to the run it scored.
RUN_ENTRIES = frozenset({CONFIG_FILE, "checkpoints", "samples", "metrics.jsonl", "tensorboard",
                         "best.pt", "best.json", "eval.jsonl", LOCK_NAME,
                         pathlib.Path(CONFIG_FILE).stem + ".tmp"})


def _run_temporary(p):
    """Whether p is the temporary of a write a killed run left (".best.pt.x1y2.tmp": the
    atomic writes' mkstemp names of RUN_ENTRIES): part of the run, not a stranger's file."""
    name = p.name
    return (p.is_file() and name.startswith(".") and name.endswith(".tmp")
            and any(name.startswith(f".{entry}.") for entry in RUN_ENTRIES))


def _not_a_run(run_dir):
    """Why run_dir is not a directory fastgan wrote, or None: its config must name a known
    model and it may hold nothing a run does not write (a config.yaml alone proves nothing:
    many project folders have one)."""
    try:
        read_run_config(run_dir)
    except (FileNotFoundError, ValueError) as exc:
        return str(exc)
    foreign = sorted(p.name + ("/" if p.is_dir() else "") for p in run_dir.iterdir()
                     if p.name not in RUN_ENTRIES and not _run_temporary(p))
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        return f"it also holds {shown}, which a run does not write"
    return None


def _count(n, word):
    """"1 step", "2 steps"."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_path(data):
    """Whether a `data` setting is a path (not a built-in dataset or a toy mixture's name)."""
    from fastgan.data import DEFAULT_DATASET, toy
    return isinstance(data, str) and data != DEFAULT_DATASET and data not in toy.MIXTURES


# What --resume may change: how long, how often to log/sample/save/score, where and how
# fast it runs. The rest (the model, data, seed, batch, precision, schedule, EMA) would make
# the resumed run another run than the one its checkpoints hold.
RESUME_MAY_CHANGE = frozenset({
    "steps", "epochs", "log_every", "sample_every", "ckpt_every", "keep", "eval_every", "eval_num",
    "eval_ref", "metrics", "inception", "progress", "tensorboard", "device", "num_workers",
    "data_backend", "cuda_graphs", "channels_last", "out"})


def check_seed(seed):
    """ValueError unless seed is an integer the trainer's seeding takes."""
    if not (_is_int(seed) and abs(seed) < 2**53):
        raise ValueError(f"Trainer: seed must be an integer in -(2**53-1)..2**53-1, got {seed!r}")


def check_settings(cfg):
    """ValueError naming the first trainer setting of a wrong type or range (the ones
    Trainer.__init__ does not check itself), before anything is set up or written."""
    steps, epochs = cfg["steps"], cfg["epochs"]
    if steps is not None and not (_is_int(steps) and steps >= 1):
        raise ValueError(f"Trainer: steps must be a positive integer, got {steps!r}")
    if epochs is not None and not (isinstance(epochs, numbers.Real) and not isinstance(epochs, bool)
                                   and math.isfinite(epochs) and epochs > 0):
        raise ValueError(f"Trainer: epochs must be a number > 0, got {epochs!r}")
    for key in ("amp", "flip", "tensorboard", "progress", "sync_bn"):
        if not isinstance(cfg[key], bool):
            raise ValueError(f"Trainer: {key} must be true or false, got {cfg[key]!r}")
    for key, none in (("channels_last", "on CUDA only"), ("cuda_graphs", "where capture works")):
        if cfg[key] is not None and not isinstance(cfg[key], bool):
            raise ValueError(f"Trainer: {key} must be true, false or none ({none}), got {cfg[key]!r}")
    # seed * 1000 + rank seeds torch, which takes -2**63..2**64-1 (older runs may hold a
    # negative seed: still accepted, so that they resume)
    check_seed(cfg["seed"])
    if cfg["eval_num"] is not None and not (_is_int(cfg["eval_num"]) and cfg["eval_num"] >= 2):
        raise ValueError(f"Trainer: eval_num must be an integer >= 2 (the metrics' statistics need two "
                         f"samples) or none, got {cfg['eval_num']!r}")
    check_paths(cfg)
    from fastgan.data import BACKENDS
    if cfg["data_backend"] not in BACKENDS:
        raise ValueError(f"Trainer: data_backend must be one of {', '.join(BACKENDS)}, got {cfg['data_backend']!r}")
    if cfg["metrics"] is not None:
        from fastgan.metrics.evaluate import parse_metrics
        try:
            parse_metrics(cfg["metrics"])
        except ValueError as exc:
            raise ValueError(f"Trainer: metrics: {exc}") from None
    check_device(cfg["device"], "Trainer: ")


def precision(device, amp):
    """(autocast dtype or None, whether a GradScaler is needed)."""
    if not amp:
        return None, False
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16, True
    return torch.bfloat16, False


def _grad_norm(params):
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return None
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)).float())


class Trainer:
    """Trains `model` (a fastgan.models.GANModel) on `loader` (fastgan.data.make_loader's, or
    None to build one from the config) with `config` (trainer settings, see
    fastgan.train.config.TRAIN_DEFAULTS; unknown keys raise)."""

    def __init__(self, model, loader=None, config=None, *, resume=False, overwrite=False):
        config = dict(config or {})
        model_keys = set(model.config)
        unknown = sorted(set(config) - set(TRAIN_DEFAULTS) - model_keys)
        if unknown:
            raise ValueError(f"Trainer: unknown setting(s) {', '.join(unknown)}; "
                             f"expected {', '.join(sorted(TRAIN_DEFAULTS))} or the model's hyperparameters")
        differ = sorted(k for k in set(config) & model_keys - TRAIN_KEYS
                        if plain(config[k]) != plain(model.config[k]))
        if differ:
            raise ValueError(f"Trainer: {', '.join(f'{k}={config[k]!r}' for k in differ)} differ(s) from "
                             f"the model's ({', '.join(f'{k}={model.config[k]!r}' for k in differ)}); "
                             "model hyperparameters are set when it is built: models.build(name, ...)")
        self.model = model
        self.loader = loader
        self.cfg = {**TRAIN_DEFAULTS, **{k: v for k, v in config.items()
                                                        if k not in model_keys}}
        self.cfg["model"] = model.name
        if self.cfg["steps"] is None and self.cfg["epochs"] is None:
            raise ValueError("Trainer: set steps or epochs")
        for key in ("log_every", "sample_every", "ckpt_every", "keep", "num_samples"):
            if not _is_int(self.cfg[key]) or self.cfg[key] < 1:
                raise ValueError(f"Trainer: {key} must be a positive integer, got {self.cfg[key]!r}")
        ev = self.cfg["eval_every"]
        if isinstance(ev, bool) or not isinstance(ev, int) or ev < 0:
            raise ValueError(f"Trainer: eval_every must be an integer >= 0 (0: no evaluation), got {ev!r}")
        for key in ("epochs", "ema"):  # real-valued: YAML reads 1e-4 as text (number_from_text)
            self.cfg[key] = number_from_text(self.cfg[key])
        ema = self.cfg["ema"]
        if isinstance(ema, bool) or not isinstance(ema, numbers.Real) or not 0.0 <= ema < 1.0:
            raise ValueError(f"Trainer: ema is a decay in [0, 1), got {self.cfg['ema']!r}")
        if self.cfg["lr_schedule"] not in LR_SCHEDULES:
            raise ValueError(f"Trainer: lr_schedule must be one of {', '.join(LR_SCHEDULES)}, "
                             f"got {self.cfg['lr_schedule']!r}")
        check_settings(self.cfg)
        self.resume = resume
        self.overwrite = overwrite
        self.step = 0
        self.images_seen = 0
        self.history = []  # what was logged: [{"step": s, name: value, ...}]
        self._graphs, self._graphs_wanted, self._steps_run = None, False, 0
        self._lock, self._mid_step, self._mid_log = None, False, False
        self._saved_step = None  # the step of the checkpoint save() wrote last
        self._sums, self._counts, self._norms = {}, {}, {}
        self._resumed_window = None
        self._saved_length = None  # the resumed run's own (steps, epochs), from its config.yaml
        self._resume_from = None   # (path, state) of the checkpoint a resume continues from
        self.complete = False  # a resumed run already at its length: fit() trains nothing
        self.evaluations = []  # eval_every's results: [{"step": s, metric key: value, ...}]
        self.best = None  # {"step", "metrics", "results"} of the best evaluation so far

    # -- setup -----------------------------------------------------------------------------
    def _setup_distributed(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        want = check_device(self.cfg["device"], "Trainer: ")  # "cpu:0" is "cpu"
        if want is None:
            want = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(want)
        if self.device.type == "cuda":
            if self.world > 1:  # one GPU per process: its LOCAL_RANK's ("cuda" chose GPU 0 in all)
                if self.device.index is None:
                    self.device = torch.device("cuda", local)
                elif self.device.index != local:
                    raise ValueError(f"Trainer: device {want} in process {self.rank} of {self.world}, whose "
                                     f"LOCAL_RANK is {local}: each process trains on its own GPU, "
                                     f"cuda:LOCAL_RANK; pass device 'cuda' (or none)")
            elif self.device.index is None:  # "cuda": the current device (set_device needs an index)
                self.device = torch.device("cuda", torch.cuda.current_device())
            torch.cuda.set_device(self.device)
            # fixed input shapes every step: let cuDNN pick its fastest algorithms once
            torch.backends.cudnn.benchmark = True
        if self.world > 1 and self.cfg["sync_bn"] and self.device.type != "cuda":  # DDP refuses it later
            raise ValueError(f"Trainer: sync_bn needs CUDA devices (torch's SyncBatchNorm); device is {self.device}")
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo", timeout=DIST_TIMEOUT)
        self.main = self.rank == 0

    def _setup_data(self):
        cfg, mc = self.cfg, self.model.config
        batch = mc["batch_size"]
        if batch % self.world:
            raise ValueError(f"batch_size {batch} does not split over {self.world} processes")
        if self.loader is None:
            from fastgan import data
            self.loader = data.make_loader(
                cfg["data"] or data.DEFAULT_DATASET, resolution=mc["resolution"],
                batch_size=batch // self.world, backend=cfg["data_backend"], device=self.device,
                crop=cfg["crop"], flip=cfg["flip"], seed=cfg["seed"], shard=(self.rank, self.world),
                channels_last=self.channels_last, channels=mc["channels"],
                num_workers=cfg["num_workers"], verbose=self.main, progress=self.main and cfg["progress"])
        else:
            # a checkpoint keeps the loader's position; a resume puts it back
            needs = ("state_dict", "load_state_dict") if self.resume else ("state_dict",)
            missing = [m for m in needs if not callable(getattr(self.loader, m, None))]
            if missing:  # found at the first checkpoint otherwise, after ckpt_every steps
                raise ValueError(
                    f"Trainer: the loader ({type(self.loader).__name__}) has no {' or '.join(missing)}: "
                    "checkpoints keep the loader's position, so the trainer needs a loader that saves "
                    "it (fastgan.data.make_loader makes one from a dataset)")
            if self.world > 1:
                self._check_shard(self.loader, batch)
        if len(self.loader) == 0:
            raise ValueError(f"the data gives no full batch of {batch // self.world} images per process")
        if cfg["steps"] is not None:
            self.total = int(cfg["steps"])
        else:
            self.total = self._steps_for_epochs(float(cfg["epochs"]), len(self.loader))
        self._it = None

    def _steps_for_epochs(self, epochs, batches):
        """The generator steps whose critic steps first make `epochs` passes over `batches`
        batches: the model's critic_steps(step), which WGAN's critic_boost raises to 100 in
        the first 25 steps and every 500th (Arjovsky et al. 2017), not n_critic alone."""
        need = epochs * batches
        if type(self.model).critic_steps is GANModel.critic_steps:  # n_critic every step
            return max(1, math.ceil(need / self.model.n_critic))
        total, done = 0, 0
        while done < need:
            done += self.model.critic_steps(total)
            total += 1
        return max(1, total)

    def _check_shard(self, loader, batch):
        """A loader passed in under several processes must be this process's shard, with
        its share of the batch: unsharded, every process trained on the same batches at the
        full batch size (and the run could not be resumed with its processes)."""
        want = {"rank": self.rank, "world_size": self.world, "batch_size": batch // self.world}
        have = {k: getattr(loader, k, None) for k in want}
        if have != want:
            raise ValueError(
                f"Trainer: under {self.world} processes the loader must be process {self.rank}'s shard "
                f"with batch_size {batch} // {self.world}: make_loader(..., batch_size={batch // self.world}, "
                f"shard=({self.rank}, {self.world})); it has "
                + ", ".join(f"{k}={have[k]!r}" for k in want if have[k] != want[k])
                + " (or pass no loader: the trainer makes the shards from config['data'])")

    def _setup(self):
        cfg = self.cfg
        self._setup_distributed()
        self.channels_last = (self.device.type == "cuda" if cfg["channels_last"] is None
                              else bool(cfg["channels_last"]))
        self.amp_dtype, use_scaler = precision(self.device, cfg["amp"])
        if self.amp_dtype == torch.bfloat16 and self.device.type == "cpu" and not cpu_has_bf16():
            self._say("--amp: this CPU has no bfloat16 hardware (AVX512-BF16 or AMX): torch emulates "
                      "bf16 and training runs several times slower than float32; leave --amp off here")
        self.run_dir = pathlib.Path(cfg["out"] or default_run_dir(cfg))
        self._main_does("checking its run directory", check_run_dir, self.run_dir,
                        resume=self.resume, overwrite=self.overwrite)
        if self.resume:
            self._check_resumed_config()
            self._resume_from = self._load_resume_state()
            state = self._resume_from[1]
            if state is not None and cfg["steps"] is not None and int(state["step"]) >= cfg["steps"]:
                # complete, or a --steps it has passed: said now, before the data is scanned
                # and the lock taken (a length in epochs needs the data: checked after it)
                self.step, self.total = int(state["step"]), int(cfg["steps"])
                self._check_length()
                return
        torch.manual_seed(cfg["seed"] * 1000 + self.rank)

        model = self.model
        if cfg["sync_bn"] and self.world > 1:
            if model.config.get("fused", True):
                raise ValueError("sync_bn needs the stock BatchNorm modules: set fused=false "
                                 "(the fused blocks compute per-process statistics)")
            model.generator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model.generator)
            model.critic = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model.critic)
        model.to(self.device, torch.channels_last if self.channels_last else None)
        self.opt_g, self.opt_d = model.build_optimizers()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=use_scaler)
        self._graphs = None
        self._graphs_wanted = self._want_graphs()
        if self._graphs_wanted:
            graphs.prepare_optimizers((self.opt_g, self.opt_d), self.device)
        self.ema = None
        if cfg["ema"]:
            self.ema = copy.deepcopy(model.generator).eval().requires_grad_(False)
            self._ema_params, self._ema_buffers = list(self.ema.parameters()), list(self.ema.buffers())
        # listed once: the step loops over none of them in Python
        self._g_params, self._d_params = list(model.generator.parameters()), list(model.critic.parameters())
        self._g_buffers = list(model.generator.buffers())
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.G = DDP(model.generator, device_ids=ids)
            self.D = DDP(model.critic, device_ids=ids)
        else:
            self.G, self.D = model.generator, model.critic
        self._setup_data()
        if self.resume and self._resume_from[1] is not None and int(self._resume_from[1]["step"]) >= self.total:
            # a length in epochs, now in steps: complete or passed, said before the evaluator
            # is built and the lock taken, once the data is known to be the run's own (a
            # smaller copy of it would make fewer steps an epoch, and an interrupted run complete)
            self._resumed_data_state(*self._resume_from)
            self.step = int(self._resume_from[1]["step"])
            self._check_length()
            return
        self.evaluator = None
        unused = [k for k in ("metrics", "eval_num", "eval_ref") if cfg[k] is not None]
        if unused and not cfg["eval_every"]:
            self._say(f"{', '.join(unused)} set but eval_every is 0: this run scores nothing "
                      "(--eval-every N to score every N steps)")
        if cfg["eval_every"]:
            from fastgan.metrics.evaluate import Evaluator, default_metrics
            mc = model.config
            self.evaluator = Evaluator(
                cfg["metrics"] or default_metrics(cfg["data"]), data=cfg["data"],
                resolution=mc["resolution"], channels=mc["channels"], crop=cfg["crop"],
                num=cfg["eval_num"], ref=cfg["eval_ref"], inception=cfg["inception"],
                device=self.device, seed=cfg["seed"], progress=self.main and cfg["progress"],
                verbose=self.main)
            # a missing weights file or an unfit statistics file fails now
            # (building the Inception network draws its initial weights: not from the run's RNG)
            self._main_does("checking the evaluation's files", self._keeping_rng(self.evaluator.check))

        def claim():  # after the setup, which may still fail (check_run_dir)
            self._lock = RunLock(self.run_dir)
            prepare_run_dir(self.run_dir, resume=self.resume, overwrite=self.overwrite, lock=self._lock)
        self._main_does("preparing its run directory", claim)
        # The sample grid's z: fixed for the run, the same on every rank.
        gen = torch.Generator().manual_seed(cfg["seed"] + 12345)
        self.fixed_z = model.sample_z(cfg["num_samples"], "cpu", generator=gen).to(self.device)

        from fastgan.train.logging import RunLogger
        if self.resume:  # before config.yaml is rewritten: a refused resume leaves the run as it was
            self._restore()  # (a run at or past its length has returned above)
        self._main_does(f"writing {CONFIG_FILE}", save_config, {**model.config, **cfg, "out": str(self.run_dir)},
                        self.run_dir / CONFIG_FILE)
        # On resume, lines logged past the checkpoint (by the run that was cut off) are dropped.
        from fastgan.data import toy
        self.logger = RunLogger(self.run_dir, enabled=self.main, tensorboard=cfg["tensorboard"],
                                purge_step=self.step + 1 if self.resume else None,
                                mixture=cfg["data"] if cfg["data"] in toy.MIXTURES else None)

    def _want_graphs(self):
        """Whether to capture the steps; says why not (once) where they were not ruled out."""
        want = self.cfg["cuda_graphs"]
        if want is False:
            return False
        why = graphs.unavailable_reason(self)
        if why is None:
            return True
        if want is True:
            raise ValueError(f"cuda_graphs=true: {why}")
        if self.device.type == "cuda":
            self._say(f"CUDA graphs off: {why}; steps run eagerly")
        return False

    # -- checkpoints -----------------------------------------------------------------------
    @staticmethod
    def _plain_lr(opt_state):
        """An optimizer state dict with float learning rates (graphed runs keep them as device
        tensors): a checkpoint loads into any optimizer, eager or captured, CPU or GPU."""
        for group in opt_state["param_groups"]:
            if isinstance(group.get("lr"), torch.Tensor):
                group["lr"] = float(group["lr"])
        return opt_state

    def state_dict(self):
        m = self.model
        return {
            "model": m.name, "config": {**m.config, **self.cfg, "out": str(self.run_dir)},
            "step": self.step, "generator": m.generator.state_dict(), "critic": m.critic.state_dict(),
            "opt_g": self._plain_lr(self.opt_g.state_dict()),
            "opt_d": self._plain_lr(self.opt_d.state_dict()),
            "scaler": self.scaler.state_dict(), "ema": None if self.ema is None else self.ema.state_dict(),
            "extra": m.extra_state(), "rng": ckpt.rng_state(), "data": self.loader.state_dict(),
            "fixed_z": self.fixed_z.cpu(), "eval_best": self.best, "log_window": self._log_window(),
        }

    def _check_resumed_config(self):
        """Refuses, before anything is written, a resume whose settings differ from the run's
        own (config.yaml) in anything but RESUME_MAY_CHANGE."""
        saved = read_run_config(self.run_dir, "--resume: ")
        self._saved_length = (saved.get("steps"), saved.get("epochs"))
        now = {**self.model.config, **self.cfg}
        changed = sorted(k for k in set(saved) & set(now) - RESUME_MAY_CHANGE
                         if plain(saved[k]) != plain(now[k]))
        if "data" in changed and _is_path(saved["data"]) and _is_path(now["data"]):
            changed.remove("data")  # a dataset moved: its loader refuses one of another size
            self._say(f"--resume: the data path changed from {saved['data']} to {now['data']}")
        if changed:
            what = "; ".join(f"{k}: {saved[k]!r} in the run, {now[k]!r} now" for k in changed)
            raise ValueError(f"--resume: {self.run_dir} was trained with other settings ({what}); a "
                             f"resume may change only {', '.join(sorted(RESUME_MAY_CHANGE - {'out'}))} "
                             "and a data path (for a dataset that moved). "
                             "Start a new run (another --out) to train with these")

    def _check_length(self):
        """A resumed run at or past its length (self.step >= self.total): ValueError when
        this resume set another length (a --steps or --epochs that would train nothing);
        else the run is complete at its own length, which is said, and fit() does nothing."""
        cfg = self.cfg
        if (cfg["steps"], cfg["epochs"]) != self._saved_length:
            given = (f"--steps {cfg['steps']}" if cfg["steps"] is not None
                     else f"--epochs {cfg['epochs']} ({_count(self.total, 'step')})")
            raise ValueError(f"--resume: {self.run_dir} is at step {self.step}; {given} would train "
                             f"nothing (nothing was changed); --steps M with M > {self.step} extends it")
        self.complete = True
        self._say(f"--resume: {self.run_dir} is already complete at step {self.step}; nothing to "
                  f"train (--steps M with M > {self.step} extends it)")

    def _load_resume_state(self):
        """(path, state) of the checkpoint --resume continues from, or (None, None) for a run
        without one yet; ValueError where it must not start over or skip an intact one."""
        newest, skipped = ckpt.list_checkpoints(self.run_dir), []
        path, state = ckpt.load_latest(self.run_dir, skipped=skipped)
        foreign = [(p, why) for p, why in skipped if why.startswith(("unsupported version", "cannot be read"))]
        if foreign:  # intact, but from another fastgan/torch: the first save would delete it
            p, why = foreign[0]
            raise ValueError(f"--resume: {p} is intact but {why}; resume with the fastgan that wrote "
                             "it, or move it out of checkpoints/ to resume from an older one")
        closed = [(p, why) for p, why in skipped if why.startswith("cannot be opened")]
        if closed:  # maybe intact (permissions, a network file system): the first save would replace it
            p, why = closed[0]
            raise ValueError(f"--resume: {p} {why}; nothing was changed. Make it readable, or move it "
                             "out of checkpoints/ to resume from an older one")
        if state is None and newest:  # never start over silently: the first save would delete them all
            raise ValueError(f"--resume: none of the {len(newest)} checkpoint(s) in {self.run_dir} "
                             f"loads (see the warnings above); nothing was changed")
        return path, state

    def _resumed_data_state(self, path, state):
        """The checkpoint's loader state for this process, once checked to continue this run's
        batches: saved over as many processes, and (fastgan's loaders) by a loader drawing the
        same batches from the same number of samples. ValueError otherwise."""
        from fastgan.data._position import Position, check_position

        data = dict(state["data"])
        saved_world = int(data.get("shard", (0, 1))[1])
        if saved_world != self.world:
            raise ValueError(f"--resume: {path} was saved by a run over {saved_world} process(es), "
                             f"this one has {self.world}: the data order and the random streams "
                             f"would not continue; resume with {saved_world}")
        data["shard"] = [self.rank, self.world]  # rank 0 saved its position: every rank's is the same
        if isinstance(self.loader, Position):
            check_position(self.loader, data)
        return data

    def _restore(self):
        path, state = self._resume_from  # loaded by _setup, before the data
        self._resume_from = None
        if state is None:
            self._say(f"--resume: no checkpoint in {self.run_dir} yet; starting from step 0")
            return
        if state["model"] != self.model.name:
            raise ValueError(f"--resume: {path} is a {state['model']!r} run, not {self.model.name!r}")
        m = self.model
        try:
            m.generator.load_state_dict(state["generator"])
            m.critic.load_state_dict(state["critic"])
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
        except (RuntimeError, ValueError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise ValueError(f"--resume: {path} does not fit this model: {first}") from None
        if self._graphs_wanted:  # the loaded groups have float lr and capturable as saved
            graphs.prepare_optimizers((self.opt_g, self.opt_d), self.device)
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        m.load_extra_state(state["extra"])
        mine = {"rng": state["rng"], "log_window": state.get("log_window")}
        ranks = state.get("ranks") or [mine]
        self.loader.load_state_dict(self._resumed_data_state(path, state))
        self.fixed_z = state["fixed_z"].to(self.device)
        if len(ranks) == self.world:
            mine = ranks[self.rank]
            ckpt.set_rng_state(mine["rng"])
            self._resumed_window = mine.get("log_window")
        else:  # saved before checkpoints held every process's streams: they start afresh
            self._say(f"--resume: {path} holds one process's random state; each process's "
                      f"random numbers start afresh (the resumed run is not bit for bit the same)")
        self.step = int(state["step"])
        self.best = state.get("eval_best")
        on_disk = self.run_dir / "best.json"  # written after an evaluation, maybe past this checkpoint
        try:
            newer = json.loads(on_disk.read_text()) if on_disk.is_file() else None
        except ValueError:
            newer = None
        if isinstance(newer, dict) and {"step", "metrics", "results"} <= set(newer) and \
                int(newer["step"]) > (self.best["step"] if self.best else -1):
            self.best = newer  # best.pt holds that model: a later evaluation must beat it to replace it
        self._say(f"resumed from {path} at step {self.step}")

    def save(self):
        """A checkpoint of this step (rank 0 writes it). Under several processes every process
        calls this at the same step: each one's RNG state and log window go into it ("ranks"),
        since each draws its own noise and a resume restores each stream."""
        ranks = None
        if self.world > 1:
            ranks = [None] * self.world
            dist.all_gather_object(ranks, {"rng": ckpt.rng_state(), "log_window": self._log_window()})

        def write():
            state = self.state_dict()
            if ranks is not None:
                state["ranks"] = ranks
            ckpt.save_checkpoint(self.run_dir, self.step, state, keep=self.cfg["keep"])
        self._main_does(f"writing the checkpoint of step {self.step}", write)
        self._saved_step = self.step

    def _log_window(self):
        """The logged values summed since the last log step: a resume continues the window,
        so the first row after it averages the same steps as the uninterrupted run's."""
        return {"sums": {k: v.detach().cpu() for k, v in self._sums.items()},
                "counts": dict(self._counts)}

    # -- the loop --------------------------------------------------------------------------
    def _say(self, msg):
        if self.main:
            print(f"fastgan: {msg}", file=sys.stderr)

    def _main_does(self, what, fn, *args, **kwargs):
        """fn(*args, **kwargs) on the main process (rank 0), which alone writes the run
        directory; returns its result there, None on the others. Under several processes every
        process calls this at the same point, and an error on the main process stops the others
        too (a RuntimeError naming `what`), instead of leaving them in their next collective
        until DIST_TIMEOUT (a launcher that does not end the others when one fails: srun, say)."""
        result = error = None
        if self.main:
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                error = exc
        if self.world > 1:
            failed = torch.tensor([error is not None], dtype=torch.int32, device=self.device)
            dist.all_reduce(failed)
            if failed.item() and error is None:
                raise RuntimeError(f"process 0 failed {what} (its error is in its output); "
                                   f"process {self.rank} stops too")
        if error is not None:
            raise error
        return result

    def _batch(self):
        while True:
            if self._it is None:
                self._it = iter(self.loader)
            try:
                images, _ = next(self._it)
                return images
            except StopIteration:
                self._it = None

    def _autocast(self):
        # no cast cache under graphs: a captured step must not keep casts from the capture
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.bfloat16,
                              enabled=self.amp_dtype is not None, cache_enabled=not self._graphs_wanted)

    def _accumulate(self, logs):
        """Sums each logged value on the device (no synchronization, in place, into tensors
        that live for the whole run) and counts it."""
        for k, v in logs.items():
            if k in self._sums:
                self._sums[k].add_(v.detach())
            else:
                self._sums[k] = v.detach().float().clone()
            self._counts[k] = self._counts.get(k, 0) + 1

    def _optimize(self, loss, opt, params, norms, key, inputs=None):
        """Backward (into `inputs` only, when given) and step, with loss scaling when it is
        on; the gradient norm of params into norms[key] when norms is not None."""
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward(inputs=inputs)
        if norms is not None:
            self.scaler.unscale_(opt)
            norms[key] = _grad_norm(params)
        self.scaler.step(opt)
        self.scaler.update()

    def _critic_step(self, real, norms):
        """One critic step on the batch `real` (the body a CUDA graph captures)."""
        model = self.model
        scaler = self.scaler if self.scaler.is_enabled() else None
        z = model.sample_z(real.shape[0], self.device)
        with self._autocast():
            with torch.no_grad():
                fake = model.generator(z)
            loss_d, logs = model.critic_loss(self.D, real, fake, scaler=scaler)
        self._optimize(loss_d, self.opt_d, self._d_params, norms, "grad_norm/d")
        model.after_critic_step()
        self._accumulate(logs)

    def _generator_step(self, norms):
        """One generator step, with the EMA update (the body a CUDA graph captures)."""
        model = self.model
        z = model.sample_z(self.loader.batch_size, self.device)
        with self._autocast():
            loss_g, logs = model.generator_loss(model.critic, self.G(z))
        # inputs=: the generator step computes no critic weight gradients
        self._optimize(loss_g, self.opt_g, self._g_params, norms, "grad_norm/g", inputs=self._g_params)
        self._accumulate(logs)
        if self.ema is not None:
            self._update_ema()

    def _capture(self, real):
        """Captures the steps (after the warm-up); on failure, says why and stays eager."""
        try:
            self._graphs = graphs.StepGraphs(self, real)
            self._say(f"CUDA graphs: critic and generator steps captured at step {self.step}")
        except Exception as exc:  # noqa: BLE001  (any capture failure: eager from here on)
            if self.cfg["cuda_graphs"] is True:
                raise
            torch.cuda.synchronize()
            self._graphs, self._graphs_wanted = None, False
            self._say(f"CUDA graphs off: capture failed ({type(exc).__name__}: {exc}); steps run eagerly")

    def train_step(self, measure_norms=False):
        """One generator step: the model's critic steps, then one generator step. Replayed
        from CUDA graphs when they are on and this is not a log step (measure_norms)."""
        norms = {} if measure_norms else None
        self._mid_step = True  # until the step count advances (a stop inside must not save)
        self._schedule_lr()
        warmup = self._graphs_wanted and self._graphs is None and self._steps_run < graphs.WARMUP_STEPS
        stream = None
        if warmup:  # PyTorch's advice: the eager steps before a capture on a side stream
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            for _ in range(self.model.critic_steps(self.step)):
                real = self._batch()
                self.images_seen += real.shape[0]
                if (self._graphs_wanted and self._graphs is None and not warmup
                        and not measure_norms):
                    self._capture(real)
                if self._graphs is not None and not measure_norms and self._graphs.matches(real):
                    self._graphs.critic_step(real)
                else:
                    self._critic_step(real, norms)
            if self._graphs is not None and not measure_norms:
                self._graphs.generator_step()
            else:
                self._generator_step(norms)
        if stream is not None:
            torch.cuda.current_stream().wait_stream(stream)
        self._steps_run += 1
        self.step += 1
        self._mid_step = False
        return {k: v for k, v in (norms or {}).items() if v is not None}

    def _schedule_lr(self):
        """Sets both optimizers' learning rates for generator step self.step: "linear" is
        initial_lr * (1 - step / total), the last step's 1 / total of it. A rate held as a
        device tensor (a captured step reads it) is filled in place."""
        if self.cfg["lr_schedule"] == "constant":
            return
        factor = max(0.0, 1.0 - self.step / self.total)
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                if "initial_lr" not in group:  # the first scheduled step (or a run that had none)
                    group["initial_lr"] = float(group["lr"])
                lr = group["initial_lr"] * factor
                if isinstance(group["lr"], torch.Tensor):
                    group["lr"].fill_(lr)
                else:
                    group["lr"] = lr

    @torch.no_grad()
    def _update_ema(self):
        torch._foreach_lerp_(self._ema_params, self._g_params, 1.0 - float(self.cfg["ema"]))
        if self._ema_buffers:  # an MLP generator has none
            torch._foreach_copy_(self._ema_buffers, self._g_buffers)

    @torch.no_grad()
    def samples(self, z=None):
        """Images from z (default: the run's fixed z) with the EMA generator when there is one,
        in eval mode (BatchNorm running statistics)."""
        g = self.ema if self.ema is not None else self.model.generator
        was = g.training
        g.eval()
        try:
            return g(self.fixed_z if z is None else z).float()
        finally:
            g.train(was)

    def _flush_logs(self, t_start, images):
        names = sorted(k for k in self._sums if self._counts.get(k))
        values = []
        if names:
            stacked = torch.stack([self._sums[k] for k in names])
            if self.world > 1:  # every process logs (and decides on) the mean over processes
                dist.all_reduce(stacked)
                stacked /= self.world
            values = stacked.tolist()  # one synchronization
        row = {k: v / self._counts[k] for k, v in zip(names, values)}
        row.update({k: v for k, v in self._norms.items()})
        elapsed = time.perf_counter() - t_start
        row["images_per_s"] = images / elapsed if elapsed > 0 else 0.0
        # zeroed in place: the sums are the same tensors for the whole run (a captured step adds into them)
        torch._foreach_zero_(list(self._sums.values()))
        self._counts, self._norms = {}, {}
        self.history.append({"step": self.step, **row})
        self._main_does(f"writing the log of step {self.step}", self.logger.scalars, self.step, row)
        self.model.on_log(self.step, row)
        return row

    def _keeping_rng(self, fn):
        """fn run with torch's global RNG (the CPU's and this device's) put back after it."""
        devices = [self.device] if self.device.type == "cuda" else []

        def run(*args, **kwargs):
            with torch.random.fork_rng(devices=devices):
                return fn(*args, **kwargs)
        return run

    def evaluate(self):
        """Scores the generator (its EMA when kept) with the run's metrics: logs them as
        eval/<key> (TensorBoard, metrics.jsonl), appends them to self.evaluations and, when
        they beat the best so far by the first metric (fastgan.metrics.PRIMARY), writes
        run_dir/best.pt (a full checkpoint) and best.json. Runs on the main process; the
        others wait. Uses no global RNG: training continues exactly as without it."""
        from fastgan.metrics.evaluate import PRIMARY, is_better

        def score():
            m = self.model
            g = self.ema if self.ema is not None else m.generator
            # whatever the metrics draw (a network's initial weights before its weights are
            # loaded, at the first evaluation of a process) is not drawn from the run's RNG
            results = self._keeping_rng(self.evaluator)(
                g, sample_z=lambda n, generator=None: m.sample_z(n, "cpu", generator=generator))
            numbers = {k: v for k, v in results.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)}
            self.logger.scalars(self.step, {f"eval/{k}": v for k, v in numbers.items()})
            self.evaluations.append({"step": self.step, **results})
            metrics = self.evaluator.metrics
            shown = ", ".join(f"{k} {numbers[k]:.4g}" for name in metrics for k, _ in PRIMARY[name][:1])
            # a best ranked by another first metric (changed on --resume) ranks nothing now
            same = self.best is not None and list(self.best["metrics"])[:1] == list(metrics)[:1]
            if is_better(results, self.best["results"] if same else None, metrics):
                # best.pt's state holds itself as the best; a write cut short (Ctrl-C, a full
                # disk) restores the one before: later evaluations must not be measured
                # against a model never saved
                previous = self.best
                self.best = {"step": self.step, "metrics": list(metrics), "results": numbers}
                try:
                    ckpt.save_file(self.run_dir / "best.pt", self.step, self.state_dict())
                    _write_json(self.run_dir / "best.json", self.best)
                except BaseException:
                    self.best = previous
                    raise
                shown += " (best so far: best.pt)"
            self._say(f"step {self.step}: {shown}")
            return results
        return self._main_does(f"evaluating step {self.step}", score)

    def fit(self):
        """Trains to the configured steps; returns self (self.history holds the logged rows).
        A resumed run already at its own length trains nothing and leaves the run as it was
        (self.complete); a resume to a length it has passed is refused (ValueError).
        SIGINT/SIGTERM stop it at the end of a step with a checkpoint (fastgan.train.control);
        the run directory is locked against other processes meanwhile."""
        t_fit = time.perf_counter()
        try:
            self._setup()
            if self.complete:  # said by _check_length
                return self
            t_loop = time.perf_counter()
            with StopRequests() as stop:
                self._loop(stop)
        finally:
            if self._lock is not None:
                self._lock.release()
        t_end = time.perf_counter()
        n, loop_s = self._steps_run, t_end - t_loop
        speed = "" if n == 0 or loop_s <= 0 else (
            f", {n / loop_s:.3g} steps/s" if n >= loop_s else f", {loop_s / n:.3g} s/step")
        self._say(f"done: step {self.step}, {_count(n, 'step')} in {loop_s:.1f} s{speed} (setup "
                  f"{t_loop - t_fit:.1f} s); samples and checkpoints in {self.run_dir}")
        return self

    def _stop_agreed(self, stop, log_step):
        """Whether to stop after this step: at once in one process; under several, at a log
        step, when any process was signalled (so that all stop after the same step)."""
        if self.world == 1:
            return stop.signum is not None
        if not log_step:
            return False
        flag = torch.tensor([0 if stop.signum is None else int(stop.signum)], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and stop.signum is None:
            stop.signum = int(flag.item())
        return bool(flag.item())

    def _loop(self, stop):
        cfg, model = self.cfg, self.model
        self._sums, self._counts, self._norms = {}, {}, {}
        window, self._resumed_window = self._resumed_window, None
        if window:  # the log window the checkpoint was saved in
            self._sums = {k: v.to(self.device, torch.float32).clone() for k, v in window["sums"].items()}
            self._counts = dict(window["counts"])
        self._steps_run = 0  # generator steps run by this fit() (the warm-up before a capture)
        self.images_seen = 0  # real images through the critic, this process
        t0, seen0 = time.perf_counter(), 0
        self._say(f"training {model.name} for {_count(self.total, 'step')} (from {self.step}) on {self.device}"
                  f"{' with ' + str(self.amp_dtype).replace('torch.', '') + ' autocast' if self.amp_dtype else ''}"
                  f", run directory {self.run_dir}")
        from fastgan.train.logging import Progress
        self.progress = Progress(self.total, initial=self.step, enabled=self.main and cfg["progress"])
        try:
            while self.step < self.total:
                log_now = (self.step + 1) % cfg["log_every"] == 0 or self.step + 1 == self.total
                norms = self.train_step(measure_norms=log_now)
                if log_now:
                    self._mid_log = True  # the row and on_log belong to the step (BEGAN's rates)
                    self._norms = {k: float(v) for k, v in norms.items()}
                    row = self._flush_logs(t0, (self.images_seen - seen0) * self.world)
                    self._mid_log = False
                    t0, seen0 = time.perf_counter(), self.images_seen
                    self.progress.update(self.step, images_per_s=row["images_per_s"],
                                         **{k: v for k, v in row.items() if k.startswith("loss/")})
                else:
                    self.progress.update(self.step)
                if self.step % cfg["sample_every"] == 0 or self.step == self.total:
                    self._main_does(f"writing the samples of step {self.step}",
                                    lambda: self.logger.images(self.step, self.samples()))
                if self.step % cfg["ckpt_every"] == 0 or self.step == self.total:
                    self.save()
                # a stop is saved before this step's evaluation (which may take minutes: a
                # scheduler's grace period is not spent on it); the evaluation is skipped
                stopping = self.step < self.total and self._stop_agreed(stop, log_now)
                if self.evaluator is not None and not stopping and (self.step % cfg["eval_every"] == 0
                                                                    or self.step == self.total):
                    self.evaluate()
                if stopping:
                    raise stop.exception()
        except KeyboardInterrupt as exc:
            newest = ckpt.list_checkpoints(self.run_dir) if self.main else []
            newest = newest[-1].name if newest else "none"
            if self._mid_step or self._mid_log:  # a second Ctrl-C inside a step: its state is not a step's
                where = f"inside step {self.step + 1}" if self._mid_step else f"while logging step {self.step}"
                self._say(f"stopped {where}: no checkpoint of a partial step (the newest is {newest})")
            elif self.world > 1 and not isinstance(exc, (Interrupted, Terminated)):
                # not a stop every process agreed on: the others may be anywhere, and saving
                # gathers every process's random state
                self._say(f"stopped at step {self.step} without agreeing with the other processes: "
                          f"no checkpoint (the newest is {newest})")
            else:
                what = str(exc).split(":")[0] if str(exc) else "interrupted"
                if self._saved_step == self.step:  # a checkpoint step: written just before
                    self._say(f"{what} at step {self.step}; its checkpoint is written")
                else:
                    self._say(f"{what} at step {self.step}; saving a checkpoint")
                    self.save()
            raise
        finally:
            self.progress.close()
            self.logger.close()


def _write_json(path, obj):
    import json

    from fastgan.train.logging import _replace_atomically
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    _replace_atomically(path, lambda tmp: pathlib.Path(tmp).write_text(text))


def load_generator(run_dir, *, checkpoint=None, device="cpu", ema=True):
    """The trained generator of a run (its EMA weights when the run kept them and ema=True:
    g.fastgan_ema says which), in eval mode. checkpoint: a path (default: the newest valid
    one); a checkpoint of another run (other model, hyperparameters or data) is refused."""
    from fastgan import models
    run_dir = pathlib.Path(run_dir)
    config = read_run_config(run_dir)
    if checkpoint is None:
        path, state = ckpt.load_latest(run_dir)
        if state is None:
            raise FileNotFoundError(f"{run_dir} has no valid checkpoint")
    else:
        path, state = checkpoint, ckpt.load_checkpoint(checkpoint)
    cls = models.get(config.get("model"))
    hyper = {k: v for k, v in config.items() if k in cls.defaults or k in models.COMMON}
    theirs = state.get("config") or {}
    other = [k for k in sorted(set(hyper) | {"model", "data"}) if k in theirs and k in config
             and plain(theirs[k]) != plain(config[k])]
    if other:  # a checkpoint of another run: its samples would be scored as this run's
        k = other[0]
        raise ckpt.CheckpointError(f"{path} is not a checkpoint of {run_dir}: its {k} is {theirs[k]!r}, "
                                   f"the run's is {config[k]!r}")
    model = cls(**hyper)
    g = model.generator
    used_ema = ema and state.get("ema") is not None
    try:
        g.load_state_dict(state["ema"] if used_ema else state["generator"])
    except RuntimeError as exc:
        raise ckpt.CheckpointError(f"{path} does not fit the generator of {run_dir}: "
                                   f"{str(exc).strip().splitlines()[0]}") from None
    g.fastgan_ema = used_ema
    g.z_dim = model.z_dim
    g.sample_z = lambda n, generator=None: model.sample_z(n, "cpu", generator=generator)
    g.fastgan_checkpoint = path
    g.fastgan_step = int(state["step"])
    g.fastgan_config = config
    return g.to(device).eval()
