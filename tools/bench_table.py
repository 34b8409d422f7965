"""Turn a pytest-benchmark JSON file into Markdown tables for benchmarks/RESULTS.md.

    pytest benchmarks/test_x.py --benchmark-only --benchmark-json=out.json
    python tools/bench_table.py out.json [--baseline torch_addmm]

One table row per benchmark group, one column per implementation (the parametrised ``impl`` or the
test name), cells are median milliseconds; ``--baseline NAME`` adds "NAME / facecore" speed-up columns.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("json_file")
    ap.add_argument("--baseline", action="append", default=[], help="implementation to compare against")
    ap.add_argument("--ours", default="facecore", help="column prefix of facecore's own implementation")
    args = ap.parse_args()
    data = json.load(open(args.json_file))
    rows: dict[str, dict[str, float]] = defaultdict(dict)
    cols: list[str] = []
    for b in data["benchmarks"]:
        params = b.get("params") or {}
        impl = str(params.get("impl", b["name"].split("[")[0]))
        group = b.get("group") or b["name"]
        rows[group][impl] = b["stats"]["median"] * 1e3
        if impl not in cols:
            cols.append(impl)
    m = data.get("machine_info", {})
    c = data.get("commit_info", {})
    print(f"<!-- {m.get('cpu', {}).get('brand_raw', '')}; {data.get('datetime', '')}; "
          f"commit {str(c.get('id', ''))[:7]} -->")
    ours = [x for x in cols if x.startswith(args.ours)]
    extra = [f"{base} / {o}" for base in args.baseline for o in ours]
    print("| group | " + " | ".join(cols + extra) + " |")
    print("|---" * (1 + len(cols) + len(extra)) + "|")
    for group, r in rows.items():
        cells = [f"{r[x]:.3g}" if x in r else "–" for x in cols]
        for base in args.baseline:
            for o in ours:
                cells.append(f"{r[base] / r[o]:.2f}×" if base in r and o in r else "–")
        print(f"| {group} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
