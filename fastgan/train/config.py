"""A run's configuration: one flat dict of the model's hyperparameters and the trainer's settings.

Resolution order (later wins): the model's paper defaults (fastgan.models) and TRAIN_DEFAULTS,
then the built-in dataset's defaults when it is used (DATASET_DEFAULTS) or a prepared file's
resolution, channels and crop (prepared_defaults), then a config file
(--config, YAML or TOML), then --set key=value, then the explicit flags. The resolved config is
saved as config.yaml in the run directory and is what --resume continues with.
"""
import ast
import os
import pathlib

# The trainer's own settings (the model's hyperparameters live in fastgan.models).
TRAIN_DEFAULTS = {
    "model": None,
    "data": None,            # None: the built-in dataset (fastgan.data.DEFAULT_DATASET)
    "data_backend": "auto",
    "crop": None,
    "flip": False,
    "num_workers": None,
    "steps": None,           # generator steps; None: from epochs, else DEFAULT_STEPS
    "epochs": None,
    "amp": False,
    "channels_last": None,   # None: on CUDA only
    "ema": 0.0,              # EMA decay of the generator's weights; 0: no EMA
    "lr_schedule": "constant",  # or "linear": both learning rates fall linearly to 0 over the run's
                             # steps (WGAN-GP's released CIFAR-10 code, Gulrajani et al. 2017)
    "seed": 0,
    "device": None,          # None: cuda if available, else cpu
    "log_every": 50,
    "sample_every": 500,
    "ckpt_every": 1000,
    "keep": 3,
    "num_samples": 64,       # the sample grid
    "tensorboard": True,
    "progress": True,
    "sync_bn": False,
    "cuda_graphs": None,     # whole-step CUDA graphs: None = where capture works (else eager, with
                             # the reason), True = required (an error where they cannot), False = never
    "eval_every": 0,         # score the generator every N steps (and at the end); 0: never
    "metrics": None,         # what eval_every scores: "fid,kid,..." (fastgan.metrics); None: by data
    "eval_num": None,        # samples per evaluation; None: 50,000 for Inception metrics, else 10,000
    "eval_ref": None,        # reference data or statistics .npz; None: the training data
    "inception": None,       # the FID Inception weights file; None: $FASTGAN_INCEPTION_WEIGHTS
    "out": None,             # the run directory; None: runs/<model>
}
DEFAULT_STEPS = 100_000

# The built-in digits (8x8 upscaled) are small and gray: a small network at 16 px, sized so
# that `fastgan train --model wgan-gp --amp` finishes on a 2-core CPU in under 10 minutes.
# The 2-D toy mixtures (fastgan.data.toy) are points [B, 2, 1, 1] for the MLP arch. Only keys
# every model has (COMMON and trainer keys): these defaults merge into any model's config.
# 1000 samples make the scatter plot and are enough for fastgan.data.toy.coverage. The
# learning rates decay linearly: with constant ones the GAN-family generators were still
# hopping between modes at the end of tests/models/test_mixture.py's runs.
_TOY = {"resolution": 1, "channels": 2, "arch": "mlp", "batch_size": 256, "steps": 5000,
        "sample_every": 500, "num_samples": 1000, "ema": 0.0, "lr_schedule": "linear"}
DATASET_DEFAULTS = {
    "digits": {"resolution": 16, "channels": 1, "g_width": 32, "d_width": 32, "steps": 5000,
               "ema": 0.999, "sample_every": 500},
    "ring8": dict(_TOY),
    "grid25": dict(_TOY),
}

TRAIN_KEYS = frozenset(TRAIN_DEFAULTS)
LR_SCHEDULES = ("constant", "linear")


def parse_value(text):
    """A --set value: a Python/YAML-ish literal (1e-4, true, [0, 0.9], none) or a plain string."""
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null", "~"):
        return None
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text


PATH_KEYS = ("data", "out", "eval_ref", "inception")  # paths (data: or a dataset's name)


def parse_set(items):
    """['key=value', ...] -> {key: value}; ValueError naming a malformed item. A path
    setting keeps its text (out=2024 is the folder 2024), but none/null for None."""
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: expected key=value")
        key = key.strip().replace("-", "_")
        parsed = parse_value(value)
        out[key] = value.strip() if key in PATH_KEYS and parsed is not None else parsed
    return out


def check_paths(cfg, where="Trainer: "):
    """ValueError naming a path setting that is not a path (a number or a list from a
    config file, say): they reached pathlib and os as a TypeError's traceback."""
    for key in PATH_KEYS:
        v = cfg.get(key)
        if v is not None and not isinstance(v, (str, os.PathLike)):
            raise ValueError(f"{where}{key} must be a path{' or a dataset name' if key == 'data' else ''} "
                             f"(a string), got {v!r}")


