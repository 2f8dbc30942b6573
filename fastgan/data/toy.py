"""2-D toy data: mixtures of Gaussians for watching a GAN cover (or drop) modes.

    centers("ring8")                    the mixture's means, float32 [K, 2]
    sample("grid25", n)                 (points [n, 2], mode index [n] int64)
    ToyLoader("ring8", batch_size=256)  an ImageLoader look-alike yielding [B, 2, 1, 1] points
    coverage(samples, "ring8")          modes captured and fraction of high-quality samples
    scatter_image(samples, "ring8")     a uint8 [size, size, 3] picture of the samples

A point is stored as an image with 2 channels at resolution 1 ([B, 2, 1, 1]), so the normal
Trainer, checkpoints and DDP sharding run on it unchanged; `make_loader("ring8", resolution=1,
channels=2, ...)` returns a ToyLoader, and RunLogger.images draws such samples with
scatter_image instead of an image grid.

The two standard benchmarks:
  "ring8"   8 Gaussians with means on a circle of radius 2 (angles 2*pi*k/8) and std 0.02:
            Metz et al. 2016, "Unrolled Generative Adversarial Networks", arXiv:1611.02163,
            their 2-D mixture-of-Gaussians experiment (Sec. 3.1).
  "grid25"  25 Gaussians with means on the grid {-4, -2, 0, 2, 4}^2 and std 0.05:
            Srivastava et al. 2017, "VEEGAN", arXiv:1705.07761, Sec. 5.1 (synthetic data), the
            set-up Lin et al. 2018 (PacGAN, arXiv:1712.04086) reuse.
Mode k of "grid25" is the center (-4 + 2 * (k // 5), -4 + 2 * (k % 5)).

Coverage follows Srivastava et al. 2017, Sec. 5.1: a sample is "high quality" when it lies
within k = 3 standard deviations of its nearest mean; a mode is captured when high-quality
samples are assigned to it. Their rule needs one such sample; one stray sample then counts
a mode the generator has all but dropped, so `coverage` asks by default for 5% of the count
an even split would give (max(1, ceil(0.05 * n / K)); min_fraction=0 is their rule exactly).
"""
import math

import torch

from fastgan.data._position import Position, check_shard

MIXTURES = ("ring8", "grid25")
# Metz et al. 2016 (arXiv:1611.02163, Sec. 3.1): std 0.02 on the ring of radius 2;
# Srivastava et al. 2017 (arXiv:1705.07761, Sec. 5.1): std 0.05 on the 5x5 grid.
DEFAULT_STD = {"ring8": 0.02, "grid25": 0.05}
# The picture's default half-width: the modes plus a margin of about half their spacing.
_EXTENT = {"ring8": 3.0, "grid25": 6.0}
DEFAULT_EPOCH = 50_000            # points per epoch (over all processes), as a fixed-size dataset
_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_MASK64 = (1 << 64) - 1


def _check_name(name):
    if not isinstance(name, str) or name not in MIXTURES:
        raise ValueError(f"name must be one of {', '.join(map(repr, MIXTURES))} (a 2-D mixture of "
                         f"Gaussians), got {name!r}")
    return name


def _check_std(std, name):
    if std is None:
        return DEFAULT_STD[name] if name is not None else None
    if isinstance(std, bool) or not isinstance(std, (int, float)) or not math.isfinite(std) or std <= 0:
        raise ValueError(f"std must be a positive number (None: the mixture's default), got {std!r}")
    return float(std)


def centers(name):
    """The means of mixture `name` ("ring8" or "grid25"), float32 [K, 2] on the CPU."""
    _check_name(name)
    if name == "ring8":
        angle = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        return (2.0 * torch.stack([angle.cos(), angle.sin()], 1)).float()
    axis = torch.arange(-4.0, 5.0, 2.0)                       # -4, -2, 0, 2, 4
    return torch.cartesian_prod(axis, axis)                   # row k: (axis[k // 5], axis[k % 5])


