"""A quality check for generated digits that needs no downloaded weights.

FID (Heusel et al. 2017, arXiv:1706.08500) compares Inception-v3 features, and those
weights are a download (~100 MB) that an offline machine, a CI runner or a fresh install
may not have. fastgan's built-in dataset, the 1,797 scikit-learn 8 x 8 digits
(fastgan.data.digits), is small enough that a classifier trained on it in seconds on a CPU
gives a usable check instead: a generator trained on the digits should make samples that
this classifier assigns to all 10 classes, confidently, and whose features are distributed
like the real digits' features. The numbers are NOT FID: they are comparable only between
runs on the digits (same classifier, same sample count), never with published FIDs.

The classifier (DigitClassifier): (B, 1, 16, 16) in [-1, 1] -> two stages of 3 x 3 conv
(padding 1) + ReLU + 2 x 2 max-pool (32, then 64 channels: 32 x 8 x 8, 64 x 4 x 4), flatten,
Linear(1024, 128) + ReLU (the 128-d feature layer), Dropout(0.3), Linear(128, 10). It is
trained once (digit_classifier) on the real digits at 16 x 16 (fastgan.data.make_loader,
labels from the class folders): a fixed, seeded 4/5 of them for training, the other fifth
(359 digits) held out; Adam, lr 2e-3, batch 32, EPOCHS epochs, from torch.manual_seed(0)
inside torch.random.fork_rng (the caller's RNG stream is untouched) on one intra-op thread
(these tensors are tiny: one thread is faster, and its sums are in a fixed order, so the
training is deterministic on a given machine). It must reach HELD_OUT_ACCURACY (95%) on the
held-out fifth, so that a class it names in the generated samples means something; 0.975 to
0.992 was measured (see _train). The weights, with their held-out accuracy and FORMAT, are
cached as <cache>/metrics/digit_classifier_v1.pt (<cache>: fastgan.data.digits.cache_dir),
written to a temporary file in that folder and renamed into place, so concurrent writers
and crashes never leave a partial file; a cache that cannot be read or does not match is
retrained and replaced (on loading, the held-out accuracy is measured again and must match
the recorded one).

digit_metrics(samples) gives, for N samples (the classifier's argmax is a sample's vote):

* digits_classes: how many of the 10 classes got at least ceil(min_share * N) votes (and at
  least one). 10 means every digit is drawn; 1 is a generator collapsed onto one digit.
* digits_counts: the 10 vote counts.
* digits_confidence: the mean over the N samples of the largest softmax probability. Real
  digits score ~0.99; blurry or ambiguous samples score lower.
* digits_entropy: the entropy (nats) of the vote histogram; log 10 = 2.303 for evenly
  spread votes, 0 for one class.
* digits_fd: the Fréchet distance (fastgan.metrics.fid) between the classifier's 128-d
  features of the samples and those of all 1,797 real digits: like FID, it sees diversity
  within a class and image quality, not only the class counts. It has a positive bias that
  grows as N shrinks, so compare it only at equal N. Measured: the held-out fifth of the
  real digits 8.4 (N 359), all real digits upscaled to 32 x 32 7.4, uniform noise ~860,
  1,000 copies of one real digit ~1,650.
* num_samples: N.

Non-finite samples (any NaN or inf pixel) vote for no class: they count in N (so they lower
the shares), add 0 to the confidence sum, are left out of the entropy's histogram and out of
the Fréchet distance, which is inf when fewer than 2 samples are finite.
"""
import math
import os
import warnings

import torch
from torch import nn
from torch.nn import functional as F

from fastgan import _files
from fastgan.metrics import fid

__all__ = ["DigitClassifier", "digit_classifier", "digit_metrics", "real_digits", "real_feature_stats",
           "to_classifier_input"]

FORMAT = 1                 # of the cache file; bump when the architecture or training changes
CACHE_NAME = f"digit_classifier_v{FORMAT}.pt"
RESOLUTION = 16
NUM_CLASSES = 10
HELD_OUT_ACCURACY = 0.95
EPOCHS = 10                # held-out accuracy measured: see _train
BATCH_SIZE = 32
LR = 2e-3
SEED = 0

