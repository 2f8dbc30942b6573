"""fastgan.metrics.digits: the digit classifier (trained once, cached, deterministic) and the
weight-free quality check of generated digits built on it.

The classifier trains once for the module (~3 s) in a temporary cache root; the real
digits' numbers below were measured with it: all 10 classes, confidence 0.99, digits_fd
8.4 for the held-out fifth against all 1,797, 860 for uniform noise, 1,650 for 1,000 copies
of one digit.
"""
import math

import pytest
import torch
from torch.nn import functional as F

from fastgan.metrics import digits as dm
from fastgan.metrics import fid

HAS_GPU = torch.cuda.is_available()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def classifier(root):
    return dm.digit_classifier(root=root)


@pytest.fixture(scope="module")
def real(root, classifier):
    return dm.real_digits(root)


def _noise(n, seed=0):
    return torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_classifier_trained_and_cached(root, classifier, real):
    images, labels = real
    assert images.shape == (1797, 1, 16, 16) and labels.bincount().tolist() == \
        [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert classifier.accuracy >= dm.HELD_OUT_ACCURACY
    held = classifier.held_out
    assert len(held) == 1797 // 5 and len(set(held.tolist())) == len(held)
    with torch.no_grad():  # the attribute is the accuracy it has, not a stored claim
        assert (classifier(images[held]).argmax(1) == labels[held]).float().mean().item() == \
            pytest.approx(classifier.accuracy)
    assert not classifier.training and not any(p.requires_grad for p in classifier.parameters())
    assert classifier.features(images[:5]).shape == (5, 128) and classifier(images[:5]).shape == (5, 10)
    path = root / "metrics" / "digit_classifier_v1.pt"
    assert path.is_file() and not [p for p in path.parent.iterdir() if p.name != path.name]  # no temp files


def test_second_call_loads_the_cache(root, classifier, real, monkeypatch):
    path = root / "metrics" / "digit_classifier_v1.pt"
    stamp = path.stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("retrained although the cache is valid")

    monkeypatch.setattr(dm, "_train", no_training)
    again = dm.digit_classifier(root=root)
    assert path.stat().st_mtime_ns == stamp
    assert again is not classifier and again.accuracy == classifier.accuracy
    with torch.no_grad():
        assert torch.equal(again(real[0]), classifier(real[0]))
    for a, b in zip(again.real_stats, classifier.real_stats):
        assert torch.equal(a, b)


def test_training_is_deterministic_and_leaves_the_rng_alone(tmp_path, classifier):
    torch.manual_seed(123)
    state, threads = torch.get_rng_state(), torch.get_num_threads()
    other = dm.digit_classifier(root=tmp_path)  # a fresh root: trains again
    assert torch.equal(torch.get_rng_state(), state) and torch.get_num_threads() == threads
    assert (tmp_path / "metrics" / "digit_classifier_v1.pt").is_file()
    mine, theirs = classifier.state_dict(), other.state_dict()
    assert mine.keys() == theirs.keys()
    for k in mine:
        assert torch.equal(mine[k], theirs[k]), k


@pytest.mark.parametrize("damage", ["garbage", "truncated", "old format", "other weights"])
def test_a_broken_cache_is_retrained_and_replaced(tmp_path, classifier, root, real, damage):
    path = tmp_path / "metrics" / "digit_classifier_v1.pt"
    path.parent.mkdir()
    good = (root / "metrics" / "digit_classifier_v1.pt").read_bytes()
    if damage == "garbage":
        path.write_bytes(b"not a checkpoint")
    elif damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    else:
        blob = torch.load(root / "metrics" / "digit_classifier_v1.pt", weights_only=True)
        if damage == "old format":
            blob["format"] = 0
        else:  # loads, but does not give the accuracy it records
            blob["state_dict"]["head.weight"].zero_()
        torch.save(blob, path)
    with pytest.warns(RuntimeWarning, match="unusable"):
        fresh = dm.digit_classifier(root=tmp_path)
    with torch.no_grad():
        assert torch.equal(fresh(real[0]), classifier(real[0]))
    blob = torch.load(path, weights_only=True)  # replaced by a readable, current one
    assert blob["format"] == dm.FORMAT and blob["accuracy"] == fresh.accuracy


def test_real_digits_score_well(classifier, real):
    images, labels = real
    m = dm.digit_metrics(images, classifier)
    assert m["num_samples"] == 1797 and m["digits_classes"] == 10
    assert sum(m["digits_counts"]) == 1797
    true = labels.bincount().tolist()
    assert all(abs(a - b) <= 5 for a, b in zip(m["digits_counts"], true)), (m["digits_counts"], true)
    assert m["digits_confidence"] > 0.97
    assert m["digits_entropy"] == pytest.approx(math.log(10), abs=0.002)
    assert m["digits_fd"] == pytest.approx(0.0, abs=1e-3)  # the reference itself

    held = dm.digit_metrics(images[classifier.held_out], classifier)
    noise = dm.digit_metrics(_noise(len(classifier.held_out)), classifier)
    assert held["digits_classes"] == 10 and held["digits_confidence"] > 0.9
    assert 0 < held["digits_fd"] < 25, held
    assert noise["digits_fd"] > 20 * held["digits_fd"], (noise, held)
    assert noise["digits_confidence"] < 0.8  # noise is no digit


def test_collapsed_generator(classifier, real):
    images, labels = real
    m = dm.digit_metrics(images[7:8].expand(1000, -1, -1, -1), classifier)
    label = labels[7].item()
    assert m["digits_classes"] == 1 and m["digits_counts"][label] == 1000
    assert m["digits_entropy"] == 0.0
    held = dm.digit_metrics(images[classifier.held_out], classifier)
    assert m["digits_fd"] > 20 * held["digits_fd"], (m, held)


def test_half_the_classes(classifier, real):
    images, labels = real
    m = dm.digit_metrics(images[labels < 5], classifier)
    assert m["digits_classes"] == 5 and m["digits_entropy"] == pytest.approx(math.log(5), abs=0.02)
    assert m["digits_fd"] > 100


def test_min_share(classifier, real):
    images, labels = real
    # 100 of each of 0..8 and 10 nines (10 of 910 = 1.1%)
    x = torch.cat([images[labels == d][: 100 if d < 9 else 10] for d in range(10)])
    counts = dm.digit_metrics(x, classifier)["digits_counts"]
    nines = counts[9]
    assert 5 <= nines <= 15, counts
    assert dm.digit_metrics(x, classifier, min_share=0.02)["digits_classes"] == 9
    assert dm.digit_metrics(x, classifier, min_share=nines / len(x))["digits_classes"] == 10
    assert dm.digit_metrics(x, classifier, min_share=(nines + 1) / len(x))["digits_classes"] == 9


def test_larger_and_rgb_inputs_score_like_16(classifier, real):
    images, _ = real
    base = dm.digit_metrics(images, classifier)
    up = F.interpolate(images, size=32, mode="bilinear", align_corners=False)
    for x, kw in ((up, {}), (up.expand(-1, 3, -1, -1), {}), ((up + 1) / 2, {"value_range": (0, 1)})):
        m = dm.digit_metrics(x, classifier, **kw)
        assert m["digits_classes"] == 10
        assert all(abs(a - b) <= 10 for a, b in zip(m["digits_counts"], base["digits_counts"])), m
        assert abs(m["digits_confidence"] - base["digits_confidence"]) < 0.02
        assert m["digits_fd"] < 20, m  # noise: ~860


def test_batches_do_not_change_the_result(classifier, real):
    images, _ = real
    x = torch.cat([images[:300], _noise(100)])
    a = dm.digit_metrics(x, classifier)
    b = dm.digit_metrics(x, classifier, batch_size=37)
    assert a["digits_counts"] == b["digits_counts"] and a["digits_classes"] == b["digits_classes"]
    assert b["digits_confidence"] == pytest.approx(a["digits_confidence"], rel=1e-6)
    assert b["digits_fd"] == pytest.approx(a["digits_fd"], rel=1e-5)


def test_non_finite_samples_get_no_vote(classifier, real):
    images, _ = real
    x = images[:400].clone()
    bad = torch.tensor([3, 50, 51, 200, 399])
    x[3, 0, 5, 5] = float("nan")
    x[50] = float("inf")
    x[51, 0, 0, 0] = -float("inf")
    x[200] = float("nan")
    x[399, 0, 15, 15] = float("inf")
    good = torch.ones(400, dtype=torch.bool)
    good[bad] = False
    m = dm.digit_metrics(x, classifier)
    ref = dm.digit_metrics(images[:400][good], classifier)
    assert m["num_samples"] == 400 and sum(m["digits_counts"]) == 395
    assert m["digits_counts"] == ref["digits_counts"]
    assert m["digits_confidence"] == pytest.approx(ref["digits_confidence"] * 395 / 400, rel=1e-9)
    assert m["digits_entropy"] == pytest.approx(ref["digits_entropy"], rel=1e-9)
    assert m["digits_fd"] == pytest.approx(ref["digits_fd"], rel=1e-6)

    one = images[:10].clone()
    one[1:] = float("nan")
    m = dm.digit_metrics(one, classifier)
    assert m["digits_fd"] == math.inf and sum(m["digits_counts"]) == 1
    none = torch.full((10, 1, 16, 16), float("nan"))
    m = dm.digit_metrics(none, classifier)
    assert m["digits_counts"] == [0] * 10 and m["digits_classes"] == 0
    assert m["digits_confidence"] == 0.0 and m["digits_entropy"] == 0.0 and m["digits_fd"] == math.inf


def test_fd_matches_fid_module(classifier, real):
    images, _ = real
    x = _noise(200, seed=3) * 0.5 + images[:200] * 0.5
    with torch.no_grad():
        f = classifier.features(x)
        f_real = classifier.features(images)
    assert dm.digit_metrics(x, classifier)["digits_fd"] == pytest.approx(fid.fid_from_features(f, f_real),
                                                                         rel=1e-6)


def test_to_classifier_input():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 1, 32, 32, generator=g)
    y = dm.to_classifier_input(x)
    assert y.shape == (3, 1, 16, 16) and y.dtype == torch.float32
    assert y.min() >= -1 and y.max() <= 1
    assert torch.allclose(y, F.avg_pool2d(x, 2).clamp(-1, 1))  # area = mean of each 2 x 2 cell
    rgb = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    assert torch.allclose(dm.to_classifier_input(rgb), rgb.mean(1, keepdim=True))
    small = dm.to_classifier_input(torch.rand(2, 1, 8, 8, generator=g).double())
    assert small.shape == (2, 1, 16, 16) and small.dtype == torch.float32
    assert dm.to_classifier_input(torch.rand(2, 1, 20, 12, generator=g)).shape == (2, 1, 16, 16)
    assert torch.equal(dm.to_classifier_input(torch.full((1, 1, 16, 16), 255.0), (0, 255)),
                       torch.ones(1, 1, 16, 16))
    # uint8 images are 0..255, as inception_features takes them, whatever value_range says
    u8 = (torch.rand(2, 3, 20, 20, generator=g) * 255).round().to(torch.uint8)
    assert torch.equal(dm.to_classifier_input(u8), dm.to_classifier_input(u8.float(), (0, 255)))


