"""Images per second of each data backend: CelebA-like JPEGs (178 x 218) -> 64 x 64 batches of 128.

Targets (issue 6): on an H100/H200 the GPU decoding path (DALI, nvJPEG without it) >= 15,000
images/s and the GPU-resident dataset ("cache") >= 1,000,000 images/s; on a 2-core CPU
machine DALI's CPU-only mode >= 1.5 x a PIL DataLoader with 2 workers.

"plain" is not a fastgan backend: it is the loader common public GAN code writes
(torchvision-style ImageFolder + CenterCrop + Resize + ToTensor + Normalize in a DataLoader,
benchmarks/baselines/pil_loader.py), each batch moved to the device in the loop, the point of
reference for a user coming from those implementations.

Each backend runs one warm-up epoch (worker start-up, pipeline build, decode-once for the
cache), then --epochs timed epochs (the cache: as many as fill about 2 s), synchronizing a GPU
at the end. The set is generated once into FASTGAN_BENCH_DATA (default: a temporary folder)
with FASTGAN_BENCH_N images (default 20,000 with a GPU, 2,000 without).

    python benchmarks/bench_data.py [--backends plain,cpu,dali,nvjpeg,cache] [--workers 2] [--epochs 1]
                                    [--rounds 1] [--json OUT]

"nvjpeg:K" is the nvjpeg backend with K batches decoding ahead of the caller on their own
threads (fastgan.data._nvjpeg.AHEAD; plain "nvjpeg" is its default), to find the best K.
"""
import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:  # importlib imports: baselines/ sits beside this file
    sys.path.insert(0, str(_HERE))

from baselines.pil_loader import plain_loader  # noqa: E402

from fastgan.data import _dali, _nvjpeg, make_loader  # noqa: E402

BATCH, RESOLUTION = 128, 64


def make_set(root, n, seed=0):
    """n JPEGs of 178 x 218 with photo-like statistics (smooth fields, edges, noise), quality 90."""
    root.mkdir(parents=True, exist_ok=True)
    have = len(list(root.glob("*.jpg")))
    if have >= n:
        return root
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, 178)[None, :, None]
    y = np.linspace(0, 1, 218)[:, None, None]
    for i in range(have, n):
        f = rng.uniform(2, 12, (2, 3))
        img = 128 + 90 * np.sin(np.pi * (x * f[0] + y * f[1]) + rng.uniform(0, 6, 3))
        img = (img + rng.normal(0, 8, img.shape)).clip(0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=90)
        (root / f"{i:06d}.jpg").write_bytes(buf.getvalue())
    return root


def measure(path, backend, device, workers, epochs=1):
    backend, _, ahead = backend.partition(":")
    if ahead:  # "nvjpeg:K": the nvjpeg backend with K batches decoding ahead of the caller
        saved, _nvjpeg.AHEAD = _nvjpeg.AHEAD, int(ahead)
        try:
            return measure(path, backend, device, workers, epochs)
        finally:
            _nvjpeg.AHEAD = saved
    if backend == "plain":
        loader = plain_loader(path, resolution=RESOLUTION, batch_size=BATCH, num_workers=workers)
    else:
        loader = make_loader(path, resolution=RESOLUTION, batch_size=BATCH, backend=backend, device=device,
                             num_workers=workers, verbose=False, flip=True)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for x, _ in loader:  # warm-up epoch
        x = x.to(device)
    sync()
    done, images, start = 0, 0, time.perf_counter()
    while True:
        for x, _ in loader:
            x = x.to(device)  # a no-op for fastgan's loaders, which yield on the device
            images += x.shape[0]
        done += 1
        sync()
        elapsed = time.perf_counter() - start
        if done >= epochs and (backend != "cache" or elapsed > 2.0):
            return images / elapsed


def probe_nvjpeg(root, device, batches=16, threads=(1, 2, 4), per_call=(BATCH, 4 * BATCH)):
    """torchvision's decode_jpeg alone (files already in memory, no crop or resize): images/s
    {"threads": {n: rate}} for lists of BATCH JPEGs from n Python threads at once, and
    {"per_call": {m: rate}} for lists of m JPEGs from one thread. If the rate grows with
    neither, decoding is serialized inside torchvision with a cost per image (one decoder
    behind a lock; each image's header parsed on one CPU thread) and the nvjpeg backend
    cannot pass that rate whatever the rest of the loader does; if it grows with m only, the
    cost is per call and decoding several batches per call would pay."""
    from concurrent.futures import ThreadPoolExecutor

    from torchvision.io import decode_jpeg

    files = sorted(root.glob("*.jpg"))[:BATCH * batches]
    data = [torch.frombuffer(bytearray(f.read_bytes()), dtype=torch.uint8) for f in files]

    def rate(m, n):
        lists = [data[k:k + m] for k in range(0, len(data) - m + 1, m)]
        with ThreadPoolExecutor(n) as pool:
            start = time.perf_counter()
            list(pool.map(lambda chunk: decode_jpeg(chunk, device=device), lists))
            torch.cuda.synchronize(device)
        return round(len(lists) * m / (time.perf_counter() - start))

    decode_jpeg(data[:BATCH], device=device)  # warm-up: the decoder's state and buffers
    torch.cuda.synchronize(device)
    return {"threads": {n: rate(BATCH, n) for n in threads},
            "per_call": {m: rate(m, 1) for m in per_call}}


