"""Issue 8's "Digits" check: every image model, trained briefly on the built-in digits, makes
samples that a small digit classifier assigns to all 10 classes.

Slow (minutes on a 2-core CPU): every test here carries the `slow` mark and runs only on
request,

    pytest tests/models/test_digits.py -m slow

The classifier is fastgan.metrics.digits.digit_classifier: a small CNN trained on the real
digits (fastgan.data.make_loader "digits" at 16 x 16, labels from the class folders) once and
cached under fastgan's cache folder; it must reach 95% on a held-out fifth of them, so that a
class it names in the generated samples means something. Each run goes the way `fastgan
train --model NAME` goes (fastgan.train.config.resolve with the digits defaults, split,
fastgan.Trainer), for the step budget in RUNS, on the CPU; then 1,000 samples of the run's
EMA generator, loaded back from its checkpoint with fastgan.load_generator, must give every
class at least MIN_SHARE of the classifier's votes (fastgan.metrics.digits.digit_metrics).

Deviations from the models' paper defaults, each only for a brief CPU run:

* ema = 0.99 for every run, not the digits default 0.999 (which suits its 5,000 steps): the
  EMA copy starts at the untrained generator and keeps 0.999^N of it after N steps, 0.55 at
  600 steps. Measured with DCGAN: at 600 steps the 0.999 EMA's samples gave their rarest
  class 5 of 1,000 votes (mean confidence 0.44); the 0.99 EMA's gave every class 61+ at 300
  steps.
* `steps` is a short budget per model, 1.3 to 2.5 times the steps at which the rarest class
  first reached 2% in the measurements quoted in RUNS.
* dragan: lr 2e-4 (DCGAN's, Radford et al. 2015, arXiv:1511.06434, sec. 4) instead of the
  paper code's 1e-4 (Kodali et al. 2017, arXiv:1705.07215): at 1e-4 the generator leaves
  its early collapse only after ~2,000 steps (the rarest class had 14 of 1,000 votes at
  1,800 steps, 49 at 2,000); at 2e-4 it has 39+ from 1,200 steps.
* gan-no-bn: the GAN's MLP generator without BatchNorm (mlp_batchnorm=False), which the
  default (BatchNorm on images, fastgan/models/base.py) is measured against.
* began: gamma 1.0 (the paper's most diverse setting, sec. 3.3; default 0.5), k_0 0.4 with
  lambda_k 0.001 (the paper's rate; default k_0 = 0) and lr 5e-5 (the paper's 1e-4 after
  its first halving, sec. 4.1), for 1,200 steps. Measured (2026-11-23, classes with 20+ of
  1,000 votes every 200 steps / the rarest class's votes): seed 0 all 10 from 800 to 1,400
  steps (21-33 for the rarest, the 0), 9 from 1,600; seed 1 all 10 from 600 to 1,600
  (22-49); seed 2 all 10 from 800 to 1,200 (26-45), 9 at 1,400, 8 at 1,600. The test's
  run: [30, 61, 68, 144, 77, 211, 134, 57, 33, 185] at 1,200 steps. After the stretch the
  samples drift towards 3, 5, 8 and 9 and the 0 fades first; a lower rate only slows the
  drift, so the budget is short. Why the defaults fail here: with k_0 = 0 and gamma 0.5 it
  collapses onto the digit 1 within 400 steps (k_t stays ~0: the discriminator is an
  autoencoder of the real digits only, and the generator settles on the image it
  reconstructs best; k_t cannot rise, since it needs L(G(z)) below gamma L(x) and the "1"s
  reconstruct at 0.63 L(x)). With gamma 1.0 and lambda_k 0.01 k_t held 0.04-0.10 and at
  most 7 to 9 classes came and went (also with gamma 0.7, lambda_k 0.1, embedding 8 or 16,
  batch 64, or a linear decay from lr 2e-4 or 3e-4). k_0 0.4 starts the discriminator
  pushing the fakes at once, and lambda_k 0.001 lets k_t fall only slowly (0.37 at 200
  steps, 0.32 at 1,000), while L(G(z)) stays 1.3-1.5 times L(x). Also measured: k_0 0.3
  (at most 9 classes, 6 from 1,000 steps); k_0 0.5, and k_0 0.3 with lr_d 2e-4 over lr_g
  1e-4, blew up at once (L(G(z)) ~6-7 in the first 200 steps, k_t clamped to 0, 8 classes
  without the 0 after); k_0 0.4 at lr 1e-4 (10 classes at 800 steps only) and with batch
  32 (10 at 400-600). He init made it worse (the fakes reconstructed worse than the real
  digits from the start, k_t stayed at 0, all samples a 4 by 1,000 steps).

Expected failures (xfail, strict: they fail the run once the model covers the classes,
so the mark is removed then; raises=AssertionError, so a crash still fails):

* gan-no-bn: without BatchNorm the MLP generator falls onto a few classes and hops between
  them (at 1,000 steps 5 classes, 6 at 1,200). With PyTorch's default init it stayed on one
  class: its output hardly depended on z at the start (std over z 0.025, the data's 0.35);
  the generator's init is now WGAN-GP's toy init (std over z 0.42), which spreads the start
  without covering the classes (with its variances drawn from normal distributions: 9
  and 8 classes at 2,500 steps, seeds 0 and 1, the 0 the rarest).
  Also tried without BatchNorm (1,000 steps, PyTorch's default init, seed 0 unless named):
  two hidden layers, the paper's MNIST depth (Goodfellow et al.'s released mnist.yaml: 2 x
  1200 ReLU units), with 512 units (seeds 0, 1: 1 and 3 classes) and 1200 (1); the paper's
  dropout in the discriminator (0.2 on the input, 0.5 on hidden units) at depth 3 and 2 (1
  class each); one hidden layer covered the classes. With BatchNorm (the default) all 10
  classes from 600 steps (seed 0; seeds 1, 2 at 1,000 and 1,500 steps: 10 each).
"""
import pytest
import torch

