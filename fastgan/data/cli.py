"""`fastgan data prepare` and `fastgan data validate` (registered by fastgan/cli.py)."""
import pathlib
import sys


def _prepare(args):
    from fastgan.data.tools import prepare

    if pathlib.Path(args.out).is_dir():  # before decoding anything; --overwrite never replaces a folder
        raise ValueError(f"--out {args.out} is a folder; name the file to write, e.g. "
                         f"{pathlib.Path(args.out) / 'data.fgimg'}")
    m = prepare(args.path, args.out, resolution=args.resolution, crop=args.crop,
                channels=args.channels, overwrite=args.overwrite, progress=not args.quiet)
    print(f"wrote {args.out}: {m['count']} images {m['resolution']}x{m['resolution']}x{m['channels']} "
          f"(crop {m['crop'] or 'largest square'}, {len(m['classes'])} classes, "
          f"{len(m['skipped'])} files skipped, decoded with {m['decoder']}), sha256 {m['sha256'][:16]}...")
    return 0


def _validate(args):
    from fastgan.data.tools import validate

    r = validate(args.path, crop=args.crop, channels=args.channels, resolution=args.resolution,
                 progress=sys.stderr.isatty())
    for name, why in r["bad"]:
        print(f"bad        {name}: {why}")
    for name, note in r["converted"]:
        print(f"converted  {name}: {note}")
    m = r["prepared"]
    if m is not None:
        print(f"prepared file: {m['count']} images {m['resolution']}x{m['resolution']}x{m['channels']}, "
              f"crop {m['crop'] or 'largest square'}, source {m['source']}, checksum ok")
    print(f"{r['total']} files: {r['usable']} usable, {len(r['bad'])} bad, {len(r['converted'])} converted")
    return 0 if not r["bad"] else 1


def register(subparsers):
    """Adds `data prepare` and `data validate` to fastgan's subcommands."""
    p = subparsers.add_parser("data", help="prepare a dataset for fast loading, or check its files",
                              description="Decode a dataset once into a prepared file, or list its bad files.")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    def common(q, what='a folder of images, a .zip of them, or "digits"'):
        q.add_argument("path", help=what)
        q.add_argument("--resolution", type=int, default=64, help="output side in pixels (default 64)")
        q.add_argument("--crop", type=int, default=None,
                       help="center crop side before resizing (default: the largest square, 178 on CelebA)")
        q.add_argument("--channels", type=int, choices=(1, 3), default=3, help="3: RGB (default), 1: gray")

    q = sub.add_parser("prepare", help="decode once into one uint8 file + manifest",
                       description="Decode every usable image once (the fastest decoder available) "
                                   "into one uint8 file with its manifest; train from it with --data FILE.")
    common(q)
    q.add_argument("--out", required=True, help="the prepared file to write")
    q.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=_prepare, parser=q)

    q = sub.add_parser("validate", help="list every bad file and why; exit 1 if any",
                       description="Check and decode every file; list the bad ones (corrupt, truncated, "
                                   "not an image, smaller than the crop) and the converted ones "
                                   "(grayscale, CMYK, ...). Exit status 0 when all are usable, else 1.")
    common(q, 'a folder of images, a .zip of them, "digits", or a prepared file')
    q.set_defaults(func=_validate, parser=q)
