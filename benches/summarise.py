#!/usr/bin/env python3
"""Prints the results of `cargo bench --bench compare` as a markdown table.

Reads criterion's `target/criterion/compare/<function>/<size>/new/{estimates,benchmark}.json`
(the layout `benches/compare.rs` produces) and prints, per size: validate-only, two parses,
full compare on identical bodies, with 5 differences, with volatile values only (light) and with
three differences per order (heavy), each as time, MB/s (bytes
of both bodies, as the bench declares with `Throughput::Bytes`) and compares/s, plus the ratio
time(two parses) / time(full compare, 5 differences) that the comparator is held to (>= 0.85).
If the bench ran with `--features sonic`, a second row per size shows the sonic-rs parses.

Usage: python3 benches/summarise.py [--target DIR] [--stat mean|median]
"""

import argparse
import json
import os
import sys

SIZES = ["1KB", "20KB", "600KB", "2MB"]
GOAL = 0.85


def load(root, function, size, stat):
    d = os.path.join(root, "criterion", "compare", function, size, "new")
    try:
        with open(os.path.join(d, "estimates.json")) as f:
            est = json.load(f)
        with open(os.path.join(d, "benchmark.json")) as f:
            bench = json.load(f)
    except FileNotFoundError:
        return None
    throughput = bench.get("throughput") or {}
    return {"ns": est[stat]["point_estimate"], "bytes": throughput.get("Bytes") or throughput.get("BytesDecimal")}


def fmt_time(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def cell(m):
    if m is None:
        return "—"
    per_s = 1e9 / m["ns"]
    mbs = f"{m['bytes'] * per_s / 1e6:,.0f} MB/s" if m["bytes"] else "? MB/s"
    return f"{fmt_time(m['ns'])} · {mbs} · {per_s:,.0f}/s"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default=os.environ.get("CARGO_TARGET_DIR", "target"), help="cargo target directory")
    ap.add_argument("--stat", default="median", choices=["mean", "median"], help="criterion estimate to report")
    args = ap.parse_args()

    header = [
        "size (one body)",
        "validate-only",
        "two parses",
        "full compare, identical",
        "full compare, 5 diffs",
        "full compare, light (volatile only)",
        "full compare, heavy",
        "ratio two parses / compare (5 diffs)",
        "parser",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] * len(header)) + "|")
    failed = []
    found = False
    for size in SIZES:
        rows = [("two_parses", "serde_json")]
        if load(args.target, "two_parses_sonic", size, args.stat):
            rows.append(("two_parses_sonic", "sonic-rs (parses only)"))
        validate = load(args.target, "validate_only", size, args.stat)
        identical = load(args.target, "full_compare_identical", size, args.stat)
        diffs = load(args.target, "full_compare_5diffs", size, args.stat)
        light = load(args.target, "full_compare_light", size, args.stat)
        heavy = load(args.target, "full_compare_heavy", size, args.stat)
        for function, parser in rows:
            parses = load(args.target, function, size, args.stat)
            if parses is None:
                continue
            found = True
            ratio = f"{parses['ns'] / diffs['ns']:.2f}" if diffs else "—"
            if diffs and function == "two_parses" and parses["ns"] / diffs["ns"] < GOAL:
                failed.append(size)
            print(f"| {size} | {cell(validate)} | {cell(parses)} | {cell(identical)} | {cell(diffs)} | {cell(light)} | {cell(heavy)} | {ratio} | {parser} |")
    if not found:
        sys.exit(f"no results under {args.target}/criterion/compare: run `cargo bench --bench compare` first")
    print()
    print(f"Each cell: {args.stat} time per iteration · MB/s over both bodies · iterations (compares) per second.")
    if failed:
        print(f"Below the {GOAL} goal: {', '.join(failed)}.")


if __name__ == "__main__":
    main()
