"""One file per GAN: networks, losses, paper defaults (see fastgan.models.base).

    model = fastgan.models.build("wgan-gp", resolution=32, channels=1)
"""
from fastgan.models.base import COMMON, GANModel
from fastgan.models.dcgan import DCGAN
from fastgan.models.wgan_gp import WGANGP

MODELS = {cls.name: cls for cls in (DCGAN, WGANGP)}


def get(name):
    """The model class called `name`; ValueError listing the known ones otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(sorted(MODELS))}") from None


def build(name, **overrides):
    """A model with its paper defaults, overridden by `overrides` (any hyperparameter)."""
    return get(name)(**overrides)


def names():
    return sorted(MODELS)


__all__ = ["COMMON", "GANModel", "MODELS", "build", "get", "names", "DCGAN", "WGANGP"]
