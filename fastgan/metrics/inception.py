"""The Inception-v3 network of the standard FID, and the preprocessing the field uses with it.

What
----
`FIDInceptionV3` is Inception-v3 (Szegedy et al. 2015, "Rethinking the Inception
Architecture for Computer Vision", arXiv:1512.00567, sec. 6 and fig. 5-7) in the exact form
of the network behind FID (Heusel et al. 2017, arXiv:1706.08500, sec. 4 "Experiments"): the
TensorFlow graph of the 2015-12-05 Inception release, as pytorch-fid ports it to PyTorch in
its file ``pt_inception-2015-12-05-6726825d.pth`` (torch-fidelity uses the same weights).
Its module and parameter names are torchvision's `Inception3` names, so that file's state
dict loads strictly. `load_inception` loads it (never downloads it), `preprocess` turns images
into the network's input, `inception_features` runs the network in bounded-memory batches and
`random_inception` builds a deterministically initialised copy for tests and benchmarks.

Why this network, exactly
-------------------------
FID, KID, the Inception Score and precision/recall are only comparable with published numbers
when they are computed with this one network, weights and preprocessing. The 2015 TensorFlow
graph differs from torchvision's Inception3 in three places, all reproduced here:

* the 3x3 stride-1 average pool of the `branch_pool` of every A, C and E block ignores the
  zero padding at the border (``count_include_pad=False``; TensorFlow's SAME-padded average
  pool divides by the number of valid pixels);
* the last E block (`Mixed_7c`) pools its `branch_pool` with a 3x3 stride-1 MAX pool;
* the classifier has 1008 outputs (1000 classes plus 8 unused), and no auxiliary head.

Preprocessing (`preprocess`)
----------------------------
* Float images are first quantized to the 256 levels of uint8, as saving them to PNG does,
  because "FID of generated samples" in the literature is usually the FID of saved image
  files. Rounding is half-up, as in torchvision.utils.save_image (``x*255 + 0.5``, truncated).
* Resizing to 299x299 is `F.interpolate(mode="bilinear", align_corners=False)` without
  antialiasing, the resizing of pytorch-fid (its `InceptionV3(resize_input=True)`); then
  values are mapped from [0, 1] to [-1, 1] (its `normalize_input=True`).

Logits without the bias
-----------------------
The original Inception Score code (Salimans et al. 2016, "Improved Techniques for Training
GANs", arXiv:1606.03498, sec. 4; its `inception_score.py`) computes the class probabilities as
the softmax of the pool_3 features times the softmax layer's weight matrix, without the bias.
`FIDInceptionV3.forward` returns exactly those logits, ``features @ fc.weight.T``; `fc.bias`
exists only so the standard file loads strictly.
"""
import hashlib
import math
import os
import warnings

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "FIDInceptionV3", "preprocess", "load_inception", "inception_features", "random_inception",
    "WEIGHTS_FILENAME", "WEIGHTS_URL", "WEIGHTS_ENV",
]

WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
               + WEIGHTS_FILENAME)
WEIGHTS_ENV = "FASTGAN_INCEPTION_WEIGHTS"
# torch.hub names a file by the first 8 hex digits of its sha256; the standard file's are these.
_STANDARD_SHA256_PREFIX = "6726825d"
INPUT_SIZE = 299           # Szegedy et al. 2015, arXiv:1512.00567, table 1: 299x299x3 input
FEATURES = 2048            # pool_3, the FID features (Heusel et al. 2017, sec. 4)
NUM_CLASSES = 1008         # the 2015-12-05 graph's softmax: 1000 classes + 8 unused outputs


class BasicConv2d(nn.Module):
    """Conv (no bias) + BatchNorm (eps 0.001, the TensorFlow graph's) + ReLU."""

    def __init__(self, cin, cout, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)), inplace=True)


