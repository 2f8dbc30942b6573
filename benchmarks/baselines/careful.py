"""(b) eager-careful and (c) compile: the best plain PyTorch a careful user writes, then the
same loop with torch.compile on everything it can compile.

eager-careful, over (a) eager-public (public.py):
  - bfloat16 autocast (losses reduced in float32), channels_last networks and batches,
    torch.backends.cudnn.benchmark = True;
  - Adam(fused=True) on CUDA and the CPU (foreach elsewhere), RMSprop(foreach=True);
  - no host synchronization in a step: no .item(), losses stay device tensors, BEGAN's k_t
    is a device tensor updated on the device (Berthelot et al. 2017, sec. 3.4);
  - WGAN's clip (Arjovsky et al. 2017, Algorithm 1, c = 0.01) as two foreach clamps over the
    critic's parameter list;
  - the generator step's backward goes into the generator's parameters only
    (backward(inputs=...)): no critic weight gradients nobody reads;
  - the WGAN-GP penalty (Gulrajani et al. 2017, Algorithm 1, lambda = 10) with
    torch.autograd.grad(create_graph=True) and a norm over (C, H, W) that needs no copy of a
    channels_last gradient.

compile: eager-careful, in NCHW (see Compiled), with torch.compile (dynamic=False) on the
generator, the critic's first-order loss terms (D(real), D(fake) and the loss; BEGAN's k_t update with them), the
generator step's loss (G(z) through D), and each optimizer step (with WGAN's clip). The
optimizers are foreach (not fused) there, so Inductor generates their kernels. The gradient
penalty stays eager: AOTAutograd does not compile a double backward, so D(x_hat) and its
input gradient run eagerly on the same critic. Compilation happens in the first calls (the
benchmark's warm-up); a failure to compile surfaces there and the benchmark records it.

eager-careful-graphs (CUDA only): eager-careful with its critic step and its generator step
each captured once in a CUDA graph (torch.cuda.graph) and replayed, as fastgan's trainer
does (fastgan/train/graphs.py): what a careful user gets from graphs without fastgan's
kernels, so that fastgan's speedup can be split into launch overhead and kernels. The same
steps, with what capture needs: capturable optimizers, autocast without its weight cache,
BEGAN's k_t updated in place, real batches copied into one static buffer, three eager
iterations on a side stream before the capture.
"""
import torch
from torch.nn import functional as F

from .common import PlainLoop


class EagerCareful(PlainLoop):
    name = "eager-careful"
    cudnn_benchmark = True
    channels_last = True
    fused_adam = True  # on CUDA and the CPU

    def __init__(self, spec, device, *, seed=0):
        super().__init__(spec, device, seed=seed)
        hp = self.hp
        self.g_params, self.d_params = list(self.G.parameters()), list(self.D.parameters())
        if self.kind == "wgan":
            self.opt_d = torch.optim.RMSprop(self.d_params, lr=hp["lr_d"], foreach=True)
            self.opt_g = torch.optim.RMSprop(self.g_params, lr=hp["lr_g"], foreach=True)
        else:
            fused = self.fused_adam and self.device.type in ("cuda", "cpu")
            kw = {"fused": True} if fused else {"foreach": True}
            betas = tuple(hp["betas"])
            self.opt_d = torch.optim.Adam(self.d_params, lr=hp["lr_d"], betas=betas, **kw)
            self.opt_g = torch.optim.Adam(self.g_params, lr=hp["lr_g"], betas=betas, **kw)
        self.k = torch.full((), float(hp.get("k0", 0.0)), device=self.device)
        self.amp_dtype = torch.bfloat16
        self._last = None

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    # -- the pieces (compile replaces these with compiled versions) ---------------------------
    def generate(self, z):
        return self.G(z)

    def critic_terms(self, real, fake, k):
        """(first-order critic loss, next k_t or None)."""
        if self.kind == "gan":
            d_real, d_fake = self.D(real).float(), self.D(fake).float()
            return F.softplus(-d_real).mean() + F.softplus(d_fake).mean(), None
        if self.kind in ("wgan", "wgan-gp"):
            return self.D(fake).float().mean() - self.D(real).float().mean(), None
        hp = self.hp
        l_real = (self.D(real).float() - real.float()).abs().mean()
        l_fake = (self.D(fake).float() - fake.float()).abs().mean()
        k_next = (k + hp["lambda_k"] * (hp["gamma"] * l_real - l_fake)).clamp(0.0, 1.0)
        return l_real - k * l_fake, k_next.detach()

    def generator_loss(self, z):
        fake = self.G(z)
        if self.kind == "gan":
            return F.softplus(-self.D(fake).float()).mean()
        if self.kind in ("wgan", "wgan-gp"):
            return -self.D(fake).float().mean()
        return (self.D(fake).float() - fake.float()).abs().mean()

    def penalty(self, real, fake):
        b = real.shape[0]
        eps = torch.rand(b, 1, 1, 1, device=real.device)
        x_hat = (fake.float() + eps * (real - fake.float())).detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.D(x_hat).float().sum(), x_hat, create_graph=True)
        norm = torch.linalg.vector_norm(grad, dim=(1, 2, 3))
        return self.hp["gp_weight"] * (norm - 1.0).square().mean()

    def update_d(self):
        self.opt_d.step()
        if self.kind == "wgan":
            with torch.no_grad():
                c = self.hp["clip"]
                torch._foreach_clamp_min_(self.d_params, -c)
                torch._foreach_clamp_max_(self.d_params, c)

    def update_g(self):
        self.opt_g.step()

    # -- one generator iteration ----------------------------------------------------------------
    def step(self):
        for _ in range(self.n_critic):
            self.critic_step(next(self.batches))
        self.generator_step()

    def critic_step(self, real):
        z = self.sample_z(self.spec.batch)
        with self.autocast():
            with torch.no_grad():
                fake = self.generate(z)
            loss_d, k_next = self.critic_terms(real, fake, self.k)
            if self.kind == "wgan-gp":
                loss_d = loss_d + self.penalty(real, fake)
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.update_d()
        if k_next is not None:
            self.set_k(k_next)
        self._loss_d = loss_d.detach()

    def generator_step(self):
        z = self.sample_z(self.spec.batch)
        with self.autocast():
            loss_g = self.generator_loss(z)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward(inputs=self.g_params)
        self.update_g()
        self._last = (self._loss_d, loss_g.detach())

    def set_k(self, k):
        self.k = k

    def losses(self):
        d, g = self._last
        return {"d": float(d), "g": float(g)}


