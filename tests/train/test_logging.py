"""Run logging: grid geometry and pixel values, PNGs, metrics.jsonl, TensorBoard events,
the disabled (non-zero rank) logger, and the progress bar."""
import json
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

import fastgan.train.logging as run_logging
from fastgan.train.logging import Progress, RunLogger, make_grid, save_image_grid

# Four 2x3 RGB tiles, each one flat colour, in [-1, 1].
_COLOURS = torch.tensor([[-1.0, 0.0, 1.0], [1.0, -1.0, 0.0], [0.0, 1.0, -1.0], [0.5, -0.5, 1.0]])
_EXPECTED = [[0, 128, 255], [255, 0, 128], [128, 255, 0], [191, 64, 255]]  # 127.5 rounds to even 128


def _tiles():
    return _COLOURS[:, :, None, None].expand(4, 3, 2, 3).contiguous()


def test_grid_2x2_layout_and_pixel_values():
    grid = make_grid(_tiles(), nrow=2, padding=1)
    assert grid.dtype == torch.uint8 and grid.shape == (2 * 3 + 1, 2 * 4 + 1, 3)
    background = torch.ones(grid.shape[:2], dtype=torch.bool)
    for i, colour in enumerate(_EXPECTED):
        top, left = 1 + (i // 2) * 3, 1 + (i % 2) * 4
        tile = grid[top:top + 2, left:left + 3]
        assert tile.reshape(-1, 3).tolist() == [colour] * 6, f"tile {i}"
        background[top:top + 2, left:left + 3] = False
    assert (grid[background] == 0).all()


def test_grid_clamps_rounds_and_blacks_out_nan():
    x = torch.tensor([-3.0, -1.0, 0.2, 0.999, 1.0, 7.0, float("nan"), float("inf")]).view(1, 1, 2, 4)
    assert make_grid(x, padding=0)[..., 0].flatten().tolist() == [0, 0, 153, 255, 255, 255, 0, 255]
    y = torch.tensor([0.0, 0.25, 0.5, 1.0]).view(1, 1, 1, 4)
    assert make_grid(y, padding=0, value_range=(0, 1))[..., 0].flatten().tolist() == [0, 64, 128, 255]


@pytest.mark.parametrize("n, nrow, shape", [(5, None, (2, 3)), (3, 8, (1, 3)), (7, 2, (4, 2)), (1, None, (1, 1))])
def test_grid_shape(n, nrow, shape):
    grid = make_grid(torch.zeros(n, 1, 5, 7), nrow=nrow)
    rows, cols = shape
    assert grid.shape == (rows * 7 + 2, cols * 9 + 2, 1)


@pytest.mark.parametrize("images, kwargs, error, match", [
    (torch.zeros(2, 2, 4, 4), {}, ValueError, "C = 1 or 3"),
    (torch.zeros(3, 4, 4), {}, ValueError, r"\[N, C, H, W\]"),
    (torch.zeros(0, 3, 4, 4), {}, ValueError, "empty"),
    (torch.zeros(2, 3, 4, 4, dtype=torch.uint8), {}, TypeError, "floating point"),
    (torch.zeros(2, 3, 4, 4), {"nrow": 0}, ValueError, "nrow"),
    (torch.zeros(2, 3, 4, 4), {"padding": -1}, ValueError, "padding"),
    (torch.zeros(2, 3, 4, 4), {"value_range": (1, 1)}, ValueError, "value_range"),
])
def test_grid_rejects_bad_arguments(images, kwargs, error, match):
    with pytest.raises(error, match=match):
        make_grid(images, **kwargs)


@pytest.mark.parametrize("channels", [1, 3])
def test_png_round_trip(tmp_path, channels):
    images = torch.rand(6, channels, 9, 11, generator=torch.Generator().manual_seed(0)) * 2 - 1
    path = save_image_grid(images, tmp_path / "deep" / "grid.png", nrow=3)
    assert path == tmp_path / "deep" / "grid.png"
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]  # no temporary left behind
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == ("L" if channels == 1 else "RGB")
        pixels = np.asarray(im)
    grid = make_grid(images, nrow=3).numpy()
    np.testing.assert_array_equal(pixels, grid[:, :, 0] if channels == 1 else grid)