import fastgan
from fastgan import models
from fastgan.metrics.digits import digit_classifier, digit_metrics
from fastgan.train import config as cfgmod

# One intra-op thread (tests/conftest.py): on a loaded 2-core machine the file took 9 min on
# one thread and 20 to 50+ min on two; on an idle one two threads save ~25% at most.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

NUM_SAMPLES = 1000
MIN_SHARE = 0.02        # every class gets at least 2% of the samples
CLASSIFIER_ACCURACY = 0.95
EMA = 0.99              # see the module docstring

_GAN_NO_BN = ("gan without BatchNorm in its MLP generator hops between a few classes: at 1,000 "
              "steps its samples got [0, 199, 2, 127, 2, 31, 2, 0, 477, 160] votes (mean confidence "
              "0.68); 6 classes at 1,200. With BatchNorm (the default on images) all 10 from 600 steps")

# case -> (model, overrides of the digits defaults, xfail reason or None). Measured on this
# 2-core CPU: "first" is the step at which the rarest class first had 20+ of 1,000 votes
# (checked every 100-250 steps), with that count at the budget's end.
RUNS = {
    # first at 600 (22), 50 at 1,200
    "gan": ("gan", {"steps": 1200}, None),
    "gan-no-bn": ("gan", {"steps": 1000, "mlp_batchnorm": False}, _GAN_NO_BN),
    # first at 200 (20), 52 at 500
    "dcgan": ("dcgan", {"steps": 500}, None),
    # first at 300 (56), 61 at 500
    "lsgan": ("lsgan", {"steps": 500}, None),
    # first at 400 (50), 65 at 600
    "wgan": ("wgan", {"steps": 600}, None),
    # first at 300 (38), 65 at 600
    "wgan-gp": ("wgan-gp", {"steps": 600}, None),
    # first at 200 (53), 62 at 300
    "wgan-gp-resnet": ("wgan-gp", {"steps": 300, "arch": "resnet"}, None),
    # first at 400 (47), 55 at 600
    "ebgan": ("ebgan", {"steps": 600}, None),
    # first at 800 (21), 30 at 1,200 (seeds 1, 2: first at 600 and 800, 47 and 35 at 1,200);
    # 28 at 1,200 with the decoders' upsampling folded into their convolutions (2026-11-24)
    "began": ("began", {"steps": 1200, "gamma": 1.0, "lambda_k": 0.001, "k0": 0.4,
                        "lr_g": 5e-5, "lr_d": 5e-5}, None),
    # first at 1,200 (39), 70 at 1,600
    "dragan": ("dragan", {"steps": 1600, "lr_g": 2e-4, "lr_d": 2e-4}, None),
}


def _case(name):
    model, overrides, xfail = RUNS[name]
    marks = [pytest.mark.xfail(strict=True, raises=AssertionError, reason=xfail)] if xfail else []
    return pytest.param(model, overrides, id=name, marks=marks)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """The digit classifier (trained on 4/5 of the real digits, in a fresh cache root so the
    check does not depend on a cache file left by an older version); asserts its held-out
    accuracy."""
    net = digit_classifier(root=tmp_path_factory.mktemp("cache"))
    assert net.accuracy >= CLASSIFIER_ACCURACY, f"digit classifier: held-out accuracy {net.accuracy:.3f}"
    return net


def test_every_model_has_a_case():
    assert set(models.names()) <= {model for model, _, _ in RUNS.values()}


@pytest.mark.parametrize("name, overrides", [_case(name) for name in RUNS])
def test_samples_cover_all_ten_digits(classifier, tmp_path, name, overrides):
    run_dir = tmp_path / "run"
    config = cfgmod.resolve(name, {"data": "digits", "ema": EMA, "device": "cpu", "out": str(run_dir),
                                   "progress": False, "tensorboard": False, **overrides})
    hyper, train = cfgmod.split(config, models.get(name))
    torch.manual_seed(int(train["seed"]))  # as `fastgan train` does
    trainer = fastgan.Trainer(models.build(name, **hyper), None, train).fit()
    assert trainer.step == overrides["steps"]

    g = fastgan.load_generator(run_dir)  # the EMA weights, as `fastgan sample` gets them
    z = g.sample_z(NUM_SAMPLES, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        samples = g(z).float()
    assert samples.shape == (NUM_SAMPLES, 1, 16, 16) and torch.isfinite(samples).all()
    torch.testing.assert_close(samples[:16], trainer.samples(z[:16]))

    m = digit_metrics(samples, classifier, min_share=MIN_SHARE)
    counts, confidence = m["digits_counts"], m["digits_confidence"]
    print(f"{name} {overrides}: classes {counts}, mean confidence {confidence:.2f}, "
          f"digits_fd {m['digits_fd']:.1f}")  # -rP shows it
    assert m["digits_classes"] == 10, (
        f"{name} {overrides}: classes of {NUM_SAMPLES} samples {counts} "
        f"(each needs {MIN_SHARE * NUM_SAMPLES:.0f}), mean confidence {confidence:.2f}")