def main(argv=None):
    gpu = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backends", default="plain,cpu,dali,nvjpeg,cache")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="DataLoader workers (plain, cpu) / DALI's threads (dali)")
    p.add_argument("--epochs", type=int, default=1,
                   help="timed epochs per backend (the cache: also at least 2 s); more steadies a "
                        "small set's rate on a noisy machine")
    p.add_argument("--rounds", type=int, default=1,
                   help="measure every backend this many times, in turn, and report medians: on a "
                        "shared machine whose speed drifts, each round's ratios compare backends "
                        "measured minutes apart, not one early and one late")
    p.add_argument("--json", help="write the results here as JSON")
    args = p.parse_args(argv)
    if args.epochs < 1:
        p.error(f"--epochs must be >= 1, got {args.epochs}")
    if args.rounds < 1:
        p.error(f"--rounds must be >= 1, got {args.rounds}")
    n = int(os.environ.get("FASTGAN_BENCH_N", 20_000 if gpu else 2_000))
    root = Path(os.environ.get("FASTGAN_BENCH_DATA") or Path(tempfile.gettempdir()) / f"fastgan-bench-{n}")
    make_set(root, n)
    device = torch.device("cuda" if gpu else "cpu")
    results = {"device": torch.cuda.get_device_name() if gpu else f"cpu ({os.cpu_count()} cores)",
               "images": n, "batch": BATCH, "resolution": RESOLUTION, "workers": args.workers,
               "images_per_s": {}}
    backends = []
    for backend in args.backends.split(","):
        name, colon, ahead = backend.partition(":")
        if colon and (name != "nvjpeg" or not ahead.isdigit() or int(ahead) < 1):
            p.error(f"--backends: {backend!r}: only nvjpeg takes a suffix, the batches it decodes "
                    "ahead (nvjpeg:1, nvjpeg:4)")
        if backend == "dali" and not _dali.available():
            print("dali: skipped, DALI is not installed", file=sys.stderr)
        elif name == "nvjpeg" and not _nvjpeg.available():
            print("nvjpeg: skipped, needs a GPU and torchvision", file=sys.stderr)
        else:
            backends.append(backend)
    rates = {b: [] for b in backends}
    for rnd in range(args.rounds):
        for backend in backends:
            rates[backend].append(measure(root, backend, device, args.workers, args.epochs))
            if backend == "nvjpeg" and rnd == 0:
                try:  # a diagnostic: its failure must not cost the backends measured after it
                    probe = probe_nvjpeg(root, device)
                except Exception as exc:  # noqa: BLE001
                    print(f"nvjpeg  decode_jpeg probe failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                else:
                    results["nvjpeg_decode_only"] = probe
                    print("nvjpeg  decode_jpeg alone, images/s by Python threads: "
                          + ", ".join(f"{k}: {v:,}" for k, v in probe["threads"].items())
                          + "; by JPEGs per call (1 thread): "
                          + ", ".join(f"{k}: {v:,}" for k, v in probe["per_call"].items()))
        if args.rounds > 1:
            print(f"round {rnd + 1}: " + ", ".join(f"{b} {rates[b][-1]:,.0f}" for b in backends), flush=True)
    if args.rounds > 1:
        results["rounds"] = {b: [round(v) for v in rates[b]] for b in backends}
    for backend in backends:
        rate = statistics.median(rates[backend])
        results["images_per_s"][backend] = round(rate)
        spread = (f"; median of {args.rounds} rounds, {min(rates[backend]):,.0f}-{max(rates[backend]):,.0f}"
                  if args.rounds > 1 else "")
        print(f"{backend:7s} {rate:12,.0f} images/s  ({n} JPEGs 178x218 -> {BATCH}x3x{RESOLUTION}x{RESOLUTION}, "
              f"{device}, {args.workers} workers{spread})")

    def ratio(a, b):
        """a / b: the median of the rounds' ratios (each round measures both in the same minutes)."""
        each = [x / y for x, y in zip(rates[a], rates[b])]
        spread = f" (median of {len(each)} rounds, {min(each):.2f}-{max(each):.2f})" if len(each) > 1 else ""
        return f"{a} / {b}: {statistics.median(each):.2f}x{spread}"

    # the target's "PIL DataLoader with 2 workers" is common public code's (plain). fastgan's
    # own (cpu) decodes with PIL but resizes with torch, a batch at a time (fastgan.data._pil),
    # since 2026-11-24; dali / cpu is printed beside it, for what DALI adds to that
    target = "" if gpu else " (target on 2 cores: >= 1.5x)"
    if "dali" in rates and "cpu" in rates:
        print(ratio("dali", "cpu"))
    for backend in ("cpu", "dali", "nvjpeg", "cache"):
        if backend in rates and "plain" in rates:
            print(ratio(backend, "plain") + (target if backend == "dali" else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
