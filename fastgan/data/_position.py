"""A loader's position: the state_dict/load_state_dict contract every fastgan loader keeps.

state_dict() is {"epoch", "batch", "seed", "num_samples", "batch_size", "shard"}; loading it
resumes at exactly that batch, and refuses a state saved by a loader that draws other
batches (another seed, size, batch size or shard).
"""


def _plain(v):
    """Tuples and lists compare equal in a loaded state (YAML and torch.load keep either)."""
    return list(v) if isinstance(v, (tuple, list)) else v


def check_position(loader, state):
    """(epoch, batch) of a loader state_dict, after checking that it was saved by a loader
    drawing the same batches (seed, size, batch size, shard) as `loader`."""
    mine = loader.state_dict()
    for key in ("seed", "num_samples", "batch_size", "shard"):
        if key in state and _plain(state[key]) != _plain(mine[key]):
            raise ValueError(f"load_state_dict: the state has {key}={state[key]!r} but this loader "
                             f"has {mine[key]!r}; its position would mean other batches")
    epoch, batch = int(state["epoch"]), int(state["batch"])
    if epoch < 0 or not 0 <= batch <= len(loader):
        raise ValueError(f"load_state_dict: position epoch={epoch}, batch={batch} is out of range "
                         f"(0..{len(loader)} batches per epoch)")
    return epoch, batch


class Position:
    """state_dict/load_state_dict over the attributes epoch, _batch, seed, num_samples,
    batch_size, rank, world_size (and len(self), the batches per epoch)."""

    def state_dict(self):
        return {"epoch": self.epoch, "batch": self._batch, "seed": self.seed,
                "num_samples": self.num_samples, "batch_size": self.batch_size,
                "shard": [self.rank, self.world_size]}

    def load_state_dict(self, state):
        self.epoch, self._batch = check_position(self, state)


def check_shard(shard):
    """(rank, world_size) from `shard`; ValueError unless 0 <= rank < world_size."""
    try:
        rank, world = (int(v) for v in shard)
    except (TypeError, ValueError):
        raise ValueError(f"shard must be (rank, world_size), got {shard!r}") from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"shard must be (rank, world_size) with 0 <= rank < world_size, got {shard!r}")
    return rank, world
