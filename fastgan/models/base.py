"""The model interface: what a GAN supplies to the one trainer, and nothing else.

A model is a class with

    name, paper, summary      for `fastgan models` and the README
    defaults                  its hyperparameters with the paper's values (cited in its file)
    archs                     the architectures it offers (the first is the default)
    build_networks()          -> (generator, critic); the generator maps z (B, z_dim) to images
    build_optimizers()        -> (generator optimizer, critic optimizer)
    critic_loss(critic, real, fake, scaler=None) -> (loss, {name: 0-dim tensor})
                              one critic/discriminator step; fake is detached (its critic
                              calls go through critic_scores, which honours one_pass)
    generator_loss(critic, fake)                 -> (loss, {name: 0-dim tensor})

and may override

    critic_steps(step)        critic steps in generator step `step` (default n_critic; WGAN's
                              early/periodic 100)
    after_critic_step()       runs after each critic step's optimizer step (BEGAN moves k_t);
                              only in-place tensor updates, so that a CUDA graph can replay it
    sample_z(n, device)       the prior (default N(0, I); BEGAN's is uniform)
    on_log(step, row)         sees each logged row (host floats, no extra synchronization);
                              BEGAN halves its learning rates here when M stalls
    extra_state() / load_extra_state(d)   state beside the networks (BEGAN's k_t), for checkpoints

The trainer owns everything else: devices, precision, the n_critic loop (the model's
`n_critic` hyperparameter), the data, EMA, checkpoints, logging. Logged values are 0-dim
tensors that stay on the device until the trainer reads them back. The losses take the
critic to call as an argument (the trainer passes its DistributedDataParallel wrapper
when there is one); model.generator and model.critic are the bare networks.
"""
import abc
import math
import numbers
import re
import weakref

import torch

# Hyperparameters every model has; the dataset decides resolution and channels.
COMMON = {
    "arch": None,            # None: the model's first arch
    "resolution": 64,
    "channels": 3,
    "z_dim": 100,
    "batch_size": 64,
    "n_critic": 1,
    "fused": True,           # fastgan's fused kernels (False: the same networks in stock modules)
    "g_width": 64,           # convolutional width of the generator (the arch's base channel count)
    "d_width": 64,           # ... and of the critic
    "mlp_hidden": 256,       # arch "mlp": units per hidden layer
    "mlp_depth": 3,          # arch "mlp": hidden layers
    # arch "mlp": BatchNorm after the generator's hidden layers. None: on for images, as in
    # the convolutional generators (DCGAN's finding, Radford et al. 2015, sec. 3: without it
    # the MLP GAN's samples of the digits fall onto a few classes), off for 2-D points (the toy
    # networks of WGAN-GP's released code have none; with it WGAN-GP lost the ring).
    "mlp_batchnorm": None,
    # One critic forward per critic step over the concatenation of real, fake (and, for the
    # gradient-penalty models, the penalty's points) instead of one each, when the critic has
    # no layer that couples samples (no BatchNorm); ignored otherwise. Fewer, larger kernels;
    # the same math. With the penalty's points in the batch, the input gradient and the
    # double backward run over the whole concatenation (about 3x their work): a trade of
    # work for launches that pays where a step is launch-bound (small batches on a big GPU).
    # Off by default until GPU measurements (benchmarks/step_e2e.py) say where it pays.
    "one_pass": False,
}
# What a None in COMMON means, for `fastgan models NAME` (arch's None is shown resolved).
_NONE_MEANS = {"mlp_batchnorm": "on for images; off for 2-D points, resolution 1"}


# A decimal number written out: 1e-4, -2.5E+3, .5 (not nan, inf or 1_000).
_NUMBER_TEXT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def number_from_text(value):
    """value as a float when it is a string that spells a decimal number, else value as it
    is. PyYAML follows YAML 1.1, whose floats need a dot and a signed exponent: it reads
    `lr_d: 1e-4` as the string "1e-4" (1.0e-4 is a float); real-valued settings take it as
    the number it spells."""
    if isinstance(value, str) and _NUMBER_TEXT.fullmatch(value):
        return float(value)
    return value


