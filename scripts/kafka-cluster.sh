#!/usr/bin/env bash
# Starts a fresh 3-node Odradek cluster on loopback with a Kafka listener on each node, for the
# Kafka compatibility run (scripts/kafka-compat.sh). Sourced, not run:
#   source scripts/kafka-cluster.sh; kafka_cluster_start BIN DIR BASE_PORT [SERVER FLAGS...]; ...; kafka_cluster_stop
# The server flags are given to every node (TLS, auth); KAFKA_CLUSTER_CLIENT_FLAGS (an array, when
# set) is what the native CLI needs to reach such a cluster (--tls-ca, --user).
# Node i (1..3) uses client port BASE+i-1, peer port BASE+100+i-1, Kafka port BASE+200+i-1.
# Sets KAFKA_BOOTSTRAP (the three Kafka addresses) and NATIVE_BOOTSTRAP.

kafka_cluster_start() {
    local bin=$1 dir=$2 base=$3
    shift 3
    local extra=("$@")
    local client=("${KAFKA_CLUSTER_CLIENT_FLAGS[@]+"${KAFKA_CLUSTER_CLIENT_FLAGS[@]}"}")
    local nodes=() i
    for i in 1 2 3; do
        local o=$((i - 1))
        nodes+=(--node "$i=127.0.0.1:$((base + 100 + o))/127.0.0.1:$((base + o))/127.0.0.1:$((base + 200 + o))")
    done
    KAFKA_CLUSTER_PIDS=()
    for i in 1 2 3; do
        mkdir -p "$dir/node-$i"
        "$bin" server --id "$i" --data-dir "$dir/node-$i" --tick-ms 50 --group-session-timeout-ms 10000 \
            --kafka-listen "127.0.0.1:$((base + 200 + i - 1))" "${nodes[@]}" "${extra[@]}" >"$dir/node-$i.log" 2>&1 &
        KAFKA_CLUSTER_PIDS+=($!)
    done
    KAFKA_BOOTSTRAP="127.0.0.1:$((base + 200)),127.0.0.1:$((base + 201)),127.0.0.1:$((base + 202))"
    NATIVE_BOOTSTRAP="127.0.0.1:$base,127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2))"
    # Ready once the cluster answers a native status request (a controller is elected); at most
    # 60 s, each ask at most 5 s, and at once a failure if a node exited (a port taken, say).
    local deadline=$((SECONDS + 60)) pid
    while ((SECONDS < deadline)); do
        for pid in "${KAFKA_CLUSTER_PIDS[@]}"; do
            if ! kill -0 "$pid" 2>/dev/null; then
                echo "a node exited while the cluster started; logs in $dir:" >&2
                tail -n 3 "$dir"/node-*.log >&2
                return 1
            fi
        done
        if timeout 5 "$bin" cluster status --bootstrap "$NATIVE_BOOTSTRAP" "${client[@]}" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    echo "the cluster did not become ready within 60 s; logs in $dir" >&2
    return 1
}

kafka_cluster_stop() {
    local pid
    for pid in "${KAFKA_CLUSTER_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${KAFKA_CLUSTER_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    KAFKA_CLUSTER_PIDS=()
}
