#!/usr/bin/env python3
"""Prints the latest criterion estimates of the hot_paths benchmarks as a markdown table.

Usage: python3 bench/microbench_table.py [CRITERION_DIR]   (default: target/criterion)

For each benchmark: the median, and criterion's typical time (the regression slope, or the
mean where there is none) with its 95% confidence interval, as criterion prints it.
"""

import json
import pathlib
import sys


def fmt(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    if ns >= 100:
        return f"{ns:.0f} ns"
    return f"{ns:.1f} ns"


def main() -> None:
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
    rows = []
    for bench in root.glob("**/new/benchmark.json"):
        meta = json.loads(bench.read_text())
        est = json.loads((bench.parent / "estimates.json").read_text())
        typical = est.get("slope") or est["mean"]
        ci = typical["confidence_interval"]
        rows.append((meta["full_id"], est["median"]["point_estimate"], typical["point_estimate"], ci))
    if not rows:
        sys.exit(f"no criterion results under {root}")
    order = ["envelope", "frame", "wire", "dispatch", "reply"]
    rows.sort(key=lambda r: (order.index(r[0].split("/")[0]) if r[0].split("/")[0] in order else 99, r[0]))
    group = None
    for full_id, median, point, ci in rows:
        g = full_id.split("/")[0]
        if g != group:
            group = g
            print(f"\n### {g}\n")
            print("| benchmark | median | typical [95% CI] |")
            print("| --- | ---: | ---: |")
        name = full_id[len(g) + 1:]
        print(f"| `{name}` | {fmt(median)} | {fmt(point)} [{fmt(ci['lower_bound'])}, {fmt(ci['upper_bound'])}] |")


if __name__ == "__main__":
    main()
