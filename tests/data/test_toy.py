"""2-D toy mixtures: centers, sampling, ToyLoader's position contract, coverage, the scatter picture,
and the hooks into make_loader, RunLogger and the dataset defaults."""
import math

import numpy as np
import pytest
import torch
from PIL import Image

from fastgan.data import ToyLoader, make_loader, toy
from fastgan.train.logging import RunLogger


def test_centers():
    ring = toy.centers("ring8")
    assert ring.shape == (8, 2) and ring.dtype == torch.float32
    torch.testing.assert_close(ring.norm(dim=1), torch.full((8,), 2.0))
    angles = torch.atan2(ring[:, 1], ring[:, 0]).remainder(2 * math.pi)
    torch.testing.assert_close(angles, torch.arange(8) * (2 * math.pi / 8), atol=1e-6, rtol=0)
    grid = toy.centers("grid25")
    assert grid.shape == (25, 2)
    axis = [-4.0, -2.0, 0.0, 2.0, 4.0]
    assert sorted(map(tuple, grid.tolist())) == [(x, y) for x in axis for y in axis]
    assert grid[7].tolist() == [-2.0, 0.0]              # mode k = (axis[k // 5], axis[k % 5])
    with pytest.raises(ValueError, match="'ring8', 'grid25'"):
        toy.centers("ring9")


@pytest.mark.parametrize("name", toy.MIXTURES)
def test_sample_statistics(name):
    n = 40_000
    points, labels = toy.sample(name, n, generator=torch.Generator().manual_seed(3))
    assert points.shape == (n, 2) and points.dtype == torch.float32 and labels.dtype == torch.int64
    means = toy.centers(name)
    offset = points - means[labels]
    std = toy.DEFAULT_STD[name]
    torch.testing.assert_close(offset.std(0), torch.full((2,), std), rtol=0.03, atol=0)
    assert offset.mean(0).abs().max() < 4 * std / math.sqrt(n)
    counts = torch.bincount(labels, minlength=len(means)).float()
    expected = n / len(means)
    assert (counts - expected).abs().max() < 5 * math.sqrt(expected)   # modes equally likely
    wide, wide_labels = toy.sample(name, 20_000, std=0.3, generator=torch.Generator().manual_seed(3))
    assert abs(float((wide - means[wide_labels]).std()) - 0.3) < 0.01
    again, _ = toy.sample(name, n, generator=torch.Generator().manual_seed(3))
    assert torch.equal(points, again)


def test_sample_bad_arguments():
    with pytest.raises(ValueError, match="std must be a positive number"):
        toy.sample("ring8", 4, std=0.0)
    with pytest.raises(ValueError, match="n must be an int >= 0"):
        toy.sample("ring8", -1)
    with pytest.raises(ValueError, match="name must be one of"):
        toy.sample("moons", 4)


def _epoch(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def test_loader_interface_and_determinism():
    loader = ToyLoader("grid25", batch_size=64, num_samples=1000, seed=5, device="cpu")
    assert len(loader) == 15 and loader.num_samples == 1000 and loader.batch_size == 64
    assert (loader.num_classes, loader.backend, loader.skipped) == (25, "toy", 0)
    assert (loader.resolution, loader.channels, loader.device) == (1, 2, torch.device("cpu"))
    first = _epoch(loader)
    assert loader.epoch == 1 and len(first) == 15
    x, y = first[0]
    assert x.shape == (64, 2, 1, 1) and x.dtype == torch.float32 and y.shape == (64,)
    assert torch.equal(x.view(64, 2).sub(toy.centers("grid25")[y]).abs().lt(0.5).all(), torch.tensor(True))
    second = _epoch(loader)
    assert not torch.equal(first[0][0], second[0][0])                     # a new epoch, new points
    fresh = ToyLoader("grid25", batch_size=64, num_samples=1000, seed=5, device="cpu")
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, _epoch(fresh)))
    other = ToyLoader("grid25", batch_size=64, num_samples=1000, seed=6, device="cpu")
    assert not torch.equal(first[0][0], next(iter(other))[0])
    half = ToyLoader("ring8", batch_size=8, dtype=torch.bfloat16, device="cpu")
    assert len(half) == toy.DEFAULT_EPOCH // 8 and next(iter(half))[0].dtype == torch.bfloat16


