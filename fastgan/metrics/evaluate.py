"""Scoring a generator: samples -> features -> metrics, with cached reference statistics.

    ev = fastgan.metrics.Evaluator(["fid", "kid"], data="celeba64.fgimg", resolution=64,
                                   channels=3, inception="pt_inception-2015-12-05-6726825d.pth")
    ev(generator)          # {"fid": ..., "kid": ..., "kid_std": ..., ...}

Metrics (names for --metrics):

* "fid", "kid", "is", "pr" (precision, recall, density, coverage) use the Inception-v3
  network of the standard FID code (fastgan.metrics.inception; its weights are a file the
  user supplies). fid, kid and pr compare with the reference data's features.
* "digits": a classifier trained on the built-in digits scores generated digits (classes
  covered, confidence, a Fréchet distance in its feature space; fastgan.metrics.digits).
  Needs no downloaded weights.
* "mixture": mode coverage and the high-quality fraction on the 2-D mixtures ring8 and
  grid25 (fastgan.data.toy.coverage). Needs no network at all.

Samples: `num` of them (default 50,000 when an Inception metric is asked for, the standard
FID-50k; 10,000 otherwise), from z drawn by a CPU generator seeded with `seed`, so the
same checkpoint gives the same samples on any device. Generation runs in float32 in eval
mode; Inception features in float32, as pytorch-fid computes them (amp=True: float16 autocast
on CUDA, faster, but its FIDs are not the float32 ones papers report).
Generated images are quantized to 8 bits before the Inception network, as saving them
to PNG would (fastgan.metrics.inception.preprocess).

Reference statistics of a dataset (the run's own --data by default; `ref` may name
another dataset, or a .npz of statistics: pytorch-fid's {mu, sigma} files work for FID)
are computed once, from at most `ref_num` images (default: all of them, up to 50,000) at
the run's resolution, and cached as <cache>/fid_refs/<name>-<hash>.npz holding mu, sigma,
the features (KID and precision/recall need them) and a manifest (JSON: the data's path,
size and modification time (for a folder: the number of its files and a sha256 over each
file's relative name, size and modification time, every subfolder included), resolution,
channels, crop, image count, the Inception weights' sha256 (for a network passed in as a
module rather than loaded from a file: a sha256 of its state dict), precision, the decoder
that made the pixels ("dali", "nvjpeg", "cpu" (PIL); "prepared" for a prepared file), the
device type and the cache format's version; fastgan's own version is recorded beside them).
The hash covers everything that changes the numbers, so a changed dataset, other
weights or another decoder never reuse stale statistics. A fastgan .npz given as `ref` is
refused when it was made at another resolution, channels or crop than the images scored.
"""
import hashlib
import json
import math
import pathlib
import sys

import torch

from fastgan._devices import check_device

__all__ = ["METRICS", "INCEPTION_METRICS", "PRIMARY", "Evaluator", "parse_metrics",
           "default_metrics", "is_better", "generate", "reference_stats", "load_stats"]

INCEPTION_METRICS = ("fid", "kid", "is", "pr")
METRICS = INCEPTION_METRICS + ("digits", "mixture")
# The value a metric is ranked by (best checkpoint during training): (key, "min"|"max"),
# ties broken by the next pair. pr ranks by coverage, the one of the four that an outlier
# or a noisy generator cannot inflate (Naeem et al. 2020, arXiv:2002.09797, sec. 3).
PRIMARY = {
    "fid": (("fid", "min"),),
    "kid": (("kid", "min"),),
    "is": (("is", "max"),),
    "pr": (("coverage", "max"), ("precision", "max")),
    "digits": (("digits_fd", "min"),),
    "mixture": (("modes", "max"), ("high_quality", "max")),
}
DEFAULT_NUM = 50_000          # FID-50k (Heusel et al. 2017; the field's convention)
DEFAULT_NUM_OFFLINE = 10_000  # digits and mixture
DEFAULT_REF_NUM = 50_000
# The cache format's version, part of every key: raised when a change to fastgan changes
# the statistics computed for an unchanged key, so that older entries are recomputed.
# 2: the key holds the decoder and the device type (version 1 entries do not say which
# decoder made their pixels). 3 (2026-11-24): every decoder resizes the crop cut out, with
# torch (fastgan.data._pil); the cpu decoder and DALI on a GPU resized the crop's box
# within the whole image before, other pixels on the border.
REF_FORMAT, REF_VERSION = "fastgan-fid-ref", 3


