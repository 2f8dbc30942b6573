"""fastgan.metrics.evaluate: generators -> metrics, reference statistics and their cache,
evaluation during training (eval_every, best.pt) and `fastgan eval`.

The Inception metrics run here with randomly initialized weights of the exact network
(fastgan.metrics.inception.random_inception) on a handful of images: the plumbing is what
is tested (the scores' math is in test_scores.py). "Generators" are small modules with
known outputs: real digits looked up by z, exact samples of the ring, a collapsed one.
"""
import json
import math
import os
import pathlib

import numpy as np
import pytest
import torch
from torch import nn

import fastgan
from fastgan import data as fdata
from fastgan.cli import main
from fastgan.data import toy
from fastgan.metrics import evaluate as ev
from fastgan.metrics.inception import random_inception
from fastgan.train import checkpoint as ckpt

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def inception():
    return random_inception(seed=0)


@pytest.fixture(scope="module")
def digits16():
    loader = fdata.make_loader("digits", resolution=16, channels=1, batch_size=2048, device="cpu",
                               shuffle=False, drop_last=False, verbose=False)
    images, labels = next(iter(loader))
    return images, labels


class Lookup(nn.Module):
    """Returns table[i] for the i-th z it has been asked for since reset (z is ignored but
    for its count): a generator whose samples are known images, in order."""

    def __init__(self, table):
        super().__init__()
        self.register_buffer("table", table)
        self.z_dim, self.i = 4, 0

    def forward(self, z):
        out = self.table[self.i:self.i + z.shape[0]]
        self.i += z.shape[0]
        return out


class Ring(nn.Module):
    """Exact samples of ring8 from z (or all at one center when collapsed)."""

    def __init__(self, collapsed=False):
        super().__init__()
        self.z_dim, self.collapsed = 3, collapsed
        self.register_buffer("centers", toy.centers("ring8").float())

    def forward(self, z):
        idx = torch.zeros(len(z), dtype=torch.long) if self.collapsed else \
            (torch.special.ndtr(z[:, 0]) * 8).long().clamp(0, 7)
        pts = self.centers[idx] + toy.DEFAULT_STD["ring8"] * z[:, 1:3]
        return pts[:, :, None, None]


def test_parse_and_default_metrics():
    assert ev.parse_metrics("fid, KID,fid") == ["fid", "kid"]
    assert ev.parse_metrics(["pr", "digits"]) == ["pr", "digits"]
    with pytest.raises(ValueError, match="unknown metric 'fjd'.*fid, kid, is, pr, digits, mixture"):
        ev.parse_metrics("fjd")
    with pytest.raises(ValueError, match="no metric"):
        ev.parse_metrics(" , ")
    assert ev.default_metrics("ring8") == ["mixture"]
    assert ev.default_metrics(None) == ev.default_metrics("digits") == ["digits"]
    assert ev.default_metrics("celeba.zip") == ["fid"]


def test_is_better_follows_each_metrics_direction():
    assert ev.is_better({"fid": 3.0}, None, ["fid"])
    assert ev.is_better({"fid": 3.0}, {"fid": 4.0}, ["fid", "is"])
    assert not ev.is_better({"fid": 5.0}, {"fid": 4.0}, ["fid"])
    assert ev.is_better({"is": 5.0}, {"is": 4.0}, ["is"])
    assert not ev.is_better({"fid": math.nan}, {"fid": 4.0}, ["fid"])
    assert ev.is_better({"fid": 9.0}, {"fid": math.nan}, ["fid"])
    # mixture: more modes first, then the high-quality fraction
    assert ev.is_better({"modes": 8, "high_quality": 0.5}, {"modes": 7, "high_quality": 0.9}, ["mixture"])
    assert ev.is_better({"modes": 8, "high_quality": 0.9}, {"modes": 8, "high_quality": 0.5}, ["mixture"])
    assert not ev.is_better({"modes": 8, "high_quality": 0.5}, {"modes": 8, "high_quality": 0.5}, ["mixture"])


