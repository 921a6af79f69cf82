#!/usr/bin/env bash
# Re-replication after a node is added, throttled vs not (issue 15: "catch-up traffic cannot
# starve produce"). Per run: a fresh 3-node cluster of separate `odradek server` processes on
# loopback (real files, fdatasync), every node started with
# --learner-catch-up-bytes-per-second THROTTLE (0: unlimited, the default); topic `moved` of
# PARTITIONS partitions (replication 3) filled with DATA_MB MB of 1 KiB records (unlimited
# rate); then one producer sends RATE records/s of 1 KiB (acks=all, idempotent) to the same
# topic for the whole measurement, logging every ack's latency; after BASE_S seconds of that
# baseline node 4 joins (--join, same throttle), `odradek cluster rebalance` moves replicas onto
# it (learners catch up from the partition leaders, then the moves complete), and the script
# polls `odradek cluster status` until no reassignment is in progress (the catch-up time, from
# the rebalance to the last move's completion); TAIL_S seconds later the producer stops.
# Prints per window (baseline, catch-up, after) produce throughput (acks/s, by ack time) and
# ack latency p50/p99/p99.9/max, and the catch-up time.
#
# MOVE=reassign instead moves one partition, partition 0, onto the new node with `odradek topic
# reassign moved --partition 0 --replicas 2,3,4` (node 4 catches up the whole partition from its
# leader, then node 1's replica leaves): with PARTITIONS=1 and DATA_MB=1024 this is the time to
# re-replicate a 1 GiB partition to a new node.
#
#   scripts/rebalance-bench.sh [BIN]       # e.g. THROTTLE=0 scripts/rebalance-bench.sh target/release/odradek
#
# Env: THROTTLE (bytes/s per leader node, default 0 = unlimited), DATA_MB (default 300),
# PARTITIONS (default 6), RATE (records/s, default 2000), BASE_S (default 15), TAIL_S (default 5),
# CATCH_UP_MAX_S (default 600), PORT_BASE (default 25100: peers PORT_BASE+1..4, clients
# PORT_BASE+101..104), MOVE (rebalance, the default, or reassign), KEEP=1 keeps the data directory
# and logs, SERVER_LOG (the servers' ODRADEK_LOG, default warn) and SERVER_ARGS (more server
# flags, e.g. --trace-stages with SERVER_LOG=warn,odradek_stages=info: the windows' epoch
# milliseconds are printed to cut the logs by).
set -euo pipefail
BIN=${1:-target/release/odradek}
THROTTLE=${THROTTLE:-0} DATA_MB=${DATA_MB:-300} PARTITIONS=${PARTITIONS:-6} RATE=${RATE:-2000}
BASE_S=${BASE_S:-15} TAIL_S=${TAIL_S:-5} CATCH_UP_MAX_S=${CATCH_UP_MAX_S:-600} PORT_BASE=${PORT_BASE:-25100}
MOVE=${MOVE:-rebalance} SERVER_LOG=${SERVER_LOG:-warn}
read -r -a SERVER_ARGS <<<"${SERVER_ARGS:-}"
[[ $MOVE == rebalance || $MOVE == reassign ]] || { echo "MOVE must be rebalance or reassign" >&2; exit 2; }
[[ -x $BIN ]] || { echo "no odradek binary at $BIN" >&2; exit 2; }
(( DATA_MB >= 1 && DATA_MB <= 20000 )) || { echo "DATA_MB must be within 1..=20000" >&2; exit 2; }
(( RATE >= 1 && RATE <= 100000 )) || { echo "RATE must be within 1..=100000" >&2; exit 2; }
DATA=$(mktemp -d /tmp/odradek-rebalance.XXXXXX)
PIDS=()
stop() { kill "${PIDS[@]}" 2>/dev/null || true; wait "${PIDS[@]}" 2>/dev/null || true; PIDS=(); }
trap 'stop; [[ ${KEEP:-0} == 1 ]] && echo "kept $DATA" || rm -rf "$DATA"' EXIT
member() { echo "$1=127.0.0.1:$((PORT_BASE + $1))/127.0.0.1:$((PORT_BASE + 100 + $1))"; }
NODES=()
for id in 1 2 3; do NODES+=(--node "$(member "$id")"); done
export ODRADEK_BOOTSTRAP=127.0.0.1:$((PORT_BASE + 101)),127.0.0.1:$((PORT_BASE + 102)),127.0.0.1:$((PORT_BASE + 103))
now_ms() { date +%s%3N; }

