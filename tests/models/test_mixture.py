"""Every model is shown to learn: the ring of 8 Gaussians on CPU (issue 8).

Each model in fastgan.models.names(), with small fully connected networks (arch "mlp",
points as (B, 2, 1, 1) tensors), trains on "ring8" (fastgan.data.toy: 8 Gaussians of std
0.02 on a circle of radius 2; Metz et al. 2016, arXiv:1611.02163, sec. 3.1) through the real
training path, fastgan.Trainer(...).fit(): the model's own build_optimizers (RMSprop with the
fused clip for WGAN), critic_steps, losses, BEGAN's k_t and on_log, and the trainer's n_critic
loop. Then 2,000 generator samples (the final generator, no averaging) must cover >= 7 of the
8 modes and >= 70% of them must be high quality, within 3 std of a mode
(fastgan.data.toy.coverage; Srivastava et al. 2017, arXiv:1705.07761, sec. 5.1).

The losses are exactly as shipped. The settings are not the papers' (those are for 64 x 64
images and hours of GPU time): SETTINGS below holds, per model, what differs for this 2-D
problem and a CPU budget of 20-40 s per model, with the reason next to each value; BASE and
TRAIN the settings common to all. A model that did not meet the thresholds within the budget
is an xfail(strict=True) whose reason holds the numbers measured and what else was tried.

This is a hard benchmark at 3 std of 0.02: in the papers' own tables the standard GAN covers
1 mode of this ring and the unrolled GAN 7.6 modes with 36% high-quality samples (Srivastava
et al. 2017, table 1). The GAN-family losses hop between modes while the learning rate is
high, so every run here lowers its learning rates linearly to 0 (TRAIN) and the final
generator has settled; the settings were then checked with two more seeds
(FASTGAN_MIXTURE_SEED, below). With a fixed seed a run is
deterministic on one machine; another CPU's rounding can change a trajectory, and so can
a rounding-level change in fastgan: when Adam became fused on the CPU (2026-11-24; it had
been foreach, within 6e-8 after 20 steps), WGAN-GP's seed 0 went from hq 0.770 to 0.677
and EBGAN's from 0.821 to 0.675, so both now train longer. The figures quoted below for
the Adam models are with the fused Adam (seeds 0, 1, 2; 2026-11-24) unless marked.

A second test runs every model for 150 steps with amp=True (bfloat16 autocast on CPU) and
checks that every logged value stays finite.

The networks have under 100,000 parameters: one intra-op thread is faster than two here,
and much faster on a shared machine (500 GAN steps: 10 s on one thread, 133 s on two with
the machine's other two cores busy), so the tests run on one thread.
"""
import math
import os

import pytest
import torch

from fastgan import Trainer, models
from fastgan.data import toy

MIXTURE = "ring8"
EVAL_SAMPLES = 2000
MIN_MODES = 7          # of 8
MIN_HIGH_QUALITY = 0.70
# FASTGAN_MIXTURE_SEED=1 reruns the file with another seed, a check by hand that a model's
# pass is not one lucky seed (the xfail reasons hold for seed 0).
SEED = int(os.environ.get("FASTGAN_MIXTURE_SEED", "0"))

# Every model: arch "mlp" on 2-D points and a 2-D latent for 2-D data (with z_dim = 100,
# GAN reached at most 6 modes, and never hq 0.70 with 7, in 3,000 steps over nine settings
# of learning rate, batch and width; with z_dim = 2 it covers all 8). mlp_depth stays at 3
# hidden layers (WGAN-GP's toy networks, Gulrajani et al. 2017, arXiv:1704.00028, released
# code), whose initialization the generator also has (fastgan.nn.mlp: He-uniform ReLU layers;
# no BatchNorm on 2-D points). The figures quoted for the settings chosen below were measured
# with that init; those of the alternatives "tried" were measured before it, with PyTorch's
# default init, whose generator output hardly depended on z at the start.
BASE = {"arch": "mlp", "resolution": 1, "channels": 2, "z_dim": 2}

# Every run: the trainer's linear learning-rate decay to 0 over the run (WGAN-GP's released
# CIFAR-10 code; `fastgan train --lr-schedule linear`). With constant rates the generators were
# still hopping between modes, or still spread around them, when the budget ran out (seed 0,
# the settings below otherwise: LSGAN 3/8 modes, hq 0.540; WGAN-GP 8/0.611; EBGAN 3/0.411;
# WGAN 5/0.174); with the decay the end of the run settles what the start found.
TRAIN = {"lr_schedule": "linear"}