def test_run_logger_writes_metrics_pngs_and_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with RunLogger(tmp_path / "run") as logger:
        logger.scalars(10, {"loss/d": 0.5, "loss/g": torch.tensor(-1.25), "images_per_s": 300})
        logger.scalars(20, {"loss/d": 0.25, "wasserstein": 2})
        png = logger.images(20, _tiles())
        ema = logger.images(20, _tiles()[:1], tag="samples/ema")

    lines = [json.loads(s) for s in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in d.items() if k != "time"} for d in lines] == [
        {"step": 10, "loss/d": 0.5, "loss/g": -1.25, "images_per_s": 300.0},
        {"step": 20, "loss/d": 0.25, "wasserstein": 2.0}]
    assert lines[0]["time"] <= lines[1]["time"]

    assert png == tmp_path / "run" / "samples" / "step_000000020.png"
    assert ema == tmp_path / "run" / "samples" / "ema" / "step_000000020.png"
    with Image.open(png) as im:
        np.testing.assert_array_equal(np.asarray(im), make_grid(_tiles()).numpy())

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss/d")] == [(10, 0.5), (20, 0.25)]
    assert [(e.step, e.value) for e in events.Scalars("loss/g")] == [(10, -1.25)]
    image = events.Images("samples")[0]
    assert image.step == 20 and (image.height, image.width) == tuple(make_grid(_tiles()).shape[:2])


def test_purge_step_drops_what_the_interrupted_run_logged_after_it(tmp_path):
    with RunLogger(tmp_path, tensorboard=False) as logger:
        for step in range(1, 6):
            logger.scalars(step, {"loss": step})
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "lo')  # cut short by the crash
    with RunLogger(tmp_path, tensorboard=False, purge_step=3) as logger:
        logger.scalars(3, {"loss": 30})
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(d["step"], d["loss"]) for d in lines] == [(1, 1.0), (2, 2.0), (3, 30.0)]


def test_scalars_rejects_bad_values(tmp_path):
    with RunLogger(tmp_path, tensorboard=False) as logger:
        with pytest.raises(TypeError, match="'loss/d' must be a number"):
            logger.scalars(1, {"loss/d": "high"})
        with pytest.raises(ValueError, match="'gp' must have one element"):
            logger.scalars(1, {"gp": torch.ones(2)})
        with pytest.raises(ValueError, match="reserved"):
            logger.scalars(1, {"step": 1})
        with pytest.raises(ValueError, match="tag"):
            logger.images(1, _tiles(), tag="../escape")
    assert (tmp_path / "metrics.jsonl").read_text() == ""


def test_disabled_logger_writes_nothing(tmp_path):
    logger = RunLogger(tmp_path / "rank1", enabled=False)
    logger.scalars(1, {"loss/d": 1.0})
    assert logger.images(1, _tiles()) is None
    logger.close()
    assert not (tmp_path / "rank1").exists()


def test_without_tensorboard_warns_once_and_keeps_files(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # makes the import fail
    monkeypatch.setattr(run_logging, "_warned_no_tensorboard", False)
    with pytest.warns(UserWarning, match="install tensorboard for TensorBoard logs") as record:
        for name in ("a", "b"):
            with RunLogger(tmp_path / name) as logger:
                logger.scalars(1, {"loss": 1.0})
                logger.images(1, _tiles())
    assert len([w for w in record if "install tensorboard" in str(w.message)]) == 1
    for name in ("a", "b"):
        run = tmp_path / name
        assert (run / "metrics.jsonl").read_text().count("\n") == 1
        assert (run / "samples" / "step_000000001.png").is_file()
        assert not (run / "tensorboard").exists()


def test_progress_disabled_prints_nothing(capsys):
    bar = Progress(10, enabled=False)
    bar.update(5, images_per_s=10.0, d=1.0)
    bar.close()
    assert capsys.readouterr().err == ""


def test_progress_shows_step_losses_and_rate(capsys):
    bar = Progress(100, initial=40, desc="wgan-gp")
    for step in range(41, 101):
        bar.update(step, images_per_s=1234.5, d=torch.tensor(0.123456), g=-2)
    assert bar.n == 100
    bar.close()
    err = capsys.readouterr().err
    last = err.split("\r")[-1]
    assert "wgan-gp" in last and "100/100" in last
    assert "d=0.1235" in last and "g=-2" in last and "img/s=1234.5" in last


def test_progress_does_not_spam_a_non_tty_log(capsys):
    bar = Progress(60)
    for step in range(1, 61):  # 0.6 s: a terminal's 0.1 s redraw interval would draw ~6 times
        time.sleep(0.01)
        bar.update(step, d=0.5)
    bar.close()
    err = capsys.readouterr().err
    assert err.count("\r") <= 3, err  # first draw, close, and at most one 30 s refresh
