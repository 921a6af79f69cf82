#!/usr/bin/env bash
# TLS cost (BENCHMARKS.md): the same 3-node cluster of `odradek server` processes on loopback,
# first plaintext, then with TLS on the client listener and mutual TLS on peer links (files from
# `odradek tls init`); against each, produce throughput and one-write latency.
# Usage: server/scripts/bench-tls.sh [records]   (ODRADEK_BIN picks the binary; default: the
#   release build, `cargo build --release -p odradek-server --bin odradek`)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${ODRADEK_BIN:-target/release/odradek}
RECORDS=${1:-200000}
DATA=$(mktemp -d /tmp/odradek-bench-tls.XXXXXX)
NODES=(--node 1=127.0.0.1:29201/127.0.0.1:29191 --node 2=127.0.0.1:29202/127.0.0.1:29192 --node 3=127.0.0.1:29203/127.0.0.1:29193)
PIDS=()
stop() { kill "${PIDS[@]}" 2>/dev/null || true; wait "${PIDS[@]}" 2>/dev/null || true; PIDS=(); }
cleanup() { stop; rm -rf "$DATA"; }
trap cleanup EXIT
"$BIN" tls init "$DATA/certs" --nodes 1,2,3 >/dev/null
export ODRADEK_BOOTSTRAP=127.0.0.1:29191,127.0.0.1:29192,127.0.0.1:29193
for mode in plaintext tls; do
  server_flags=(); client_flags=()
  if [ "$mode" = tls ]; then
    server_flags=(--tls-dir "$DATA/certs"); client_flags=(--tls-ca "$DATA/certs/ca.pem")
  fi
  for id in 1 2 3; do
    ODRADEK_LOG=warn "$BIN" server --id "$id" --data-dir "$DATA/$mode/node-$id" "${NODES[@]}" "${server_flags[@]}" \
      2>"$DATA/$mode-node-$id.log" &
    PIDS+=($!)
  done
  echo "== $mode"
  timeout 600 "$BIN" bench produce "${client_flags[@]}" --topic throughput --records "$RECORDS" --record-size 1024 \
    --partitions 3 --producers 2 --acks all 2>/dev/null
  timeout 600 "$BIN" bench produce "${client_flags[@]}" --topic latency --records 3000 --record-size 100 \
    --partitions 1 --producers 1 --acks all --rate 300 --linger-ms 0 2>/dev/null
  stop
done
