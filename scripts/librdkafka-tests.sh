#!/usr/bin/env bash
# librdkafka's own test suite against a fresh 3-node Odradek cluster (issue 16), installed at test
# time and never committed: the source comes from crates.io (the `rdkafka-sys` crate bundles
# librdkafka with its tests/ directory), is built with the system C compiler, and a tier of its
# tests runs one test at a time, each bounded, against the cluster's Kafka listeners. Prints one
# line per test (PASS/FAIL/TIMEOUT/BUDGET) and writes them to OUT/results.txt; README
# ("Kafka listener") and BENCHMARKS.md ("Kafka clients' own test suites") say which fail and why.
#
#   cargo build -p odradek-server --bin odradek
#   scripts/librdkafka-tests.sh                       # the produce/consume tier
#   scripts/librdkafka-tests.sh --groups              # the consumer-group tier, both protocols
#   scripts/librdkafka-tests.sh 0001 0012             # chosen tests (GROUP_PROTOCOLS applies)
#
# Settings (environment): BIN (target/debug/odradek), OUT (store/librdkafka-tests), PORT (26000:
# the cluster's first port, scripts/kafka-cluster.sh; 26000-26202 are used), TEST_TIMEOUT (120 s
# per test), BUDGET (3600 s: tests not started by then are reported BUDGET, not run),
# GROUP_PROTOCOLS (with --groups "classic consumer": each test runs once per protocol, librdkafka's
# `group.protocol`, through its TEST_CONSUMER_GROUP_PROTOCOL; otherwise "classic"),
# RDKAFKA_SYS (4.10.0+2.12.1: the crate version, i.e. librdkafka 2.12.1), KAFKA_PATH (unset: the
# tests of NEEDS_KAFKA_INSTALL are skipped; librdkafka's tests read it too), MAKE_JOBS (2: make's
# jobs for the librdkafka build; 1 on a machine shared with measurements).
# Needs: cc, make, perl, python3 (librdkafka's build); cargo (to fetch the crate).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN=${BIN:-$ROOT/target/debug/odradek}
OUT=${OUT:-$ROOT/store/librdkafka-tests}
PORT=${PORT:-26000}
TEST_TIMEOUT=${TEST_TIMEOUT:-120}
BUDGET=${BUDGET:-3600}
RDKAFKA_SYS=${RDKAFKA_SYS:-4.10.0+2.12.1}
MAKE_JOBS=${MAKE_JOBS:-2}
[ -x "$BIN" ] || { echo "librdkafka-tests: $BIN missing; cargo build -p odradek-server --bin odradek" >&2; exit 2; }

# The produce/consume tier: producers (acks levels, batches, sizes, partitioners, compression
# codecs built in), consumers (simple consumer, offsets, seeks, batch consume, fetch limits) and
# metadata; no consumer groups, transactions, SSL or SASL, and no mock-cluster-only tests.
TIER=(0001 0002 0003 0005 0007 0008 0011 0012 0013 0014 0015 0017 0020 0021 0022 0031 0034 0035 0036 0039
    0041 0044 0046 0047 0048 0049 0051 0052 0053 0056)
# The consumer-group tier: every broker test (not mock-cluster-only, not SSL/SASL/transactions)
# whose subject is groups, rebalances, commits or assignments: termination in a group, ListGroups,
# pause/resume, assign with offsets, offset commit (sync, async, auto), regex and changing
# subscriptions, lag, incremental assign, max.poll.interval.ms, commit metadata, static members,
# unknown partitions, cooperative rebalances, commits in rebalance callbacks, buffers after a
# rebalance, stored offsets, assignor order, member ids. 0056 (balanced_group_mt) is in the
# produce/consume tier; 0106 (session timeouts), 0116 (consumer close) and 0120 (asymmetric
# subscriptions) run only on librdkafka's mock cluster. Each takes at most about 75 s.
# Tests that create their topics with a Kafka installation's bin/kafka-topics.sh (librdkafka's
# KAFKA_PATH), with settings no admin API of theirs sets: reported SKIPPED, not run, unless
# KAFKA_PATH is set. 0052 (msg_timestamps) creates topics with `message.timestamp.type`
# CreateTime and LogAppendTime that way (and `test_kafka_topics` fails the test without it).
NEEDS_KAFKA_INSTALL=(0052)
GROUP_TIER=(0018 0019 0026 0029 0030 0033 0045 0050 0061 0069 0089 0091 0099 0102 0112 0113 0118
    0122 0130 0132 0140 0153)