@pytest.mark.parametrize("bad, error, match", [
    (torch.zeros(4, 16, 16), ValueError, "samples must be 4-D"),
    (torch.zeros(4, 2, 16, 16), ValueError, "1 or 3 channels"),
    (torch.zeros(4, 1, 16, 16, dtype=torch.int32), TypeError, r"samples must be uint8 \(0..255\) or floating point"),
    (torch.zeros(4, 1, 3, 16), ValueError, "at least 4 x 4"),
    ([[0.0]], TypeError, "samples must be a torch.Tensor"),
])
def test_bad_samples(classifier, bad, error, match):
    with pytest.raises(error, match=match):
        dm.to_classifier_input(bad)
    with pytest.raises(error, match=match):
        dm.digit_metrics(bad, classifier)


def test_bad_arguments(classifier, real):
    images, _ = real
    with pytest.raises(ValueError, match="at least 2 samples"):
        dm.digit_metrics(images[:1], classifier)
    with pytest.raises(ValueError, match="min_share"):
        dm.digit_metrics(images[:10], classifier, min_share=1.5)
    with pytest.raises(ValueError, match="batch_size"):
        dm.digit_metrics(images[:10], classifier, batch_size=0)
    with pytest.raises(ValueError, match="value_range"):
        dm.to_classifier_input(images[:2], value_range=(1, 1))
    with pytest.raises(ValueError, match=r"x must be \[B, 1, 16, 16\]"):
        classifier(torch.zeros(2, 1, 32, 32))