def test_generate_is_seeded_and_independent_of_batch_size():
    g = nn.Sequential(nn.Linear(5, 3))
    g.z_dim = 5
    g.train()
    a = torch.cat(list(ev.generate(g, 10, batch_size=3, seed=1)))
    b = torch.cat(list(ev.generate(g, 10, batch_size=10, seed=1)))
    c = torch.cat(list(ev.generate(g, 10, batch_size=4, seed=2)))
    assert a.shape == (10, 3)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    assert g.training  # restored
    z = torch.randn(10, 5, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, g(z).detach())
    with pytest.raises(ValueError, match="num"):
        next(ev.generate(g, 0))
    with pytest.raises(ValueError, match="z_dim or sample_z"):
        next(ev.generate(nn.Linear(2, 2), 3))


def test_mixture_metric():
    good = ev.Evaluator("mixture", data="ring8", resolution=1, channels=2, num=2000, progress=False)
    out = good(Ring())
    assert out["modes"] == 8 and out["num_modes"] == 8 and out["high_quality"] > 0.95
    assert sum(out["mode_counts"]) == round(out["high_quality"] * 2000)
    bad = good(Ring(collapsed=True))
    assert bad["modes"] == 1 and bad["mode_counts"][0] == round(bad["high_quality"] * 2000)
    for data in ("digits", None):  # None: a run's config for the built-in digits
        with pytest.raises(ValueError, match="mixture metric scores 2-D samples of ring8 or grid25; "
                                             "this data is 'digits'$"):
            ev.Evaluator("mixture", data=data, resolution=16, channels=1)
    with pytest.raises(ValueError, match="use --metrics mixture"):
        ev.Evaluator("fid", data="ring8", resolution=1, channels=2)


def test_evaluator_devices():
    e = ev.Evaluator("digits", data="digits", resolution=16, channels=1, device="cpu:0")
    assert e.device == torch.device("cpu")  # one CPU device, named without its index
    for device in ("mps", "xpu", "meta"):
        with pytest.raises(ValueError, match=f"^device '{device}' is not supported: fastgan runs on cpu "
                                             r"or cuda \(cuda, cuda:1, ...\)$"):
            ev.Evaluator("digits", data="digits", resolution=16, channels=1, device=device)


def test_digits_metric(digits16, tmp_path):
    images, labels = digits16
    e = ev.Evaluator("digits", data="digits", resolution=16, channels=1, num=1000, progress=False,
                     cache_root=tmp_path)
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:1000]
    real = e(Lookup(images[pick]))  # the loader's order is class by class
    assert real["digits_classes"] == 10 and real["num_samples"] == 1000
    ones = images[labels == 1][:1].expand(1000, -1, -1, -1)
    collapsed = e(Lookup(ones.contiguous()))
    assert collapsed["digits_classes"] == 1
    assert collapsed["digits_fd"] > 10 * real["digits_fd"]
    with pytest.raises(ValueError, match="digits metric scores generated digits"):
        ev.Evaluator("digits", data="celeba.zip", resolution=64, channels=3)


