"""What the Triton launchers of the split reductions share: the compute dtype, how many
programs fill the device, the grid limits, the default slicing."""
import functools

import torch

MAX_GRID_Y = 65535  # CUDA's limit on grid axis 1
CPU_PROGRAMS = 8  # the interpreter runs programs one by one: few, but more than one slice
REDUCE_BLOCK = 1024  # elements a partial-sum step: 4 KiB of float32 per load, 4 warps
MIN_SLICE = 4096  # shortest slice worth a program (fewer and the finalize dominates)


def compute_dtype(dtype):
    """The dtype sums and per-sample/per-channel values are kept in: float64 for float64 data,
    float32 for the rest."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def device_constant(fn):
    """Caches fn's small device tensor of hyperparameters per argument tuple, never evicting
    one: a captured CUDA graph (fastgan.train.graphs, the Triton backend) reads it by
    address at every replay, so it must outlive the graph. (These were LRU caches of 64:
    past 64 keys an entry was freed and its memory reused under the graph.) The keys are
    hyperparameters, dtypes and sizes: a few per layer and batch size in a run."""
    return functools.cache(fn)


@functools.lru_cache(maxsize=16)
def _sm_count(device):
    return torch.cuda.get_device_properties(device).multi_processor_count


def target_programs(device):
    """Programs a reduction aims for: ~4 per SM on a GPU (even at batch 1 or 3 channels)."""
    return 4 * _sm_count(device) if device.type == "cuda" else CPU_PROGRAMS


def on_tensors_device(fn):
    """fn (a Triton op's body) run with the device of its first tensor argument (or first
    tensor of a list argument) current when that is a CUDA device. Triton launches on the
    current device and its current stream: for tensors on cuda:1 while cuda:0 is current it
    would run on the wrong GPU (an illegal address, or an unordered read across them), as
    CUDA code does without a device guard."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        for a in (*args, *kwargs.values()):
            if isinstance(a, (list, tuple)) and a and isinstance(a[0], torch.Tensor):
                a = a[0]
            if isinstance(a, torch.Tensor):
                if a.is_cuda and a.device.index != torch.cuda.current_device():
                    with torch.cuda.device(a.device):
                        return fn(*args, **kwargs)
                break
        return fn(*args, **kwargs)
    return run
