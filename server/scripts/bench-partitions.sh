#!/usr/bin/env bash
# Many partitions against few (issue 17): one fresh 3-node cluster of separate processes on
# loopback (real fdatasync), a topic of FEW and one of MANY partitions (both RF 3), then
# `odradek bench produce` (100 B records, 2 producers, acks=all) to each in turn, alternating
# ROUNDS times (the machine is noisy), and the median of each with their ratio.
# Usage: server/scripts/bench-partitions.sh [ROUNDS] [BIN]
#   e.g. server/scripts/bench-partitions.sh 3 target/release/odradek
# Env: RECORDS (default 2000000), FEW (default 16), MANY (default 1000), PORT_BASE (default
#      29600: nodes use PORT_BASE+1.. for peers and PORT_BASE+11.. for clients).
set -euo pipefail
ROUNDS=${1:-3}
BIN=${2:-target/release/odradek}
RECORDS=${RECORDS:-2000000} FEW=${FEW:-16} MANY=${MANY:-1000} PORT_BASE=${PORT_BASE:-29600}
DATA=$(mktemp -d /tmp/odradek-partitions.XXXXXX)
PIDS=()
stop() { kill "${PIDS[@]}" 2>/dev/null || true; wait "${PIDS[@]}" 2>/dev/null || true; }
trap 'stop; rm -rf "$DATA"' EXIT
ulimit -n 20000 2>/dev/null || true
NODES=()
BOOTSTRAP=()
for id in 1 2 3; do
  NODES+=(--node "$id=127.0.0.1:$((PORT_BASE + id))/127.0.0.1:$((PORT_BASE + 10 + id))")
  BOOTSTRAP+=("127.0.0.1:$((PORT_BASE + 10 + id))")
done
export ODRADEK_BOOTSTRAP=$(IFS=,; echo "${BOOTSTRAP[*]}")
for id in 1 2 3; do
  ODRADEK_LOG=warn "$BIN" server --id "$id" --data-dir "$DATA/node-$id" "${NODES[@]}" 2>"$DATA/node-$id.log" &
  PIDS+=($!)
done
# `topic create` waits for every partition's leader.
"$BIN" topic create "few" --partitions "$FEW" --replication-factor 3 >/dev/null
"$BIN" topic create "many" --partitions "$MANY" --replication-factor 3 >/dev/null
sleep 5
echo "settings: 3 nodes, RF 3, $RECORDS records of 100 B, 2 producers, acks all; $FEW vs $MANY partitions; $ROUNDS rounds; $BIN"
declare -A RATES
for round in $(seq 1 "$ROUNDS"); do
  for topic in few many; do
    line=$(timeout 600 "$BIN" bench produce --topic "$topic" --records "$RECORDS" --record-size 100 --producers 2 --acks all 2>/dev/null | tail -1)
    partitions=$FEW
    [ "$topic" = many ] && partitions=$MANY
    echo "round $round, $partitions partitions: $line"
    RATES[$topic]+="$(grep -o '[0-9]* records/s' <<<"$line" | head -1 | cut -d' ' -f1) "
  done
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }
few=$(median "${RATES[few]}")
many=$(median "${RATES[many]}")
echo "median: $FEW partitions $few records/s, $MANY partitions $many records/s ($(awk -v a="$many" -v b="$few" 'BEGIN {printf "%.0f", 100 * a / b}') % of $FEW)"
