#!/usr/bin/env bash
# What idle partitions cost (issue 17): starts a fresh 3-node cluster of separate `odradek server`
# processes on loopback (real files and fdatasync), creates N partitions with replication factor
# 3 (topics `idle0`, `idle1`, ... of at most 1,000 partitions each: a topic holds at most
# PARTITIONS_MAX = 1,024), waits until every partition has a leader, lets it settle, then samples
# each node's CPU time (utime + stime, /proc/PID/stat) over SAMPLE_S seconds and its resident
# memory (VmRSS, /proc/PID/status), ROUNDS times. Prints per round and node the CPU % of one core
# and RSS, RSS per partition replica (over the same figure on an idle cluster with no topic: the
# growth the partitions cost), the time to create the topics and have all leaders, and at the
# end the medians. Then it checks the partitions serve: one producer sends SERVE_RECORDS records
# over the first topic (acks=all) and one consumer reads them back.
#
#   scripts/bench-idle.sh N [BIN]        # e.g. scripts/bench-idle.sh 1000 target/release/odradek
#
# Env: ROUNDS (default 3), SAMPLE_S (default 30), BASE_SAMPLE_S (default 10: the sample of the
# cluster before any topic), SETTLE_S (default 10: seconds between the last
# leader and the first sample), EXTRA (more `odradek server` flags), PORT_BASE (default 26100:
# peers PORT_BASE+1..3, clients PORT_BASE+11..13), SERVE_RECORDS (default 20000; 0 skips it),
# KEEP=1 keeps the data directory and logs.
set -euo pipefail
N=${1:?usage: scripts/bench-idle.sh N [BIN]}
BIN=${2:-target/release/odradek}
ROUNDS=${ROUNDS:-3} SAMPLE_S=${SAMPLE_S:-30} BASE_SAMPLE_S=${BASE_SAMPLE_S:-10} SETTLE_S=${SETTLE_S:-10} PORT_BASE=${PORT_BASE:-26100}
SERVE_RECORDS=${SERVE_RECORDS:-20000}
[[ -x $BIN ]] || { echo "no odradek binary at $BIN" >&2; exit 2; }
(( N >= 1 && N <= 100000 )) || { echo "N must be within 1..=100000, not $N" >&2; exit 2; }
DATA=$(mktemp -d /tmp/odradek-idle.XXXXXX)
PIDS=()
stop() { kill "${PIDS[@]}" 2>/dev/null || true; wait "${PIDS[@]}" 2>/dev/null || true; PIDS=(); }
trap 'stop; [[ ${KEEP:-0} == 1 ]] && echo "kept $DATA" || rm -rf "$DATA"' EXIT
NODES=()
for id in 1 2 3; do NODES+=(--node "$id=127.0.0.1:$((PORT_BASE + id))/127.0.0.1:$((PORT_BASE + 10 + id))"); done
export ODRADEK_BOOTSTRAP=127.0.0.1:$((PORT_BASE + 11)),127.0.0.1:$((PORT_BASE + 12)),127.0.0.1:$((PORT_BASE + 13))
TICKS=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
now() { date +%s.%N; }
# CPU % of one core of each node over SECONDS (default SAMPLE_S), as "p1 p2 p3".
sample_cpu() {
    local before=() after=() id t0 t1
    for id in 0 1 2; do before[id]=$(ticks "${PIDS[id]}"); done
    t0=$(now); sleep "${1:-$SAMPLE_S}"; t1=$(now)
    for id in 0 1 2; do after[id]=$(ticks "${PIDS[id]}"); done
    for id in 0 1 2; do
        awk -v d=$((after[id] - before[id])) -v hz="$TICKS" -v s="$(echo "$t1 - $t0" | bc)" 'BEGIN {printf "%.2f ", 100 * d / hz / s}'
    done
}
median() { python3 -c 'import statistics, sys; print("%.2f" % statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

echo "bench-idle: N=$N partitions RF 3 on 3 nodes, $ROUNDS rounds, ${SAMPLE_S} s samples, binary $BIN ($(uname -m), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
CPU_ALL=() RSS_REPLICA_ALL=() CREATE_ALL=()
for round in $(seq 1 "$ROUNDS"); do
    rm -rf "${DATA:?}"/n*
    for id in 1 2 3; do
        # shellcheck disable=SC2086
        ODRADEK_LOG=warn "$BIN" server --id "$id" --data-dir "$DATA/n$id" "${NODES[@]}" ${EXTRA:-} 2>"$DATA/n$id.log" &
        PIDS+=($!)
    done
    up=0
    for _ in $(seq 1 240); do "$BIN" cluster status >/dev/null 2>&1 && { up=1; break; }; sleep 0.5; done
    (( up )) || { echo "round $round: the cluster did not come up (logs in $DATA)" >&2; KEEP=1; exit 1; }
    sleep 5
    read -r -a base_cpu <<<"$(sample_cpu "$BASE_SAMPLE_S")"
    base_rss=() ; for id in 0 1 2; do base_rss[id]=$(rss_kib "${PIDS[id]}"); done
    t0=$(now)
    left=$N topic=0
    while (( left > 0 )); do
        p=$(( left < 1000 ? left : 1000 ))
        # Waits for leaders up to 30 s; the loop below waits longer for the rest.
        timeout 600 "$BIN" topic create "idle$topic" --partitions "$p" --replication-factor 3 >/dev/null 2>"$DATA/create$topic.err" ||
            echo "round $round: topic create idle$topic: $(tail -1 "$DATA/create$topic.err")"
        left=$(( left - p )) topic=$(( topic + 1 ))
    done
    leaderless=-1
    for _ in $(seq 1 1200); do
        leaderless=0
        for t in $(seq 0 $(( topic - 1 ))); do
            n=$("$BIN" topic describe "idle$t" 2>/dev/null | awk 'NR > 2 && $2 == "-"' | wc -l) || n=1
            described=$("$BIN" topic describe "idle$t" 2>/dev/null | awk 'NR > 2' | wc -l) || described=0
            (( described > 0 )) || n=1
            leaderless=$(( leaderless + n ))
        done
        (( leaderless == 0 )) && break
        sleep 1
    done
    t1=$(now)
    create_s=$(echo "$t1 - $t0" | bc)
    if (( leaderless != 0 )); then echo "round $round: $leaderless partitions still without a leader after $create_s s" ; fi
    sleep "$SETTLE_S"
    read -r -a cpu <<<"$(sample_cpu)"
    rss=() ; for id in 0 1 2; do rss[id]=$(rss_kib "${PIDS[id]}"); done
    # Every node hosts a replica of every partition (RF 3 on 3 nodes).
    per_replica=$(python3 -c 'import sys; b, a, n = sys.argv[1].split(), sys.argv[2].split(), int(sys.argv[3]); print("%.1f" % (sum(int(x) - int(y) for x, y in zip(a, b)) / 3 / n))' "${base_rss[*]}" "${rss[*]}" "$N")
    printf 'round %d: create+leaders %.1f s; idle CPU %% of a core per node: %s (cluster with no topic: %s); RSS MiB per node: %s (no topic: %s); KiB per partition replica: %s\n' \
        "$round" "$create_s" "${cpu[*]}" "${base_cpu[*]}" \
        "$(for r in "${rss[@]}"; do printf '%.0f ' "$(echo "$r / 1024" | bc -l)"; done)" \
        "$(for r in "${base_rss[@]}"; do printf '%.0f ' "$(echo "$r / 1024" | bc -l)"; done)" "$per_replica"
    CPU_ALL+=("$(median "${cpu[@]}")") RSS_REPLICA_ALL+=("$per_replica") CREATE_ALL+=("$create_s")
    if (( round == ROUNDS && SERVE_RECORDS > 0 )); then
        line=$(timeout 300 "$BIN" bench produce --topic idle0 --records "$SERVE_RECORDS" --record-size 100 --producers 1 --acks all 2>/dev/null | grep -E '^produce:' || echo "produce failed")
        echo "serve: $line"
        line=$(timeout 300 "$BIN" bench consume --topic idle0 --records "$SERVE_RECORDS" 2>/dev/null | grep -E '^consume' || echo "consume failed")
        echo "serve: $line"
    fi
    stop
done
echo "median over $ROUNDS rounds (N=$N): idle CPU $(median "${CPU_ALL[@]}") % of a core per node (each round's median node), $(median "${RSS_REPLICA_ALL[@]}") KiB RSS per partition replica, create+leaders $(median "${CREATE_ALL[@]}") s"
