"""Whole-step CUDA graphs: the trainer's critic step and generator step, captured once and
replayed.

A 64x64 GAN step is a few hundred small kernels; launched one by one from Python, the GPU
waits on the launches. Captured in a CUDA graph (torch.cuda.CUDAGraph), a whole step -
generator forward, critic forwards, the gradient penalty with its double backward, the
backward, the optimizer step, BEGAN's k_t update, the EMA update and the on-device sums of
the logged values - is one launch.

What makes the trainer's step capturable (each is checked here or is a property of the code):

* no host synchronization inside a step: losses are summed on the device and read back only
  on log steps; the penalty's random numbers are seeded from a device tensor
  (fastgan.ops.sampling.draw_seed); BEGAN keeps k_t on the device;
* random numbers that advance on replay: z and the seeds come from the default CUDA
  generator, which PyTorch registers with each captured graph (every replay draws new
  numbers, the same ones an eager step would have drawn);
* state changed in place only: optimizer states, EMA weights, the sums of logged values and
  BEGAN's k_t are updated in place on tensors that exist before the capture (the first
  eager steps create them); BEGAN's learning-rate halving multiplies 0-dim lr tensors in place;
* capturable optimizers: torch's optimizers get capturable=True and a 0-dim device tensor
  lr before the first step (fastgan's RMSpropClip is capturable by construction);
* float16 loss scaling without a host read: every optimizer takes the GradScaler's scale
  and overflow flag as device tensors (_step_supports_amp_scaling: torch's fused Adam,
  fastgan's RMSpropClip), the penalty reads the scale on the device, and the scaler's
  update (torch._amp_update_scale_) runs on the device;
* fastgan's kernels launch on the current stream (the capture stream);
* one memory pool for the two graphs (torch.cuda.graph_pool_handle), replayed in the order
  they were captured (critic steps, then the generator step).

The real batch enters through a static buffer the loader's batch is copied into before each
replay. Log steps (every log_every steps, which also measure gradient norms) and any batch
of another shape run eagerly; both paths update the same tensors.

When a requirement is not met (no CUDA device, several processes, float16 loss scaling
with an optimizer whose overflow flag GradScaler reads on the host) the trainer runs
eagerly and says why in one line; a capture that raises does the same.
"""
import torch

WARMUP_STEPS = 3  # eager generator steps before the capture (PyTorch's advice: >= 3, on a side stream)


def unavailable_reason(trainer):
    """Why the trainer's steps cannot be captured, or None when they can."""
    if trainer.device.type != "cuda":
        return "CUDA graphs need a CUDA device"
    if trainer.world > 1:
        return "not with several processes yet (DistributedDataParallel's buckets are not captured)"
    if trainer.scaler.is_enabled():
        host = sorted({type(opt).__name__ for opt in (trainer.opt_g, trainer.opt_d)
                       if not getattr(opt, "_step_supports_amp_scaling", False)})
        if host:
            return (f"float16 loss scaling: the GradScaler reads the overflow flag of {', '.join(host)} "
                    "on the host (a fused optimizer takes it on the device; bf16 needs none)")
    return None


def prepare_optimizers(optimizers, device):
    """Makes torch optimizers capturable, with their learning rates as 0-dim device tensors
    (changed in place, a replayed step sees them). Call before their first step."""
    for opt in optimizers:
        for group in opt.param_groups:
            if "capturable" in group:
                group["capturable"] = True
            if not isinstance(group.get("lr"), torch.Tensor) and "lr" in group:
                group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float32, device=device)


class StepGraphs:
    """The captured critic step and generator step of `trainer` (a fastgan.Trainer after
    its warm-up steps). `real` is a batch of the shape the loader gives."""

    def __init__(self, trainer, real):
        self.trainer = trainer
        self.pool = torch.cuda.graph_pool_handle()
        self.static_real = torch.empty_like(real)
        self.static_real.copy_(real)
        counts = dict(trainer._counts)
        sums_before = set(trainer._sums)
        for opt in (trainer.opt_d, trainer.opt_g):
            opt.zero_grad(set_to_none=True)  # gradients are allocated by the captured backward
        torch.cuda.synchronize()
        # thread_local: a data loader's own threads (DALI, nvJPEG) may use CUDA meanwhile
        try:
            self.critic_graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.critic_graph, pool=self.pool, capture_error_mode="thread_local"):
                trainer._critic_step(self.static_real, None)
            self.critic_keys = self._new_counts(counts, trainer._counts)
            trainer._counts = dict(counts)
            self.generator_graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.generator_graph, pool=self.pool, capture_error_mode="thread_local"):
                trainer._generator_step(None)
            self.generator_keys = self._new_counts(counts, trainer._counts)
        finally:  # a capture runs nothing: what it counted did not happen
            trainer._counts = dict(counts)
        if set(trainer._sums) != sums_before:  # a logged value the warm-up never produced
            raise RuntimeError(f"the captured step logged {sorted(set(trainer._sums) - sums_before)} "
                               "which the warm-up steps did not")

    @staticmethod
    def _new_counts(before, after):
        return [k for k in after if after[k] != before.get(k, 0)]

    def matches(self, real):
        return real.shape == self.static_real.shape and real.dtype == self.static_real.dtype \
            and real.stride() == self.static_real.stride()

    def critic_step(self, real):
        self.static_real.copy_(real, non_blocking=True)
        self.critic_graph.replay()
        self._count(self.critic_keys)

    def generator_step(self):
        self.generator_graph.replay()
        self._count(self.generator_keys)

    def _count(self, keys):
        counts = self.trainer._counts
        for k in keys:
            counts[k] = counts.get(k, 0) + 1