echo "rebalance-bench: ${MOVE}, throttle ${THROTTLE} B/s, ${DATA_MB} MB over ${PARTITIONS} partitions (RF 3), produce ${RATE} x 1 KiB/s, binary $BIN ($(uname -m), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
for id in 1 2 3; do
    ODRADEK_LOG=$SERVER_LOG "$BIN" server --id "$id" --data-dir "$DATA/n$id" "${NODES[@]}" \
        --learner-catch-up-bytes-per-second "$THROTTLE" ${SERVER_ARGS[@]+"${SERVER_ARGS[@]}"} 2>"$DATA/n$id.log" &
    PIDS+=($!)
done
up=0
for _ in $(seq 1 240); do "$BIN" cluster status >/dev/null 2>&1 && { up=1; break; }; sleep 0.5; done
(( up )) || { echo "the cluster did not come up" >&2; tail -20 "$DATA"/n1.log >&2; exit 1; }

records=$((DATA_MB * 1000 * 1000 / 1024))
fill_start=$(now_ms)
"$BIN" bench produce -t moved --partitions "$PARTITIONS" --replication-factor 3 --records "$records" --record-size 1024 \
    --producers 2 2>&1 | grep '^produce:' | sed 's/^/fill: /'
echo "fill: $(( ($(now_ms) - fill_start) / 1000 )) s"

rm -f "$DATA/stop"
duration_max=$((BASE_S + CATCH_UP_MAX_S + TAIL_S + 60))
"$BIN" bench produce -t moved --records $((RATE * duration_max)) --record-size 1024 --rate "$RATE" \
    --latency-log "$DATA/latency" --stop-file "$DATA/stop" >"$DATA/produce.out" 2>&1 &
producer=$!
produce_start=$(now_ms)
sleep "$BASE_S"

join_at=$(now_ms)
ODRADEK_LOG=$SERVER_LOG "$BIN" server --id 4 --data-dir "$DATA/n4" --node "$(member 4)" --join "127.0.0.1:$((PORT_BASE + 101))" \
    --learner-catch-up-bytes-per-second "$THROTTLE" ${SERVER_ARGS[@]+"${SERVER_ARGS[@]}"} 2>"$DATA/n4.log" &
PIDS+=($!)
joined=0
for _ in $(seq 1 240); do
    "$BIN" cluster status 2>/dev/null | grep -Eq "^  4 .* up" && { joined=1; break; }
    sleep 0.25
done
(( joined )) || { echo "node 4 did not join" >&2; tail -20 "$DATA/n4.log" >&2; exit 1; }
rebalance_at=$(now_ms)
if [[ $MOVE == reassign ]]; then
    "$BIN" topic reassign moved --partition 0 --replicas 2,3,4
else
    "$BIN" cluster rebalance
fi
done_at=0
deadline=$(( $(now_ms) + CATCH_UP_MAX_S * 1000 ))
while (( $(now_ms) < deadline )); do
    if "$BIN" cluster status 2>/dev/null | grep -q '^Reassignments in progress: none'; then done_at=$(now_ms); break; fi
    sleep 0.5
done
(( done_at > 0 )) || echo "catch-up not done within ${CATCH_UP_MAX_S} s: the catch-up window ends there"
(( done_at > 0 )) || done_at=$(now_ms)
sleep "$TAIL_S"
stopped_at=$(now_ms)
touch "$DATA/stop"
wait "$producer" || true
grep '^produce:' "$DATA/produce.out" | sed 's/^/steady /'
"$BIN" cluster status 2>/dev/null | grep -E '^  [0-9]+ |^moved' | head -12 || true
echo "epoch ms: produce $produce_start, ${MOVE} $rebalance_at, done $done_at, stopped $stopped_at"
echo "node 4 joined in $(( (rebalance_at - join_at) )) ms; catch-up (${MOVE} to last move complete): $(( done_at - rebalance_at )) ms"
python3 - "$DATA/latency" "$produce_start" "$rebalance_at" "$done_at" "$stopped_at" <<'EOF'
import sys
path, start, rebalance, done, stopped = sys.argv[1], *map(int, sys.argv[2:])
rows = [tuple(map(int, line.split())) for line in open(path) if line.strip()]
def window(name, lo, hi):
    inside = sorted(us for sent, us in rows if lo <= sent < hi)
    acks = sum(1 for sent, us in rows if lo <= sent + us // 1000 < hi)
    seconds = max(hi - lo, 1) / 1000
    if not inside:
        print(f"{name:9} {seconds:7.1f} s  no records")
        return
    q = lambda p: inside[min(len(inside) - 1, int(p * len(inside)))] / 1000
    print(f"{name:9} {seconds:7.1f} s  {acks / seconds:8.0f} acks/s  p50 {q(0.5):7.2f}  p99 {q(0.99):8.2f}  p99.9 {q(0.999):8.2f}  max {inside[-1] / 1000:8.2f} ms  ({len(inside)} sent)")
print("window      length    throughput   ack latency (by send time)")
window("baseline", start + 2000, rebalance)
window("catch-up", rebalance, done)
window("after", done, stopped)
EOF