def parse_metrics(spec):
    """'fid,kid' or ['fid', 'kid'] -> ['fid', 'kid'] (order kept, duplicates dropped);
    ValueError naming an unknown metric and the known ones."""
    if spec is not None and not isinstance(spec, (str, list, tuple)):
        raise ValueError(f"expected names like 'fid,kid' or a list of them, got {spec!r}")
    items = spec.split(",") if isinstance(spec, str) else list(spec or ())
    out = []
    for item in items:
        name = str(item).strip().lower()
        if not name:
            continue
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r}; expected some of {', '.join(METRICS)}")
        if name not in out:
            out.append(name)
    if not out:
        raise ValueError(f"no metric named; expected some of {', '.join(METRICS)}")
    return out


def default_metrics(data):
    """The metrics a run on `data` gets when none are named: mixture for the 2-D toy data,
    digits for the built-in digits, fid for image datasets."""
    from fastgan.data import toy
    if data in toy.MIXTURES:
        return ["mixture"]
    if data in (None, "digits"):
        return ["digits"]
    return ["fid"]


def is_better(new, old, metrics):
    """Whether results `new` beat `old` by the first metric's PRIMARY ordering (old None:
    True). NaN never wins."""
    if old is None:
        return True
    for key, direction in PRIMARY[metrics[0]]:
        a, b = float(new[key]), float(old[key])
        if math.isnan(a):
            return False
        if math.isnan(b):
            return True
        if a != b:
            return a < b if direction == "min" else a > b
    return False


def _sampler(generator, sample_z):
    if sample_z is not None:
        return sample_z
    if hasattr(generator, "sample_z"):
        return generator.sample_z
    z_dim = getattr(generator, "z_dim", None)
    if z_dim is None:
        raise ValueError("the generator has no z_dim or sample_z; pass sample_z=(n, generator) -> z")
    return lambda n, generator=None: torch.randn(n, z_dim, generator=generator)


@torch.no_grad()
def generate(generator, num, *, batch_size=500, device=None, seed=0, sample_z=None):
    """Yields `num` samples of `generator` in batches (float32, on the generator's device),
    from z drawn at once on the CPU by a generator seeded with `seed` (so neither the
    device nor batch_size changes the samples). The module is put in eval
    mode for the duration and restored after."""
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"num must be a positive number of samples, got {num!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    draw = _sampler(generator, sample_z)
    if device is None:
        p = next(generator.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    z_all = draw(num, generator=torch.Generator().manual_seed(seed))  # all at once: batch_size
    was = generator.training                                          # does not change them
    generator.eval()
    try:
        for z in z_all.split(batch_size):
            yield generator(z.to(device)).float()
    finally:
        generator.train(was)


def _progress(total, desc, enabled):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, file=sys.stderr,
                dynamic_ncols=True, leave=False)


def _folder_fingerprint(path):
    """(number of files, sha256 hex) over every image file (by the loader's extensions)
    below the folder `path`: relative name, size and modification time of each, in sorted
    order. Symbolic links are followed, as the loader follows them, each real folder once.
    A folder's own mtime is no fingerprint: it changes when an entry is added, removed or
    renamed in it, not when a file in it is rewritten, nor when a subfolder (a class of
    images) changes. Files and hidden folders the loader does not read (a cache of
    statistics, checkpoints, logs kept beside the images) change nothing."""
    import os

    from fastgan.data._scan import _hidden, _is_image_name
    h, count, seen = hashlib.sha256(), 0, set()
    for dirpath, dirnames, filenames in os.walk(path, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:            # a link back up the tree
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not _hidden(d))  # the loader skips them too
        rel = os.path.relpath(dirpath, path)
        for name in sorted(filenames):
            if not _is_image_name(name) or _hidden(name):
                continue
            try:
                st = os.stat(os.path.join(dirpath, name))
                size, mtime = st.st_size, st.st_mtime_ns
            except OSError:         # a broken link: the loader finds it unreadable too
                size, mtime = -1, -1
            h.update(f"{os.path.join(rel, name)}\0{size}\0{mtime}\n".encode("utf-8", "surrogateescape"))
            count += 1
    return count, h.hexdigest()


