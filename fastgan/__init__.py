"""fastgan: the classic GAN family, trained fast.

Ops live in fastgan.ops (each with a plain-PyTorch reference and fused backends);
the backend that runs them is chosen by set_backend() / FASTGAN_BACKEND or per call.
"""
from fastgan._version import __version__
from fastgan import _ext  # noqa: F401  (loads fastgan._C, registering its kernels)
from fastgan._backend import BACKENDS, BackendUnavailable, get_backend, set_backend
from fastgan._info import info
from fastgan import nn, ops, optim
from fastgan.accelerate import accelerate
from fastgan import metrics, models
from fastgan.train.trainer import Trainer, load_generator

__all__ = ["__version__", "BACKENDS", "BackendUnavailable", "get_backend", "set_backend", "info", "accelerate",
           "nn", "ops", "optim", "metrics", "models", "Trainer", "load_generator"]
