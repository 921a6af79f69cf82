#!/usr/bin/env bash
# The long Jepsen matrix (CHECKLISTS "Harness and simulator requirements"): one odradek-jepsen run
# per nemesis entry, each for TIME seconds of faults, reports under OUT/<entry>/, and a one-line
# result per entry at the end (and in OUT/matrix.txt). Exit status 1 if any entry failed.
#
#   cargo build --release -p odradek-server --bin odradek -p odradek-jepsen --bin odradek-jepsen
#   jepsen/scripts/matrix.sh                         # 9 entries x 300 s, 5 nodes: about 50 minutes
#   TIME=60 NODES=3 jepsen/scripts/matrix.sh kill pause-kill   # chosen entries only
#   CLIENT=kafka OUT=store/matrix-kafka jepsen/scripts/matrix.sh  # through rskafka and the Kafka listeners
#   CLIENT=kafka TIME=60 NODES=3 OUT=store/matrix-kafka jepsen/scripts/matrix.sh membership wipe
#                                                    # nodes joining (with Kafka listeners) and leaving
#   EXTRA=--delete-records OUT=store/matrix-dr jepsen/scripts/matrix.sh  # with a deleter (DR1)
#   EXTRA=--retention OUT=store/matrix-ret jepsen/scripts/matrix.sh  # short retention (R7, R12 b)
#   WORKLOAD=subscribe OFFSET_DELETE=1 OUT=store/matrix-od jepsen/scripts/matrix.sh kill-coordinator,kill
#                                                    # groups, with raw Kafka OffsetDelete requests (C9)
#
# Settings (environment): TIME (300), NODES (5), RATE (100 sends/s), SEED (1), ACKS (all),
# CLIENT (native; kafka: the producers and consumers use rskafka over the Kafka listeners, acks all
# only), OUT (store/matrix), BIN (target/release: where odradek and odradek-jepsen are), EXTRA (more
# `odradek-jepsen run` flags for every entry, e.g. --delete-records or --tls), WORKLOAD (log;
# subscribe: consumer-group members), OFFSET_DELETE (0; 1: --offset-delete, a worker deleting the
# groups' committed offsets with raw Kafka OffsetDelete requests, C9; needs WORKLOAD=subscribe).
set -uo pipefail
cd "$(dirname "$0")/../.."
TIME=${TIME:-300}
NODES=${NODES:-5}
RATE=${RATE:-100}
SEED=${SEED:-1}
ACKS=${ACKS:-all}
CLIENT=${CLIENT:-native}
OUT=${OUT:-store/matrix}
BIN=${BIN:-target/release}
WORKLOAD=${WORKLOAD:-log}
read -r -a extra <<<"${EXTRA:-}"
extra+=(--workload "$WORKLOAD")
[ "${OFFSET_DELETE:-0}" = 1 ] && extra+=(--offset-delete)
entries=("$@")
if [ ${#entries[@]} -eq 0 ]; then
    entries=(none kill pause partition kill,partition pause-kill part-kill wipe membership)
fi
for tool in odradek odradek-jepsen; do
    [ -x "$BIN/$tool" ] || { echo "matrix: $BIN/$tool missing; build it first (see the top of this script)" >&2; exit 2; }
done
mkdir -p "$OUT"
: >"$OUT/matrix.txt"
failed=0
for entry in "${entries[@]}"; do
    dir="$OUT/${entry//,/+}"
    rm -rf "$dir"
    started=$(date +%s)
    "$BIN/odradek-jepsen" run --nodes "$NODES" --time-limit "$TIME" --rate "$RATE" --nemesis "$entry" --acks "$ACKS" \
        --client "$CLIENT" --seed "$SEED" --fault-quiet 8 --fault-window 10 --recovery 10 --binary "$BIN/odradek" --out "$dir" \
        "${extra[@]}" >"$dir.log" 2>&1
    status=$?
    [ $status -eq 0 ] || failed=1
    verdict=$(grep -m1 -E "^odradek-jepsen: (PASS|FAIL)" "$dir.log" || echo "no verdict (exit $status)")
    stats=$(grep -m1 -E "^ops " "$dir.log" || true)
    faults=$(grep -m1 -E "^faults \(" "$dir.log" || true)
    line="$entry: ${verdict#odradek-jepsen: } | $faults | $stats | $(( $(date +%s) - started )) s | exit $status"
    echo "$line" | tee -a "$OUT/matrix.txt"
done
exit $failed