def load_config_file(path):
    """A flat mapping from a YAML (.yaml/.yml) or TOML (.toml) file. Sections `model:` and
    `train:` are flattened into it."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    if path.suffix not in (".toml", ".yaml", ".yml"):
        raise ValueError(f"config file {path}: expected a .yaml, .yml or .toml file")
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise ValueError(f"config file {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if path.suffix == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            import tomli as tomllib
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"config file {path}: not valid TOML: {exc}") from None
    else:
        import yaml
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" (line {where.line + 1}, column {where.column + 1})" if where is not None else ""
            what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ValueError(f"config file {path}: not valid YAML{at}: {what}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {path}: expected a mapping of key: value")
    flat = {}
    for key, value in data.items():
        if key in ("model", "train") and isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return {k.replace("-", "_"): (tuple(v) if isinstance(v, list) else v) for k, v in flat.items()}


# Keys added after runs were saved, with the value that reproduces what an older run built
# (its saved config, which lists every model key of its time, lacks them).
_LEGACY = {"mlp_batchnorm": False}  # before it, arch "mlp" generators had no BatchNorm


def load_run_config(path):
    """A run's saved config (load_config_file), with the keys it predates set as it ran."""
    config = load_config_file(path)
    return {**_LEGACY, **config}


def plain(value):
    """A setting as config.yaml holds it (tuples become lists, at any depth): saved configs
    and live ones compare equal through it."""
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    return value


def save_config(config, path):
    import yaml
    from fastgan.train.checkpoint import _fsync_dir
    plain_config = {k: plain(v) for k, v in sorted(config.items())}
    path = pathlib.Path(path)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:  # durable before the rename, as checkpoints are: after a power
        f.write(yaml.safe_dump(plain_config, sort_keys=True))  # loss an empty config.yaml made
        f.flush()                                              # the run refuse --resume and
        os.fsync(f.fileno())                                   # --overwrite alike
    tmp.replace(path)
    _fsync_dir(path.parent)


def split(config, model_cls):
    """(model hyperparameters, trainer settings); ValueError naming an unknown key."""
    from fastgan.models.base import COMMON
    model_keys = set(COMMON) | set(model_cls.defaults)
    unknown = sorted(set(config) - model_keys - TRAIN_KEYS)
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(unknown)} for model {model_cls.name!r}; "
                         f"model: {', '.join(sorted(model_keys))}; trainer: {', '.join(sorted(TRAIN_KEYS))}")
    hyper = {k: v for k, v in config.items() if k in model_keys}
    train = {**TRAIN_DEFAULTS, **{k: v for k, v in config.items() if k in TRAIN_KEYS}}
    return hyper, train


def prepared_defaults(data):
    """The resolution, channels and crop a prepared file (`fastgan data prepare`) was made
    with, the only ones it serves; {} when `data` is no prepared file. A damaged one's
    manifest raises read_manifest's one-line ValueError."""
    from fastgan.data import prepared
    if not isinstance(data, str):
        return {}
    path = pathlib.Path(data).expanduser()
    try:
        if not prepared.is_prepared(path):
            return {}
    except OSError:
        return {}
    m = prepared.read_manifest(path)
    return {k: m[k] for k in ("resolution", "channels", "crop")}


def resolve(model_name, *layers):
    """The full config of a run of `model_name`: defaults, then each layer (dicts, later wins).
    The built-in dataset's defaults apply when the layers leave `data` unset or "digits", a
    prepared file's settings when `data` is one."""
    from fastgan import models
    from fastgan.models.base import COMMON
    cls = models.get(model_name)
    merged = {}
    for layer in layers:
        given = {k for k in ("steps", "epochs") if layer.get(k) is not None}
        if len(given) == 2:
            raise ValueError("give steps or epochs, not both")
        merged.update(layer)
        for k in given:  # a later layer's length replaces an earlier one's, in either unit
            merged["epochs" if k == "steps" else "steps"] = None
    check_paths(merged, "")
    data = merged.get("data") or "digits"
    builtin = DATASET_DEFAULTS[data] if data in DATASET_DEFAULTS else prepared_defaults(data)
    full = {**TRAIN_DEFAULTS, **COMMON, "arch": cls.archs[0], **cls.defaults, **builtin, **merged}
    full["model"] = model_name
    if data in DATASET_DEFAULTS and DATASET_DEFAULTS[data].get("arch") == "mlp" and full["arch"] != "mlp":
        raise ValueError(f"data {data!r} is 2-D toy points, which only arch 'mlp' (small fully "
                         f"connected networks) takes; got arch {full['arch']!r}")
    if full["steps"] is None and full["epochs"] is None:
        full["steps"] = DEFAULT_STEPS
    split(full, cls)  # validates the keys
    return full
