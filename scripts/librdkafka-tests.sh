#!/usr/bin/env bash
# librdkafka's own test suite against a fresh 3-node Odradek cluster (issue 16), installed at test
# time and never committed: the source comes from crates.io (the `rdkafka-sys` crate bundles
# librdkafka with its tests/ directory), is built with the system C compiler, and the
# produce/consume tier below runs one test at a time, each bounded, against the cluster's Kafka
# listeners. Prints one line per test (PASS/FAIL/TIMEOUT) and writes them to OUT/results.txt; the
# table in BENCHMARKS.md ("librdkafka's test suite") says which fail and why.
#
#   cargo build -p odradek-server --bin odradek
#   scripts/librdkafka-tests.sh                       # the produce/consume tier
#   scripts/librdkafka-tests.sh 0001 0012             # chosen tests
#
# Settings (environment): BIN (target/debug/odradek), OUT (store/librdkafka-tests), PORT (26000:
# the cluster's first port, scripts/kafka-cluster.sh; 26000-26202 are used), TEST_TIMEOUT (120 s
# per test), RDKAFKA_SYS (4.10.0+2.12.1: the crate version, i.e. librdkafka 2.12.1).
# Needs: cc, make, perl, python3 (librdkafka's build); cargo (to fetch the crate).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN=${BIN:-$ROOT/target/debug/odradek}
OUT=${OUT:-$ROOT/store/librdkafka-tests}
PORT=${PORT:-26000}
TEST_TIMEOUT=${TEST_TIMEOUT:-120}
RDKAFKA_SYS=${RDKAFKA_SYS:-4.10.0+2.12.1}
[ -x "$BIN" ] || { echo "librdkafka-tests: $BIN missing; cargo build -p odradek-server --bin odradek" >&2; exit 2; }

# The produce/consume tier: producers (acks levels, batches, sizes, partitioners, compression
# codecs built in), consumers (simple consumer, offsets, seeks, batch consume, fetch limits) and
# metadata; no consumer groups, transactions, SSL or SASL, and no mock-cluster-only tests.
TIER=(0001 0002 0003 0005 0007 0008 0011 0012 0013 0014 0015 0017 0020 0021 0022 0031 0034 0035 0036 0039
    0041 0044 0046 0047 0048 0049 0051 0052 0053 0056)
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=("${TIER[@]}")

mkdir -p "$OUT"
SRC="$OUT/librdkafka"
if [ ! -x "$SRC/tests/test-runner" ]; then
    # Fetch the crate with cargo into a scratch project's registry cache, copy librdkafka out.
    scratch="$OUT/fetch"
    mkdir -p "$scratch/src"
    # Its own [workspace]: under the repository's store/ it is not a member of ours.
    printf '[package]\nname = "fetch-librdkafka"\nversion = "0.0.0"\nedition = "2021"\n[workspace]\n[dependencies]\nrdkafka-sys = { version = "=%s", default-features = false }\n' \
        "$RDKAFKA_SYS" >"$scratch/Cargo.toml"
    echo 'fn main() {}' >"$scratch/src/main.rs"
    (cd "$scratch" && cargo fetch -q) || { echo "librdkafka-tests: cargo fetch of rdkafka-sys $RDKAFKA_SYS failed" >&2; exit 2; }
    crate=$(cd "$scratch" && cargo metadata --format-version 1 -q |
        python3 -c 'import json,sys; print([p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"]=="rdkafka-sys"][0])')
    rm -rf "$SRC" && cp -r "$(dirname "$crate")/librdkafka" "$SRC" || exit 2
    echo "librdkafka-tests: building librdkafka from rdkafka-sys $RDKAFKA_SYS (a few minutes)"
    (cd "$SRC" && ./configure --disable-ssl --disable-gssapi --disable-curl --disable-zstd --disable-lz4-ext >"$OUT/configure.log" 2>&1 &&
        make -j2 libs >"$OUT/make.log" 2>&1 && make -C tests -j2 build >>"$OUT/make.log" 2>&1) ||
        { echo "librdkafka-tests: the build failed; see $OUT/configure.log and $OUT/make.log" >&2; exit 2; }
fi

source "$ROOT/scripts/kafka-cluster.sh"
DATA="$OUT/cluster"
rm -rf "$DATA" && mkdir -p "$DATA"
# Topics the tests let the broker auto-create get 4 partitions, as on librdkafka's own test
# brokers (`num.partitions=4`): 0012, 0015 and 0056 produce to partitions 1.. of such topics.
kafka_cluster_start "$BIN" "$DATA" "$PORT" --default-partitions 4 || exit 2
trap kafka_cluster_stop EXIT
# test.conf: the brokers; topics are auto-created by the tests with CreateTopics or Metadata.
printf 'bootstrap.servers=%s\n' "$KAFKA_BOOTSTRAP" >"$SRC/tests/test.conf"

: >"$OUT/results.txt"
passed=0 failed=0
for t in "${tests[@]}"; do
    log="$OUT/$t.log"
    # -E: no sockem (socket-emulation) tests; -L: broker tests only; -Q: quick mode.
    (cd "$SRC/tests" && LD_LIBRARY_PATH="$SRC/src:$SRC/src-cpp" TESTS=$t TEST_KAFKA_VERSION=3.7.0 timeout "$TEST_TIMEOUT" ./test-runner -E -L -Q -V 3.7.0 >"$log" 2>&1)
    status=$?
    name=$(ls "$SRC/tests/$t"-*.c* 2>/dev/null | head -1 | xargs -r basename)
    if [ $status -eq 0 ]; then
        result=PASS passed=$((passed + 1))
    elif [ $status -eq 124 ]; then
        result=TIMEOUT failed=$((failed + 1))
    else
        result=FAIL failed=$((failed + 1))
    fi
    why=$(grep -m1 -E "TEST FAILURE|Test .* FAILED|### Test .* failed|FAIL" "$log" | cut -c1-160)
    echo "$t ${name:-?} $result ${why}" | tee -a "$OUT/results.txt"
done
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
