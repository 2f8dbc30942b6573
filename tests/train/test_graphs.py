"""Whole-step CUDA graphs (fastgan.train.graphs): captured steps give the eager steps' losses
and weights; where graphs cannot run the trainer says why and runs eagerly.

The equality tests need a GPU (marked gpu); what can be checked on the CPU is: the choice
and its reasons (float16 loss scaling included: every model's optimizers take the flag on
the device), the optimizer preparation (capturable, 0-dim lr tensors changed in place),
checkpoints that store plain float learning rates, BEGAN's in-place k_t and lr updates.
"""
import pytest
import torch

import fastgan
from fastgan import models
from fastgan.train import config as cfgmod
from fastgan.train import graphs

pytestmark = pytest.mark.usefixtures("one_thread")


def _trainer(tmp_path, name, device, **over):
    config = cfgmod.resolve(name, {"device": device, "out": str(tmp_path), "progress": False,
                                   "tensorboard": False, "steps": 8, "log_every": 4,
                                   "g_width": 8, "d_width": 8, **over})
    hyper, train = cfgmod.split(config, models.get(name))
    torch.manual_seed(0)
    return fastgan.Trainer(models.build(name, **hyper), None, train)


def test_cuda_graphs_required_on_cpu_is_a_clear_error(tmp_path):
    t = _trainer(tmp_path / "a", "dcgan", "cpu", cuda_graphs=True, steps=1)
    with pytest.raises(ValueError, match="cuda_graphs=true: CUDA graphs need a CUDA device"):
        t.fit()


def test_auto_on_cpu_runs_eagerly_without_a_word(tmp_path, capsys):
    t = _trainer(tmp_path / "b", "dcgan", "cpu", steps=2).fit()
    assert t._graphs is None and not t._graphs_wanted
    assert "CUDA graphs" not in capsys.readouterr().err


def test_prepare_optimizers_and_plain_lr_checkpoints():
    w = torch.nn.Parameter(torch.ones(3))
    adam = torch.optim.Adam([w], lr=1e-3)
    graphs.prepare_optimizers([adam], "cpu")
    group = adam.param_groups[0]
    assert group["capturable"] is True and isinstance(group["lr"], torch.Tensor)
    assert group["lr"].shape == () and float(group["lr"]) == pytest.approx(1e-3)
    state = fastgan.Trainer._plain_lr(adam.state_dict())
    assert state["param_groups"][0]["lr"] == pytest.approx(1e-3) and isinstance(state["param_groups"][0]["lr"], float)
    assert isinstance(adam.param_groups[0]["lr"], torch.Tensor)  # the live optimizer keeps its tensor


def test_began_halves_tensor_learning_rates_in_place():
    m = models.build("began", resolution=16, channels=1, g_width=8, d_width=8, embedding=8, lr_patience=100)
    opts = m.build_optimizers()
    graphs.prepare_optimizers(opts, "cpu")
    lrs = [g["lr"] for o in opts for g in o.param_groups]
    m.on_log(50, {"convergence": 1.0})
    m.on_log(150, {"convergence": 1.0})
    after = [g["lr"] for o in opts for g in o.param_groups]
    assert all(a is b for a, b in zip(lrs, after))                       # the same tensors
    assert all(float(a) == pytest.approx(5e-5) for a in after)


def test_unavailable_reasons():
    w = [torch.nn.Parameter(torch.ones(2))]
    fused_adam = torch.optim.Adam(w, fused=True)  # takes GradScaler's flag on the device
    rmsprop_clip = fastgan.optim.RMSpropClip(w)   # likewise

    class T:  # the attributes unavailable_reason reads
        def __init__(self, device, world=1, scaler=False, opts=(fused_adam, rmsprop_clip)):
            self.device, self.world = torch.device(device), world
            self.scaler = torch.amp.GradScaler("cuda", enabled=False)
            self.scaler._enabled = scaler
            self.opt_g, self.opt_d = opts
    assert "CUDA device" in graphs.unavailable_reason(T("cpu"))
    assert "several processes" in graphs.unavailable_reason(T("cuda", world=2))
    assert graphs.unavailable_reason(T("cuda")) is None
    assert graphs.unavailable_reason(T("cuda", scaler=True)) is None  # float16, sync-free optimizers
    why = graphs.unavailable_reason(T("cuda", scaler=True, opts=(torch.optim.RMSprop(w), fused_adam)))
    assert why.startswith("float16 loss scaling") and "of RMSprop on the host" in why