def sample(name, n, *, std=None, generator=None, device=None):
    """n points of mixture `name`, each mode equally likely: (points float32 [n, 2], mode
    index int64 [n]). std: None for the mixture's default (DEFAULT_STD). The points are
    drawn on `device` (default: the generator's device, else the CPU) with `generator`."""
    _check_name(name)
    std = _check_std(std, name)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    means = centers(name).to(device)
    labels = torch.randint(len(means), (n,), generator=generator, device=device)
    noise = torch.randn(n, 2, generator=generator, device=device)
    return means[labels] + std * noise, labels


def _stream_seed(*values):
    """A 64-bit seed from ints (splitmix64 over them): nearby (seed, rank, epoch) tuples give
    unrelated streams, and no two small tuples share one the way seed * C + epoch can."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (int(v) & _MASK64)) & _MASK64
        h = (h + 0x9E3779B97F4A7C15) & _MASK64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK64
        h ^= h >> 31
    return h


class ToyLoader(Position):
    """One epoch of (points [B, 2, 1, 1], mode labels [B]) per iteration, sampled on the fly.

    The same interface as fastgan.data.ImageLoader where the Trainer uses it: len() (batches
    per epoch), batch_size, num_samples (points per epoch in this process), num_classes (the
    number of modes), resolution = 1, channels = 2, backend = "toy", skipped = 0, device,
    epoch, state_dict() / load_state_dict().

    num_samples: points per epoch over all processes (default DEFAULT_EPOCH); shard (rank,
    world_size) takes num_samples // world_size of them, in full batches only (the rest of
    an epoch is dropped, as with drop_last=True). Epoch e of rank r is drawn at once on
    `device` from a torch.Generator seeded with a hash of (seed, r, e): an epoch is the same
    every time it is drawn (on the same device type), ranks draw independent streams, and
    load_state_dict resumes at the exact batch an uninterrupted run would give next.
    """

    backend = "toy"
    resolution = 1
    channels = 2
    skipped = 0

    def __init__(self, name, *, batch_size, num_samples=None, std=None, seed=0, device=None,
                 shard=(0, 1), dtype=torch.float32):
        self.name = _check_name(name)
        self.std = _check_std(std, name)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        total = DEFAULT_EPOCH if num_samples is None else num_samples
        if isinstance(total, bool) or not isinstance(total, int) or total < 1:
            raise ValueError(f"num_samples must be None or a positive int (points per epoch), "
                             f"got {num_samples!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        rank, world = check_shard(shard)
        if dtype not in _DTYPES:
            raise TypeError(f"dtype must be torch.float32, torch.float16 or torch.bfloat16, got {dtype}")
        device = torch.device(device if device is not None else
                              ("cuda" if torch.cuda.is_available() else "cpu"))
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        self.batch_size, self.seed, self.dtype, self.device = batch_size, seed, dtype, device
        self.rank, self.world_size = rank, world
        self.num_samples = total // world
        if len(self) == 0:
            raise ValueError(f"ToyLoader: shard {rank} of {world} gets {self.num_samples} of the "
                             f"{total} points per epoch, fewer than batch_size={batch_size}")
        self.centers = centers(name)
        self.num_classes = len(self.centers)
        self.epoch, self._batch = 0, 0

    def __len__(self):
        return self.num_samples // self.batch_size

    # -- iteration ----------------------------------------------------------------------
    def _draw(self, epoch):
        """This rank's whole epoch: points [n, 2, 1, 1] in self.dtype and labels [n]."""
        g = torch.Generator(self.device).manual_seed(_stream_seed(self.seed, self.rank, epoch))
        points, labels = sample(self.name, len(self) * self.batch_size, std=self.std,
                                generator=g, device=self.device)
        return points.to(self.dtype).view(-1, 2, 1, 1), labels

    def __iter__(self):
        if self._batch >= len(self):        # stopped right after an epoch's last batch
            self.epoch, self._batch = self.epoch + 1, 0
        epoch, b = self.epoch, self.batch_size
        points, labels = self._draw(epoch)
        for k in range(self._batch, len(self)):
            self._batch = k + 1
            yield points[k * b:(k + 1) * b], labels[k * b:(k + 1) * b]
        self.epoch, self._batch = epoch + 1, 0

    def __repr__(self):
        return (f"ToyLoader({self.name!r}, std={self.std}, num_samples={self.num_samples}, "
                f"batch_size={self.batch_size}, num_classes={self.num_classes}, "
                f"device={str(self.device)!r}, epoch={self.epoch})")


