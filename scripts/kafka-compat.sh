#!/usr/bin/env bash
# Kafka client compatibility run (issue 16): real Kafka clients against a fresh 3-node Odradek
# cluster's Kafka listeners. Installs the clients at run time, never commits them:
#   - kcat (Debian package `kcat`, librdkafka inside);
#   - confluent-kafka and kafka-python (pip, into a venv under target/kafka-venv).
#
#   scripts/kafka-compat.sh           # everything
#   scripts/kafka-compat.sh --quick   # the CI subset: kcat + confluent-kafka, acks=all only, a
#                                     # classic and a KIP-848 group sharing partitions, OffsetDelete
#                                     # (kafka-python's admin), and the SSL and SASL_SSL clusters
#
# Prints one line per check (`PASS|client|version|feature|detail` or FAIL), a closing
# `N passed, N failed`, and writes the table to target/kafka-compat/results.md. Exits non-zero
# when a check failed. ODRADEK_BIN overrides the binary (default: target/debug/odradek, built
# if missing); KAFKA_COMPAT_PORT the first port (default 27000, below the kernel's ephemeral range so no
# outgoing connection's source port can take one; uses +0..2, +100..102, +200..202, and +10 and
# +20 on each of those for the SSL and SASL_SSL clusters).
# After the plaintext cluster, an SSL and a SASL_SSL cluster (both also in --quick): kcat and
# confluent-kafka over TLS with certificates made by `odradek tls init` at run time.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
QUICK=""
[[ "${1:-}" == "--quick" ]] && QUICK="--quick"
BIN=${ODRADEK_BIN:-$ROOT/target/debug/odradek}
PORT=${KAFKA_COMPAT_PORT:-27000}
OUT=$ROOT/target/kafka-compat
mkdir -p "$OUT"

if [[ ! -x "$BIN" ]]; then
    (cd "$ROOT" && cargo build -p odradek-server --bin odradek)
fi
if ! command -v kcat >/dev/null; then
    if [[ $(id -u) == 0 ]]; then
        apt-get install -y kcat >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y kcat >/dev/null; }
    else
        sudo apt-get install -y kcat >/dev/null
    fi
fi
VENV=$ROOT/target/kafka-venv
if [[ ! -x $VENV/bin/python ]]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q confluent-kafka kafka-python

source "$ROOT/scripts/kafka-cluster.sh"
DATA=$(mktemp -d "${TMPDIR:-/tmp}/odradek-kafka-compat.XXXXXX")
trap 'kafka_cluster_stop; rm -rf "$DATA"' EXIT
# Auto-created topics get 2 partitions (Kafka's num.partitions): the auto-creation check reads it
# back with DescribeConfigs.
kafka_cluster_start "$BIN" "$DATA" "$PORT" --default-partitions 2

