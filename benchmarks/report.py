"""Turns a pytest-benchmark JSON file into a markdown report and a short table.

    python benchmarks/report.py BENCH.json [MORE.json ...] [--out REPORT.md] [--title TEXT] [--notes FILE]

Several files (one per benchmark file, as benchmarks/gpu_session.sh writes them) make one
report: their results together, the header from the first.

Per group: each implementation's median (ms), its interquartile range, GB/s where the
benchmark recorded bytes, and its speed relative to its eager PyTorch baseline: among the
group's eager rows with the same parameters as the row other than `impl` (so
`256-fastgan-bf16-autocast` is measured against `256-eager-bf16-autocast`, not against
`256-eager-float32`), else among all of the group's eager rows, the row named "eager-loop"
(a Python loop over the tensors) or "eager-public", else the slowest; a group with no eager
row is measured against its slowest row, marked "vs slowest". That baseline is often the
weakest plain code; the "vs best plain" column measures each fastgan row (an `impl` starting
with "fastgan") against the fastest row of its group that is not fastgan's (eager of any
kind or torch.compile), with the same other parameters where the group has one. The header
names the versions the run recorded (torch, triton, fastgan, the device:
benchmarks/conftest.py).
"""
import argparse
import json
import sys


def _others(b):
    """A result's parameters other than its implementation (None: not parametrized by impl)."""
    params = b.get("params") or {}
    return tuple(sorted((k, str(v)) for k, v in params.items() if k != "impl")) if "impl" in params else None


def _baseline(i, items, names, eager):
    """The index of row i's eager baseline (eager: the eager rows' indices, fastest first)."""
    same = [j for j in eager if _others(items[i]) is not None and _others(items[j]) == _others(items[i])]
    close = same or eager
    return next((j for j in close if "eager-loop" in names[j] or "eager-public" in names[j]), close[-1])


def _impl(b):
    return str((b.get("params") or {}).get("impl", ""))


def _best_plain(i, items):
    """The index of the fastest row that is not fastgan's with row i's other parameters (else
    of any parameters), for a fastgan row i; None for other rows or without a plain row
    (items: fastest first)."""
    if not _impl(items[i]).startswith("fastgan"):
        return None
    plain = [j for j, b in enumerate(items) if _impl(b) and not _impl(b).startswith("fastgan")]
    same = [j for j in plain if _others(items[j]) == _others(items[i])]
    return (same or plain or [None])[0]


def _rows(data):
    groups = {}
    for b in data["benchmarks"]:
        groups.setdefault(b["group"] or "", []).append(b)
    for group, items in sorted(groups.items()):
        items.sort(key=lambda b: b["stats"]["median"])
        names = [b["name"].split("[", 1)[-1].rstrip("]") for b in items]
        eager = [i for i, n in enumerate(names) if "eager" in n]  # fastest first
        for i, (b, name) in enumerate(zip(items, names)):
            base = _baseline(i, items, names, eager) if eager else len(items) - 1
            mark = "" if eager else " (vs slowest)"
            best = _best_plain(i, items)
            vs_best = None if best is None else items[best]["stats"]["median"] / b["stats"]["median"]
            yield (group, name, b["stats"]["median"] * 1e3, b["stats"]["iqr"] * 1e3,
                   b.get("extra_info", {}).get("GB/s"), items[base]["stats"]["median"] / b["stats"]["median"],
                   mark, vs_best)


def table(data):
    lines = ["| group | implementation | median ms | IQR ms | GB/s | vs eager | vs best plain |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for group, name, med, iqr, gbs, speed, mark, vs_best in _rows(data):
        lines.append(f"| {group} | {name} | {med:.4f} | {iqr:.4f} | "
                     f"{'' if gbs is None else f'{gbs:.1f}'} | {speed:.2f}x{mark} | "
                     f"{'' if vs_best is None else f'{vs_best:.2f}x'} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="+")
    parser.add_argument("--out")
    parser.add_argument("--title", default="fastgan benchmarks")
    parser.add_argument("--notes", help="a text file (versions, test results) to include verbatim")
    args = parser.parse_args(argv)
    data = _load(args.json[0])
    for path in args.json[1:]:
        data = {**data, "benchmarks": data["benchmarks"] + _load(path)["benchmarks"]}
    m = data.get("machine_info", {})
    c = data.get("commit_info", {})
    head = [f"# {args.title}", "",
            f"- date: {data.get('datetime', '?')}",
            f"- machine: {m.get('node', '?')}, {m.get('cpu', {}).get('brand_raw', '?')}, "
            f"python {m.get('python_version', '?')}",
            f"- commit: {c.get('id', '?')}{' (dirty)' if c.get('dirty') else ''}"]
    fastgan_info = m.get("fastgan")
    if fastgan_info:
        head.append("- " + ", ".join(f"{k} {v}" for k, v in fastgan_info.items()))
    head.append("")
    if args.notes:
        try:
            with open(args.notes) as f:
                head += ["```", f.read().rstrip(), "```", ""]
        except OSError as exc:
            sys.exit(f"report.py: cannot read the notes file {args.notes}: {exc.strerror}")
    report = "\n".join(head + [table(data), ""])
    if args.out:
        try:
            with open(args.out, "w") as f:
                f.write(report)
        except OSError as exc:
            sys.exit(f"report.py: cannot write {args.out}: {exc.strerror}")
    print(table(data))
    return 0


def _load(path):
    """The pytest-benchmark JSON at path; SystemExit with one line saying what is wrong."""
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as exc:
        sys.exit(f"report.py: cannot read {path}: {exc.strerror} (write one with "
                 "pytest benchmarks/ --benchmark-json FILE; --benchmark-disable writes none)")
    except ValueError as exc:
        sys.exit(f"report.py: {path} is not JSON ({exc})")
    benches = data.get("benchmarks") if isinstance(data, dict) else None
    if not isinstance(benches, list) or not all(
            isinstance(b, dict) and {"name", "group", "stats"} <= set(b) for b in benches):
        sys.exit(f"report.py: {path} is not a pytest-benchmark JSON file (no 'benchmarks' list of "
                 "results; a step_e2e.py JSON has its own markdown report)")
    if not benches:
        sys.exit(f"report.py: {path} holds no benchmark results")
    return data


if __name__ == "__main__":
    sys.exit(main())