# The GAN recipe that learns the ring in 3,000 steps; models built on the same losses start
# from it. Each line says what differs from the model's image defaults, and why.
_GAN_RECIPE = {
    "mlp_hidden": 128,   # (256-512) a quarter of the work of 256 units; 128 learns the ring
    "batch_size": 512,   # (64-128) every mode is in every batch: the critic sees them all and
                         # the generator hops less between modes (256 at lr 2e-3: 7 modes, hq 0.73)
    "lr_g": 1e-3,        # (1e-4-2e-4) the start of the decay (TRAIN); 8 modes, hq 0.893, 0.860,
    "lr_d": 1e-3,        # 0.898 for seeds 0, 1, 2
    "steps": 3000,
}

# Per model: hyperparameters (model keys), "steps" (generator steps for the Trainer) and,
# for a model that does not meet the thresholds, "xfail" with the numbers measured
# (seed 0, these settings).
SETTINGS = {
    "gan": dict(_GAN_RECIPE),
    "dcgan": dict(_GAN_RECIPE),   # arch "mlp" gives DCGAN the same networks and loss as GAN
    "lsgan": {
        **_GAN_RECIPE,
        "lr_g": 2e-3,        # (2e-4) twice GAN's start: 7/0.800, 8/0.876, 8/0.932 (seeds 0, 1, 2);
        "lr_d": 2e-3,        # from 1e-3 the decay settled too early (foreach Adam: 7/0.890,
                             # 7/0.909, 6/0.830)
    },
    "wgan": {
        "mlp_hidden": 128,   # (256) more units for a clipped critic: clip x width bounds its slope
        "batch_size": 256,   # (64) less noise in the critic's estimate (512: 7 modes, hq 0.332)
        "lr_g": 5e-4,        # (5e-5) the paper's rate moves 2-D points too slowly for the budget
        "lr_d": 5e-4,
        "clip": 0.03,        # (0.01) a 128-unit critic clipped to 0.01 barely separates the modes
        "steps": 3000,
        # 8 modes, hq 0.761, 0.613, 0.757 (seeds 0, 1, 2; 0.763, 0.548, 0.770 while the generator
        # used torch's RMSprop, not the fused kernel: rounding-level changes in the generator's
        # steps move these 2-D trajectories that much): seed 1 misses; the clipped critic is
        # blunt (Gulrajani et al. 2017, sec. 3, fig. 1: clipping biases the critic to simple
        # functions) and its precision varies by seed. With the generator's init also tried:
        # clip 0.02 (0.746, 0.509, 0.745), lr 1e-3 (0.566, 0.731, 0.855), and for seed 1 4,000
        # steps (0.673, 44 s) and batch 512 (0.605, 57 s). Before the init (hq 0.656, 0.477,
        # 0.280): clip 0.01, 0.02, 0.04; lr_d 1e-3 over lr_g 2.5e-4 or 5e-4; 256 units; the
        # paper's critic_boost (7/0.258); 64 units; without the decay at most hq 0.17.
    },
    "wgan-gp": {
        "mlp_hidden": 64,    # (256) five penalized critic steps per step: the smaller net fits the budget
        "batch_size": 256,   # (64) less noise in the critic's estimate
        "betas": (0.5, 0.9), # (0, 0.9) beta1 = 0 oscillated here (lr 1e-3: 5 modes, hq 0.10 at 2,000)
        "lr_g": 1.5e-3,      # (1e-4) two time-scale rates (Heusel et al. 2017, arXiv:1706.08500),
        "lr_d": 3e-3,        # a faster critic; 1e-3/2e-3: 8/0.623, 8/0.592, 8/0.703 (foreach
                             # Adam); before the init, 2e-3/4e-3: 8/0.848 but seed 1 diverged (0/0.007)
        "steps": 5000,       # 8 modes, hq 0.771, 0.771, 0.889 (seeds 0, 1, 2; 39 s); at 4,000
                             # 0.677, -, 0.663 (foreach Adam at 4,000: 0.770, 0.858, 0.725; at
                             # 3,000: 0.746, 0.661, 0.668)
    },
    "ebgan": {
        **_GAN_RECIPE,
        "batch_size": 256,   # (64) the pulling-away term is O(B^2): 512 doubles the time of a step
                             # without learning the ring (4 modes, hq 0.28)
        "margin": 1.0,       # (20, for 64x64x3 images) on the scale of a 2-D point's residual
                             # (0.25 and 0.5 did worse; 2.0: 6/0.710)
        "lr_g": 2e-3,        # (2e-4) foreach Adam, 3,000 steps: 8/0.821, 8/0.852, 7/0.818 (seeds
        "lr_d": 2e-3,        # 0, 1, 2; before the init seed 1 missed, 6/0.510; 1.5e-3: 6/0.704,
                             # 4/0.693, 4/0.595; 3e-3: 5/0.742, 8/0.891)
        "steps": 4000,       # 8/0.889, 8/0.878, 8/0.875 (seeds 0, 1, 2; 22 s); at 3,000 seed 0
                             # 8/0.675
    },
    "began": {
        **_GAN_RECIPE,
        "embedding": 8,      # (64) an 8-unit code for 2-D points
        "gamma": 1.0,        # (0.5) the most diversity the paper allows (sec. 3.3)
        "lambda_k": 0.01,    # (0.001) k_t reacts within the 3,000 steps
        "xfail": "BEGAN settles on 1 to 4 modes. Its control holds k_t where L(G(z)) = gamma L(x), "
                 "here k_t ~ 0-0.2 (an autoencoder of 2-D points reconstructs the ring between the "
                 "modes nearly as well as at them); the discriminator's pointwise optimum fails to "
                 "reconstruct only where k_t p_g > p_data, so a generator on m of the 8 modes is "
                 "pushed off them only if k_t > m/8. 4/8 modes, hq 0.141 (seed 0; seeds 1, 2: "
                 "2/0.358, 1/1.000; fused Adam, 2026-11-24; with foreach Adam 3/0.267, 1/0.403, 2/0.812). Tried with the generator's init (seed 0): k held near 1 (k0 0.8 "
                 "or 1.0, lambda_k 0: 7/8 modes, hq 0.08-0.10, the autoencoder's errors in the "
                 "thousands); lambda_k 0.3 and 1.0 (k ~0.1, 1 mode); k0 0.3 with lambda_k 0.001 (k "
                 "~0.2, 4/0.739); embedding 1 and 2; gamma 0.5, 0.75; lr_g 1e-4-2e-4 under lr_d "
                 "2e-3-3e-3; 27 random settings of embedding, gamma, lambda_k, k0, rates, batch and "
                 "width (best 4/0.692); gamma above the paper's [0, 1] with the op's check patched "
                 "out (1.5: 2/0.978, 2: 3/0.647, 3: 6/0.073). Before the init: the paper's settings, "
                 "embedding 1, 2, 4, lambda_k 0.05, 0.1, batch 256, 1024 (at most 1 mode). The paper's "
                 "other norm, eta = 2 (L(v) = mean |v - D(v)|^2, sec. 3.1; by hand, the reference "
                 "loss patched): 3/0.930 at these settings, k falling to 0.01 (sharper modes, no "
                 "more of them); gamma 2, 4 (3/0.147, 1/0.048); k fixed at 0.3, 0.5, 1.0 (3/0.101, "
                 "5/0.097, 4/0.059); lambda_k 0.1 with gamma 1, 2 (2/0.288, 4/0.250). By hand "
                 "(2026-11-23, seed 0), the decoder's output bounded to 2.5 tanh(y/2.5) so a high "
                 "k cannot blow the errors up: k fixed 0.5 5/0.530, 0.7 1/0.015, 0.8 0/0.015 (eta 2: "
                 "0/0.001), 0.9 and 1.0 0/0 (no sample within 3 std of a mode); gamma 3 4/0.758 (k 0.3 "
                 "falling to 0), 6 0/0 (k rising to 1); lambda_k 0.1 1/0.992; gamma 6 with lambda_k "
                 "0.001 1/0.945. Unbounded: the paper's ELU in the autoencoder 0/0 (k ~0.25); "
                 "3-layer autoencoder with code 1 5/0.516, code 2 and ELU 0/0; n_critic 5 0/0; "
                 "n_critic 2 with lr_d 3e-3 over lr_g 5e-4 0/0. The start that passes the digits (k0 0.4, "
                 "lambda_k 0.001; 2026-11-23): 5/0.469, k falling to 0.08. 2026-11-24: z_dim 8 1/0.699, z_dim "
                 "64 1/0.526 (with k0 0.4, lambda_k 0.001: 1/0.463), z_dim 16 with gamma 0.5 0/0, "
                 "8,000 steps 2/0.963 (k 0.014); a denoising autoencoder (Gaussian noise on the "
                 "discriminator's inputs, clean targets; by hand) sharpens the modes it keeps but "
                 "keeps one: sigma 0.05, 0.1, 0.2 on both inputs 1/1.000 (k 0.07-0.09), 0.1 on real "
                 "inputs only 2/0.366 (k 0), 0.1 with the generator's loss on clean inputs 0/0",
    },
    "dragan": {
        **_GAN_RECIPE,
        "gp_weight": 1.0,    # (10) the penalty's region, up to 0.5 std(x) ~ 0.7 here, spans a mode's
                             # neighbours (std(x) of a ring batch is the ring's, 1.4, not a mode's,
                             # 0.02): at 10 the critic cannot separate adjacent modes (5 modes,
                             # hq 0.43 at 3,000 steps)
        # with the decay seeds 0, 1, 2 pass (8 modes, hq 0.875, 0.731, 0.933 at the authors'
        # code's points, x + alpha (x_p - x); with foreach Adam 0.881, 0.764, 0.792, and 0.782,
        # 0.791, 0.917 at x_p itself); before the
        # init, without the decay, seed 2 was still hopping at 3,000 steps (7, 0.409)
    },
}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _train(name, tmp_path, *, seed=SEED, steps=None, **train):
    settings = dict(SETTINGS[name])
    total = settings.pop("steps")
    total = total if steps is None else steps
    settings.pop("xfail", None)
    torch.manual_seed(seed)
    model = models.build(name, **BASE, **settings)
    loader = toy.ToyLoader(MIXTURE, batch_size=model.config["batch_size"], seed=seed, device="cpu")
    config = {"steps": total, "out": str(tmp_path / name), "progress": False, "tensorboard": False,
              "log_every": 100, "sample_every": 10**9, "ckpt_every": 10**9, "device": "cpu",
              "seed": seed, **TRAIN, **train}
    return Trainer(model, loader, config).fit()


