"""A device-resident loader: every implementation of the step benchmark reads its real
batches from one random image tensor already in device memory, so what is compared is the
step, never the input pipeline (issue 9, item 3).

It has what fastgan.Trainer uses of a loader (fastgan/train/trainer.py): batch_size,
__len__ (full batches per epoch), __iter__ yielding (images, labels), state_dict and
load_state_dict. A batch is a view of the preallocated tensor (narrow along the batch
dimension: no copy, no kernel, no host synchronization); the window starts one image later
every epoch, so consecutive epochs see batches that differ. Images are uniform in [-1, 1],
the range of the generators' tanh.
"""
import torch

#: images kept per loader, in batches: 16 batches of 256 at 64x64x3 in float32 are 201 MB
BATCHES_KEPT = 16


class DeviceLoader:
    """Batches of `batch_size` images of `shape` (C, H, W) from a tensor on `device`.

    channels_last: store (and so yield) the images in torch.channels_last, as a channels_last
    network wants them. seed: the images' generator seed (drawn on the CPU, then moved, so
    every device gets the same images)."""

    def __init__(self, batch_size, shape, device, *, channels_last=False, batches=BATCHES_KEPT,
                 seed=0, dtype=torch.float32):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"DeviceLoader: batch_size must be a positive int, got {batch_size!r}")
        if len(shape) != 3 or any((not isinstance(s, int)) or s < 1 for s in shape):
            raise ValueError(f"DeviceLoader: shape must be (C, H, W) of positive ints, got {shape!r}")
        if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
            raise ValueError(f"DeviceLoader: batches must be a positive int, got {batches!r}")
        self.batch_size = batch_size
        self.batches = batches
        gen = torch.Generator().manual_seed(seed)
        n = batch_size * batches + 1  # one spare image: the window slides by one per epoch
        data = torch.rand((n, *shape), generator=gen, dtype=dtype).mul_(2).sub_(1).to(device)
        self.data = data.contiguous(memory_format=torch.channels_last) if channels_last else data
        self.labels = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.epoch = 0

    def __len__(self):
        return self.batches

    def __iter__(self):
        start = self.epoch % (self.data.shape[0] - self.batch_size * self.batches + 1)
        self.epoch += 1
        for i in range(self.batches):
            yield self.data.narrow(0, start + i * self.batch_size, self.batch_size), self.labels

    def forever(self):
        """Batches without end (the plain loops' `next(batches)`)."""
        while True:
            for images, _ in self:
                yield images

    def state_dict(self):
        return {"epoch": self.epoch}

    def load_state_dict(self, state):
        self.epoch = int(state["epoch"])