def _pool3x3(x, pool):
    """The stride-1 branch_pool of the A, C and E blocks: the FID graph's average pool that
    ignores the padding, or (Mixed_7c) a max pool."""
    if pool == "max":
        return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35x35 block (fig. 5): out 224 + pool_features channels."""

    def __init__(self, cin, pool_features):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x):
        b1 = self.branch1x1(x)                                             # 64
        b5 = self.branch5x5_2(self.branch5x5_1(x))                         # 64
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))  # 96
        bp = self.branch_pool(_pool3x3(x, "avg"))                          # pool_features
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    """35x35 -> 17x17 grid reduction (fig. 10): out 384 + 96 + cin channels."""

    def __init__(self, cin):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, bd, bp], 1)


class InceptionC(nn.Module):
    """17x17 block with factorized 7x7 convolutions (fig. 6): out 4 x 192 = 768 channels."""

    def __init__(self, cin, channels_7x7):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for conv in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                     self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = conv(bd)
        bp = self.branch_pool(_pool3x3(x, "avg"))
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):
    """17x17 -> 8x8 grid reduction: out 320 + 192 + cin channels."""

    def __init__(self, cin):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b7, bp], 1)


class InceptionE(nn.Module):
    """8x8 block with expanded filter banks (fig. 7): out 320 + 768 + 768 + 192 = 2048.
    `pool` is "avg" (Mixed_7b, padding excluded) or "max" (Mixed_7c), the FID graph's."""

    def __init__(self, cin, pool):
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        t = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(t), self.branch3x3_2b(t)], 1)
        t = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(t), self.branch3x3dbl_3b(t)], 1)
        bp = self.branch_pool(_pool3x3(x, self.pool))
        return torch.cat([b1, b3, bd, bp], 1)


class FIDInceptionV3(nn.Module):
    """The FID variant of Inception-v3 (see the module docstring), torchvision's names.

    forward(x): x [N, 3, 299, 299] from `preprocess` (values in [-1, 1]) ->
    (features [N, 2048] float32, logits [N, 1008] float32), logits = features @ fc.weight.T
    (no bias; Salimans et al. 2016, arXiv:1606.03498, sec. 4, their released IS code).
    """

    def __init__(self):
        super().__init__()
        # shapes for a 299x299 input, as comments: [C, H, W]
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)       # 32 x 149 x 149
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)                # 32 x 147 x 147
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)     # 64 x 147 x 147
        self.maxpool1 = nn.MaxPool2d(3, stride=2)                  # 64 x 73 x 73
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)                # 80 x 73 x 73
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)               # 192 x 71 x 71
        self.maxpool2 = nn.MaxPool2d(3, stride=2)                  # 192 x 35 x 35
        self.Mixed_5b = InceptionA(192, pool_features=32)          # 256 x 35 x 35
        self.Mixed_5c = InceptionA(256, pool_features=64)          # 288 x 35 x 35
        self.Mixed_5d = InceptionA(288, pool_features=64)          # 288 x 35 x 35
        self.Mixed_6a = InceptionB(288)                            # 768 x 17 x 17
        self.Mixed_6b = InceptionC(768, channels_7x7=128)          # 768 x 17 x 17
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)          # 768 x 17 x 17
        self.Mixed_7a = InceptionD(768)                            # 1280 x 8 x 8
        self.Mixed_7b = InceptionE(1280, pool="avg")               # 2048 x 8 x 8
        self.Mixed_7c = InceptionE(2048, pool="max")               # 2048 x 8 x 8
        self.fc = nn.Linear(FEATURES, NUM_CLASSES)
        # set by load_inception: hex sha256 of the weights file, and whether it is the standard one
        self.weights_sha256 = None
        self.standard = False

    def forward(self, x):
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"x must be a preprocessed batch [N, 3, {INPUT_SIZE}, {INPUT_SIZE}] "
                             f"(see preprocess), got shape {tuple(x.shape)}")
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1",
                     "Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2",
                     "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c",
                     "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(self, name)(x)
        # pool_3 and the logits in float32 even under autocast: the matmul over 2048 features
        # would otherwise run in fp16
        with torch.autocast(device_type=x.device.type, enabled=False):
            features = x.float().mean(dim=(2, 3))                  # [N, 2048]
            logits = features @ self.fc.weight.float().t()         # [N, 1008], no bias
        return features, logits