def test_inception_metrics_with_random_weights(inception, digits16, tmp_path, capsys):
    images, _ = digits16
    n = 12
    kw = dict(data="digits", resolution=16, channels=1, num=n, ref_num=n, inception=inception,
              batch_size=6, device="cpu", progress=False, cache_root=tmp_path)
    e = ev.Evaluator("fid,kid,is,pr", **kw)
    same = e(Lookup(images[:n]))       # the reference's own first n images, in order
    assert same["fid"] == pytest.approx(0.0, abs=1e-6)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    # a set against itself: the unbiased MMD^2 is <= 0 (Cauchy-Schwarz on the kernel's features)
    assert same["kid_subset_size"] == n and same["kid"] <= 1e-9
    assert same["is"] >= 1.0 and math.isfinite(same["is_std"])
    assert same["inception_standard"] is False
    noise = e(Lookup(torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1))
    assert noise["fid"] > 1e-3 and noise["kid"] > same["kid"]

    # the reference was computed once and cached, with its manifest
    files = list((tmp_path / "fid_refs").glob("digits-16px-*.npz"))
    assert len(files) == 1
    stats = ev.load_stats(files[0])
    assert stats["features"].shape == (n, 2048)
    key = stats["manifest"]["key"]
    assert key["data"] == "digits" and key["resolution"] == 16 and key["num"] == n
    assert stats["manifest"]["count"] == n and key["amp"] is False

    # a second evaluator reuses it: no reference features are computed again
    e2 = ev.Evaluator("fid", **kw)
    calls = []
    real_features = fastgan.metrics.inception.inception_features

    def counting(model, imgs, **k):
        calls.append(imgs.shape[0])
        return real_features(model, imgs, **k)

    import fastgan.metrics.inception as inc
    orig = inc.inception_features
    inc.inception_features = counting
    try:
        again = e2(Lookup(images[:n]))
    finally:
        inc.inception_features = orig
    assert sum(calls) == n  # the generated samples only
    assert again["fid"] == pytest.approx(same["fid"], abs=1e-9)
    # other settings: another cache entry
    ev.Evaluator("fid", **{**kw, "ref_num": n - 2})(Lookup(images[:n]))
    assert len(list((tmp_path / "fid_refs").glob("*.npz"))) == 2


def test_reference_from_a_statistics_file(inception, digits16, tmp_path):
    images, _ = digits16
    n = 10
    kw = dict(data="digits", resolution=16, channels=1, num=n, inception=inception, batch_size=10,
              device="cpu", progress=False, cache_root=tmp_path)
    e = ev.Evaluator("fid", ref_num=n, **kw)
    direct = e(Lookup(images[:n]))["fid"]
    stats = e.reference()
    path = tmp_path / "pytorch_fid_style.npz"  # only mu and sigma, as pytorch-fid writes them
    np.savez(path, mu=stats["mu"].numpy(), sigma=stats["sigma"].numpy())
    from_file = ev.Evaluator("fid", ref=str(path), **kw)(Lookup(images[:n]))["fid"]
    assert from_file == pytest.approx(direct, rel=1e-9, abs=1e-9)
    with pytest.raises(ValueError, match="holds only mu and sigma.*--ref"):
        ev.Evaluator("kid", ref=str(path), **kw)(Lookup(images[:n]))
    bad = tmp_path / "bad.npz"
    np.savez(bad, mean=np.zeros(3))
    with pytest.raises(ValueError, match="needs arrays 'mu' and 'sigma'"):
        ev.load_stats(bad)
    with pytest.raises(FileNotFoundError, match="do not exist"):
        ev.load_stats(tmp_path / "missing.npz")


def test_missing_inception_weights_is_one_clear_error(monkeypatch):
    monkeypatch.delenv("FASTGAN_INCEPTION_WEIGHTS", raising=False)
    e = ev.Evaluator("is", data="digits", resolution=16, channels=1, num=4, splits=2, progress=False)
    with pytest.raises(FileNotFoundError, match="pt_inception-2015-12-05-6726825d.pth"):
        e(Lookup(torch.zeros(4, 1, 16, 16)))


# -- during training ------------------------------------------------------------------------
def _toy_trainer(tmp_path, name, **over):
    from fastgan import models
    from fastgan.train import config as cfgmod
    config = cfgmod.resolve("gan", {"data": "ring8", "steps": 6, "batch_size": 64, "device": "cpu",
                                    "out": str(tmp_path / name), "progress": False, "tensorboard": False,
                                    "log_every": 3, "mlp_hidden": 32, **over})
    hyper, train = cfgmod.split(config, models.get("gan"))
    torch.manual_seed(0)
    return fastgan.Trainer(models.build("gan", **hyper), None, train)


