"""Turns a pytest-benchmark JSON file into a markdown report and a short table.

    python benchmarks/report.py BENCH.json [--out REPORT.md] [--title TEXT] [--notes FILE]

Per group: each implementation's median (ms), its interquartile range, GB/s where the
benchmark recorded bytes, and its speed relative to the group's eager PyTorch baseline: the
row named "eager-loop" (a Python loop over the tensors) or "eager-public", else the slowest
row named "eager", else (a group with no eager row) the slowest row, marked "vs slowest".
"""
import argparse
import json
import sys


def _rows(data):
    groups = {}
    for b in data["benchmarks"]:
        groups.setdefault(b["group"] or "", []).append(b)
    for group, items in sorted(groups.items()):
        items.sort(key=lambda b: b["stats"]["median"])
        names = [b["name"].split("[", 1)[-1].rstrip("]") for b in items]
        eager = [i for i, n in enumerate(names) if "eager" in n]  # fastest first
        base = next((i for i in eager if "eager-loop" in names[i] or "eager-public" in names[i]),
                    eager[-1] if eager else None)
        mark = "" if base is not None else " (vs slowest)"
        base_median = items[len(items) - 1 if base is None else base]["stats"]["median"]
        for b, name in zip(items, names):
            yield (group, name, b["stats"]["median"] * 1e3, b["stats"]["iqr"] * 1e3,
                   b.get("extra_info", {}).get("GB/s"), base_median / b["stats"]["median"], mark)


def table(data):
    lines = ["| group | implementation | median ms | IQR ms | GB/s | vs eager |",
             "|---|---|---:|---:|---:|---:|"]
    for group, name, med, iqr, gbs, speed, mark in _rows(data):
        lines.append(f"| {group} | {name} | {med:.4f} | {iqr:.4f} | "
                     f"{'' if gbs is None else f'{gbs:.1f}'} | {speed:.2f}x{mark} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json")
    parser.add_argument("--out")
    parser.add_argument("--title", default="fastgan benchmarks")
    parser.add_argument("--notes", help="a text file (versions, test results) to include verbatim")
    args = parser.parse_args(argv)
    data = json.load(open(args.json))
    m = data.get("machine_info", {})
    c = data.get("commit_info", {})
    head = [f"# {args.title}", "",
            f"- date: {data.get('datetime', '?')}",
            f"- machine: {m.get('node', '?')}, {m.get('cpu', {}).get('brand_raw', '?')}, "
            f"python {m.get('python_version', '?')}",
            f"- commit: {c.get('id', '?')}{' (dirty)' if c.get('dirty') else ''}", ""]
    if args.notes:
        head += ["```", open(args.notes).read().rstrip(), "```", ""]
    report = "\n".join(head + [table(data), ""])
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)
    print(table(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
