#!/usr/bin/env python3
"""Per-stage breakdown of one write (issue 17) from nodes' logs written with `--trace-stages`
and ODRADEK_LOG including `odradek_stages=info`.

Usage: server/scripts/stages.py NODE_LOG [NODE_LOG...]
Prints, per role (the leader's produce requests, the followers' rounds), the p50 / p99 / mean
of each stage in microseconds, in path order. Leader stages (a produce request):
  admit      frame read -> checked and queued to the driver (connection task)
  to_driver  queued -> taken by the driver loop (command queue, wake-up)
  send       taken -> appends handed to the peer transport (rest of the command batch, round
             start, term/vote save when it changed)
  append     sent -> written to the log (pwrite)
  fsync      written -> the leader's own fsync done
  quorum     sent -> first accepting follower response stepped (network, follower round, back)
  commit     max(fsync, quorum) -> taken as committed by a round
  apply      committed -> applied and outcome sent
  wake       outcome sent -> the produce task woken with it
  write      woken -> answer written to the socket (writer task)
Follower stages (a round that wrote appends): append (stepped -> written), fsync, reply
(fsynced -> answers handed to the transport).
"""
import re
import statistics
import sys

ANSI = re.compile(r"\x1b\[[0-9;]*m")
FIELD = re.compile(r"(\w+)=\"?([\w.]+)\"?")
ORDER = {
    "leader": ["admit", "to_driver", "send", "append", "fsync", "quorum", "commit", "apply", "wake", "write", "total"],
    "follower": ["append", "fsync", "reply", "total"],
}


def percentile(values, fraction):
    values = sorted(values)
    return values[min(len(values) - 1, int(fraction * len(values)))]


def main(paths):
    samples = {}
    incomplete = 0
    for path in paths:
        with open(path, errors="replace") as log:
            for line in log:
                line = ANSI.sub("", line)
                if "odradek_stages" not in line:
                    continue
                if "stages incomplete" in line:
                    incomplete += 1
                    continue
                fields = dict(FIELD.findall(line))
                role = fields.get("role")
                if role not in ORDER:
                    continue
                for stage in ORDER[role]:
                    if stage + "_us" in fields:
                        samples.setdefault(role, {}).setdefault(stage, []).append(int(fields[stage + "_us"]))
    if not samples:
        print("no odradek_stages lines (start nodes with --trace-stages and ODRADEK_LOG=...,odradek_stages=info)")
        return 1
    for role, stages in samples.items():
        count = len(stages.get("total", []))
        print(f"{role} ({count} samples): stage p50 / p99 / mean, microseconds")
        for stage in ORDER[role]:
            values = stages.get(stage)
            if values:
                print(f"  {stage:<10} {percentile(values, 0.5):>8} {percentile(values, 0.99):>8} {statistics.mean(values):>10.1f}")
    if incomplete:
        print(f"{incomplete} leader traces incomplete (dropped from a full book)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