def test_loader_resume_gives_the_uninterrupted_batches():
    kw = dict(batch_size=32, num_samples=320, seed=1, device="cpu")
    straight = ToyLoader("ring8", **kw)
    reference = _epoch(straight) + _epoch(straight)                     # epochs 0 and 1

    cut = ToyLoader("ring8", **kw)
    _epoch(cut)                                                         # epoch 0 ...
    it = iter(cut)
    for _ in range(3):                                                  # ... and 3 batches of epoch 1
        next(it)
    state = cut.state_dict()
    assert state == {"epoch": 1, "batch": 3, "seed": 1, "num_samples": 320, "batch_size": 32,
                     "shard": [0, 1]}
    resumed = ToyLoader("ring8", **kw)
    resumed.load_state_dict(state)
    rest = _epoch(resumed)
    assert len(rest) == 7
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(rest, reference[13:]))

    at_end = ToyLoader("ring8", **kw)                                   # stopped after an epoch's last batch
    at_end.load_state_dict({**state, "epoch": 0, "batch": 10})
    assert torch.equal(next(iter(at_end))[0], reference[10][0]) and at_end.epoch == 1

    with pytest.raises(ValueError, match="batch_size=32 but this loader has 16"):
        ToyLoader("ring8", **{**kw, "batch_size": 16}).load_state_dict(state)
    with pytest.raises(ValueError, match="out of range"):
        resumed.load_state_dict({**state, "batch": 11})


def test_shards_draw_different_streams():
    kw = dict(batch_size=16, num_samples=160, seed=0, device="cpu")
    a = ToyLoader("ring8", shard=(0, 2), **kw)
    b = ToyLoader("ring8", shard=(1, 2), **kw)
    assert a.num_samples == b.num_samples == 80 and len(a) == 5
    pa = torch.cat([x for x, _ in a])
    pb = torch.cat([x for x, _ in b])
    assert not torch.isin(pa.flatten(), pb.flatten()).any()
    assert a.state_dict()["shard"] == [0, 2]
    with pytest.raises(ValueError, match="shard"):
        ToyLoader("ring8", shard=(1, 2), **kw).load_state_dict(a.state_dict())


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(name="ring9"), ValueError, "'ring8', 'grid25'"),
    (dict(batch_size=0), ValueError, "batch_size must be a positive int"),
    (dict(batch_size=True), ValueError, "batch_size must be a positive int"),
    (dict(num_samples=10), ValueError, "fewer than batch_size=64"),
    (dict(num_samples=2.5), ValueError, "num_samples must be None or a positive int"),
    (dict(std=-1.0), ValueError, "std must be a positive number"),
    (dict(shard=(2, 2)), ValueError, "0 <= rank < world_size"),
    (dict(shard=3), ValueError, "shard must be"),
    (dict(seed=0.5), TypeError, "seed must be an int"),
    (dict(dtype=torch.int64), TypeError, "dtype must be"),
])
def test_loader_bad_arguments(kwargs, error, match):
    args = {"name": "ring8", "batch_size": 64, "device": "cpu", **kwargs}
    with pytest.raises(error, match=match):
        ToyLoader(args.pop("name"), **args)


def test_coverage_constructed_cases():
    ring = toy.centers("ring8")
    exact = ring.repeat(50, 1)
    cov = toy.coverage(exact, "ring8")
    assert (cov["modes"], cov["num_modes"], cov["high_quality"]) == (8, 8, 1.0)
    assert cov["counts"] == [50] * 8 and cov["min_count"] == math.ceil(0.05 * 400 / 8)

    points, labels = toy.sample("ring8", 4000, generator=torch.Generator().manual_seed(0))
    cov = toy.coverage(points.view(-1, 2, 1, 1).half(), "ring8")          # [N, 2, 1, 1], float16
    assert cov["modes"] == 8
    assert abs(cov["high_quality"] - (1 - math.exp(-4.5))) < 0.01        # P(chi2_2 <= 3^2)

    three = points[labels < 3]
    assert toy.coverage(three, "ring8")["modes"] == 3

    noise = torch.rand(4000, 2, generator=torch.Generator().manual_seed(1)) * 6 - 3
    cov = toy.coverage(noise, "ring8")
    assert cov["high_quality"] < 0.02 and cov["modes"] == 0

    stray = torch.cat([points[labels < 7], ring[7:8].repeat(2, 1)])       # 2 samples on mode 7
    assert toy.coverage(stray, "ring8")["modes"] == 7
    assert toy.coverage(stray, "ring8", min_fraction=0)["modes"] == 8    # VEEGAN's "at least one"

    shifted = exact + torch.tensor([0.07, 0.0])                          # 3.5 std off every center
    assert toy.coverage(shifted, "ring8")["high_quality"] == 0.0
    assert toy.coverage(shifted, "ring8", k=4.0)["high_quality"] == 1.0
    assert toy.coverage(shifted, centers=ring, std=0.05)["modes"] == 8

    nans = exact.clone()
    nans[:100] = float("nan")
    assert toy.coverage(nans, "ring8")["high_quality"] == 0.75


def test_coverage_bad_arguments():
    with pytest.raises(ValueError, match=r"\[N, 2\] or \[N, 2, 1, 1\]"):
        toy.coverage(torch.zeros(4, 3), "ring8")
    with pytest.raises(TypeError, match="floating point"):
        toy.coverage(torch.zeros(4, 2, dtype=torch.int64), "ring8")
    with pytest.raises(ValueError, match="std is needed"):
        toy.coverage(torch.zeros(4, 2), centers=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="give the mixture"):
        toy.coverage(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="empty"):
        toy.coverage(torch.zeros(0, 2), "ring8")


