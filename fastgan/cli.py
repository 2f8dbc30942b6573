"""The `fastgan` command (also `python -m fastgan`, which torchrun needs).

Subcommands: info. train, sample, eval, models and data arrive with the trainer,
data and metrics work. Errors are one line on stderr and a non-zero exit.
"""
import argparse
import json
import sys

from fastgan._backend import BackendUnavailable


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def _info(args):
    import fastgan
    from fastgan._info import format_info

    d = fastgan.info()
    print(json.dumps(d, indent=2) if args.json else format_info(d))
    return 0


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line and exit 2, instead of argparse's usage block.
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    from fastgan._version import __version__

    parser = _Parser(
        prog="fastgan", description="Train the classic GAN family fast on one GPU or many.")
    parser.add_argument("--version", action="version", version=f"fastgan {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                parser_class=_Parser)

    p = sub.add_parser("info", help="versions, devices and which kernel backends run here",
                       description="Report fastgan's, torch's and triton's versions, the devices, "
                                   "the compiled extension, and which backends are available "
                                   "on each device type (and why any is not).")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_info)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (CLIError, ValueError, FileNotFoundError, BackendUnavailable) as exc:
        print(f"fastgan {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fastgan {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
