#!/usr/bin/env bash
# Odradek next to NATS JetStream (R3) and etcd (3 nodes) on this machine, one system at a time,
# round after round, with the same record sizes; prints every run and then the medians per system
# and Odradek's ratios (issue 17). The peers are installed now (Debian packages nats-server,
# etcd-server, etcd-client; protobuf-compiler to build the etcd client) and never committed; their
# load generators are bench/peers (built into target/peers).
#
#   scripts/side-by-side.sh [ROUNDS]          # default 3 rounds; about 4 minutes a round
#
# What runs, per round (everything on 127.0.0.1, every load bounded by a count and a time):
#   disk        fio: 1 MiB and 4 KiB writes with an fsync each (the disk under all three)
#   one-at-a-time-100B  one acknowledged write at a time, 100 B records:
#               Odradek `bench produce --rate 300 --linger-ms 0 --acks all` (3 nodes, RF 3, fsync);
#               NATS one publish, wait for its ack; etcd one put, wait for its answer
#   throughput-100B / throughput-1KiB   many writes in flight:
#               Odradek 2 producers, 6 partitions, batching; NATS 256 publishes outstanding;
#               etcd 256 concurrent puts
#   Odradek alone: one consumer reading the 1 KiB topic; 1,000 partitions (RF 3) idle CPU, and
#               produce to them against 16 partitions
# Durability differs: Odradek (acks=all) and etcd fsync before they acknowledge; NATS 2.9+ keeps
# an R3 message in memory on two of three servers when it acknowledges (no fsync per message).
# Env: ODRADEK_BIN (default: target/release/odradek, built now), SBS_DIR (work dir, default a
# fresh one under /tmp), SBS_SKIP_PARTITIONS=1 to leave out the 1,000-partition rows.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${1:-3}
WORK=${SBS_DIR:-$(mktemp -d /tmp/odradek-sbs.XXXXXX)}
LOG=$WORK/results.txt
mkdir -p "$WORK"
: >"$LOG"

install() { # PACKAGE... (Debian), as root or through sudo
    local sudo=""; [[ $(id -u) == 0 ]] || sudo=sudo
    $sudo apt-get install -y "$@" >/dev/null 2>&1 || { $sudo apt-get update -qq && $sudo apt-get install -y "$@" >/dev/null; }
}
command -v nats-server >/dev/null || install nats-server
command -v etcd >/dev/null || install etcd-server
command -v etcdctl >/dev/null || install etcd-client
command -v protoc >/dev/null || install protobuf-compiler
command -v fio >/dev/null || install fio

BIN=${ODRADEK_BIN:-$ROOT/target/release/odradek}
[[ -n ${ODRADEK_BIN:-} ]] || (cd "$ROOT" && cargo build -q --release -p odradek-server --bin odradek)
(cd "$ROOT/bench/peers" && CARGO_TARGET_DIR=$ROOT/target/peers cargo build -q --release)
PEERS=$ROOT/target/peers/release

PIDS=()
stop_all() { kill "${PIDS[@]}" 2>/dev/null || true; wait "${PIDS[@]}" 2>/dev/null || true; PIDS=(); }
trap 'stop_all; [[ -n ${SBS_DIR:-} ]] || rm -rf "$WORK"' EXIT
emit() { echo "$1" | tee -a "$LOG"; }
# Rewrites a bench's result line as `RESULT SYSTEM TEST: ...` (the settings stay in the run log).
result() { # SYSTEM TEST LINE
    local rest=${3#*: }
    [[ $3 == *records/s* ]] && emit "RESULT $1 $2: $rest" || emit "FAILED $1 $2: $3"
}
cpu_ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo "$t"; }

odradek_start() {
    rm -rf "$WORK/odradek"; mkdir -p "$WORK/odradek"
    local nodes=(--node 1=127.0.0.1:29411/127.0.0.1:29401 --node 2=127.0.0.1:29412/127.0.0.1:29402 --node 3=127.0.0.1:29413/127.0.0.1:29403)
    for id in 1 2 3; do
        ODRADEK_LOG=warn "$BIN" server --id "$id" --data-dir "$WORK/odradek/n$id" "${nodes[@]}" 2>"$WORK/odradek/n$id.log" &
        PIDS+=($!)
    done
    export ODRADEK_BOOTSTRAP=127.0.0.1:29401,127.0.0.1:29402,127.0.0.1:29403
    for _ in $(seq 1 120); do "$BIN" cluster status >/dev/null 2>&1 && return; sleep 0.5; done
    echo "the Odradek cluster did not come up; logs in $WORK/odradek" >&2; return 1
}
odradek_bench() { # TEST bench-args...
    local test=$1; shift
    local line; line=$(timeout 300 "$BIN" bench "$@" 2>/dev/null | grep -E '^(produce|consume)[ :]' || echo "no result")
    echo "   odradek bench $*" >>"$LOG"
    result odradek "$test" "$line"
}