def test_every_models_optimizers_take_the_loss_scale_on_the_device():
    """With their settings (fused Adam, on CUDA and the CPU alike; RMSpropClip), no model's
    optimizer makes a float16 GradScaler read its overflow flag on the host, so every
    model's float16 steps can be captured."""
    for name in models.names():
        m = models.build(name, **({"resolution": 16, "g_width": 8, "d_width": 8}
                                  if name != "began" else {"resolution": 16, "g_width": 8, "d_width": 8,
                                                           "embedding": 8}))
        for opt in m.build_optimizers():
            assert getattr(opt, "_step_supports_amp_scaling", False), (name, type(opt).__name__)


# -- on a GPU ------------------------------------------------------------------------------
# Graphed and eager runs compute the same steps from the same random numbers; what differs is
# rounding (cuDNN's autotuner may pick other algorithms in each run), which training then
# amplifies: Adam moves a parameter whose gradient is at rounding level by a full lr the one
# way or the other. So parameters are compared by how far apart the two runs end relative to
# how far training moved them (a replay of stale inputs or repeated noise ends as far apart as
# training moved them), and the logged values at float32 tolerances. Under bf16 autocast every
# such rounding is 2^-8 relative: measured on an H100 (2026-11-22) after 5-10 steps, losses
# 2e-4 relative apart (8e-4 absolute on a loss near 0.01) and gradient norms up to 2.5%.
GRAPHED = [("dcgan", {}), ("wgan", {}), ("wgan-gp", {}), ("wgan-gp", {"arch": "resnet"}),
           ("wgan-gp", {"one_pass": True}), ("dragan", {}), ("began", {}), ("ebgan", {}),
           ("lsgan", {"ema": 0.99}), ("dcgan", {"amp": True}), ("wgan-gp", {"amp": True}),
           ("wgan", {"lr_schedule": "linear"}), ("wgan-gp", {"lr_schedule": "linear"})]


def _params(module):
    return torch.cat([p.detach().float().flatten().cpu() for p in module.parameters()])


def _assert_same_trajectory(start, a, b, what, within=0.05):
    """b ended within `within` of the distance a travelled from start."""
    apart, travelled = (b - a).norm().item(), (a - start).norm().item()
    assert travelled > 0 and apart <= within * travelled, \
        f"{what}: the runs ended {apart:.3g} apart after moving {travelled:.3g} from the start"


@pytest.mark.gpu
@pytest.mark.parametrize("name, over", GRAPHED, ids=[n + "".join(f"-{k}" for k in o) for n, o in GRAPHED])
def test_graphed_steps_match_eager_steps(tmp_path, name, over):
    over = {"amp": False, **over}
    rel, grad_rel, abs_ = (2e-2, 5e-2, 2e-3) if over["amp"] else (1e-3, 1e-2, 1e-4)
    runs, start = {}, {}
    for graphed in (False, True):
        t = _trainer(tmp_path / str(graphed), name, "cuda", cuda_graphs=graphed,
                     resolution=32, batch_size=16, steps=10, log_every=5, **over)
        start = {"g": _params(t.model.generator), "d": _params(t.model.critic)}
        runs[graphed] = t.fit()
    eager, graphed = runs[False], runs[True]
    assert eager._graphs is None and graphed._graphs is not None  # captured, then replayed
    assert len(eager.history) == len(graphed.history) == 2
    for a, b in zip(eager.history, graphed.history):
        for k in a:
            if k != "images_per_s":
                r = grad_rel if k.startswith("grad_norm") else rel
                assert b[k] == pytest.approx(a[k], rel=r, abs=abs_), (k, a, b)
    _assert_same_trajectory(start["g"], _params(eager.model.generator), _params(graphed.model.generator),
                            "generator")
    _assert_same_trajectory(start["d"], _params(eager.model.critic), _params(graphed.model.critic), "critic")


