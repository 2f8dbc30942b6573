"""The one trainer, checkpoints, logging, CUDA graphs. Empty until the trainer work lands."""
