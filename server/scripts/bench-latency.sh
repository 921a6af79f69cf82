#!/usr/bin/env bash
# One acknowledged write at a time: compares `odradek` binaries on the same machine, alternating
# them round by round (the machine is noisy), and prints each round's percentiles and the median
# per binary. Each round starts a fresh 3-node cluster of separate processes on loopback (real
# fdatasync), creates a 1-partition RF-3 topic and sends 100 B records at a steady rate with
# linger 0, acks=all, idempotent: the latency of one write (issue 17).
# Usage: server/scripts/bench-latency.sh [ROUNDS] BIN [BIN...]
#   e.g. server/scripts/bench-latency.sh 3 /tmp/odradek-before target/release/odradek
# Env: RECORDS (default 3000), RATE (default 300), SIZE (default 100), EXTRA (more bench flags),
#      SETTLE_S (default 2): seconds between creating the topic (which waits for its leader) and
#      timing, so a just-started cluster's one-off work (nodes finishing joining, the new group's
#      first election and its leader's first entry) is not counted as the latency of one write.
#      STAGES=1: nodes run with --trace-stages (binaries that have it) and the per-stage
#      breakdown of every binary's rounds is printed at the end (server/scripts/stages.py).
set -euo pipefail
ROUNDS=${1:?rounds}; shift
[ $# -ge 1 ] || { echo "usage: $0 ROUNDS BIN [BIN...]" >&2; exit 2; }
RECORDS=${RECORDS:-3000} RATE=${RATE:-300} SIZE=${SIZE:-100}
DATA=$(mktemp -d /tmp/odradek-latency.XXXXXX)
PIDS=()
stop() { kill "${PIDS[@]}" 2>/dev/null || true; wait "${PIDS[@]}" 2>/dev/null || true; PIDS=(); }
trap 'stop; rm -rf "$DATA"' EXIT
NODES=(--node 1=127.0.0.1:29301/127.0.0.1:29291 --node 2=127.0.0.1:29302/127.0.0.1:29292 --node 3=127.0.0.1:29303/127.0.0.1:29293)
export ODRADEK_BOOTSTRAP=127.0.0.1:29291,127.0.0.1:29292,127.0.0.1:29293
declare -A RESULTS
SCRIPTS=$(cd "$(dirname "$0")" && pwd)
STAGE_FLAGS=() LOG_FILTER=warn
if [ "${STAGES:-0}" = 1 ]; then STAGE_FLAGS=(--trace-stages) LOG_FILTER=warn,odradek_stages=info; fi
for round in $(seq 1 "$ROUNDS"); do
  for bin in "$@"; do
    rm -rf "${DATA:?}"/n*
    for id in 1 2 3; do
      ODRADEK_LOG=$LOG_FILTER "$bin" server --id "$id" --data-dir "$DATA/n$id" "${NODES[@]}" "${STAGE_FLAGS[@]}" 2>"$DATA/n$id.log" &
      PIDS+=($!)
    done
    for _ in $(seq 1 120); do "$bin" cluster status >/dev/null 2>&1 && break; sleep 0.5; done
    timeout 60 "$bin" topic create lat --partitions 1 --replication-factor 3 >/dev/null 2>&1 || echo "round $round $bin :: topic create failed"
    sleep "${SETTLE_S:-2}"
    line=$(timeout 300 "$bin" bench produce --topic lat --records "$RECORDS" --record-size "$SIZE" --partitions 1 \
      --producers 1 --acks all --rate "$RATE" --linger-ms 0 ${EXTRA:-} 2>/dev/null | grep -E '^produce:' || echo "produce: failed")
    stop
    echo "round $round $bin :: $line"
    if [ "${STAGES:-0}" = 1 ]; then cat "$DATA"/n?.log >>"$DATA/stages.$(echo "$bin" | md5sum | cut -c1-8).log"; fi
    RESULTS[$bin]+="$line"$'\n'
  done
done
echo "== medians over $ROUNDS rounds (p50 / p99 / p99.9 in ms)"
for bin in "$@"; do
  printf '%s' "${RESULTS[$bin]}" | python3 -c '
import re, statistics, sys
rows = [dict(re.findall(r"(p50|p99\.9|p99)[ =]+([0-9.]+)", l)) for l in sys.stdin if l.strip()]
rows = [r for r in rows if r]
med = lambda k: statistics.median(float(r[k]) for r in rows) if rows and all(k in r for r in rows) else float("nan")
print("%s: p50 %.2f  p99 %.2f  p99.9 %.2f  (%d rounds)" % (sys.argv[1], med("p50"), med("p99"), med("p99.9"), len(rows)))
' "$bin"
done
if [ "${STAGES:-0}" = 1 ]; then
  for bin in "$@"; do
    echo "== stages of $bin over $ROUNDS rounds"
    python3 "$SCRIPTS/stages.py" "$DATA/stages.$(echo "$bin" | md5sum | cut -c1-8).log" || true
  done
fi