def _check_value_range(value_range):
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ValueError(f"value_range must be a pair of numbers (lo, hi), got {value_range!r}") \
            from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"value_range must be finite with lo < hi, got {value_range!r}")
    return lo, hi


def _check_images(images, value_range):
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] not in (1, 3) or min(images.shape[2:]) < 1:
        raise ValueError("images must have shape [N, C, H, W] with C = 1 or 3 and H, W >= 1, "
                         f"got shape {tuple(images.shape)}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise TypeError("images must be uint8 (0..255) or floating point, "
                        f"got dtype {images.dtype}")
    if images.is_floating_point():
        _check_value_range(value_range)


def preprocess(images, value_range=(-1, 1)):
    """Images -> the network's input [N, 3, 299, 299] float32 in [-1, 1], on images' device.

    images: uint8 [N, C, H, W] (0..255), or floating [N, C, H, W] in `value_range`; C is 1
    (repeated to 3) or 3. Floats are quantized to 256 levels first, as a PNG would store them
    (round half up of (x - lo) * 255 / (hi - lo), clamped to 0..255; NaN -> lo). Then x / 255,
    bilinear resize to 299x299 (align_corners=False, no antialias: pytorch-fid's), 2x - 1.
    """
    _check_images(images, value_range)
    if images.dtype == torch.uint8:
        x = images.float()
    else:
        lo, hi = _check_value_range(value_range)
        x = images.to(torch.float64 if images.dtype == torch.float64 else torch.float32)
        x = (x - lo) * (255.0 / (hi - lo))
        x = torch.nan_to_num(x, nan=0.0, posinf=255.0, neginf=0.0)
        x = torch.floor(x + 0.5).clamp_(0, 255).float()   # integer levels 0..255, exact in fp32
    x = x / 255.0
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if tuple(x.shape[2:]) != (INPUT_SIZE, INPUT_SIZE):
        # at 299x299 bilinear resizing is the identity (scale 1, all weights on one pixel)
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    return x * 2.0 - 1.0


def _missing_weights_message(path):
    if path is None:
        where = f"no path was given and {WEIGHTS_ENV} is not set"
    elif os.path.isdir(path):
        where = f"{path!r} is a directory, not the weights file"
    else:
        where = f"the file {path!r} does not exist"
    return (f"Inception weights not found: {where}. fastgan computes FID/KID/IS/precision-recall "
            f"with the standard FID Inception network, whose weights are the pytorch-fid release "
            f"asset {WEIGHTS_FILENAME} ({WEIGHTS_URL}). "
            f"fastgan downloads nothing: fetch that file yourself and pass it with "
            f"--inception PATH or {WEIGHTS_ENV}=PATH.")


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _first(keys, n=5):
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def load_inception(path=None, *, device="cpu", check_standard=True):
    """The FID Inception network with the weights in `path` (else $FASTGAN_INCEPTION_WEIGHTS).

    The file is pytorch-fid's pt_inception-2015-12-05-6726825d.pth (or any state dict with the
    same keys and shapes, plain or as {"state_dict": ...}); it is loaded with weights_only=True
    and strictly, except that BatchNorm's num_batches_tracked keys may be present or absent.
    Sets model.weights_sha256 and model.standard (the sha256 starts with 6726825d, the hash in
    the standard file's name); warns when it is not standard and check_standard is true.
    Returns the model in eval mode, without gradients, on `device`.
    """
    if path is None:
        path = os.environ.get(WEIGHTS_ENV) or None
    if path is not None:
        path = os.fspath(path)
    if path is None or not os.path.isfile(path):
        raise FileNotFoundError(_missing_weights_message(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors come in several types
        # the first line of torch's reason: the rest advises weights_only=False, which would
        # run whatever code the file holds
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"Inception weights {path}: not a PyTorch state dict that "
                         f"torch.load(weights_only=True) reads ({type(e).__name__}: {first})") from e
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"Inception weights {path}: expected a state dict (a dict of tensors), "
                         f"got {type(state).__name__}")

    model = FIDInceptionV3()
    own = model.state_dict()

    def counted(k):
        return not k.endswith("num_batches_tracked")

    given = {k: v for k, v in state.items() if counted(k)}
    missing = [k for k in own if counted(k) and k not in given]
    unexpected = [k for k in given if k not in own]
    bad_shape = [f"{k} {tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__} "
                 f"(expected {tuple(own[k].shape)})"
                 for k, v in given.items()
                 if k in own and not (isinstance(v, torch.Tensor) and v.shape == own[k].shape)]
    problems = []
    if missing:
        problems.append(f"missing keys: {_first(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_first(unexpected)}")
    if bad_shape:
        problems.append(f"wrong shapes: {_first(bad_shape, 3)}")
    if problems:
        raise ValueError(f"Inception weights {path} do not match FIDInceptionV3 (expected "
                         f"{WEIGHTS_FILENAME} from pytorch-fid): " + "; ".join(problems))
    # num_batches_tracked is unused in eval mode; keep the model's own values
    given.update({k: v for k, v in own.items() if not counted(k)})
    model.load_state_dict(given, strict=True)

    model.weights_sha256 = _sha256(path)
    model.standard = model.weights_sha256.startswith(_STANDARD_SHA256_PREFIX)
    if not model.standard and check_standard:
        warnings.warn(f"Inception weights {path} (sha256 {model.weights_sha256[:16]}...) are not "
                      f"the standard {WEIGHTS_FILENAME}: FID/KID/IS computed with them are not "
                      f"comparable with published numbers", UserWarning, stacklevel=2)
    return _ready(model, device)