RESULTS=$OUT/results.txt
: >"$RESULTS"
KCAT_VERSION=$(kcat -V 2>&1 | sed -n 's/^Version \([^ ]*\) .*librdkafka \([^ ]*\) .*/kcat \1 \/ librdkafka \2/p')
KCAT_LIBRDKAFKA=${KCAT_VERSION##* }
# Waits (up to 30 s) until every broker of the bootstrap list names a leader for partition 0 of
# TOPIC in its own metadata: `topic create` returns once the node it asked knows the leader, and
# the other brokers apply the metadata a moment later (kcat would meet LEADER_NOT_AVAILABLE).
wait_for_kafka_leader() { # TOPIC [kcat flags...]
    local topic=$1 broker
    shift
    for broker in ${B//,/ }; do
        for _ in $(seq 1 60); do
            timeout 10 kcat -L -b "$broker" "$@" -t "$topic" -m 5 2>/dev/null | grep -q "partition 0, leader [0-9]" && break
            sleep 0.5
        done
    done
}
record() { # RESULT FEATURE DETAIL
    echo "$1|kcat|$KCAT_VERSION|$2|$3" | tee -a "$RESULTS"
}
B=$KAFKA_BOOTSTRAP

# kcat: metadata, then produce/consume (topic created with the native CLI: kcat cannot create).
if out=$(timeout 20 kcat -L -b "$B" 2>&1) && grep -q "3 brokers" <<<"$out"; then
    record PASS "metadata (kcat -L)" "3 brokers"
else
    record FAIL "metadata (kcat -L)" "$(head -c 200 <<<"$out")"
fi
"$BIN" topic create --bootstrap "$NATIVE_BOOTSTRAP" -p 1 kcat-topic >/dev/null
wait_for_kafka_leader kcat-topic
for acks in $([[ -n $QUICK ]] && echo -1 || echo "0 1 -1"); do
    seq 1 100 | sed "s/^/acks$acks-/" >"$DATA/expected-$acks"
    if timeout 30 kcat -P -b "$B" -t kcat-topic -p 0 -X acks=$acks <"$DATA/expected-$acks" 2>"$DATA/kcat-p.err"; then
        record PASS "produce acks=$acks" "100 records"
    else
        record FAIL "produce acks=$acks" "$(head -c 200 "$DATA/kcat-p.err")"
    fi
done
in_order() { for acks in $([[ -n $QUICK ]] && echo -1 || echo "0 1 -1"); do cat "$DATA/expected-$acks"; done; }
expected_all=$(in_order | sort)
got=$(timeout 30 kcat -C -b "$B" -t kcat-topic -p 0 -o beginning -e -q 2>"$DATA/kcat-c.err" | sort || true)
if [[ "$got" == "$expected_all" ]]; then
    record PASS "consume from beginning" "$(wc -l <<<"$got") records"
else
    record FAIL "consume from beginning" "$(wc -l <<<"$got") records, expected $(wc -l <<<"$expected_all"); $(head -c 200 "$DATA/kcat-c.err")"
fi
got=$(timeout 30 kcat -C -b "$B" -t kcat-topic -p 0 -o 50 -c 10 -e -q 2>/dev/null | tr '\n' ' ' || true)
first=$(in_order | sed -n 51p)
if [[ "$got" == "$first "* ]]; then
    record PASS "consume from offset 50" "starts at $first"
else
    record FAIL "consume from offset 50" "got: ${got:0:100}"
fi
# Compressed produce (kcat -z), each codec to its own topic, consumed back in order.
for codec in $([[ -n $QUICK ]] && echo zstd || echo "gzip snappy lz4 zstd"); do
    "$BIN" topic create --bootstrap "$NATIVE_BOOTSTRAP" -p 1 "kcat-$codec" >/dev/null
    wait_for_kafka_leader "kcat-$codec"
    seq 1 500 | sed "s/^/{\"codec\":\"$codec\",\"event\":\"page_view\",\"seq\":/; s/$/}/" >"$DATA/expected-$codec"
    if ! timeout 30 kcat -P -b "$B" -t "kcat-$codec" -p 0 -z "$codec" -X linger.ms=20 <"$DATA/expected-$codec" 2>"$DATA/kcat-z.err"; then
        record FAIL "produce -z $codec, consume back" "$(head -c 200 "$DATA/kcat-z.err")"
        continue
    fi
    got=$(timeout 30 kcat -C -b "$B" -t "kcat-$codec" -p 0 -o beginning -e -q 2>"$DATA/kcat-zc.err" || true)
    if [[ "$got" == "$(cat "$DATA/expected-$codec")" ]]; then
        record PASS "produce -z $codec, consume back" "$(wc -l <<<"$got") records"
    else
        record FAIL "produce -z $codec, consume back" "$(wc -l <<<"$got") records; $(head -c 200 "$DATA/kcat-zc.err")"
    fi
done
got=$(timeout 30 kcat -Q -b "$B" -t kcat-topic:0:0 2>&1 || true)
if grep -q "offset 0" <<<"$got"; then
    record PASS "offset for timestamp 0 (kcat -Q)" "offset 0"
else
    record FAIL "offset for timestamp 0 (kcat -Q)" "${got:0:200}"
fi

"$VENV/bin/python" "$ROOT/scripts/kafka_compat.py" "$B" $QUICK | tee -a "$RESULTS" || true

# Kafka's SSL and SASL_SSL security protocols: fresh clusters whose nodes have client TLS
# (certificates from `odradek tls init`, made now), the second with SASL/SCRAM too; kcat and
# confluent-kafka over TLS, and a plaintext client on the TLS port refused.
kafka_cluster_stop
CERTS=$DATA/certs
"$BIN" tls init "$CERTS" --nodes 1,2,3 >/dev/null
printf 'node:node-secret\nalice:alice-secret\n' >"$DATA/users"
chmod 600 "$DATA/users"
SCRAM_FLAGS=(--auth scram --users-file "$DATA/users" --inter-node-user node --super-user User:node)
for protocol in SSL SASL_SSL; do
    KCAT_SECURITY=(-X security.protocol="$protocol" -X ssl.ca.location="$CERTS/ca.pem")
    KAFKA_CLUSTER_CLIENT_FLAGS=(--tls-ca "$CERTS/ca.pem")
    server_flags=(--tls-dir "$CERTS")
    if [[ $protocol == SASL_SSL ]]; then
        KCAT_SECURITY+=(-X sasl.mechanisms=SCRAM-SHA-256 -X sasl.username=alice -X sasl.password=alice-secret)
        KAFKA_CLUSTER_CLIENT_FLAGS+=(--user alice)
        export ODRADEK_PASSWORD=alice-secret KAFKA_COMPAT_PASSWORD=alice-secret
        server_flags+=("${SCRAM_FLAGS[@]}")
        port=$((PORT + 20))
    else
        port=$((PORT + 10))
    fi
    kafka_cluster_start "$BIN" "$DATA/$protocol" "$port" "${server_flags[@]}"
    B=$KAFKA_BOOTSTRAP
    if [[ $protocol == SASL_SSL ]] && ! printf '2.6.1\n%s\n' "$KCAT_LIBRDKAFKA" | sort -V -C; then
        # librdkafka before 2.6.1 puts its client nonce twice in the SCRAM client-final message
        # (librdkafka#4895); Kafka 4, and Odradek, check the nonce as RFC 5802 says and refuse it.
        if timeout 30 kcat -L -b "$B" "${KCAT_SECURITY[@]}" -m 5 >/dev/null 2>"$DATA/kcat-s.err"; then
            record FAIL "$protocol: SCRAM from librdkafka < 2.6.1 refused (its nonce bug, librdkafka#4895)" "answered"
        elif grep -q "authentication failed" "$DATA/kcat-s.err"; then
            record PASS "$protocol: SCRAM from librdkafka < 2.6.1 refused (its nonce bug, librdkafka#4895)" "TLS and SaslHandshake passed; the client-final nonce refused, as by Kafka 4"
        else
            record FAIL "$protocol: SCRAM from librdkafka < 2.6.1 refused (its nonce bug, librdkafka#4895)" "$(grep -m1 -o 'ERROR.*' "$DATA/kcat-s.err" | head -c 200)"
        fi
    else
        if out=$(timeout 30 kcat -L -b "$B" "${KCAT_SECURITY[@]}" 2>&1) && grep -q "3 brokers" <<<"$out"; then
            record PASS "$protocol: metadata (kcat -L)" "3 brokers"
        else
            record FAIL "$protocol: metadata (kcat -L)" "$(head -c 200 <<<"$out")"
        fi
        "$BIN" topic create --bootstrap "$NATIVE_BOOTSTRAP" "${KAFKA_CLUSTER_CLIENT_FLAGS[@]}" -p 1 kcat-secure >/dev/null
        wait_for_kafka_leader kcat-secure "${KCAT_SECURITY[@]}"
        seq 1 100 | sed "s/^/$protocol-/" >"$DATA/expected-$protocol"
        if timeout 30 kcat -P -b "$B" "${KCAT_SECURITY[@]}" -t kcat-secure -p 0 -X acks=-1 <"$DATA/expected-$protocol" 2>"$DATA/kcat-s.err"; then
            got=$(timeout 30 kcat -C -b "$B" "${KCAT_SECURITY[@]}" -t kcat-secure -p 0 -o beginning -e -q 2>"$DATA/kcat-s.err" || true)
            if [[ "$got" == "$(cat "$DATA/expected-$protocol")" ]]; then
                record PASS "$protocol: produce acks=-1, consume back" "$(wc -l <<<"$got") records"
            else
                record FAIL "$protocol: produce acks=-1, consume back" "$(wc -l <<<"$got") records; $(head -c 200 "$DATA/kcat-s.err")"
            fi
        else
            record FAIL "$protocol: produce acks=-1, consume back" "$(head -c 200 "$DATA/kcat-s.err")"
        fi
        if timeout 30 kcat -L -b "$B" -m 5 >/dev/null 2>&1; then
            record FAIL "$protocol: plaintext kcat on the TLS port refused" "answered"
        else
            record PASS "$protocol: plaintext kcat on the TLS port refused" "no metadata"
        fi
    fi
    user_flag=()
    [[ $protocol == SASL_SSL ]] && user_flag=(--user alice)
    "$VENV/bin/python" "$ROOT/scripts/kafka_compat.py" "$B" --security "$protocol" --ca "$CERTS/ca.pem" "${user_flag[@]}" | tee -a "$RESULTS" || true
    kafka_cluster_stop
done

{
    echo "| client | version | feature | result | detail |"
    echo "|---|---|---|---|---|"
    grep -E '^(PASS|FAIL)\|' "$RESULTS" | awk -F'|' '{printf "| %s | %s | %s | %s | %s |\n", $2, $3, $4, $1, $5}'
} >"$OUT/results.md"
passed=$(grep -c '^PASS|' "$RESULTS" || true)
failed=$(grep -c '^FAIL|' "$RESULTS" || true)
echo "table: $OUT/results.md"
echo "$passed passed, $failed failed"
[[ $failed == 0 ]]