nats_start() {
    rm -rf "$WORK/nats"; mkdir -p "$WORK/nats"
    for i in 1 2 3; do
        mkdir -p "$WORK/nats/n$i"
        cat >"$WORK/nats/n$i.conf" <<CONF
server_name: n$i
listen: 127.0.0.1:$((9220 + i))
jetstream { store_dir: "$WORK/nats/n$i" }
cluster {
  name: sbs
  listen: 127.0.0.1:$((9320 + i))
  routes: [ nats-route://127.0.0.1:9321, nats-route://127.0.0.1:9322, nats-route://127.0.0.1:9323 ]
}
CONF
        nats-server -c "$WORK/nats/n$i.conf" >"$WORK/nats/n$i.log" 2>&1 &
        PIDS+=($!)
    done
    sleep 5 # JetStream elects its meta leader
}
nats_bench() { # TEST args...
    local test=$1; shift
    local line; line=$(timeout 120 "$PEERS/nats_bench" url=nats://127.0.0.1:9221 replicas=3 "$@" 2>&1 | grep '^RESULT' || echo "no result")
    echo "   nats_bench $*" >>"$LOG"
    result nats "$test" "$line"
}

etcd_start() {
    rm -rf "$WORK/etcd"; mkdir -p "$WORK/etcd"
    local cluster="e1=http://127.0.0.1:9380,e2=http://127.0.0.1:9382,e3=http://127.0.0.1:9384"
    for i in 1 2 3; do
        local client=$((9377 + 2 * i)) peer=$((9378 + 2 * i))
        etcd --name "e$i" --data-dir "$WORK/etcd/e$i" \
            --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
            --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
            --initial-cluster "$cluster" --initial-cluster-token sbs --initial-cluster-state new \
            --quota-backend-bytes 4294967296 >"$WORK/etcd/e$i.log" 2>&1 &
        PIDS+=($!)
    done
    sleep 4
}
etcd_leader() { # the leader's client endpoint: etcd forwards puts to it otherwise (one more hop)
    ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:9379,127.0.0.1:9381,127.0.0.1:9383 endpoint status -w json | python3 -c '
import json, sys
for e in json.load(sys.stdin):
    if e["Status"]["leader"] == e["Status"]["header"]["member_id"]:
        print(e["Endpoint"])'
}
etcd_bench() { # TEST args...
    local test=$1; shift
    local line; line=$(timeout 120 "$PEERS/etcd_bench" endpoints="$LEADER" "$@" 2>&1 | grep '^RESULT' || echo "no result")
    echo "   etcd_bench $*" >>"$LOG"
    result etcd "$test" "$line"
}

for round in $(seq 1 "$ROUNDS"); do
    emit "== round $round of $ROUNDS, $(date -u +%H:%M:%S), $(uptime | sed 's/.*load/load/')"
    mkdir -p "$WORK/fio"
    for bs in 1m 4k; do
        fio --name=disk --directory="$WORK/fio" --rw=write --bs=$bs --size=256m --ioengine=sync --fsync=1 \
            --output-format=terse 2>/dev/null | awk -F';' -v bs=$bs '{printf "DISK %s write + fsync each: %.1f MB/s\n", bs, $48 / 1000}' | tee -a "$LOG"
    done
    rm -rf "$WORK/fio"

    odradek_start
    # The topic made and left to settle first: a just-started cluster's first writes wait once
    # (nodes finishing their join, the group's first election), which is not one write's latency.
    "$BIN" topic create lat --partitions 1 --replication-factor 3 >/dev/null
    sleep 5
    odradek_bench one-at-a-time-100B produce --topic lat --records 3000 --record-size 100 --partitions 1 --producers 1 --acks all --rate 300 --linger-ms 0
    odradek_bench throughput-100B produce --topic t100 --records 1000000 --record-size 100 --partitions 6 --producers 2 --acks all
    odradek_bench throughput-1KiB produce --topic t1k --records 250000 --record-size 1024 --partitions 6 --producers 2 --acks all
    odradek_bench consume-1KiB consume --topic t1k
    if [[ -z ${SBS_SKIP_PARTITIONS:-} ]]; then
        "$BIN" topic create many --partitions 1000 --replication-factor 3 >/dev/null
        sleep 20 # elections settle
        t0=$(cpu_ticks "${PIDS[@]}"); sleep 20; t1=$(cpu_ticks "${PIDS[@]}")
        emit "RESULT odradek idle-1000-partitions: $(( (t1 - t0) * 100 / 20 / 100 / 3 )) % of a core per node"
        odradek_bench partitions-16 produce --topic t16 --records 2000000 --record-size 100 --partitions 16 --producers 2 --acks all
        odradek_bench partitions-1000 produce --topic many --records 2000000 --record-size 100 --producers 2 --acks all
    fi
    stop_all

    nats_start
    nats_bench one-at-a-time-100B size=100 records=3000 window=1 max_secs=30
    nats_bench throughput-100B size=100 records=300000 window=256 max_secs=30
    nats_bench throughput-1KiB size=1024 records=100000 window=256 max_secs=30
    stop_all

    etcd_start
    LEADER=$(etcd_leader)
    etcd_bench one-at-a-time-100B size=100 records=3000 concurrency=1 max_secs=30
    etcd_bench throughput-100B size=100 records=100000 concurrency=256 max_secs=30
    etcd_bench throughput-1KiB size=1024 records=60000 concurrency=256 max_secs=30
    stop_all
done

echo "== medians over $ROUNDS rounds (every run above; the log is $LOG)"
python3 "$ROOT/scripts/side_by_side_summary.py" "$LOG"