def test_default_classifier_from_the_cache_env(root, classifier, real, monkeypatch):
    monkeypatch.setenv("FASTGAN_CACHE_DIR", str(root))
    monkeypatch.setattr(dm, "_train", lambda *a, **k: pytest.fail("retrained"))
    m = dm.digit_metrics(real[0][:500])
    assert m == dm.digit_metrics(real[0][:500], classifier)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA GPU")
def test_on_gpu(root, classifier, real, monkeypatch):
    images, _ = real
    gpu = dm.digit_classifier(device="cuda", root=root)
    assert next(gpu.parameters()).is_cuda and gpu.real_stats[0].is_cuda
    cpu_m = dm.digit_metrics(images, classifier)
    for x in (images, images.cuda()):  # samples on either device, classified on the GPU
        m = dm.digit_metrics(x, gpu)
        assert m["digits_classes"] == 10
        assert all(abs(a - b) <= 2 for a, b in zip(m["digits_counts"], cpu_m["digits_counts"]))
        assert m["digits_fd"] < 0.05
    monkeypatch.setenv("FASTGAN_CACHE_DIR", str(root))
    m = dm.digit_metrics(images.cuda())  # the default classifier goes to the samples' device
    assert m["digits_classes"] == 10 and m["digits_fd"] < 0.05
