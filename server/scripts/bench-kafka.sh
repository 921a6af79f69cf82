#!/usr/bin/env bash
# Kafka client vs native client, same cluster, same run (issue 16; BENCHMARKS.md): a fresh
# 3-node cluster of separate `odradek server` processes with Kafka listeners (scripts/
# kafka-cluster.sh), then for each compression in COMPRESSIONS one topic per client (1
# partition, replication 3): `odradek bench produce --json` (native, acks=all idempotent) and
# scripts/kafka_bench.py (confluent-kafka, acks=all idempotent), same record size, linger and
# batch size. Produce only (`odradek bench consume` now wants a --group).
# Usage: server/scripts/bench-kafka.sh [records]   (release build first:
#   cargo build --release -p odradek-server --bin odradek; confluent-kafka importable by
#   PYTHON, default target/kafka-venv/bin/python as scripts/kafka-compat.sh installs it)
# Env: ODRADEK_BIN, PYTHON, BENCH_PORT (first port, default 51000; uses +0..2, +100..102,
# +200..202), RECORD_SIZE (default 1024), LINGER_MS (5), BATCH_BYTES (262144),
# COMPRESSIONS (default "none lz4 zstd").
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${ODRADEK_BIN:-$ROOT/target/release/odradek}
PYTHON=${PYTHON:-$ROOT/target/kafka-venv/bin/python}
RECORDS=${1:-200000}
SIZE=${RECORD_SIZE:-1024}
LINGER=${LINGER_MS:-5}
BATCH=${BATCH_BYTES:-262144}
PORT=${BENCH_PORT:-51000}
source "$ROOT/scripts/kafka-cluster.sh"
DATA=$(mktemp -d "${TMPDIR:-/tmp}/odradek-bench-kafka.XXXXXX")
trap 'kafka_cluster_stop; rm -rf "$DATA"' EXIT
kafka_cluster_start "$BIN" "$DATA" "$PORT"
export ODRADEK_BOOTSTRAP=$NATIVE_BOOTSTRAP
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
for compression in ${COMPRESSIONS:-none lz4 zstd}; do
    native="native-$compression"
    timeout 900 "$BIN" bench produce --topic "$native" --partitions 1 \
        --records "$RECORDS" --record-size "$SIZE" --producers 1 --acks all --json \
        --compression "$compression" --linger-ms "$LINGER" --batch-bytes "$BATCH" 2>/dev/null
    kafka="kafka-$compression"
    "$BIN" topic create --bootstrap "$NATIVE_BOOTSTRAP" -p 1 "$kafka" >/dev/null
    timeout 900 "$PYTHON" "$ROOT/scripts/kafka_bench.py" "$KAFKA_BOOTSTRAP" "$kafka" --records "$RECORDS" \
        --record-size "$SIZE" --compression "$compression" --linger-ms "$LINGER" --batch-bytes "$BATCH"
done