class Compiled(EagerCareful):
    """eager-careful with torch.compile on every first-order piece (see the module docstring).
    backend, mode: torch.compile's (None: its defaults, Inductor)."""
    name = "compile"
    fused_adam = False  # foreach Adam: Inductor compiles its math into its own kernels
    # NCHW, not channels_last: with channels_last, Inductor's compiled generator backward
    # asserted a stride cuDNN's convolution_backward did not produce (torch 2.11, CUDA 13.0,
    # H100, 2026-11-22: "expected size 1024==1024, stride 16==1 at dim=1" for the
    # (128, 1024, 4, 4) gradient of DCGAN's first layer), so (c) runs in the layout that compiles.
    channels_last = False

    def __init__(self, spec, device, *, seed=0, backend=None, mode=None):
        # A fresh Dynamo state per (model, batch): these methods are compiled again for every
        # configuration, never hitting the recompilation limit of an earlier one's code.
        torch._dynamo.reset()
        super().__init__(spec, device, seed=seed)
        kw = {"dynamic": False, "mode": mode}
        if backend is not None:
            kw["backend"] = backend
        self.generate = torch.compile(self.generate, **kw)
        self.critic_terms = torch.compile(self.critic_terms, **kw)
        self.generator_loss = torch.compile(self.generator_loss, **kw)
        self.update_d = torch.compile(self.update_d, **kw)
        self.update_g = torch.compile(self.update_g, **kw)


class CarefulGraphed(EagerCareful):
    """eager-careful replayed from two CUDA graphs (see the module docstring)."""
    name = "eager-careful-graphs"
    warmup_iterations = 3  # eager, on a side stream (PyTorch's advice: >= 3)
    min_warmup = 5         # the benchmark's warm-up: those, the capture's iteration, one replay

    def __init__(self, spec, device, *, seed=0):
        if torch.device(device).type != "cuda":
            raise RuntimeError("eager-careful-graphs needs a CUDA device (torch.cuda.graph)")
        super().__init__(spec, device, seed=seed)
        for opt in (self.opt_d, self.opt_g):  # the step count and its math stay on the device
            for group in opt.param_groups:
                group["capturable"] = True
        self.k = self.k.clone()  # filled in place: a replay reads and writes this tensor
        self.static_real = None
        self.graphs = None
        self._iterations = 0

    def autocast(self):
        # a captured cast must be recast at every replay: no weight cache across calls
        return torch.autocast(self.device.type, dtype=self.amp_dtype, cache_enabled=False)

    def set_k(self, k):
        self.k.copy_(k)

    def graphed(self):
        """Whether the timed steps replayed graphs (the report's note, as fastgan's row)."""
        return self.graphs is not None

    def step(self):
        if self.graphs is None and self._iterations < self.warmup_iterations:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                super().step()
            torch.cuda.current_stream().wait_stream(stream)
            self._iterations += 1
            return
        if self.graphs is None:
            self._capture(next(self.batches))
            first = True
        else:
            first = False
        critic, generator = self.graphs
        for i in range(self.n_critic):
            if not first or i:  # the capture's batch is in the buffer already
                self.static_real.copy_(next(self.batches))
            critic.replay()
        generator.replay()

    def _capture(self, real):
        self.static_real = torch.empty_like(real)
        self.static_real.copy_(real)
        for opt in (self.opt_d, self.opt_g):
            opt.zero_grad(set_to_none=True)  # the captured backward allocates the gradients
        torch.cuda.synchronize()
        pool = torch.cuda.graph_pool_handle()
        critic, generator = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
        with torch.cuda.graph(critic, pool=pool):
            self.critic_step(self.static_real)
        with torch.cuda.graph(generator, pool=pool):
            self.generator_step()
        self.graphs = (critic, generator)
