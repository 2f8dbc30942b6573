"""What every plain training loop of the step benchmark shares: the configuration of one
measurement (StepSpec), the networks built from fastgan's model classes in stock modules,
and the loop interface the benchmark drives.

A loop implements

    step()          one generator iteration: the model's n_critic critic steps, each on a
                    fresh real batch and fresh z, then one generator step on fresh z
                    (fastgan.Trainer.train_step's schedule)
    losses()        {"d": float, "g": float}, the last step's losses (read back here, after timing)
    networks()      (generator, critic), to check that training changed them
    n_critic        critic steps per generator iteration

and declares `cudnn_benchmark` (the runner sets torch.backends.cudnn.benchmark to it before
the loop is built; None leaves the process default). Hyperparameters are the models' paper
defaults, fastgan.models.get(name).defaults (cited in fastgan/models/*.py).
"""
import abc
import dataclasses

import torch

from fastgan import models

from .data import DeviceLoader

#: the loss family of each model
KIND = {"dcgan": "gan", "wgan": "wgan", "wgan-gp": "wgan-gp", "began": "began"}


@dataclasses.dataclass(frozen=True)
class StepSpec:
    """One measured configuration: a model (and arch), the image side and the batch."""
    model: str
    arch: str
    resolution: int
    batch: int
    channels: int = 3
    g_width: int = 64
    d_width: int = 64

    def __post_init__(self):
        if self.model not in KIND:
            raise ValueError(f"StepSpec: model must be one of {', '.join(KIND)}, got {self.model!r}")
        for name in ("resolution", "batch", "channels", "g_width", "d_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"StepSpec: {name} must be a positive int, got {value!r}")

    @property
    def key(self):
        """The configuration's name without its shape: "wgan-gp-dcgan", "dcgan", ..."""
        return f"{self.model}-{self.arch}" if self.model == "wgan-gp" else self.model

    @property
    def label(self):
        return f"{self.key} {self.resolution}x{self.resolution} batch {self.batch}"

    @property
    def kind(self):
        return KIND[self.model]

    def build(self, fused, **overrides):
        """A fastgan model of this configuration (fused=False: stock nn modules only)."""
        return models.build(self.model, arch=self.arch, resolution=self.resolution,
                            channels=self.channels, batch_size=self.batch, g_width=self.g_width,
                            d_width=self.d_width, fused=fused, **overrides)


class PlainLoop(abc.ABC):
    """The shared setup of the plain loops: stock networks (fastgan's classes, fused=False)
    on `device`, the paper defaults in self.hp, and an endless batch iterator over a
    DeviceLoader."""
    name = ""
    cudnn_benchmark = False
    channels_last = False

    def __init__(self, spec, device, *, seed=0):
        self.spec, self.device = spec, torch.device(device)
        torch.manual_seed(seed)
        model = spec.build(fused=False)
        self.model, self.hp = model, model.config
        self.kind = spec.kind
        self.n_critic = self.hp["n_critic"]
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        self.G = model.generator.to(self.device, memory_format=fmt)
        self.D = model.critic.to(self.device, memory_format=fmt)
        self.loader = DeviceLoader(spec.batch, (spec.channels, spec.resolution, spec.resolution),
                                   self.device, channels_last=self.channels_last, seed=seed)
        self.batches = self.loader.forever()
        self.z_dim = self.hp["z_dim"]

    def sample_z(self, n):
        return self.model.sample_z(n, self.device)  # the model's prior (BEGAN's is uniform)

    def networks(self):
        return self.G, self.D

    @abc.abstractmethod
    def step(self):
        """One generator iteration (the loop's own way: see the module docstring)."""

    @abc.abstractmethod
    def losses(self):
        """{"d": float, "g": float} of the last step."""