def test_eval_every_logs_keeps_best_and_changes_nothing(tmp_path):
    plain = _toy_trainer(tmp_path, "plain").fit()
    t = _toy_trainer(tmp_path, "eval", eval_every=2, metrics="mixture", eval_num=300).fit()
    assert [e["step"] for e in t.evaluations] == [2, 4, 6]
    assert all(set(e) >= {"modes", "high_quality", "num_samples"} for e in t.evaluations)
    # evaluation uses no global RNG and no training state: the losses are those of a plain run
    assert [r for r in t.history] != [] and \
        [{k: v for k, v in r.items() if k != "images_per_s"} for r in t.history] == \
        [{k: v for k, v in r.items() if k != "images_per_s"} for r in plain.history]
    run = tmp_path / "eval"
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in logged if "eval/modes" in r]
    assert [r["step"] for r in evals] == [2, 4, 6]
    best = json.loads((run / "best.json").read_text())
    ranked = max(t.evaluations, key=lambda e: (e["modes"], e["high_quality"]))  # first of equals
    assert best["step"] == ranked["step"] and best["metrics"] == ["mixture"]
    state = ckpt.load_checkpoint(run / "best.pt")
    assert state["step"] == best["step"] and state["eval_best"]["step"] == best["step"]
    g = fastgan.load_generator(run, checkpoint=run / "best.pt")
    assert g.fastgan_step == best["step"]


def test_a_best_whose_write_fails_is_not_the_best(tmp_path, monkeypatch):
    """The run's best changed before best.pt was written: a write cut short (a full disk,
    Ctrl-C) left later evaluations measured against a model never saved. It changes only
    with the write; best.pt's own state still names itself the best."""
    from fastgan.train import checkpoint as ckpt_module
    t = _toy_trainer(tmp_path, "b", eval_every=3, metrics="mixture", eval_num=200, steps=3).fit()
    first = t.best
    assert first is not None and first["step"] == 3
    assert ckpt.load_checkpoint(tmp_path / "b" / "best.pt")["eval_best"] == first
    t.step = 6  # as if trained on: the next evaluation would be a new best
    t.logger = type("Logger", (), {"scalars": lambda self, *a, **k: None})()  # fit() closed the run's

    def full(path, *a, **k):
        raise OSError(28, "No space left on device", str(path))
    monkeypatch.setattr(ckpt_module, "save_file", full)
    monkeypatch.setattr(ev, "is_better", lambda *a, **k: True)
    with pytest.raises(OSError, match="No space left"):
        t.evaluate()
    assert t.best == first


def test_eval_every_resume_keeps_the_best(tmp_path):
    t = _toy_trainer(tmp_path, "r", eval_every=3, metrics="mixture", eval_num=200, steps=3).fit()
    first = t.best
    assert first is not None and first["step"] == 3
    from fastgan import models
    from fastgan.train import config as cfgmod
    cfg = cfgmod.load_config_file(tmp_path / "r" / "config.yaml")
    cfg["steps"] = 6
    hyper, train = cfgmod.split(cfg, models.get("gan"))
    resumed = fastgan.Trainer(models.build("gan", **hyper), None, train, resume=True).fit()
    assert [e["step"] for e in resumed.evaluations] == [6]
    assert resumed.best["step"] in (3, 6)
    if resumed.best["step"] == 3:   # kept from before the resume, not forgotten
        assert resumed.best == first


