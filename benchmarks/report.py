"""Turns a pytest-benchmark JSON file into a markdown report and a short table.

    python benchmarks/report.py BENCH.json [--out REPORT.md] [--title TEXT] [--notes FILE]

Per group: each implementation's median (ms), its interquartile range, GB/s where the
benchmark recorded bytes, and its speed relative to the group's eager baseline
(the row whose name contains "eager-loop", else the slowest row).
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
        base = next((b for b in items if "eager-loop" in b["name"]), items[-1])
        for b in items:
            name = b["name"].split("[", 1)[-1].rstrip("]")
            yield (group, name, b["stats"]["median"] * 1e3, b["stats"]["iqr"] * 1e3,
                   b.get("extra_info", {}).get("GB/s"), base["stats"]["median"] / b["stats"]["median"])


def table(data):
    lines = ["| group | implementation | median ms | IQR ms | GB/s | vs eager |",
             "|---|---|---:|---:|---:|---:|"]
    for group, name, med, iqr, gbs, speed in _rows(data):
        lines.append(f"| {group} | {name} | {med:.4f} | {iqr:.4f} | "
                     f"{'' if gbs is None else f'{gbs:.1f}'} | {speed:.2f}x |")
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