def _pixel_of(x, y, half, size=256):
    return int((half - y) * size / (2 * half)), int((x + half) * size / (2 * half))


def test_scatter_image():
    ring = toy.centers("ring8")
    on_three = ring[:3].repeat(20, 1)
    img = toy.scatter_image(on_three.view(-1, 2, 1, 1), "ring8")
    assert img.shape == (256, 256, 3) and img.dtype == torch.uint8
    r, c = _pixel_of(2.0, 0.0, 3.0)
    assert img[r, c].float().mean() < 80                                 # samples there: dark
    r, c = _pixel_of(0.0, 0.0, 3.0)
    assert img[r, c].tolist() == [255, 255, 255]                         # nothing at the origin
    r, c = _pixel_of(-2.0, 0.0, 3.0)
    assert 120 < img[r, c].min() and img[r, c].max() < 200               # an empty mode: a gray mark
    assert (img.float().mean(2) < 80).sum() == 3 * 9                     # 3 modes, one 3x3 dot each

    one = toy.scatter_image(torch.tensor([[0.5, 0.5]]), extent=(0, 1, 0, 1), size=64)
    assert one.shape == (64, 64, 3) and one[32, 32].max() < 200 and one[5, 5].tolist() == [255] * 3
    off = toy.scatter_image(torch.tensor([[9.0, 9.0], [float("nan"), 0.0]]), "grid25")
    assert off.min() >= 120                                              # outside / NaN: left out

    auto = toy.scatter_image(torch.tensor([[10.0, 10.0], [12.0, 14.0]]))  # view from the data
    assert (auto.float().mean(2) < 200).sum() >= 2 * 9

    with pytest.raises(ValueError, match="size must be an int >= 16"):
        toy.scatter_image(on_three, size=8)
    with pytest.raises(ValueError, match="extent"):
        toy.scatter_image(on_three, extent=(1, 0, 0, 1))


def test_make_loader_toy(capsys):
    loader = make_loader("ring8", resolution=1, channels=2, batch_size=64, device="cpu", seed=3)
    assert isinstance(loader, ToyLoader) and loader.seed == 3 and loader.batch_size == 64
    assert "backend 'toy'" in capsys.readouterr().err
    x, y = next(iter(loader))
    assert x.shape == (64, 2, 1, 1) and toy.coverage(x, "ring8")["high_quality"] > 0.9
    with pytest.raises(ValueError, match="resolution=1 and channels=2"):
        make_loader("ring8", batch_size=64, device="cpu")
    with pytest.raises(ValueError, match="backend must be 'auto'"):
        make_loader("grid25", resolution=1, channels=2, batch_size=64, backend="cache", device="cpu")


def test_run_logger_draws_points(tmp_path):
    points, _ = toy.sample("ring8", 500, generator=torch.Generator().manual_seed(0))
    with RunLogger(tmp_path, tensorboard=False, mixture="ring8") as logger:
        png = logger.images(500, points.view(-1, 2, 1, 1))
        flat = logger.images(1000, points)
        with pytest.raises(ValueError, match="C = 1 or 3"):
            logger.images(1500, torch.zeros(4, 2, 4, 4))                  # images with C = 2 stay an error
    assert png == tmp_path / "samples" / "step_000000500.png" and flat.name == "step_000001000.png"
    with Image.open(png) as im:
        assert im.size == (256, 256) and im.mode == "RGB"
        pixels = torch.from_numpy(np.asarray(im).copy())
    assert torch.equal(pixels, toy.scatter_image(points, "ring8"))
    with pytest.raises(ValueError, match="name must be one of"):
        RunLogger(tmp_path / "other", tensorboard=False, mixture="moons")


def test_dataset_defaults():
    from fastgan.models.base import COMMON
    from fastgan.train.config import DATASET_DEFAULTS, TRAIN_KEYS, resolve
    for name in toy.MIXTURES:
        defaults = DATASET_DEFAULTS[name]
        assert set(defaults) <= set(COMMON) | TRAIN_KEYS
        assert (defaults["resolution"], defaults["channels"], defaults["arch"]) == (1, 2, "mlp")
    full = resolve("wgan-gp", {"data": "grid25"})
    assert (full["resolution"], full["channels"], full["arch"], full["num_samples"]) == (1, 2, "mlp", 1000)
    assert full["lr_schedule"] == "linear" and resolve("wgan-gp", {})["lr_schedule"] == "constant"


@pytest.mark.gpu
def test_loader_on_cuda():
    kw = dict(batch_size=64, num_samples=640, seed=2, device="cuda")
    a, b = ToyLoader("grid25", **kw), ToyLoader("grid25", **kw)
    x, y = next(iter(a))
    assert x.device.type == "cuda" and y.device.type == "cuda" and x.shape == (64, 2, 1, 1)
    assert torch.equal(x, next(iter(b))[0])
    assert toy.coverage(torch.cat([p for p, _ in a]), "grid25")["high_quality"] > 0.9