def _real(value, low=-math.inf, high=math.inf, *, low_open=False, high_open=False):
    """value as a float when it is a finite real number in the interval (or a string that
    spells one: number_from_text), else None."""
    value = number_from_text(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        return None
    value = float(value)
    if value < low or (low_open and value == low) or value > high or (high_open and value == high):
        return None
    return value


def _interval(low, high, low_open, high_open):
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    return f"in {left}{low:g}, {high:g}{right}"


def _number(low=-math.inf, high=math.inf, *, low_open=False, high_open=False, none=None):
    """A check of a real hyperparameter: (normalize, what it must be). `none`: what None means,
    when None is allowed."""
    if high == math.inf:
        what = ("a finite number" + ("" if low == -math.inf else f" {'>' if low_open else '>='} {low:g}"))
    else:
        what = f"a number {_interval(low, high, low_open, high_open)}"
    if none:
        what = f"none ({none}) or {what}"

    def check(value):
        if value is None and none:
            return True, None
        out = _real(value, low, high, low_open=low_open, high_open=high_open)
        return out is not None, out
    return check, what


def _flag(value):
    return isinstance(value, bool), value


def _positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1, value


def _betas(value):
    if isinstance(value, (list, tuple)) and len(value) == 2:
        pair = tuple(_real(b, 0.0, 1.0, high_open=True) for b in value)
        if None not in pair:
            return True, pair
    return False, value


# What each hyperparameter may be (the models' papers' ranges where they give one), checked
# with a message naming it when a model is built, before a run directory exists: a bad
# value must not surface mid-run as a TypeError of some op.
HYPERPARAMETER_CHECKS = {
    **{key: (_positive_int, "a positive integer") for key in (
        "resolution", "channels", "z_dim", "batch_size", "n_critic", "g_width", "d_width",
        "mlp_hidden", "mlp_depth", "embedding", "lr_patience")},
    **{key: (_flag, "true or false") for key in ("fused", "one_pass", "critic_boost")},
    "lr_g": _number(0.0, low_open=True),
    "lr_d": _number(0.0, low_open=True),
    "betas": (_betas, "a pair [beta1, beta2] of numbers in [0, 1)"),
    "gp_weight": _number(0.0),       # WGAN-GP, DRAGAN: lambda
    "perturb_scale": _number(0.0),   # DRAGAN: the perturbation's scale of std(x)
    "clip": _number(0.0, low_open=True, none="no clipping"),  # WGAN: c
    "margin": _number(0.0, low_open=True),  # EBGAN: m
    "pt_weight": _number(0.0),       # EBGAN: the pulling-away term's weight
    "gamma": _number(0.0, 1.0),      # BEGAN: gamma in [0, 1] (sec. 3.3)
    "lambda_k": _number(0.0),        # BEGAN: k_t's learning rate
    "k0": _number(0.0, 1.0),         # BEGAN: k_t is clamped to [0, 1] (sec. 3.4)
    "lr_decay": _number(0.0, 1.0, low_open=True),  # BEGAN: the factor of a stall's decay
    "a": _number(), "b": _number(), "c": _number(),  # LSGAN's targets
}


def check_hyperparameters(name, config):
    """config with each checked value normalized (floats, tuples); ValueError naming the first
    bad one."""
    out = dict(config)
    for key, (check, what) in HYPERPARAMETER_CHECKS.items():
        if key not in out:
            continue
        ok, value = check(out[key])
        if not ok:
            raise ValueError(f"model {name!r}: {key} must be {what}, got {out[key]!r}")
        out[key] = value
    return out


def couples_samples(module):
    """Whether `module` has a layer whose output for one sample depends on the others in
    its batch: BatchNorm (its batch statistics in training mode), including fastgan's fused
    Conv-BatchNorm blocks and SyncBatchNorm. A module may declare it with a
    `couples_samples = True` attribute (e.g. minibatch discrimination). A critic that is no
    module (a function) is taken to couple them unless it says otherwise the same way: its
    layers cannot be looked into."""
    if not isinstance(module, torch.nn.Module):
        return bool(getattr(module, "couples_samples", True))
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) or getattr(m, "couples_samples", False)
               for m in module.modules())