def test_eval_every_without_weights_fails_before_training(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTGAN_INCEPTION_WEIGHTS", raising=False)
    from fastgan import models
    from fastgan.train import config as cfgmod
    config = cfgmod.resolve("dcgan", {"steps": 2, "device": "cpu", "out": str(tmp_path / "x"),
                                      "progress": False, "tensorboard": False, "eval_every": 1,
                                      "metrics": "fid", "g_width": 8, "d_width": 8})
    hyper, train = cfgmod.split(config, models.get("dcgan"))
    t = fastgan.Trainer(models.build("dcgan", **hyper), None, train)
    with pytest.raises(FileNotFoundError, match="FASTGAN_INCEPTION_WEIGHTS"):
        t.fit()
    assert t.step == 0
    with pytest.raises(ValueError, match="eval_every"):
        fastgan.Trainer(models.build("dcgan", **hyper), None, {**train, "eval_every": -1})


# -- the command ------------------------------------------------------------------------
def test_cli_eval(tmp_path, capsys, inception, monkeypatch):
    run = tmp_path / "toy"
    assert main(["train", "--model", "gan", "--data", "ring8", "--steps", "4", "--out", str(run),
                 "--no-progress", "--set", "mlp_hidden=16", "--set", "tensorboard=false"]) == 0
    capsys.readouterr()
    assert main(["eval", "--run", str(run), "--num", "500", "--no-progress"]) == 0   # default: mixture
    out = capsys.readouterr().out
    assert "modes" in out and "high_quality" in out and "500 samples" in out
    assert main(["eval", "--run", str(run), "--num", "300", "--json", "--no-progress", "--seed", "3"]) == 0
    printed = json.loads(capsys.readouterr().out)
    lines = [json.loads(x) for x in (run / "eval.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and lines[1] == printed            # appended, never overwritten
    assert printed["step"] == 4 and printed["metrics"] == ["mixture"] and printed["seed"] == 3

    monkeypatch.delenv("FASTGAN_INCEPTION_WEIGHTS", raising=False)
    assert main(["eval", "--run", str(run), "--metrics", "fjd"]) == 2
    assert "unknown metric 'fjd'" in capsys.readouterr().err
    assert main(["eval", "--run", str(tmp_path / "nope")]) == 2
    assert "holds no fastgan run" in capsys.readouterr().err

    digits_run = tmp_path / "digits"
    assert main(["train", "--model", "dcgan", "--steps", "1", "--out", str(digits_run), "--no-progress",
                 "--set", "g_width=8", "--set", "d_width=8", "--set", "tensorboard=false"]) == 0
    capsys.readouterr()
    assert main(["eval", "--run", str(digits_run), "--metrics", "fid"]) == 2
    err = capsys.readouterr().err
    assert "pt_inception-2015-12-05-6726825d.pth" in err and err.count("\n") == 1
    weights = tmp_path / "random_inception.pth"
    torch.save(inception.state_dict(), weights)
    monkeypatch.setenv("FASTGAN_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.warns(UserWarning, match="not comparable"):
        assert main(["eval", "--run", str(digits_run), "--metrics", "fid,is", "--inception", str(weights),
                     "--num", "10", "--ref-num", "8", "--batch-size", "5", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "fid" in out and "is_std" in out
    # --ref statistics of images at another resolution: one line naming both, no scores
    at8 = ev.reference_stats("digits", inception, resolution=8, channels=1, num=2, batch_size=2,
                             cache_root=tmp_path / "cache", progress=False, verbose=False)["path"]
    with pytest.warns(UserWarning, match="not comparable"):
        assert main(["eval", "--run", str(digits_run), "--metrics", "fid", "--inception", str(weights),
                     "--ref", at8, "--num", "10", "--batch-size", "5", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{at8} holds statistics of images at resolution=8; the images scored are at resolution=" in err
    assert err.count("\n") == 1 and len((digits_run / "eval.jsonl").read_text().splitlines()) == 1


# -- review: the reference cache and the checks before any sample is generated ---------------
def _image_folder(root, seed=0):
    """A dataset folder with class subfolders a/ and b/ of four 16 x 16 PNGs each."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def test_reference_cache_sees_changes_inside_a_folder_dataset(inception, tmp_path):
    """A folder's identity was its own size (None) and mtime; a folder's mtime changes when an
    entry of it is added, removed or renamed, not when a file in it is rewritten, nor when a
    subfolder (a class) gains a file. Both reused the stale statistics silently. The key now
    holds a fingerprint of every file below the folder (relative name, size, mtime)."""
    from PIL import Image
    data = _image_folder(tmp_path / "ds")
    kw = dict(resolution=16, channels=3, num=2, batch_size=2, cache_root=tmp_path / "cache",
              progress=False, verbose=False)
    refs = tmp_path / "cache" / "fid_refs"
    first = ev.reference_stats(str(data), inception, **kw)
    before = (pathlib.Path(first["path"]).stat().st_mtime_ns, len(list(refs.iterdir())))
    again = ev.reference_stats(str(data), inception, **kw)      # unchanged: the cache is used
    assert again["path"] == first["path"] and torch.equal(again["mu"], first["mu"])
    assert (pathlib.Path(first["path"]).stat().st_mtime_ns, len(list(refs.iterdir()))) == before
    top = (data.stat().st_mtime_ns, (data / "a").stat().st_mtime_ns)
    # an image rewritten in place (one of the 2 used): the folders' mtimes stay as they were
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(data / "a" / "0.png")
    st = (data / "a" / "0.png").stat()
    os.utime(data / "a" / "0.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # coarse clocks
    assert (data.stat().st_mtime_ns, (data / "a").stat().st_mtime_ns) == top
    rewritten = ev.reference_stats(str(data), inception, **kw)
    assert rewritten["path"] != first["path"]
    assert not torch.allclose(rewritten["mu"], first["mu"])
    # an image added to a class subfolder: the top folder's mtime stays as it was
    top = data.stat().st_mtime_ns
    Image.fromarray(np.full((16, 16, 3), 200, dtype=np.uint8)).save(data / "b" / "9.png")
    assert data.stat().st_mtime_ns == top
    added = ev.reference_stats(str(data), inception, **kw)
    assert added["path"] not in (first["path"], rewritten["path"])
    # what the loader does not read changes nothing: a cache or notes kept beside the images
    (data / "notes.txt").write_text("x")
    (data / ".cache").mkdir()
    (data / ".cache" / "x.png").write_bytes(b"")
    assert ev.reference_stats(str(data), inception, **kw)["path"] == added["path"]


def test_reference_cache_tells_apart_extractors_without_a_weights_file(inception, tmp_path):
    """An FIDInceptionV3 passed in as a module (not loaded from a file) has no weights_sha256:
    the key's extractor was None for every such network, so statistics computed with one
    set of weights were reused for any other. Such a network is now identified by a sha256
    of its state dict."""
    from fastgan.metrics.inception import random_inception
    kw = dict(resolution=16, channels=1, num=2, batch_size=2, cache_root=tmp_path, progress=False,
              verbose=False)
    other = random_inception(seed=1)
    a = ev.reference_stats("digits", inception, **kw)
    b = ev.reference_stats("digits", other, **kw)
    assert b["path"] != a["path"]
    assert not torch.allclose(b["mu"], a["mu"])
    assert b["manifest"]["key"]["extractor"] != a["manifest"]["key"]["extractor"]
    # the same weights again (another object): the cache entry is found, not recomputed
    same = ev.reference_stats("digits", random_inception(seed=0), **kw)
    assert same["path"] == a["path"] and same["manifest"] == a["manifest"]
    assert len(list((tmp_path / "fid_refs").glob("*.npz"))) == 2
    # the cached file given as --ref: refused with other weights, taken with its own
    kw = dict(data="digits", resolution=16, channels=1, num=2, ref=a["path"], device="cpu",
              progress=False, cache_root=tmp_path)
    with pytest.raises(ValueError, match="computed with other Inception weights"):
        ev.Evaluator("fid", inception=other, **kw).reference()
    torch.testing.assert_close(ev.Evaluator("fid", inception=inception, **kw).reference()["mu"], a["mu"])


def test_evaluator_refuses_impossible_settings_at_construction():
    """IS with fewer samples than splits, precision/recall with fewer samples than k + 1: the
    error came after every sample had gone through the Inception network (hours on a CPU)."""
    kw = dict(data="digits", resolution=16, channels=1, progress=False)
    with pytest.raises(ValueError, match="is.*num >= splits.*num=5.*splits=10"):
        ev.Evaluator("is", num=5, **kw)
    with pytest.raises(ValueError, match="splits must be a positive integer"):
        ev.Evaluator("is", num=50, splits=0, **kw)
    with pytest.raises(ValueError, match="pr needs num >= 4"):
        ev.Evaluator("pr", num=3, **kw)
    with pytest.raises(ValueError, match="pr needs ref_num >= 6"):
        ev.Evaluator("pr", num=100, ref_num=5, **kw)
    with pytest.raises(ValueError, match="ref_num must be an integer >= 2"):
        ev.Evaluator("fid", num=100, ref_num=1, **kw)
    with pytest.raises(ValueError, match="seed must be an integer, got None"):
        ev.Evaluator("fid", num=100, seed=None, **kw)
    ev.Evaluator("is,pr", num=10, ref_num=6, **kw)  # the smallest that work
    ev.Evaluator("is", num=5, splits=5, **kw)


def test_statistics_file_is_checked_before_generating(inception, tmp_path):
    """A statistics file of another extractor's dimensions (pytorch-fid --dims 768) failed
    with 'statistics do not match: mu1 (2048,) ...' only after all samples were generated and
    featurized; non-finite statistics likewise. Both now fail when the file is loaded,
    naming it, before the generator is called."""
    kw = dict(data="digits", resolution=16, channels=1, num=4, inception=inception, batch_size=4,
              device="cpu", progress=False, cache_root=tmp_path)
    small = tmp_path / "dims768.npz"
    np.savez(small, mu=np.zeros(768, np.float32), sigma=np.eye(768, dtype=np.float32))
    g = Lookup(torch.zeros(4, 1, 16, 16))
    with pytest.raises(ValueError, match=r"dims768.npz.* 768 dimensions.*2048"):
        ev.Evaluator("fid", ref=str(small), **kw)(g)
    assert g.i == 0  # no sample drawn
    bad = tmp_path / "nan.npz"
    sigma = np.eye(2048)
    sigma[3, 3] = np.nan
    np.savez(bad, mu=np.zeros(2048), sigma=sigma)
    with pytest.raises(ValueError, match=r"nan.npz.*non-finite"):
        ev.load_stats(bad)
    with pytest.raises(ValueError, match=r"nan.npz.*non-finite"):
        ev.Evaluator("fid", ref=str(bad), **kw)(g)
    assert g.i == 0


def test_statistics_path_may_start_with_a_tilde(inception, tmp_path, monkeypatch):
    """Evaluator(ref="~/stats.npz") passed the constructor's check (which expands ~) and then
    failed in load_stats, which did not."""
    monkeypatch.setenv("HOME", str(tmp_path))
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(8, 2048, generator=gen, dtype=torch.float64)
    np.savez(tmp_path / "stats.npz", mu=feats.mean(0).numpy(), sigma=np.cov(feats.numpy(), rowvar=False))
    stats = ev.load_stats("~/stats.npz")
    assert stats["path"] == str(tmp_path / "stats.npz")
    e = ev.Evaluator("fid", data="digits", resolution=16, channels=1, num=4, ref="~/stats.npz",
                     inception=inception, device="cpu", progress=False, cache_root=tmp_path)
    torch.testing.assert_close(e.reference()["mu"], feats.mean(0))


class _OtherDecoder:
    """A stand-in for another decoder of the same files (DALI's resize, nvJPEG's, agree with
    PIL's within a few levels): PIL's pixels, one level brighter."""

    def __init__(self, inner):
        self.inner, self.samples, self.name = inner, inner.samples, "dali"

    def batches(self, index_lists):
        for u8, failed in self.inner.batches(index_lists):
            yield u8.clamp(max=254) + 1, failed


def test_reference_cache_key_holds_the_decoder(inception, tmp_path, monkeypatch):
    """Which decoder makes the reference pixels depends on the machine (backend "auto":
    DALI where it is installed, nvJPEG on a GPU without it, else PIL; "cache" decodes with
    one of them), and decoders differ at the pixel level. The key did not say which, so
    statistics decoded by one were reused, stale, where another decodes. The decoder is now
    chosen before the cache is looked up, passed to the loader and keyed (with the device)."""
    from fastgan.data import _dali, loader
    data = _image_folder(tmp_path / "ds")
    kw = dict(resolution=8, channels=3, num=4, batch_size=4, device="cpu", cache_root=tmp_path / "cache",
              progress=False, verbose=False)
    make = loader._make_decoder
    monkeypatch.setattr(loader, "_decoder_choice", lambda device, formats=(): ("cpu", "PIL here"))
    pil = ev.reference_stats(str(data), inception, **kw)
    # the same data and settings where DALI decodes: other pixels, another entry
    monkeypatch.setattr(loader, "_decoder_choice", lambda device, formats=(): ("dali", "DALI here"))
    monkeypatch.setattr(_dali, "require", lambda: None)
    monkeypatch.setattr(loader, "_make_decoder", lambda name, *a, **k:
                        _OtherDecoder(make("cpu", *a, **k)) if name == "dali" else make(name, *a, **k))
    other = ev.reference_stats(str(data), inception, **kw)
    assert other["path"] != pil["path"]
    assert not torch.allclose(other["mu"], pil["mu"])
    assert [(s["manifest"]["key"]["decoder"], s["manifest"]["key"]["device"]) for s in (pil, other)] \
        == [("cpu", "cpu"), ("dali", "cpu")]
    # each entry is found again where its own decoder decodes, not recomputed
    stamps = {p: pathlib.Path(p).stat().st_mtime_ns for p in (pil["path"], other["path"])}
    assert ev.reference_stats(str(data), inception, **kw)["path"] == other["path"]
    monkeypatch.setattr(loader, "_decoder_choice", lambda device, formats=(): ("cpu", "PIL here"))
    again = ev.reference_stats(str(data), inception, **kw)
    assert again["path"] == pil["path"] and torch.equal(again["mu"], pil["mu"])
    assert {p: pathlib.Path(p).stat().st_mtime_ns for p in stamps} == stamps
    assert len(list((tmp_path / "cache" / "fid_refs").glob("*.npz"))) == 2


def test_statistics_file_of_other_image_settings_is_refused(inception, tmp_path):
    """A fastgan .npz given as ref was compared whatever resolution, channels or crop its
    images had: statistics of 8 px digits scored 16 px samples silently (the Inception
    network resizes both to 299, so it runs, but images upsampled from another size differ
    whatever their content). It is now refused, naming both values, before any sample."""
    import re
    kw = dict(channels=1, num=2, batch_size=2, cache_root=tmp_path, progress=False, verbose=False)
    at16 = ev.reference_stats("digits", inception, resolution=16, **kw)["path"]
    at8 = ev.reference_stats("digits", inception, resolution=8, **kw)["path"]
    common = dict(data="digits", num=4, inception=inception, batch_size=4, device="cpu",
                  progress=False, cache_root=tmp_path)
    g = Lookup(torch.zeros(4, 1, 16, 16))
    with pytest.raises(ValueError, match=f"^{re.escape(at8)} holds statistics of images at resolution=8; "
                                         "the images scored are at resolution=16: pass the dataset "
                                         "itself with --ref"):
        ev.Evaluator("fid", ref=at8, resolution=16, channels=1, **common)(g)
    assert g.i == 0  # no sample drawn
    with pytest.raises(ValueError, match=r"at resolution=16, channels=1; the images scored are at "
                                         r"resolution=32, channels=3:"):
        ev.Evaluator("fid", ref=at16, resolution=32, channels=3, **common).reference()
    with pytest.raises(ValueError, match=r"at crop=None; the images scored are at crop=24:"):
        ev.Evaluator("fid", ref=at16, resolution=16, channels=1, crop=24, **common).reference()
    # made at the scored settings: taken
    same = ev.Evaluator("fid", ref=at16, resolution=16, channels=1, **common).reference()
    assert same["manifest"]["key"]["resolution"] == 16
