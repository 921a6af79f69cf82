#!/usr/bin/env bash
# Runs the produce/consume benchmarks of BENCHMARKS.md: a 3-node cluster of separate
# `odradek server` processes on loopback (fresh data dirs), then `odradek bench` against it.
# Usage: server/scripts/bench-cluster.sh [records-per-run]   (needs a release build:
#   cargo build --release -p odradek-server --bin odradek)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${ODRADEK_BIN:-target/release/odradek}
RECORDS=${1:-300000}
DATA=$(mktemp -d /tmp/odradek-bench.XXXXXX)
NODES=(--node 1=127.0.0.1:29101/127.0.0.1:29091 --node 2=127.0.0.1:29102/127.0.0.1:29092 --node 3=127.0.0.1:29103/127.0.0.1:29093)
PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT
for id in 1 2 3; do
  ODRADEK_LOG=warn "$BIN" server --id "$id" --data-dir "$DATA/node-$id" "${NODES[@]}" 2>"$DATA/node-$id.log" &
  PIDS+=($!)
done
export ODRADEK_BOOTSTRAP=127.0.0.1:29091,127.0.0.1:29092,127.0.0.1:29093
for spec in "100 1" "100 6" "1024 1" "1024 6"; do
  set -- $spec
  size=$1; partitions=$2
  records=$RECORDS
  [ "$size" -gt 100 ] && records=$((RECORDS / 4))
  topic="bench-$size-$partitions"
  timeout 600 "$BIN" bench produce --topic "$topic" --records "$records" --record-size "$size" \
    --partitions "$partitions" --producers 2 --acks all 2>/dev/null
  timeout 600 "$BIN" bench consume --topic "$topic" 2>/dev/null
done
# Latency at a steady, moderate load (no queueing behind an unlimited burst).
timeout 600 "$BIN" bench produce --topic bench-rate --records 100000 --record-size 1024 --partitions 6 \
  --producers 1 --acks all --rate 10000 2>/dev/null
