"""fastgan.metrics.inception: the FID Inception-v3, its preprocessing, loading and batching.

Without the real weights every test runs on `random_inception` (same architecture and
timings). One Inception forward at 299x299 is ~6 GFLOP, so each test feeds 1-4 images, on
one thread (`one_thread`: on this loaded 2-core machine a 2-image forward took 3.8 s on two
threads and 0.26 s on one). The real-weights test runs only where FASTGAN_INCEPTION_WEIGHTS
names pytorch-fid's pt_inception-2015-12-05-6726825d.pth; the gpu tests only on a GPU.
"""
import copy
import hashlib
import math
import os
import warnings

import pytest
import torch
from torch.nn import functional as F

from fastgan.metrics.inception import (
    WEIGHTS_ENV, WEIGHTS_FILENAME, FIDInceptionV3, inception_features, load_inception,
    preprocess, random_inception,
)

pytestmark = pytest.mark.usefixtures("one_thread")

# Per block: (output channels, output side) for a 299x299 input (Szegedy et al. 2015,
# arXiv:1512.00567, table 1: 35x35x288 -> 17x17x768 -> 8x8x2048).
BLOCKS = {
    "Conv2d_4a_3x3": (192, 71), "maxpool2": (192, 35),
    "Mixed_5b": (256, 35), "Mixed_5c": (288, 35), "Mixed_5d": (288, 35),
    "Mixed_6a": (768, 17), "Mixed_6b": (768, 17), "Mixed_6c": (768, 17),
    "Mixed_6d": (768, 17), "Mixed_6e": (768, 17),
    "Mixed_7a": (1280, 8), "Mixed_7b": (2048, 8), "Mixed_7c": (2048, 8),
}


@pytest.fixture(scope="module")
def model():
    return random_inception(0)


def rand_images(n, c=3, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=g) * 2 - 1