def _as_points(x, what):
    """[N, 2] or [N, 2, 1, 1] floats -> [N, 2] float32 (detached, same device)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a tensor [N, 2] or [N, 2, 1, 1], got {type(x).__name__}")
    if not ((x.dim() == 2 and x.shape[1] == 2) or (x.dim() == 4 and tuple(x.shape[1:]) == (2, 1, 1))):
        raise ValueError(f"{what} must be 2-D points [N, 2] or [N, 2, 1, 1], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{what} must be floating point, got {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError(f"{what} is empty (N = 0)")
    return x.detach().reshape(-1, 2).float()


def _mixture(name, means, std):
    """(centers [K, 2] float32 CPU, std) from a mixture name or explicit centers and std."""
    if name is not None:
        if means is not None:
            raise ValueError("give the mixture's name or its centers, not both")
        return centers(_check_name(name)), _check_std(std, name)
    if means is None:
        raise ValueError(f"give the mixture: name (one of {', '.join(map(repr, MIXTURES))}) or "
                         f"centers [K, 2] with std")
    means = torch.as_tensor(means, dtype=torch.float32).cpu()
    if means.dim() != 2 or means.shape[1] != 2 or len(means) == 0:
        raise ValueError(f"centers must be [K, 2] with K >= 1, got shape {tuple(means.shape)}")
    std = _check_std(std, None)
    if std is None:
        raise ValueError("std is needed with explicit centers (the mixture's standard deviation)")
    return means, std


@torch.no_grad()
def coverage(samples, name=None, *, centers=None, std=None, k=3.0, min_fraction=0.05):
    """How well `samples` ([N, 2] or [N, 2, 1, 1], any float dtype and device) cover a mixture.

    The mixture: `name` (std defaults to its DEFAULT_STD), or `centers` [K, 2] with `std`.
    Each sample is assigned to its nearest center; it is high quality when within k * std of
    it (Srivastava et al. 2017, arXiv:1705.07761, Sec. 5.1: k = 3). A mode is captured when
    at least min_count = max(1, ceil(min_fraction * N / K)) high-quality samples are
    assigned to it: 5% of an even split by default, min_fraction=0 for VEEGAN's "at least
    one". Non-finite samples are never high quality. Exact samples of the mixture score
    high_quality = 1 - exp(-k^2 / 2) in 2-D: 0.989 at k = 3.

    Returns {"modes": modes captured, "num_modes": K, "high_quality": fraction of the N
    samples that are high quality, "counts": high-quality samples per mode (list of K ints),
    "min_count": the count a mode needed}.
    """
    x = _as_points(samples, "samples")
    means, std = _mixture(name, centers, std)
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not k > 0:
        raise ValueError(f"k must be a positive number of standard deviations, got {k!r}")
    if isinstance(min_fraction, bool) or not isinstance(min_fraction, (int, float)) \
            or not 0 <= min_fraction <= 1:
        raise ValueError(f"min_fraction must be in [0, 1], got {min_fraction!r}")
    n, num = len(x), len(means)
    dist = torch.cdist(x, means.to(x.device))                       # [N, K]
    finite = torch.isfinite(x).all(1)
    dist = torch.where(finite[:, None], dist, torch.full_like(dist, math.inf))
    nearest, mode = dist.min(1)
    good = nearest <= k * std
    counts = torch.bincount(mode[good], minlength=num).tolist()
    min_count = max(1, math.ceil(min_fraction * n / num))
    return {"modes": sum(c >= min_count for c in counts), "num_modes": num,
            "high_quality": float(good.sum()) / n, "counts": counts, "min_count": min_count}


_DOT = (20, 45, 120)              # dark blue
_MARK = (170, 170, 170)           # the mixture's centers: light gray crosses
_DOT_ALPHA = 0.6                  # one sample alone still shows; three overlapping are near solid
# Pixel color by the number of dots over it (white background): 0.4 ** 8 < 1/255, so 8 is solid.
_SHADES = torch.tensor([[255 - (255 - c) * (1 - (1 - _DOT_ALPHA) ** h) for c in _DOT] for h in range(9)]
                       ).round().to(torch.uint8)


def _extent_of(pts, name, extent):
    if extent is None:
        if name is not None:
            r = _EXTENT[_check_name(name)]
            return -r, r, -r, r
        ok = pts[torch.isfinite(pts).all(1)]
        if len(ok) == 0:
            return -1.0, 1.0, -1.0, 1.0
        lo, hi = ok.min(0).values, ok.max(0).values
        mid, half = (lo + hi) / 2, float((hi - lo).max()) / 2
        half = max(half * 1.1, 1e-3)                   # 10% margin; a single point still shows
        return float(mid[0]) - half, float(mid[0]) + half, float(mid[1]) - half, float(mid[1]) + half
    expected = f"extent must be a positive half-width or (xmin, xmax, ymin, ymax), got {extent!r}"
    if isinstance(extent, (int, float)) and not isinstance(extent, bool):
        if not extent > 0:
            raise ValueError(expected)
        return -float(extent), float(extent), -float(extent), float(extent)
    try:
        x0, x1, y0, y1 = (float(v) for v in extent)
    except (TypeError, ValueError):
        raise ValueError(expected) from None
    if not (x0 < x1 and y0 < y1):
        raise ValueError(f"extent (xmin, xmax, ymin, ymax) needs xmin < xmax and ymin < ymax, got {extent!r}")
    return x0, x1, y0, y1


def _pixels(pts, box, size):
    """Flat indices into a canvas padded by one pixel on each side ([size + 2]^2), y up, of
    the points inside the box (NaN and points outside are dropped)."""
    x0, x1, y0, y1 = box
    origin = torch.tensor([x0, y1])
    scale = torch.tensor([size / (x1 - x0), -size / (y1 - y0)])
    p = ((pts - origin) * scale).floor_()                          # [N, 2]: column, row
    p = p[((p >= 0) & (p < size)).all(1)].long() + 1
    return p[:, 1] * (size + 2) + p[:, 0]


@torch.no_grad()
def scatter_image(points, name=None, *, size=256, extent=None):
    """A picture of 2-D samples: uint8 [size, size, 3] (HWC, like make_grid), white background.

    points: [N, 2] or [N, 2, 1, 1], any float dtype and device. Each sample is a dark dot
    (3x3 pixels, 2x2 below size 128); overlapping dots darken up to solid, so dense modes
    show darker than stray samples. With `name`, the mixture's centers are marked by gray
    crosses under the dots and the view defaults to +-3 ("ring8") or +-6 ("grid25");
    without it, to the samples' bounding square plus 10%. extent: a half-width r (the
    square +-r) or (xmin, xmax, ymin, ymax). Samples outside the view, and NaN, are left out.
    Vectorized: one bincount for all dots, then a table lookup; about 2 ms for 10k points
    on one idle CPU core. The few ops stay below torch's parallel grain, so a busy machine
    does not stall them on thread hand-offs.
    """
    pts = _as_points(points, "points").cpu()
    if isinstance(size, bool) or not isinstance(size, int) or size < 16:
        raise ValueError(f"size must be an int >= 16 (pixels), got {size!r}")
    box = _extent_of(pts, name, extent)
    wide = size + 2                                                # 1 pixel of padding: no clipping
    span = [-1, 0, 1] if size >= 128 else [0, 1]
    dot = torch.tensor([dr * wide + dc for dr in span for dc in span])
    flat = (_pixels(pts, box, size)[:, None] + dot).flatten()
    hits = torch.bincount(flat, minlength=wide * wide).view(wide, wide)[1:-1, 1:-1]
    image = _SHADES[hits.clamp(max=len(_SHADES) - 1)]              # [size, size, 3]
    if name is not None:                                           # crosses, where no dot covers them
        arm = max(2, size // 64)
        line = torch.arange(-arm, arm + 1)
        cross = torch.cat([line, line * wide])
        at = (_pixels(centers(name), box, size)[:, None] + cross).flatten()
        r, c = at // wide - 1, at % wide - 1
        keep = (r >= 0) & (r < size) & (c >= 0) & (c < size)
        r, c = r[keep], c[keep]
        free = hits[r, c] == 0
        image[r[free], c[free]] = torch.tensor(_MARK, dtype=torch.uint8)
    return image
