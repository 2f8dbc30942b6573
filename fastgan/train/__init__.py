"""The one trainer, checkpoints, logging, CUDA graphs."""
from fastgan.train.checkpoint import (CheckpointError, list_checkpoints, load_checkpoint, load_latest,
                                      rng_state, save_checkpoint, set_rng_state)
from fastgan.train.logging import Progress, RunLogger, make_grid, save_image_grid
from fastgan.train.trainer import Trainer, load_generator

__all__ = ["CheckpointError", "list_checkpoints", "load_checkpoint", "load_latest", "rng_state",
           "save_checkpoint", "set_rng_state", "Progress", "RunLogger", "make_grid", "save_image_grid",
           "Trainer", "load_generator"]