def _cases():
    cases = []
    for name in models.names():
        reason = SETTINGS.get(name, {}).get("xfail")
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        cases.append(pytest.param(name, marks=marks, id=name))
    return cases


def test_settings_cover_every_model():
    assert sorted(SETTINGS) == sorted(models.names())


@pytest.mark.parametrize("name", _cases())
def test_learns_ring8(tmp_path, name):
    trainer = _train(name, tmp_path)
    model = trainer.model
    z = model.sample_z(EVAL_SAMPLES, "cpu", generator=torch.Generator().manual_seed(SEED + 1))
    samples = trainer.samples(z)
    cov = toy.coverage(samples, MIXTURE)
    last = {k: round(v, 4) for k, v in trainer.history[-1].items()}
    msg = (f"{name}: {cov['modes']}/{cov['num_modes']} modes (need {MIN_MODES}), high quality "
           f"{cov['high_quality']:.3f} (need {MIN_HIGH_QUALITY}); high-quality samples per mode "
           f"{cov['counts']} (a mode needs {cov['min_count']}); last logged row {last}")
    assert cov["modes"] >= MIN_MODES and cov["high_quality"] >= MIN_HIGH_QUALITY, msg


@pytest.mark.parametrize("name", models.names())
def test_amp_stays_finite(tmp_path, name):
    trainer = _train(name, tmp_path, steps=150, amp=True, log_every=10)
    assert trainer.amp_dtype == torch.bfloat16
    assert [row["step"] for row in trainer.history] == list(range(10, 151, 10))
    assert {"loss/d", "loss/g"} <= set(trainer.history[-1])
    for row in trainer.history:
        bad = {k: v for k, v in row.items() if not math.isfinite(v)}
        assert not bad, f"{name} with bfloat16 autocast: non-finite logged values {bad} at step {row['step']}"
    assert torch.isfinite(trainer.samples()).all()