class GANModel(abc.ABC):
    name = ""
    paper = ""
    summary = ""
    archs = ("dcgan",)
    defaults = {}

    def __init__(self, **config):
        merged = {**COMMON, **self.defaults}
        unknown = sorted(set(config) - set(merged))
        if unknown:
            raise ValueError(f"model {self.name!r}: unknown hyperparameter(s) {', '.join(unknown)}; "
                             f"it has {', '.join(sorted(merged))}")
        merged.update(config)
        if merged["arch"] is None:
            merged["arch"] = self.archs[0]
        if merged["arch"] not in self.archs:
            raise ValueError(f"model {self.name!r}: unknown arch {merged['arch']!r}; "
                             f"expected one of {', '.join(self.archs)}")
        if merged["mlp_batchnorm"] is None:  # saved as resolved: a run's config says what it built
            merged["mlp_batchnorm"] = merged["resolution"] > 1
        if not isinstance(merged["mlp_batchnorm"], bool):
            raise ValueError(f"model {self.name!r}: mlp_batchnorm must be true, false or none (none: on "
                             f"for images, off for 2-D points), got {merged['mlp_batchnorm']!r}")
        self.config = check_hyperparameters(self.name, merged)
        self.generator, self.critic = self.build_networks()

    # -- what a model supplies -------------------------------------------------------------
    @abc.abstractmethod
    def build_networks(self):
        """(generator, critic), built from self.config."""

    @abc.abstractmethod
    def build_optimizers(self):
        """(generator optimizer, critic optimizer), over the networks as they are now (on
        their device)."""

    @abc.abstractmethod
    def critic_loss(self, critic, real, fake, *, scaler=None):
        """(loss, logs) of one critic step; scaler: the fp16 GradScaler when there is one."""

    @abc.abstractmethod
    def generator_loss(self, critic, fake):
        """(loss, logs) of one generator step."""

    def critic_steps(self, step):
        """Critic steps in generator step `step` (counted from 0)."""
        return self.n_critic

    def after_critic_step(self):
        """Called by the trainer after each critic step's optimizer step. State changes here
        must be in place on existing tensors (the step may be a replayed CUDA graph)."""

    def on_log(self, step, row):
        """Called by the trainer with each logged row {name: float} (already on the host)."""

    def extra_state(self):
        return {}

    def load_extra_state(self, state):
        if state:
            raise ValueError(f"model {self.name!r} keeps no extra state, got {sorted(state)}")

    # -- shared helpers ----------------------------------------------------------------------
    @property
    def n_critic(self):
        return self.config["n_critic"]

    @property
    def z_dim(self):
        return self.config["z_dim"]

    def one_pass(self, critic):
        """Whether critic steps evaluate their batches in one forward (config one_pass and a
        critic that couples no samples)."""
        if not self.config["one_pass"]:
            return False
        # by id, with a weak reference that tells a freed critic's id reused by a new one
        cache = self.__dict__.setdefault("_couples", {})
        ref, couples = cache.get(id(critic), (None, None))
        if ref is None or ref() is not critic:
            couples = couples_samples(critic)
            try:
                cache[id(critic)] = (weakref.ref(critic), couples)
            except TypeError:  # not weakly referenceable: asked each time
                pass
        return not couples

    def __getstate__(self):  # pickling, deepcopy: without the weak references of one_pass
        return {k: v for k, v in self.__dict__.items() if k != "_couples"}

    def critic_scores(self, critic, *batches):
        """critic(b) for each batch b, as a tuple: one forward over their concatenation
        (split back) when self.one_pass(critic), else one forward each. Batches are cast
        to the first one's dtype for the concatenation (a bf16 generator output beside
        float32 reals under autocast)."""
        if len(batches) > 1 and self.one_pass(critic):
            dtype = batches[0].dtype
            out = critic(torch.cat([b if b.dtype == dtype else b.to(dtype) for b in batches]))
            return out.split([b.shape[0] for b in batches])
        return tuple(critic(b) for b in batches)

    def sample_z(self, n, device, generator=None):
        """The prior: z ~ N(0, I) of shape (n, z_dim)."""
        return torch.randn(n, self.z_dim, device=device, generator=generator)

    @property
    def data_shape(self):
        c = self.config
        return (c["channels"], c["resolution"], c["resolution"])

    # arch "mlp": fully connected networks on the flattened data (2-D toy points are
    # (B, 2, 1, 1); images get a tanh output and, unless mlp_batchnorm says otherwise,
    # BatchNorm, like the convolutional generators).
    def mlp_generator(self):
        from fastgan.nn.mlp import MLPGenerator
        c = self.config
        return MLPGenerator(c["z_dim"], self.data_shape, hidden=c["mlp_hidden"], depth=c["mlp_depth"],
                            tanh=c["resolution"] > 1, batchnorm=c["mlp_batchnorm"])

    def mlp_critic(self):
        from fastgan.nn.mlp import MLPCritic
        c = self.config
        return MLPCritic(self.data_shape, hidden=c["mlp_hidden"], depth=c["mlp_depth"])

    def mlp_autoencoder(self, code_dim=None):
        from fastgan.nn.mlp import MLPAutoencoder
        c = self.config
        return MLPAutoencoder(self.data_shape, hidden=c["mlp_hidden"], depth=max(1, c["mlp_depth"] - 1),
                              code_dim=code_dim)

    def to(self, device=None, memory_format=None):
        for net in (self.generator, self.critic):
            net.to(device)
            if memory_format is not None:
                net.to(memory_format=memory_format)
        return self

    @classmethod
    def describe(cls):
        """One block of text: the model, its paper and its defaults."""
        d = {**COMMON, **cls.defaults, "arch": cls.archs[0]}
        lines = [f"{cls.name}: {cls.summary}", f"  paper: {cls.paper}",
                 f"  archs: {', '.join(cls.archs)}"]
        lines += [f"  {k} = {v!r}" + (f"  ({_NONE_MEANS[k]})" if v is None and k in _NONE_MEANS else "")
                  for k, v in sorted(d.items())]
        return "\n".join(lines)