@pytest.mark.gpu
def test_graphed_run_resumes_exactly(tmp_path):
    kw = dict(amp=False, ckpt_every=5, log_every=100, resolution=32, batch_size=16)  # log: the last step
    whole = _trainer(tmp_path / "whole", "wgan-gp", "cuda", steps=10, **kw)
    start = _params(whole.model.critic)
    whole.fit()
    half = _trainer(tmp_path / "half", "wgan-gp", "cuda", steps=5, **kw).fit()
    assert half._graphs is not None
    cfg = cfgmod.load_config_file(tmp_path / "half" / "config.yaml")
    cfg["steps"] = 10
    hyper, train = cfgmod.split(cfg, models.get("wgan-gp"))
    resumed = fastgan.Trainer(models.build("wgan-gp", **hyper), None, train, resume=True).fit()
    assert resumed._graphs is not None and resumed.step == 10
    _assert_same_trajectory(start, _params(whole.model.critic), _params(resumed.model.critic), "critic")


FLOAT16 = [("dcgan", {}), ("wgan", {}), ("wgan-gp", {}), ("began", {})]


@pytest.mark.gpu
@pytest.mark.parametrize("name, over", FLOAT16, ids=[n for n, _ in FLOAT16])
def test_float16_loss_scaled_steps_are_graphed_and_match_eager(tmp_path, name, over, monkeypatch):
    """float16 autocast with a GradScaler (GPUs without bf16): the scale, the overflow flag and
    the skip stay on the device, so the steps are captured; graphed and eager agree, and the
    scaler's scale ends the same (the same overflows were seen)."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # fp16 + GradScaler
    runs, start = {}, {}
    for graphed in (False, True):
        t = _trainer(tmp_path / str(graphed), name, "cuda", cuda_graphs=graphed, amp=True,
                     resolution=32, batch_size=16, steps=10, log_every=5, **over)
        start = {"g": _params(t.model.generator), "d": _params(t.model.critic)}
        runs[graphed] = t.fit()
    eager, graphed = runs[False], runs[True]
    assert eager.scaler.is_enabled() and graphed.scaler.is_enabled()
    assert eager._graphs is None and graphed._graphs is not None
    assert graphed.scaler.get_scale() == eager.scaler.get_scale()
    for a, b in zip(eager.history, graphed.history):
        for k in a:
            if k != "images_per_s":
                r = 5e-2 if k.startswith("grad_norm") else 2e-2
                assert b[k] == pytest.approx(a[k], rel=r, abs=2e-3), (k, a, b)
    _assert_same_trajectory(start["g"], _params(eager.model.generator), _params(graphed.model.generator),
                            "generator")
    _assert_same_trajectory(start["d"], _params(eager.model.critic), _params(graphed.model.critic), "critic")


def test_cli_flags(tmp_path, capsys):
    from fastgan.cli import main
    assert main(["train", "--model", "dcgan", "--steps", "1", "--out", str(tmp_path / "c"), "--cuda-graphs",
                 "--device", "cpu", "--no-progress", "--set", "g_width=8", "--set", "d_width=8"]) == 2
    assert "cuda_graphs=true: CUDA graphs need a CUDA device" in capsys.readouterr().err
    assert main(["train", "--model", "dcgan", "--steps", "1", "--out", str(tmp_path / "d"), "--no-cuda-graphs",
                 "--device", "cpu", "--no-progress", "--set", "g_width=8", "--set", "d_width=8",
                 "--set", "tensorboard=false"]) == 0
    saved = cfgmod.load_config_file(tmp_path / "d" / "config.yaml")
    assert saved["cuda_graphs"] is False


@pytest.mark.gpu
def test_graphs_capture_while_the_nvjpeg_threads_decode(tmp_path):
    """The nvjpeg backend decodes the next batches on threads of its own, on the loader's
    stream, while the trainer captures its steps (capture_error_mode="thread_local"): the
    capture succeeds and the run is finite."""
    from fastgan.data import _nvjpeg
    if not _nvjpeg.available():
        pytest.skip("torchvision is not installed: the nvjpeg backend needs torchvision.io.decode_jpeg")
    import numpy as np
    from PIL import Image
    data = tmp_path / "jpegs"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(64):
        Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(data / f"{i:03d}.jpg", quality=90)
    t = _trainer(tmp_path / "run", "wgan-gp", "cuda", cuda_graphs=True, data=str(data), data_backend="nvjpeg",
                 resolution=32, batch_size=8, steps=12, log_every=6, amp=False).fit()
    assert t._graphs is not None and t.step == 12
    assert all(np.isfinite(v) for row in t.history for v in row.values())
