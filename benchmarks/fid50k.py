"""FID-50k of a 64x64 generator, end to end: generation, Inception features, statistics, FID.

    python benchmarks/fid50k.py                    # a GPU: 50,000 samples (the issue's target: < 60 s)
    python benchmarks/fid50k.py --num 64           # anywhere: a small run, so the script stays tested
    python benchmarks/fid50k.py --json out.json

The generator is fastgan's DCGAN 64x64 generator, randomly initialized (its speed does not
depend on its weights). The Inception weights are $FASTGAN_INCEPTION_WEIGHTS when set,
else random weights of the exact network (fastgan.metrics.inception.random_inception): the
time is the same, the FID value is then meaningless. The reference statistics are those of
a fixed set of random 64x64 images, computed (and cached) before the timed run, as a real
dataset's would be by an earlier `fastgan eval`.

Prints a table: seconds for the whole evaluation (fastgan.metrics.Evaluator, the same code
`fastgan eval` runs), and separately for generation alone, Inception features alone and the
statistics + FID alone, each measured after a warm-up.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    gpu = torch.cuda.is_available()
    p.add_argument("--num", type=int, default=50_000 if gpu else 64)
    p.add_argument("--batch-size", type=int, default=500 if gpu else 16)
    p.add_argument("--json", help="write the measurements here as JSON")
    args = p.parse_args(argv)

    from fastgan import models
    from fastgan.metrics import evaluate as ev
    from fastgan.metrics.fid import feature_stats, fid_from_stats
    from fastgan.metrics.inception import inception_features, load_inception, random_inception

    device = torch.device("cuda" if gpu else "cpu")
    torch.backends.cudnn.benchmark = True
    real_weights = bool(os.environ.get("FASTGAN_INCEPTION_WEIGHTS"))
    inception = load_inception(device=device) if real_weights else random_inception(0).to(device)
    torch.manual_seed(0)
    g = models.build("dcgan", resolution=64, channels=3).generator.to(device).eval()
    g.z_dim = 100

    # reference statistics: random images (a stand-in for a cached dataset's)
    with tempfile.TemporaryDirectory() as tmp:
        gen = torch.Generator().manual_seed(1)
        ref_images = torch.rand(min(args.num, 2048), 3, 64, 64, generator=gen) * 2 - 1
        feats, _ = inception_features(inception, ref_images.to(device), batch_size=args.batch_size)
        mu, sigma = feature_stats(feats)
        ref = os.path.join(tmp, "ref.npz")
        np.savez(ref, mu=mu.cpu().numpy(), sigma=sigma.cpu().numpy())

        e = ev.Evaluator("fid", data="bench", resolution=64, channels=3, num=args.num, ref=ref,
                         inception=inception, device=device, batch_size=args.batch_size,
                         progress=sys.stderr.isatty(), verbose=False)
        e.reference()
        ev.Evaluator("fid", data="bench", resolution=64, channels=3, num=min(args.num, 2 * args.batch_size),
                     ref=ref, inception=inception, device=device, batch_size=args.batch_size,
                     progress=False, verbose=False)(g)                                  # warm-up
        _sync()
        t0 = time.perf_counter()
        result = e(g)
        _sync()
        total = time.perf_counter() - t0

    # the parts, each alone
    _sync()
    t0 = time.perf_counter()
    images = torch.cat(list(ev.generate(g, args.num, batch_size=args.batch_size, device=device)))
    _sync()
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    feats = torch.cat([inception_features(inception, b, batch_size=args.batch_size)[0]
                       for b in images.split(args.batch_size)])
    _sync()
    t_feat = time.perf_counter() - t0
    t0 = time.perf_counter()
    m, s = feature_stats(feats)
    fid_from_stats(m, s, mu, sigma)
    _sync()
    t_fid = time.perf_counter() - t0

    name = torch.cuda.get_device_name(0) if gpu else "cpu"
    rows = {"device": name, "torch": torch.__version__, "num": args.num, "batch_size": args.batch_size,
            "inception_weights": "real" if real_weights else "random (timing only)",
            "total_s": total, "images_per_s": args.num / total, "generation_s": t_gen,
            "features_s": t_feat, "stats_fid_s": t_fid, "fid": result["fid"]}
    print(f"| FID-{args.num} end to end on {name} | seconds |")
    print("|---|---|")
    for k in ("total_s", "generation_s", "features_s", "stats_fid_s"):
        print(f"| {k[:-2]} | {rows[k]:.2f} |")
    print(f"| images/s (end to end) | {rows['images_per_s']:.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