def _data_identity(data):
    """(a name for file names, what the manifest records about the data's files)."""
    from fastgan.data import DEFAULT_DATASET
    if data in (None, DEFAULT_DATASET):
        return "digits", {"data": DEFAULT_DATASET}
    path = pathlib.Path(data).expanduser().resolve()
    if not path.exists():
        raise FileNotFoundError(f"reference data {data} does not exist")
    if path.is_dir():
        count, digest = _folder_fingerprint(path)
        return path.stem or "data", {"data": str(path), "data_files": count, "data_tree_sha256": digest}
    st = path.stat()
    return path.stem or "data", {"data": str(path), "data_bytes": st.st_size, "data_mtime_ns": st.st_mtime_ns}


def _extractor_id(model):
    """What identifies the feature extractor's weights: the sha256 of the file they were loaded
    from (load_inception sets weights_sha256), else "state:" + a sha256 of the state dict
    (names, dtypes, shapes, values; BatchNorm's num_batches_tracked, unused in eval mode,
    left out), so that two networks passed in as modules never share statistics."""
    sha = getattr(model, "weights_sha256", None)
    if sha is not None:
        return sha
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        t = t.detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "state:" + h.hexdigest()


def _ref_decoder(data, device):
    """(make_loader's backend, the key's decoder) for the reference images of `data` on
    `device`. The decoders differ at the pixel level (all resize the same way, but DALI
    decodes JPEGs with nvJPEG on a GPU, as the nvjpeg backend does, and with libjpeg-turbo
    on the CPU, as PIL does; on a GPU the resize is float32, rounded), and the one that
    backend="auto" would pick depends on the machine (a GPU, DALI or torchvision installed)
    and on the dataset's size ("cache" then decodes with one of them): so the decoder is
    chosen here, before the cache is looked up, passed to the loader by name, and keyed.
    (The formats are not looked at, as the loader's choice does: that needs the header
    check of every file, which a cache hit skips; a dataset of GIFs under "dali" has PIL
    decode them beside DALI.) A prepared file holds pixels decoded when it was prepared,
    identified by the file's own size and time: "prepared"."""
    from fastgan.data import DEFAULT_DATASET, loader, prepared
    if data not in (None, DEFAULT_DATASET) and prepared.is_prepared(pathlib.Path(data).expanduser()):
        return "cache", "prepared"
    name, _ = loader._decoder_choice(device)
    return name, name


def _cache_folder(root):
    from fastgan.data.digits import cache_dir
    return cache_dir(root) / "fid_refs"


def load_stats(path):
    """Reference statistics from a .npz: {"mu", "sigma", "features" (or None), "manifest"
    (dict, {} for files not written by fastgan)}. Accepts pytorch-fid's {mu, sigma} files."""
    import numpy as np
    path = pathlib.Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"reference statistics {path} do not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = set(f.files)
            if not {"mu", "sigma"} <= keys:
                raise ValueError(f"{path} is not a statistics file: it needs arrays 'mu' and 'sigma', "
                                 f"has {', '.join(sorted(keys)) or 'none'}")
            mu, sigma = torch.from_numpy(f["mu"]).double(), torch.from_numpy(f["sigma"]).double()
            feats = torch.from_numpy(f["features"]).float() if "features" in keys else None
            manifest = json.loads(str(f["manifest"])) if "manifest" in keys else {}
    except (OSError, ValueError) as exc:
        if isinstance(exc, ValueError) and str(path) in str(exc):
            raise
        raise ValueError(f"{path} could not be read as a .npz of statistics: {exc}") from None
    d = mu.shape[0] if mu.dim() == 1 else -1
    if d < 1 or sigma.shape != (d, d):
        raise ValueError(f"{path}: mu {tuple(mu.shape)} and sigma {tuple(sigma.shape)} are not [D] and [D, D]")
    if feats is not None and (feats.dim() != 2 or feats.shape[1] != d):
        raise ValueError(f"{path}: features {tuple(feats.shape)} do not match mu's {d} dimensions")
    for name, t in (("mu", mu), ("sigma", sigma), ("features", feats)):
        if t is not None and not torch.isfinite(t).all():
            raise ValueError(f"{path}: {name} holds non-finite values (NaN or inf)")
    return {"mu": mu, "sigma": sigma, "features": feats, "manifest": manifest, "path": str(path)}


def _save_stats(path, mu, sigma, features, manifest):
    import numpy as np

    from fastgan.train.logging import _replace_atomically

    def write(tmp):
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
            np.savez(f, mu=mu.cpu().numpy(), sigma=sigma.cpu().numpy(),
                     features=features.cpu().numpy(), manifest=np.array(json.dumps(manifest, sort_keys=True)))
    _replace_atomically(path, write)


