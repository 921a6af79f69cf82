#!/usr/bin/env python3
"""Medians of scripts/side-by-side.sh's RESULT lines per system and test, and Odradek's ratios.

usage: side_by_side_summary.py RESULTS_FILE
A line: `RESULT SYSTEM TEST: N records in S s: R records/s, M MB/s; latency ms p50 A, p99 B,
p99.9 C, max D` (or `RESULT odradek idle-1000-partitions: P % of a core per node`).
"""
import re
import statistics
import sys
from collections import defaultdict

FIELDS = {"records/s": r"([\d.]+) records/s", "MB/s": r"([\d.]+) MB/s", "p50": r"p50 ([\d.]+)",
          "p99": r"p99 ([\d.]+)", "p99.9": r"p99\.9 ([\d.]+)", "cpu %": r"([\d.]+) % of a core"}

runs = defaultdict(list)
for line in open(sys.argv[1]):
    match = re.match(r"RESULT (\S+) (\S+): (.*)", line)
    if not match:
        continue
    system, test, rest = match.groups()
    values = {name: float(m.group(1)) for name, pattern in FIELDS.items() if (m := re.search(pattern, rest))}
    runs[(test, system)].append(values)

medians = {}
for (test, system), rows in sorted(runs.items()):
    medians[(test, system)] = {f: statistics.median(r[f] for r in rows) for f in FIELDS if all(f in r for r in rows)}

print(f"{'test':24} {'system':8} {'runs':>4} {'records/s':>11} {'MB/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'p99.9 ms':>8}")
for (test, system), m in medians.items():
    if "cpu %" in m:
        print(f"{test:24} {system:8} {len(runs[(test, system)]):>4}  {m['cpu %']:.0f} % of a core per node")
        continue
    print(f"{test:24} {system:8} {len(runs[(test, system)]):>4} {m.get('records/s', 0):>11.0f} {m.get('MB/s', 0):>8.2f} "
          f"{m.get('p50', 0):>7.2f} {m.get('p99', 0):>7.2f} {m.get('p99.9', 0):>8.2f}")

print("\nOdradek against each peer (throughput: Odradek / peer, higher is better; latency: Odradek / peer, lower is better)")
for (test, system), m in medians.items():
    ours = medians.get((test, "odradek"))
    if system == "odradek" or not ours:
        continue
    if test.startswith("one-at-a-time"):
        parts = [f"{q} x{ours[q] / m[q]:.2f}" for q in ("p50", "p99", "p99.9") if m.get(q)]
    else:
        parts = [f"records/s x{ours['records/s'] / m['records/s']:.2f}"] if m.get("records/s") else []
    print(f"  {test:22} vs {system:5}: {', '.join(parts)}")
many, few = medians.get(("partitions-1000", "odradek")), medians.get(("partitions-16", "odradek"))
if many and few:
    print(f"  1,000 partitions / 16 partitions (Odradek): records/s x{many['records/s'] / few['records/s']:.2f}")
