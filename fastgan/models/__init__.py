"""One file per GAN: networks, losses, paper defaults (see fastgan.models.base).

    model = fastgan.models.build("wgan-gp", resolution=32, channels=1)
"""
from fastgan.models.base import COMMON, GANModel
from fastgan.models.began import BEGAN
from fastgan.models.dcgan import DCGAN
from fastgan.models.dragan import DRAGAN
from fastgan.models.ebgan import EBGAN
from fastgan.models.gan import GAN
from fastgan.models.lsgan import LSGAN
from fastgan.models.wgan import WGAN
from fastgan.models.wgan_gp import WGANGP

# in the order of `fastgan models` and the README's table
MODELS = {cls.name: cls for cls in (GAN, DCGAN, LSGAN, WGAN, WGANGP, EBGAN, BEGAN, DRAGAN)}


def get(name):
    """The model class called `name`; ValueError listing the known ones otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}") from None


def build(name, **overrides):
    """A model with its paper defaults, overridden by `overrides` (any hyperparameter)."""
    return get(name)(**overrides)


def names():
    """The model names, in the catalog's order."""
    return list(MODELS)


def _optimizer(cls):
    d = cls.defaults
    if "clip" in d:
        return f"RMSprop {d['lr_d']:g}, clip {d['clip']:g}"
    b1, b2 = d.get("betas", (0.9, 0.999))
    lr = f"{d['lr_g']:g}" if d["lr_g"] == d["lr_d"] else f"{d['lr_g']:g}/{d['lr_d']:g}"
    return f"Adam {lr}, betas ({b1:g}, {b2:g})"


def table(markdown=True):
    """The catalog as a table (markdown for the README, or aligned text for the terminal)."""
    head = ["model", "paper", "archs", "z", "batch", "n_critic", "optimizer", "what it is"]
    rows = []
    for cls in MODELS.values():
        d = {**COMMON, **cls.defaults}
        rows.append([cls.name, cls.paper, ", ".join(cls.archs), str(d["z_dim"]), str(d["batch_size"]),
                     str(d["n_critic"]), _optimizer(cls), cls.summary])
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join([f"`{r[0]}`"] + r[1:]) + " |" for r in rows]
        return "\n".join(lines)
    cols = head[:-1]
    widths = [max(len(r[i]) for r in rows + [cols]) for i in range(len(cols))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*cols)] + [fmt.format(*r[:-1]) for r in rows]
    return "\n".join(lines)


__all__ = ["table", "COMMON", "GANModel", "MODELS", "build", "get", "names", "BEGAN", "DCGAN", "DRAGAN", "EBGAN",
           "GAN", "LSGAN", "WGAN", "WGANGP"]