protocols=classic
if [ "${1:-}" = --groups ]; then
    shift
    [ $# -eq 0 ] || { echo "librdkafka-tests: --groups takes no test names" >&2; exit 2; }
    set -- "${GROUP_TIER[@]}"
    protocols="classic consumer"
fi
protocols=${GROUP_PROTOCOLS:-$protocols}
for p in $protocols; do
    case $p in classic | consumer) ;; *) echo "librdkafka-tests: GROUP_PROTOCOLS: $p is neither classic nor consumer" >&2; exit 2 ;; esac
done
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=("${TIER[@]}")

mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) # absolute: the tests run in librdkafka's tests/
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
        make -j"$MAKE_JOBS" libs >"$OUT/make.log" 2>&1 && make -C tests -j"$MAKE_JOBS" build >>"$OUT/make.log" 2>&1) ||
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
passed=0 failed=0 skipped=0 unrun=0
start=$SECONDS
for protocol in $protocols; do
    for t in "${tests[@]}"; do
        name=$(ls "$SRC/tests/$t"-*.c* 2>/dev/null | head -1 | xargs -r basename)
        if ((SECONDS - start >= BUDGET)); then
            echo "$t ${name:-?} $protocol BUDGET not run: the ${BUDGET} s budget was spent" | tee -a "$OUT/results.txt"
            unrun=$((unrun + 1))
            continue
        fi
        log="$OUT/$t-$protocol.log"
        if [[ " ${NEEDS_KAFKA_INSTALL[*]} " == *" $t "* ]] && [ -z "${KAFKA_PATH:-}" ]; then
            echo "$t ${name:-?} $protocol SKIPPED not run: it creates its topics with a Kafka installation's kafka-topics.sh (KAFKA_PATH unset)" |
                tee -a "$OUT/results.txt"
            skipped=$((skipped + 1))
            continue
        fi
        # -E: no sockem (socket-emulation) tests; -L: broker tests only; -Q: quick mode. The
        # classic protocol as a 3.7 broker (librdkafka's defaults), `group.protocol=consumer` as
        # a 4.0 broker (KIP-848 is generally available from 4.0; some tests choose by version).
        version=3.7.0 protocol_env=()
        if [ "$protocol" = consumer ]; then
            version=4.0.0 protocol_env=(TEST_CONSUMER_GROUP_PROTOCOL=consumer)
        fi
        (cd "$SRC/tests" && env LD_LIBRARY_PATH="$SRC/src:$SRC/src-cpp" TESTS=$t TEST_KAFKA_VERSION=$version "${protocol_env[@]}" \
            timeout "$TEST_TIMEOUT" ./test-runner -E -L -Q -V $version >"$log" 2>&1)
        status=$?
        if [ $status -eq 0 ]; then
            # The summary has a row per test of this number (its mock-only variants SKIPPED as
            # filtered) besides <MAIN>'s: none PASSED means the test skipped itself (a protocol
            # it does not cover).
            if grep -v '<MAIN>' "$log" | grep -q -E '\| +PASSED +\|'; then
                result=PASS passed=$((passed + 1))
            else
                result=SKIPPED skipped=$((skipped + 1))
            fi
        elif [ $status -eq 124 ]; then
            result=TIMEOUT failed=$((failed + 1))
        else
            result=FAIL failed=$((failed + 1))
        fi
        why=$(grep -m1 -E "TEST FAILURE|Test .* FAILED|### Test .* failed|FAIL|SKIPPING TEST" "$log" | cut -c1-160)
        echo "$t ${name:-?} $protocol $result ${why}" | tee -a "$OUT/results.txt"
    done
done
echo "$passed passed, $failed failed, $skipped skipped (by the test, or needing a Kafka installation), $unrun not run (budget)"
[ $failed -eq 0 ] && [ $unrun -eq 0 ]