def reference_stats(data, model, *, resolution, channels, crop=None, num=None, batch_size=250,
                    device=None, amp=None, cache_root=None, progress=True, verbose=True):
    """Inception statistics of a dataset (see the module docstring), from the cache when a
    matching entry exists. Returns load_stats' dict."""
    from fastgan import __version__, data as fdata
    from fastgan.metrics.fid import feature_stats
    from fastgan.metrics.inception import inception_features

    device = torch.device(device) if device is not None else next(model.parameters()).device
    amp_used = bool(amp)
    num = DEFAULT_REF_NUM if num is None else num
    if isinstance(num, bool) or not isinstance(num, int) or num < 2:
        raise ValueError(f"ref_num must be an integer >= 2, got {num!r}")
    name, ident = _data_identity(data)
    backend, decoder = _ref_decoder(data, device)
    key = {"format": REF_FORMAT, "version": REF_VERSION, **ident, "resolution": resolution,
           "channels": channels, "crop": crop, "num": num, "decoder": decoder,
           "device": device.type, "extractor": _extractor_id(model), "amp": amp_used}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = _cache_folder(cache_root) / f"{name}-{resolution}px-{digest}.npz"
    if path.is_file():
        try:
            cached = load_stats(path)
            if cached["features"] is not None and cached["manifest"].get("key") == key:
                if verbose:
                    print(f"fastgan: reference statistics from {path}", file=sys.stderr)
                return cached
        except ValueError:
            pass  # unreadable: recomputed and replaced below
    loader = fdata.make_loader(data if data is not None else fdata.DEFAULT_DATASET,
                               resolution=resolution, channels=channels, batch_size=batch_size,
                               backend=backend, device=device, crop=crop, shuffle=False,
                               drop_last=False, verbose=False)
    total = min(num, loader.num_samples)
    if total < 2:
        raise ValueError(f"reference data {data} has {loader.num_samples} images; need at least 2")
    feats, done = [], 0
    with _progress(total, f"reference features ({name})", progress) as bar:
        for images, _ in loader:
            images = images[: total - done]
            f, _ = inception_features(model, images, batch_size=batch_size, amp=amp)
            feats.append(f.float())
            done += images.shape[0]
            bar.update(images.shape[0])
            if done >= total:
                break
    features = torch.cat(feats)
    mu, sigma = feature_stats(features)
    manifest = {"key": key, "count": int(features.shape[0]), "fastgan": __version__}
    _save_stats(path, mu, sigma, features, manifest)
    if verbose:
        print(f"fastgan: reference statistics of {features.shape[0]} images cached in {path}",
              file=sys.stderr)
    return {"mu": mu, "sigma": sigma, "features": features, "manifest": manifest, "path": str(path)}