def patterns(n, size=64):
    """n clearly different images in [-1, 1] (sines, cosines, a square wave, frequency
    growing with i). Uniform noise resized to 299 gives nearly the same features for every
    image (2.6% apart in norm with the random network); these are 9-18% apart."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    out = []
    for i in range(n):
        f = 2 * math.pi * 1.5 * (i + 1)
        square = torch.sign(torch.sin(f * (xx + yy)))
        out.append(torch.stack([torch.sin(f * xx), torch.cos(f * yy), square]))
    return torch.stack(out)


def rel_err(a, b):
    """Per-row ||a - b|| / ||b||."""
    return ((a - b).norm(dim=1) / b.norm(dim=1))


# ---------------------------------------------------------------- outputs and architecture

@pytest.mark.parametrize("shape", [(1, 1, 16, 16), (2, 3, 64, 64), (1, 3, 64, 64),
                                   (1, 3, 299, 299)], ids=lambda s: "x".join(map(str, s)))
def test_output_shapes_and_values(model, shape):
    feats, logits = inception_features(model, rand_images(*shape, seed=sum(shape)))
    n = shape[0]
    assert feats.shape == (n, 2048) and logits.shape == (n, 1008)
    assert feats.dtype == torch.float32 and logits.dtype == torch.float32
    assert feats.device.type == "cpu"
    assert torch.isfinite(feats).all() and torch.isfinite(logits).all()
    assert feats.min() >= 0                      # average of post-ReLU activations
    assert feats.std() > 1e-3 and logits.std() > 1e-3


def test_uint8_input_and_empty_batch(model):
    u = (torch.arange(2 * 3 * 20 * 20) % 256).to(torch.uint8).reshape(2, 3, 20, 20)
    feats, logits = inception_features(model, u, batch_size=1)
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all()
    f0, l0 = inception_features(model, u[:0])
    assert f0.shape == (0, 2048) and l0.shape == (0, 1008)


def test_state_dict_names_and_shapes(model):
    sd = model.state_dict()
    expected = {
        "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
        "Conv2d_1a_3x3.bn.running_var": (32,),
        "Conv2d_2b_3x3.conv.weight": (64, 32, 3, 3),
        "Conv2d_3b_1x1.conv.weight": (80, 64, 1, 1),
        "Conv2d_4a_3x3.conv.weight": (192, 80, 3, 3),
        "Mixed_5b.branch5x5_2.conv.weight": (64, 48, 5, 5),
        "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
        "Mixed_5c.branch_pool.conv.weight": (64, 256, 1, 1),
        "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
        "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
        "Mixed_6b.branch7x7dbl_2.conv.weight": (128, 128, 7, 1),
        "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
        "Mixed_7a.branch3x3_2.conv.weight": (320, 192, 3, 3),
        "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
        "Mixed_7b.branch3x3_2a.conv.weight": (384, 384, 1, 3),
        "Mixed_7b.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
        "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
        "fc.weight": (1008, 2048),
        "fc.bias": (1008,),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    assert not any("AuxLogits" in k for k in sd)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(convs) == len(bns) == 94          # 5 stem + 3x7 A + 4 B + 4x10 C + 6 D + 2x9 E
    assert all(c.bias is None for c in convs) and all(b.eps == 1e-3 for b in bns)
    # torchvision's inception_v3 has 27,161,264 parameters; less AuxLogits (3,326,696) and
    # plus 8 classes (8 x 2049) gives 23,850,960
    assert sum(p.numel() for p in model.parameters()) == 23_850_960


def test_random_inception_is_deterministic(model):
    again = random_inception(0)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                  again.state_dict().values()))
    assert not torch.equal(random_inception(1).Mixed_6b.branch1x1.conv.weight,
                           model.Mixed_6b.branch1x1.conv.weight)
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_block_output_channels(model):
    seen = {}
    hooks = [getattr(model, name).register_forward_hook(
        lambda mod, inp, out, name=name: seen.__setitem__(name, tuple(out.shape[1:])))
        for name in BLOCKS]
    try:
        inception_features(model, rand_images(1, seed=3))
    finally:
        for h in hooks:
            h.remove()
    assert seen == {name: (c, s, s) for name, (c, s) in BLOCKS.items()}


def test_forward_rejects_unpreprocessed_input(model):
    with pytest.raises(ValueError, match=r"299.*\(1, 3, 64, 64\)"):
        model(torch.zeros(1, 3, 64, 64))


# ---------------------------------------------------------------- the FID variants

def avg_pool_excluding_padding(x):
    """3x3 stride-1 mean over the pixels inside the image: a sum over the window divided by
    the count of in-image pixels, computed without count_include_pad."""
    ones = torch.ones_like(x[:, :1])
    total = F.avg_pool2d(x, 3, 1, 1) * 9
    count = F.avg_pool2d(ones, 3, 1, 1) * 9
    return total / count


def test_block_a_pool_excludes_padding_and_concat_order(model):
    blk = model.Mixed_5b
    x = torch.rand(1, 192, 6, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = blk(x)
        manual = torch.cat([
            blk.branch1x1(x),
            blk.branch5x5_2(blk.branch5x5_1(x)),
            blk.branch3x3dbl_3(blk.branch3x3dbl_2(blk.branch3x3dbl_1(x))),
            blk.branch_pool(avg_pool_excluding_padding(x)),
        ], 1)
        with_padding = blk.branch_pool(F.avg_pool2d(x, 3, 1, 1, count_include_pad=True))
    torch.testing.assert_close(out, manual, rtol=1e-5, atol=1e-6)
    # torchvision's (padding counted) pool would differ at the border
    assert (out[:, 224:] - with_padding).abs().max() > 1e-2


def test_block_c_pool_excludes_padding(model):
    blk = model.Mixed_6b
    x = torch.rand(1, 768, 5, 5, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = blk(x)
        pooled = blk.branch_pool(avg_pool_excluding_padding(x))
        with_padding = blk.branch_pool(F.avg_pool2d(x, 3, 1, 1, count_include_pad=True))
        first = blk.branch1x1(x)
    assert out.shape == (1, 768, 5, 5)
    torch.testing.assert_close(out[:, :192], first, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out[:, 576:], pooled, rtol=1e-5, atol=1e-6)
    assert (out[:, 576:] - with_padding).abs().max() > 1e-2


@pytest.mark.parametrize("name, cin, pool", [("Mixed_7b", 1280, "avg"), ("Mixed_7c", 2048, "max")])
def test_block_e_pools(model, name, cin, pool):
    """Mixed_7b: average pool without the padding; Mixed_7c: 3x3 stride-1 max pool."""
    blk = getattr(model, name)
    x = torch.rand(1, cin, 4, 4, generator=torch.Generator().manual_seed(3))
    pools = {"avg": avg_pool_excluding_padding(x), "max": F.max_pool2d(x, 3, 1, 1),
             "torchvision": F.avg_pool2d(x, 3, 1, 1)}
    with torch.no_grad():
        out = blk(x)
        t = blk.branch3x3_1(x)
        u = blk.branch3x3dbl_2(blk.branch3x3dbl_1(x))
        manual = torch.cat([blk.branch1x1(x), blk.branch3x3_2a(t), blk.branch3x3_2b(t),
                            blk.branch3x3dbl_3a(u), blk.branch3x3dbl_3b(u),
                            blk.branch_pool(pools[pool])], 1)
        others = [blk.branch_pool(p) for k, p in pools.items() if k != pool]
    torch.testing.assert_close(out, manual, rtol=1e-5, atol=1e-6)
    for other in others:
        assert (out[:, 1856:] - other).abs().max() > 1e-2


@pytest.mark.parametrize("name, cin, first", [("Mixed_6a", 288, 480), ("Mixed_7a", 768, 512)])
def test_reduction_blocks_max_pool_last(model, name, cin, first):
    """B and D (unchanged from torchvision): their input, max pooled 3x3 stride 2, comes last."""
    blk = getattr(model, name)
    x = torch.rand(1, cin, 7, 7, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        out = blk(x)
    assert out.shape == (1, first + cin, 3, 3)
    torch.testing.assert_close(out[:, first:], F.max_pool2d(x, 3, 2), rtol=0, atol=0)


# ---------------------------------------------------------------- preprocess

def test_preprocess_output_format():
    x = preprocess(rand_images(2, 3, 20, 31).double())
    assert x.shape == (2, 3, 299, 299) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1


def test_preprocess_repeats_one_channel():
    x = rand_images(2, 1, 24, 24, seed=5)
    p = preprocess(x)
    assert p.shape == (2, 3, 299, 299)
    torch.testing.assert_close(p, preprocess(x.repeat(1, 3, 1, 1)), rtol=0, atol=0)


def test_preprocess_uint8_equals_float():
    u = torch.randint(0, 256, (2, 3, 17, 23), generator=torch.Generator().manual_seed(6),
                      dtype=torch.uint8)
    ref = preprocess(u)
    assert torch.equal(ref, preprocess(u.float() / 255 * 2 - 1))
    assert torch.equal(ref, preprocess(u.float() / 255, value_range=(0, 1)))
    assert torch.equal(ref, preprocess(u.double(), value_range=(0, 255)))


def test_preprocess_quantizes_to_256_levels():
    g = torch.Generator().manual_seed(7)
    u = torch.randint(0, 256, (2, 3, 299, 299), generator=g, dtype=torch.uint8)
    jitter = (torch.rand(u.shape, generator=g) - 0.5) * 0.98          # within +-0.49 of a level
    x = (u.float() + jitter) / 255 * 2 - 1
    assert torch.equal(preprocess(x), preprocess(u))
    # at 299x299 there is no resizing: every value is a level 2k/255 - 1
    levels = (preprocess(rand_images(1, 3, 299, 299, seed=8)) + 1) / 2 * 255
    assert (levels - levels.round()).abs().max() < 1e-4
    assert levels.round().unique().numel() > 200


def test_preprocess_clamps_and_maps_nan_to_lo():
    x = torch.zeros(1, 1, 299, 299)
    x[..., 0, :3] = torch.tensor([float("nan"), -5.0, float("-inf")])
    x[..., 1, :2] = torch.tensor([7.0, float("inf")])
    p = preprocess(x)
    assert torch.isfinite(p).all()
    assert (p[0, :, 0, :3] == -1).all() and (p[0, :, 1, :2] == 1).all()
    # 0.0 -> level 127.5 -> 128 (half up, as torchvision.utils.save_image rounds)
    torch.testing.assert_close(p[0, :, 2:], torch.full_like(p[0, :, 2:], 2 * 128 / 255 - 1))


def test_preprocess_resizing_is_pytorch_fids():
    u = torch.randint(0, 256, (2, 3, 320, 410), generator=torch.Generator().manual_seed(9),
                      dtype=torch.uint8)
    expected = F.interpolate(u.float() / 255, size=(299, 299), mode="bilinear",
                             align_corners=False) * 2 - 1
    got = preprocess(u)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    for other in (dict(antialias=True), dict(align_corners=True)):
        alt = F.interpolate(u.float() / 255, size=(299, 299), mode="bilinear",
                            **{"align_corners": False, **other}) * 2 - 1
        assert (got - alt).abs().max() > 1e-2, other


@pytest.mark.parametrize("shape", [(3, 16, 16), (1, 2, 16, 16), (1, 4, 16, 16), (1, 3, 0, 16),
                                   (1, 3, 16, 16, 1)])
def test_preprocess_bad_shapes(model, shape):
    with pytest.raises(ValueError, match=r"shape.*" + r"\(" + ", ".join(map(str, shape))):
        preprocess(torch.zeros(shape))
    with pytest.raises(ValueError, match="shape"):
        inception_features(model, torch.zeros(shape))


def test_preprocess_bad_arguments():
    with pytest.raises(TypeError, match="dtype"):
        preprocess(torch.zeros(1, 3, 8, 8, dtype=torch.int64))
    with pytest.raises(TypeError, match="images"):
        preprocess([[0.0]])
    with pytest.raises(ValueError, match="value_range"):
        preprocess(torch.zeros(1, 3, 8, 8), value_range=(1, 1))
    with pytest.raises(ValueError, match="value_range"):
        preprocess(torch.zeros(1, 3, 8, 8), value_range=(0,))


# ---------------------------------------------------------------- batching, logits, amp

def test_batch_size_does_not_change_results(model):
    x = patterns(3, size=16)
    f1, l1 = inception_features(model, x, batch_size=1)
    f3, l3 = inception_features(model, x, batch_size=3)
    torch.testing.assert_close(f1, f3, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(l1, l3, rtol=1e-5, atol=1e-6)
    assert rel_err(f1[1:], f1[:1]).min() > 0.05           # and the three images differ
    with pytest.raises(ValueError, match="batch_size"):
        inception_features(model, x, batch_size=0)
    with pytest.raises(ValueError, match="eval mode"):
        inception_features(copy.deepcopy(model).train(), x)


def test_logits_have_no_bias(model):
    x = rand_images(1, seed=10)
    feats, logits = inception_features(model, x)
    w, b = model.fc.weight, model.fc.bias
    torch.testing.assert_close(logits, feats @ w.t(), rtol=1e-5, atol=1e-6)
    assert (logits - (feats @ w.t() + b)).abs().max() > 1e-3          # the bias is nonzero
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.fc.bias.fill_(100.0)
    _, logits_big_bias = inception_features(other, x)
    torch.testing.assert_close(logits_big_bias, logits, rtol=0, atol=0)


def test_amp_forced_on_cpu_is_bfloat16_autocast(model):
    """amp=True on CPU runs bfloat16 autocast: different from float32 (so it ran), and close.
    Measured: 1.2% relative error per image (bf16 keeps 8 mantissa bits); the images are
    9-18% apart, so 4% still tells them apart."""
    x = patterns(2)
    f32, _ = inception_features(model, x)
    fbf, lbf = inception_features(model, x, amp=True)
    assert fbf.dtype == torch.float32 and lbf.dtype == torch.float32
    err = rel_err(fbf, f32)
    assert (err > 1e-4).all() and (err < 4e-2).all(), err
    torch.testing.assert_close(inception_features(model, x, amp=False)[0], f32, rtol=0, atol=0)


# ---------------------------------------------------------------- load_inception

@pytest.fixture
def save(tmp_path):
    """save(obj, name) -> path; the ~95 MB files are deleted after the test."""
    paths = []

    def _save(obj, name="weights.pth"):
        path = tmp_path / name
        torch.save(obj, path)
        paths.append(path)
        return path
    yield _save
    for p in paths:
        p.unlink(missing_ok=True)


def states_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_load_by_path(model, save):
    path = save(model.state_dict())
    with pytest.warns(UserWarning, match="not comparable with published numbers"):
        loaded = load_inception(path)
    assert isinstance(loaded, FIDInceptionV3) and states_equal(loaded, model)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    assert loaded.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.standard is False
    x = rand_images(1, seed=11)
    torch.testing.assert_close(inception_features(loaded, x), inception_features(model, x),
                               rtol=0, atol=0)


def test_load_by_env_without_warning(model, save, monkeypatch):
    path = save(model.state_dict())
    monkeypatch.setenv(WEIGHTS_ENV, str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load_inception(check_standard=False)
    assert states_equal(loaded, model) and loaded.standard is False


@pytest.mark.parametrize("variant", ["no_num_batches_tracked", "wrapped"])
def test_load_variants(model, save, variant):
    sd = model.state_dict()
    if variant == "no_num_batches_tracked":
        sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
        assert len(sd) == 94 * 5 + 2
    else:
        sd = {"state_dict": sd}
    loaded = load_inception(save(sd), check_standard=False)
    assert states_equal(loaded, model)


@pytest.mark.parametrize("change, key", [
    ("missing", "Mixed_6c.branch7x7dbl_3.bn.running_var"),
    ("extra", "AuxLogits.fc.weight"),
    ("shape", "fc.weight"),
])
def test_load_rejects_mismatch(model, save, change, key):
    sd = dict(model.state_dict())
    if change == "missing":
        del sd[key]
    elif change == "extra":
        sd[key] = torch.zeros(1000, 768)
    else:
        sd[key] = torch.zeros(1000, 2048)
    path = save(sd)
    with pytest.raises(ValueError, match=key.replace(".", r"\.")) as info:
        load_inception(path, check_standard=False)
    assert str(path) in str(info.value)


def test_load_rejects_non_state_dict(save):
    path = save([1, 2, 3], "list.pth")
    with pytest.raises(ValueError, match="state dict"):
        load_inception(path, check_standard=False)


def test_load_without_any_path(monkeypatch):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    with pytest.raises(FileNotFoundError) as info:
        load_inception()
    msg = str(info.value)
    for part in (WEIGHTS_FILENAME, WEIGHTS_ENV, "--inception",
                 "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/",
                 "downloads nothing"):
        assert part in msg, part


def test_load_missing_file(tmp_path):
    path = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError) as info:
        load_inception(path)
    assert f"'{path}' does not exist" in str(info.value) and WEIGHTS_FILENAME in str(info.value)
    with pytest.raises(FileNotFoundError, match=f"'{tmp_path}' is a directory, not the weights file"):
        load_inception(tmp_path)


def test_load_a_file_torch_cannot_read_names_it_in_one_line(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("not weights\n")
    code = tmp_path / "code.pth"
    torch.save({"x": print}, code)  # a pickle that would run code: weights_only refuses it
    for path in (text, code):
        with pytest.raises(ValueError, match=f"Inception weights {path}: not a PyTorch state dict that "
                           r"torch.load\(weights_only=True\) reads \(") as info:
            load_inception(path)
        assert "\n" not in str(info.value) and "weights_only set to False" not in str(info.value)


# ---------------------------------------------------------------- the real weights

def test_real_weights():
    if not os.environ.get(WEIGHTS_ENV):
        pytest.skip(f"{WEIGHTS_ENV} is not set (path to pytorch-fid's {WEIGHTS_FILENAME})")
    with warnings.catch_warnings():
        warnings.simplefilter("error")            # the standard file must not warn
        net = load_inception()
    assert net.standard is True and net.weights_sha256.startswith("6726825d")
    x = patterns(3)
    feats, logits = inception_features(net, x)
    assert torch.isfinite(feats).all() and feats.min() >= 0 and feats.std() > 1e-3
    same = inception_features(net, x[:1].expand(4, -1, -1, -1))[1].softmax(dim=1)
    torch.testing.assert_close(same, same[:1].expand(4, -1), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(same.sum(1), torch.ones(4), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- GPU

@pytest.mark.gpu
def test_cuda_float32_and_amp_match_cpu_float32(model):
    """channels_last on CUDA, float32 by default (cuDNN's TF32 where torch allows it, as for
    pytorch-fid) and fp16 autocast with amp=True, vs float32 on CPU. Tolerance: bf16 autocast
    on CPU measured 1.2% relative error per image (8 mantissa bits); fp16 and TF32 keep 11
    and 10, ~8x less (~0.15%); 1% leaves room for that and for cuDNN's algorithms, and is well
    below the 9-18% that separates the test images, so a mix-up or a wrong layout would fail."""
    x = patterns(2)
    f_cpu, l_cpu = inception_features(model, x)
    gpu = copy.deepcopy(model).to("cuda")
    f32 = inception_features(gpu, x)
    half = inception_features(gpu, x, amp=True)
    assert not torch.equal(f32[0], half[0])  # the default is not the autocast one
    for f_gpu, l_gpu in (f32, half):
        assert f_gpu.device.type == "cuda" and f_gpu.dtype == torch.float32
        assert (rel_err(f_gpu.cpu(), f_cpu) < 1e-2).all()
        assert (rel_err(l_gpu.cpu(), l_cpu) < 1e-2).all()
    assert gpu.Conv2d_1a_3x3.conv.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.gpu
def test_matches_torchvision_names_and_shared_blocks(model):
    torchvision = pytest.importorskip("torchvision", reason="torchvision is not installed")
    tv = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008,
                                         init_weights=False)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in tv.state_dict().items()}
    assert ours == theirs
    # with the same weights, the blocks the FID graph does not change compute the same thing
    tv.load_state_dict(model.state_dict())
    tv.eval()
    g = torch.Generator().manual_seed(12)
    with torch.no_grad():
        for name, shape, same in [("Mixed_5b", (1, 192, 9, 9), slice(0, 224)),
                                  ("Mixed_6a", (1, 288, 9, 9), slice(None)),
                                  ("Mixed_6e", (1, 768, 7, 7), slice(0, 576)),
                                  ("Mixed_7a", (1, 768, 9, 9), slice(None)),
                                  ("Mixed_7c", (1, 2048, 5, 5), slice(0, 1856))]:
            x = torch.rand(shape, generator=g)
            torch.testing.assert_close(getattr(model, name)(x)[:, same],
                                       getattr(tv, name)(x)[:, same], rtol=1e-5, atol=1e-5)
        stem = torch.rand(1, 3, 299, 299, generator=g) * 2 - 1
        a, b = stem, stem
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1",
                     "Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2"):
            a, b = getattr(model, name)(a), getattr(tv, name)(b)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
