#!/usr/bin/env bash
# Reads off the write path (issue 17): produce throughput alone vs while one consumer reads the
# same topic from the beginning, per server binary, alternating binaries round by round and the
# order of the two runs inside a round (the machine is noisy). Each round and binary: a fresh
# 3-node cluster of separate processes on loopback (real fdatasync), a topic prefilled with
# PREFILL records (the consumer's backlog), then RECORDS more records produced alone and
# RECORDS produced while `bench consume --follow-idle-ms` reads from offset 0 and follows.
# Usage: server/scripts/bench-read-write.sh ROUNDS CLIENT_BIN SERVER_BIN [SERVER_BIN...]
#   CLIENT_BIN runs `bench` (it needs `--follow-idle-ms`); SERVER_BINs run the nodes.
# Env: PREFILL (default 1000000), RECORDS (default 1000000), SIZE (100), PARTITIONS (1),
#      PRODUCERS (2). Ports 25101-25103 (peers) and 25191-25193 (clients).
set -euo pipefail
ROUNDS=${1:?rounds}; CLIENT=${2:?client binary}; shift 2
[ $# -ge 1 ] || { echo "usage: $0 ROUNDS CLIENT_BIN SERVER_BIN [SERVER_BIN...]" >&2; exit 2; }
PREFILL=${PREFILL:-1000000} RECORDS=${RECORDS:-1000000} SIZE=${SIZE:-100} PARTITIONS=${PARTITIONS:-1} PRODUCERS=${PRODUCERS:-2}
DATA=$(mktemp -d /tmp/odradek-rw.XXXXXX)
PIDS=()
stop() { kill "${PIDS[@]}" 2>/dev/null || true; wait "${PIDS[@]}" 2>/dev/null || true; PIDS=(); }
trap 'stop; rm -rf "$DATA"' EXIT
NODES=(--node 1=127.0.0.1:25191/127.0.0.1:25101 --node 2=127.0.0.1:25192/127.0.0.1:25102 --node 3=127.0.0.1:25193/127.0.0.1:25103)
export ODRADEK_BOOTSTRAP=127.0.0.1:25101,127.0.0.1:25102,127.0.0.1:25103
produce() { # $1 records -> the produce summary line
  timeout 600 "$CLIENT" bench produce --topic rw --records "$1" --record-size "$SIZE" --partitions "$PARTITIONS" \
    --producers "$PRODUCERS" --acks all 2>/dev/null | grep -E '^produce:' || echo "produce: failed"
}
rate() { grep -oE '[0-9]+ records/s' <<<"$1" | head -1 | cut -d' ' -f1; }
declare -A RATIOS ALONE WITH
for round in $(seq 1 "$ROUNDS"); do
  for bin in "$@"; do
    rm -rf "${DATA:?}"/n*
    for id in 1 2 3; do
      ODRADEK_LOG=warn "$bin" server --id "$id" --data-dir "$DATA/n$id" "${NODES[@]}" 2>"$DATA/n$id.log" &
      PIDS+=($!)
    done
    for _ in $(seq 1 120); do "$CLIENT" cluster status >/dev/null 2>&1 && break; sleep 0.5; done
    produce "$PREFILL" >/dev/null
    order="alone with"; [ $((round % 2)) -eq 0 ] && order="with alone"
    for run in $order; do
      if [ "$run" = alone ]; then
        alone=$(produce "$RECORDS")
      else
        timeout 600 "$CLIENT" bench consume --topic rw --follow-idle-ms 3000 2>/dev/null | grep -E '^consume' >"$DATA/consume.txt" &
        consumer=$!
        with=$(produce "$RECORDS")
        wait "$consumer" || true
      fi
    done
    stop
    a=$(rate "$alone"); w=$(rate "$with")
    echo "round $round $bin"
    echo "  alone:         $alone"
    echo "  with consumer: $with"
    echo "  consumer:      $(cat "$DATA/consume.txt" 2>/dev/null || echo failed)"
    if [ -n "$a" ] && [ -n "$w" ]; then
      ratio=$(python3 -c "print('%.3f' % ($w / $a))")
      echo "  ratio with/alone: $ratio"
      RATIOS[$bin]+="$ratio "; ALONE[$bin]+="$a "; WITH[$bin]+="$w "
    fi
  done
done
echo "== medians over $ROUNDS rounds (produce records/s alone, with one consumer, ratio of each round's pair)"
for bin in "$@"; do
  python3 -c '
import statistics, sys
name, alone, with_, ratios = sys.argv[1], *[[float(x) for x in arg.split()] for arg in sys.argv[2:]]
if not ratios:
    print("%s: no complete round" % name); sys.exit()
print("%s: alone %.0f  with consumer %.0f  ratio %.2f  (%d rounds; ratios %s)" % (name, statistics.median(alone),
      statistics.median(with_), statistics.median(ratios), len(ratios), " ".join("%.2f" % r for r in ratios)))
' "$bin" "${ALONE[$bin]:-}" "${WITH[$bin]:-}" "${RATIOS[$bin]:-}"
done