class Evaluator:
    """Scores generators with `metrics` (names or 'fid,kid') against `data` (the training
    data: a dataset path, "digits", or a toy mixture name) at `resolution` x `resolution`
    with `channels` channels. See the module docstring for num, ref, ref_num, amp.

    inception: a path to the weights (else $FASTGAN_INCEPTION_WEIGHTS), or a loaded
    FIDInceptionV3. The reference statistics and the networks are built on first use and
    kept, so an Evaluator called every N training steps computes them once."""

    def __init__(self, metrics, *, data=None, resolution, channels, num=None, ref=None,
                 ref_num=None, crop=None, inception=None, device=None, batch_size=250, seed=0,
                 amp=None, splits=10, progress=True, verbose=True, cache_root=None):
        from fastgan.data import toy
        self.metrics = parse_metrics(metrics)
        self.data, self.resolution, self.channels = data, resolution, channels
        self.uses_inception = any(m in INCEPTION_METRICS for m in self.metrics)
        self.num = num if num is not None else (DEFAULT_NUM if self.uses_inception else DEFAULT_NUM_OFFLINE)
        if isinstance(self.num, bool) or not isinstance(self.num, int) or self.num < 2:
            raise ValueError(f"num must be an integer >= 2, got {self.num!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self._check_sizes(num=self.num, ref_num=ref_num, splits=splits)
        from fastgan.metrics.fid import _integer
        seed = _integer("seed", seed, minimum=None)  # else a TypeError at the first evaluation
        device = check_device(device)  # "cpu:0" is "cpu"
        self.ref, self.ref_num, self.crop = ref, ref_num, crop
        self.device = device if device is not None else (
            torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
        self.batch_size, self.seed, self.amp, self.splits = batch_size, seed, amp, splits
        self.progress, self.verbose, self.cache_root = progress, verbose, cache_root
        self._inception_arg = inception
        self._inception = self._reference = self._classifier = None
        if "mixture" in self.metrics:
            mixture = ref if ref is not None else (data or "digits")  # None: the built-in digits
            if mixture not in toy.MIXTURES:
                raise ValueError(f"the mixture metric scores 2-D samples of {' or '.join(toy.MIXTURES)}; "
                                 f"this data is {mixture!r}")
            self.mixture = mixture
        if ref is not None and ref not in toy.MIXTURES and ref != "digits" \
                and not pathlib.Path(ref).expanduser().exists():  # now, not at the first evaluation
            raise FileNotFoundError(f"reference data {ref} does not exist")
        if "digits" in self.metrics and data not in (None, "digits"):
            raise ValueError(f"the digits metric scores generated digits; this run's data is {data!r}")
        if self.uses_inception and data in toy.MIXTURES:
            raise ValueError(f"{', '.join(m for m in self.metrics if m in INCEPTION_METRICS)} score "
                             f"images; {data!r} is 2-D points (use --metrics mixture)")

    def _check_sizes(self, *, num, ref_num, splits):
        """What the metrics need of the sample counts, checked before any sample is made
        (else the error comes after all of them went through the Inception network)."""
        from fastgan.metrics.fid import _integer
        from fastgan.metrics.prdc import K_DC, K_PR
        if ref_num is not None:
            _integer("ref_num", ref_num, minimum=2)
        if "is" in self.metrics:
            splits = _integer("splits", splits)
            if num < splits:
                raise ValueError(f"is needs num >= splits (each split at least one sample), got "
                                 f"num={num}, splits={splits}")
        if "pr" in self.metrics:
            if num < K_PR + 1:
                raise ValueError(f"pr needs num >= {K_PR + 1} generated samples (k = {K_PR} nearest "
                                 f"neighbours of each), got {num}")
            if ref_num is not None and ref_num < max(K_PR, K_DC) + 1:
                raise ValueError(f"pr needs ref_num >= {max(K_PR, K_DC) + 1} reference images "
                                 f"(k = {max(K_PR, K_DC)} nearest neighbours of each), got {ref_num}")

    # -- the networks and the reference, built once ------------------------------------
    def inception(self):
        if self._inception is None:
            from fastgan.metrics.inception import load_inception
            arg = self._inception_arg
            if isinstance(arg, torch.nn.Module):
                self._inception = arg.to(self.device).eval().requires_grad_(False)
            else:
                self._inception = load_inception(arg, device=self.device)
        return self._inception

    def check(self):
        """Builds now what can fail before the first evaluation: the Inception network (a
        missing weights file) and the statistics of a file given as ref (other weights, other
        image settings). A dataset given as ref is computed at the first evaluation."""
        if self.uses_inception:
            self.inception()
            if self._ref_is_file():
                self.reference()

    def _ref_is_file(self):
        return self.ref is not None and str(self.ref).endswith(".npz")

    def reference(self):
        if self._reference is None:
            ref = self.ref
            if self._ref_is_file():
                stats = load_stats(ref)
                sha = stats["manifest"].get("key", {}).get("extractor")
                ours = _extractor_id(self.inception())
                # comparable only as like with like: a file's sha256, or a state dict's
                if sha is not None and sha.startswith("state:") == ours.startswith("state:") \
                        and sha != ours:
                    raise ValueError(f"{ref} was computed with other Inception weights "
                                     f"(sha256 {sha[:12]}..., these are {ours[:12]}...)")
                self._check_settings(ref, stats["manifest"].get("key", {}))
            else:
                stats = reference_stats(ref if ref is not None else self.data, self.inception(),
                                        resolution=self.resolution, channels=self.channels,
                                        crop=self.crop, num=self.ref_num, batch_size=self.batch_size,
                                        device=self.device, amp=self.amp, cache_root=self.cache_root,
                                        progress=self.progress, verbose=self.verbose)
            from fastgan.metrics.inception import FEATURES
            from fastgan.metrics.prdc import K_DC, K_PR
            if stats["mu"].shape[0] != FEATURES:
                raise ValueError(f"{stats['path']} holds statistics of {stats['mu'].shape[0]} dimensions; "
                                 f"the FID Inception network's features have {FEATURES} (pool_3)")
            if stats["features"] is None and any(m in ("kid", "pr") for m in self.metrics):
                raise ValueError(f"{stats['path']} holds only mu and sigma; KID and precision/recall "
                                 "need the reference features: pass the dataset itself with --ref")
            need = max(K_PR, K_DC) + 1
            if "pr" in self.metrics and stats["features"].shape[0] < need:
                raise ValueError(f"{stats['path']} holds the features of {stats['features'].shape[0]} "
                                 f"reference images; precision/recall need at least {need}")
            self._reference = stats
        return self._reference

    def _check_settings(self, ref, key):
        """Refuses statistics (a fastgan .npz's manifest key) of images at another resolution,
        channels or crop than those scored. The Inception network resizes every image to
        299 x 299, so such a comparison runs, but it is no FID of the generator: images
        upsampled from 64 px differ from those upsampled from 128 px whatever their content,
        and a crop frames other content. (A dataset given as ref is read at this run's
        settings; a pytorch-fid file records none, so it cannot be checked.)"""
        ours = {"resolution": self.resolution, "channels": self.channels, "crop": self.crop}
        differ = [k for k in ours if k in key and key[k] != ours[k]]
        if differ:
            theirs = ", ".join(f"{k}={key[k]!r}" for k in differ)
            mine = ", ".join(f"{k}={ours[k]!r}" for k in differ)
            raise ValueError(f"{ref} holds statistics of images at {theirs}; the images scored are "
                             f"at {mine}: pass the dataset itself with --ref to compute them at "
                             "these settings")

    def classifier(self):
        if self._classifier is None:
            from fastgan.metrics.digits import digit_classifier
            self._classifier = digit_classifier(device=self.device, root=self.cache_root)
        return self._classifier

    # -- scoring ------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, generator, *, sample_z=None):
        """{metric key: value} for `generator` (an nn.Module mapping z to samples; z from
        sample_z(n, generator=) or its own sample_z, else standard normal of its z_dim)."""
        generator = generator.to(self.device)
        want_is = "is" in self.metrics
        feats, logits, samples = [], [], []
        keep_samples = "digits" in self.metrics or "mixture" in self.metrics
        if self.uses_inception:
            from fastgan.metrics.inception import inception_features
            model = self.inception()
            if any(m in ("fid", "kid", "pr") for m in self.metrics):
                self.reference()
        with _progress(self.num, "generated samples", self.progress) as bar:
            for images in generate(generator, self.num, batch_size=self.batch_size, device=self.device,
                                   seed=self.seed, sample_z=sample_z):
                if self.uses_inception:
                    f, lg = inception_features(model, images, batch_size=self.batch_size, amp=self.amp)
                    feats.append(f.float())
                    if want_is:
                        logits.append(lg.float())
                if keep_samples:
                    samples.append(images)
                bar.update(images.shape[0])
        out = {}
        if self.uses_inception:
            out.update(self._inception_metrics(torch.cat(feats), torch.cat(logits) if want_is else None))
        if "digits" in self.metrics:
            from fastgan.metrics.digits import digit_metrics
            out.update(digit_metrics(torch.cat(samples), self.classifier()))
        if "mixture" in self.metrics:
            from fastgan.data import toy
            cov = toy.coverage(torch.cat(samples), self.mixture)
            out.update({"modes": cov["modes"], "num_modes": cov["num_modes"],
                        "high_quality": cov["high_quality"], "mode_counts": cov["counts"]})
        out["num_samples"] = self.num
        return out

    def _inception_metrics(self, feats, logits):
        from fastgan.metrics.fid import fid_from_stats
        from fastgan.metrics.inception_score import inception_score
        from fastgan.metrics.kid import kid_from_features
        from fastgan.metrics.prdc import precision_recall
        out = {}
        ref = self._reference
        if "fid" in self.metrics:
            from fastgan.metrics.fid import feature_stats
            mu, sigma = feature_stats(feats)
            out["fid"] = fid_from_stats(mu, sigma, ref["mu"].to(mu.device), ref["sigma"].to(mu.device))
        if "kid" in self.metrics:
            out.update(kid_from_features(feats, ref["features"].to(feats.device), seed=self.seed))
        if "is" in self.metrics:
            out.update(inception_score(logits, splits=self.splits))
        if "pr" in self.metrics:
            out.update(precision_recall(ref["features"].to(feats.device), feats))
        model = self._inception
        out["inception_sha256"] = getattr(model, "weights_sha256", None)
        out["inception_standard"] = bool(getattr(model, "standard", False))
        return out