def _ready(model, device):
    model = model.eval().requires_grad_(False).to(device)
    if torch.device(device).type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def inception_features(model, images, *, batch_size=200, amp=None, value_range=(-1, 1)):
    """(features [N, 2048], logits [N, 1008]) float32 on the model's device, for images
    [N, C, H, W] (uint8, or float in value_range; any device), `batch_size` images at a time
    (each batch moved to the model's device and preprocessed there, so memory stays bounded).

    amp: True runs the network under autocast (float16 on CUDA, bfloat16 on CPU, the dtype CPU
    autocast supports well): faster, but not the float32 features of pytorch-fid, whose FIDs
    papers report; None or False (the default) in float32. On CUDA the batches (and the
    model's weights, once) are put in channels_last memory format.
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    _check_images(images, value_range)
    if model.training:
        raise ValueError("model must be in eval mode (model.eval()): BatchNorm in training mode "
                         "would make each image's features depend on the rest of its batch")
    device = next(model.parameters()).device
    cuda = device.type == "cuda"
    use_amp = bool(amp)
    amp_dtype = torch.float16 if cuda else torch.bfloat16
    if cuda:
        model.to(memory_format=torch.channels_last)   # no copy when it already is
    feats, logits = [], []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            x = preprocess(images[start:start + batch_size].to(device, non_blocking=True),
                           value_range)
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=use_amp):
                f, lg = model(x)
            feats.append(f.float())
            logits.append(lg.float())
    if not feats:
        return (torch.zeros(0, FEATURES, device=device), torch.zeros(0, NUM_CLASSES, device=device))
    return torch.cat(feats), torch.cat(logits)


def random_inception(seed=0):
    """A FIDInceptionV3 with deterministic random weights (for tests and benchmarks without
    the real file; the timings are the same), in eval mode, without gradients, on the CPU.

    Convolutions: Kaiming-normal, fan_in, ReLU gain (He et al. 2015, arXiv:1502.01852,
    sec. 2.2), which keeps the activations' second moment through the ~95 conv layers; BatchNorm
    the identity (weight 1, bias 0, running mean 0, running var 1); fc weight and bias N(0, 0.01)
    (the bias nonzero so that tests see it is not used).
    """
    g = torch.Generator().manual_seed(int(seed))
    model = FIDInceptionV3()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(1.0)
                m.bias.zero_()
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
        model.fc.weight.copy_(torch.randn(model.fc.weight.shape, generator=g) * 0.01)
        model.fc.bias.copy_(torch.randn(model.fc.bias.shape, generator=g) * 0.01)
    return _ready(model, "cpu")