_real_cache = {}           # resolved cache folder -> (images, labels), per process


class DigitClassifier(nn.Module):
    """(B, 1, 16, 16) in [-1, 1] -> 10 logits; features(x) -> the 128-d layer before them."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 32 x 8 x 8
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 64 x 4 x 4
            nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.ReLU())          # 128
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(128, NUM_CLASSES)

    def features(self, x):
        """x [B, 1, 16, 16] -> features [B, 128] (after the ReLU)."""
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, RESOLUTION, RESOLUTION):
            raise ValueError(f"x must be [B, 1, {RESOLUTION}, {RESOLUTION}] (see to_classifier_input), "
                             f"got shape {tuple(x.shape)}")
        return self.body(x)

    def logits(self, features):
        """features [B, 128] -> logits [B, 10]."""
        return self.head(self.dropout(features))

    def forward(self, x):
        return self.logits(self.features(x))


def _cache_file(root):
    from fastgan.data.digits import cache_dir
    return cache_dir(root) / "metrics" / CACHE_NAME


def real_digits(root=None):
    """All 1,797 real digits at 16 x 16: (images [1797, 1, 16, 16] float32 in [-1, 1],
    labels [1797] int64), on the CPU, loaded the way training loads them
    (fastgan.data.make_loader, labels from the class folders) from <cache>/digits (written on
    first use). Loaded once per process and cache folder; each call returns copies."""
    from fastgan.data import make_loader
    from fastgan.data.digits import cache_dir, digits

    key = str(cache_dir(root).resolve())
    if key not in _real_cache:
        loader = make_loader(digits(root), resolution=RESOLUTION, channels=1, batch_size=4096,
                             device="cpu", shuffle=False, drop_last=False, verbose=False)
        images, labels = next(iter(loader))
        if images.shape != (1797, 1, RESOLUTION, RESOLUTION) or labels.shape != (1797,):
            raise RuntimeError(f"the digits dataset under {key} gave images {tuple(images.shape)} and "
                               f"labels {tuple(labels.shape)}; expected 1,797 digits")
        _real_cache[key] = (images.float(), labels.long())
    images, labels = _real_cache[key]
    return images.clone(), labels.clone()


def _split(n):
    """(train, held_out) index tensors: a fixed permutation, the first fifth held out."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(SEED))
    held = n // 5
    return order[held:], order[:held]


def _accuracy(model, images, labels):
    with torch.no_grad():
        return (model(images).argmax(1) == labels).float().mean().item()


