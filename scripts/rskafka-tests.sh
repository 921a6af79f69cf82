#!/usr/bin/env bash
# rskafka's own integration tests (the crate ships tests/) against a fresh 3-node Odradek cluster
# (issue 16), installed at test time and never committed: the crate source is fetched from
# crates.io with cargo into OUT, and its integration tests run there with its own Cargo.lock
# against the cluster's Kafka listeners (TEST_INTEGRATION=1, TEST_BROKER_IMPL=kafka). The
# java_helper tests need a JVM and are not run. Writes cargo's output to OUT/rskafka-tests.log and
# one line per test to OUT/results.txt.
#
#   cargo build -p odradek-server --bin odradek
#   scripts/rskafka-tests.sh                 # client, consumer, producer, produce_consume
#   scripts/rskafka-tests.sh produce_consume # one test target
#
# Settings (environment): BIN (target/debug/odradek), OUT (store/rskafka-tests), TARGET_TIMEOUT
# (300 s per test target), PORT (26300: the
# cluster's first port, scripts/kafka-cluster.sh; 26300-26502 are used), RSKAFKA (0.6.0, the
# version the Jepsen harness uses). Building the tests builds their dev-dependencies too
# (rdkafka with its bundled librdkafka: a C compiler, make, perl; j4rs: a JDK, e.g. Debian's
# default-jdk-headless).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN=${BIN:-$ROOT/target/debug/odradek}
OUT=${OUT:-$ROOT/store/rskafka-tests}
PORT=${PORT:-26300}
RSKAFKA=${RSKAFKA:-0.6.0}
[ -x "$BIN" ] || { echo "rskafka-tests: $BIN missing; cargo build -p odradek-server --bin odradek" >&2; exit 2; }
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(client consumer producer produce_consume)

mkdir -p "$OUT"
SRC="$OUT/rskafka"
if [ ! -f "$SRC/Cargo.toml" ]; then
    scratch="$OUT/fetch"
    mkdir -p "$scratch/src"
    # Its own [workspace]: under the repository's store/ it is not a member of ours.
    printf '[package]\nname = "fetch-rskafka"\nversion = "0.0.0"\nedition = "2021"\n[workspace]\n[dependencies]\nrskafka = "=%s"\n' "$RSKAFKA" >"$scratch/Cargo.toml"
    echo 'fn main() {}' >"$scratch/src/main.rs"
    (cd "$scratch" && cargo fetch -q) || { echo "rskafka-tests: cargo fetch of rskafka $RSKAFKA failed" >&2; exit 2; }
    crate=$(cd "$scratch" && cargo metadata --format-version 1 -q |
        python3 -c 'import json,sys; print([p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"]=="rskafka"][0])')
    rm -rf "$SRC" && cp -r "$(dirname "$crate")" "$SRC" || exit 2
fi
# The crate's manifest names no workspace; under store/ cargo would take it for a stray member of
# ours and refuse to build it.
grep -q '^\[workspace\]' "$SRC/Cargo.toml" || printf '\n[workspace]\n' >>"$SRC/Cargo.toml"
# The crate pins its own toolchain (rust-toolchain.toml); build with this machine's instead.
export RUSTUP_TOOLCHAIN=${RUSTUP_TOOLCHAIN:-stable}
args=()
for t in "${targets[@]}"; do args+=(--test "$t"); done
echo "rskafka-tests: building rskafka $RSKAFKA's tests (${targets[*]})"
# The crate's own Cargo.lock pins rsasl 2.2.0, which current compilers refuse (a raw-pointer cast
# that extends a lifetime); its patch release builds.
(cd "$SRC" && cargo update -q -p rsasl) || exit 2
(cd "$SRC" && cargo test --no-run "${args[@]}" >"$OUT/build.log" 2>&1) ||
    { echo "rskafka-tests: the build failed; see $OUT/build.log" >&2; exit 2; }

source "$ROOT/scripts/kafka-cluster.sh"
DATA="$OUT/cluster"
rm -rf "$DATA" && mkdir -p "$DATA"
# rskafka's own test brokers run with topic auto-creation off (its docker-compose files:
# KAFKA_CFG_AUTO_CREATE_TOPICS_ENABLE=false): test_non_existing_partition expects a topic it never
# created to stay unknown, though its Metadata requests allow auto-creation.
kafka_cluster_start "$BIN" "$DATA" "$PORT" --auto-create-topics off || exit 2
trap kafka_cluster_stop EXIT
# One target at a time, each bounded (a test that waits for a record that never comes hangs).
: >"$OUT/rskafka-tests.log"
status=0
for t in "${targets[@]}"; do
    (cd "$SRC" && TEST_INTEGRATION=1 TEST_BROKER_IMPL=kafka KAFKA_CONNECT="$KAFKA_BOOTSTRAP" \
        timeout "${TARGET_TIMEOUT:-300}" cargo test --test "$t" -- --test-threads 1 >>"$OUT/rskafka-tests.log" 2>&1)
    code=$?
    [ $code -eq 124 ] && echo "test target $t TIMEOUT after ${TARGET_TIMEOUT:-300} s" | tee -a "$OUT/rskafka-tests.log"
    [ $code -eq 0 ] || status=1
done
grep -E "^test .* \.\.\. " "$OUT/rskafka-tests.log" | sed -e 's/^test //' >"$OUT/results.txt"
cat "$OUT/results.txt"
grep -E "^test result" "$OUT/rskafka-tests.log"
exit $status