def _train(images, labels, train):
    """A DigitClassifier trained on images[train] (deterministic; the caller's RNG and thread
    count are restored). 10 epochs: held-out accuracy 0.989 (seed 0); 0.975 to 0.992 over
    seeds 0-4 (15 epochs: 0.975 to 0.992, no better), ~2.5 s each on a 2-core CPU."""
    gen = torch.Generator().manual_seed(SEED + 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # enable_grad: callers may be inside no_grad (an evaluation); training needs autograd
        with torch.random.fork_rng(devices=[]), torch.enable_grad():
            torch.manual_seed(SEED)
            model = DigitClassifier()
            opt = torch.optim.Adam(model.parameters(), lr=LR)
            model.train()
            for _ in range(EPOCHS):
                for batch in train[torch.randperm(len(train), generator=gen)].split(BATCH_SIZE):
                    loss = F.cross_entropy(model(images[batch]), labels[batch])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def _load(path):
    """(model, accuracy) from a cache file, or None (with a warning) if it is unusable."""
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or blob.get("format") != FORMAT:
            raise ValueError(f"format {blob.get('format') if isinstance(blob, dict) else None!r}, "
                             f"expected {FORMAT}")
        with torch.random.fork_rng(devices=[]):  # its initial weights, replaced at once
            model = DigitClassifier()
        model.load_state_dict(blob["state_dict"])
        accuracy = float(blob["accuracy"])
    except Exception as e:  # unreadable, truncated, another version: retrain
        warnings.warn(f"digit classifier cache {path} is unusable ({type(e).__name__}: {e}); retraining",
                      RuntimeWarning, stacklevel=3)
        return None
    return model.eval(), accuracy


def _save(path, model, accuracy):
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _files.mkstemp(prefix=".digit_classifier-", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save({"format": FORMAT, "state_dict": model.state_dict(), "accuracy": accuracy}, f)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    except OSError as e:  # read-only cache: the model is still good, only not kept
        warnings.warn(f"could not write the digit classifier cache {path}: {e}", RuntimeWarning, stacklevel=3)


def digit_classifier(*, device="cpu", root=None, retrain=False):
    """The trained DigitClassifier (see the module docstring), in eval mode, requires_grad
    False, on `device`. Loaded from <cache(root)>/metrics/digit_classifier_v1.pt, or trained
    (~3 s on a CPU) and written there when that file is missing, unusable or retrain=True.

    Attributes: accuracy (held-out, a float >= 0.95), held_out (indices into real_digits()
    of the held-out fifth), real_stats (mean [128], covariance [128, 128] of all real digits'
    features, float64 on `device`). RuntimeError when training falls short of 95%."""
    path = _cache_file(root)
    images, labels = real_digits(root)
    train, held_out = _split(len(labels))
    loaded = None if retrain else _load(path)
    if loaded is not None:
        model, accuracy = loaded
        measured = _accuracy(model, images[held_out], labels[held_out])  # ~10 ms
        # other weights or other data than it was saved with, or written by hand
        if abs(measured - accuracy) > 1e-6 or measured < HELD_OUT_ACCURACY:
            warnings.warn(f"digit classifier cache {path} is unusable (it records held-out accuracy "
                          f"{accuracy:.4f}, its weights give {measured:.4f}); retraining",
                          RuntimeWarning, stacklevel=2)
            loaded = None
    if loaded is None:
        model = _train(images, labels, train)
        accuracy = _accuracy(model, images[held_out], labels[held_out])
        if accuracy < HELD_OUT_ACCURACY:
            raise RuntimeError(f"the digit classifier reached held-out accuracy {accuracy:.4f}, below "
                               f"the {HELD_OUT_ACCURACY} it needs")
        _save(path, model, accuracy)
    model = model.to(device).eval().requires_grad_(False)
    model.accuracy = accuracy
    model.held_out = held_out
    model.real_stats = _stats_of(model, images)
    return model


def _device_of(model):
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _stats_of(model, images, batch_size=1000):
    device = _device_of(model)
    with torch.no_grad():
        feats = torch.cat([model.features(b.to(device)) for b in images.split(batch_size)])
    return fid.feature_stats(feats)


def real_feature_stats(classifier, root=None):
    """(mean [128], covariance [128, 128]) of `classifier`'s features of all 1,797 real digits,
    float64 on its device; computed once and kept as classifier.real_stats."""
    stats = getattr(classifier, "real_stats", None)
    if stats is None:
        images, _ = real_digits(root)
        was_training = classifier.training
        classifier.eval()
        try:
            stats = _stats_of(classifier, images)
        finally:
            classifier.train(was_training)
        classifier.real_stats = stats
    return stats


def to_classifier_input(samples, value_range=(-1, 1)):
    """samples [N, C, H, W] float (C 1, or 3: averaged over channels; H, W >= 4) with values in
    value_range, or uint8 (0..255, as inception_features takes them; value_range is then
    not used) -> [N, 1, 16, 16] float32 in [-1, 1]: resized with area interpolation (the
    mean of each cell) when larger than 16, bilinear when smaller, then clamped to [-1, 1]."""
    if not isinstance(samples, torch.Tensor):
        raise TypeError(f"samples must be a torch.Tensor [N, C, H, W], got {type(samples).__name__}")
    if samples.dtype == torch.uint8:
        value_range = (0, 255)
    elif not samples.is_floating_point():
        raise TypeError(f"samples must be uint8 (0..255) or floating point, got {samples.dtype}")
    if samples.dim() != 4:
        raise ValueError(f"samples must be 4-D [N, C, H, W], got shape {tuple(samples.shape)}")
    n, c, h, w = samples.shape
    if c not in (1, 3):
        raise ValueError(f"samples must have 1 or 3 channels, got {c} (shape {tuple(samples.shape)})")
    if h < 4 or w < 4:
        raise ValueError(f"samples must be at least 4 x 4, got {h} x {w}")
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise TypeError(f"value_range must be two numbers (low, high), got {value_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"value_range must be finite with high > low, got {value_range!r}")
    x = samples.float()
    if c == 3:
        x = x.mean(1, keepdim=True)
    if (lo, hi) != (-1.0, 1.0):
        x = (x - lo) * (2.0 / (hi - lo)) - 1.0
    if (h, w) != (RESOLUTION, RESOLUTION):
        mode = "area" if h >= RESOLUTION and w >= RESOLUTION else "bilinear"
        kw = {} if mode == "area" else {"align_corners": False}
        x = F.interpolate(x, size=(RESOLUTION, RESOLUTION), mode=mode, **kw)
    return x.clamp(-1.0, 1.0)


def digit_metrics(samples, classifier=None, *, min_share=0.02, batch_size=1000, value_range=(-1, 1)):
    """The digits metrics of `samples` [N, C, H, W] (see the module docstring and
    to_classifier_input), a dict: digits_classes (int), digits_counts (10 ints),
    digits_confidence, digits_entropy, digits_fd (floats), num_samples (int). Samples may be
    on any device; they are classified in batches of batch_size on the classifier's device.
    classifier None: digit_classifier(device=samples.device)."""
    if not isinstance(samples, torch.Tensor):
        raise TypeError(f"samples must be a torch.Tensor [N, C, H, W], got {type(samples).__name__}")
    if samples.dim() != 4:
        raise ValueError(f"samples must be 4-D [N, C, H, W], got shape {tuple(samples.shape)}")
    n = samples.shape[0]
    if n < 2:
        raise ValueError(f"samples needs at least 2 samples, got {n}")
    if isinstance(min_share, bool) or not isinstance(min_share, (int, float)) or not 0 <= min_share <= 1:
        raise ValueError(f"min_share must be a number in [0, 1], got {min_share!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    to_classifier_input(samples[:1], value_range)  # validates channels, size, dtype, range
    if classifier is None:
        classifier = digit_classifier(device=samples.device)
    device = _device_of(classifier)
    real_mu, real_sigma = real_feature_stats(classifier)

    counts = torch.zeros(NUM_CLASSES, dtype=torch.int64)
    confidence = 0.0
    feats = []
    was_training = classifier.training
    classifier.eval()
    try:
        with torch.no_grad():
            for batch in samples.detach().split(batch_size):
                finite = torch.isfinite(batch.flatten(1)).all(1).to(device)
                x = to_classifier_input(batch.to(device), value_range)
                f = classifier.features(x)[finite]
                probs = classifier.logits(f).float().softmax(1)
                top, vote = probs.max(1)
                counts += vote.bincount(minlength=NUM_CLASSES).cpu()
                confidence += top.double().sum().item()
                feats.append(f)
    finally:
        classifier.train(was_training)
    feats = torch.cat(feats)

    need = max(1, math.ceil(min_share * n - 1e-9))  # 1e-9: 0.07 * 100 is 7.000000000000001
    votes = counts.sum().item()
    if votes:
        p = counts.double() / votes
        p = p[p > 0]
        entropy = max(0.0, float(-(p * p.log()).sum()))  # not -0.0 for one class
    else:
        entropy = 0.0
    if len(feats) >= 2:
        mu, sigma = fid.feature_stats(feats)
        fd = fid.fid_from_stats(mu, sigma, real_mu, real_sigma)
    else:
        fd = math.inf
    return {
        "digits_classes": int((counts >= need).sum()),
        "digits_counts": counts.tolist(),
        "digits_confidence": confidence / n,
        "digits_entropy": entropy,
        "digits_fd": fd,
        "num_samples": n,
    }
