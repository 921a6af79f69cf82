#!/usr/bin/env bash
# The simulator's mutation score (issue 20): a soak, never part of CI. cargo-mutants (installed
# at run time into target/tools, never committed) makes one-spot mistakes in the modules where a
# slip loses data, one mutant at a time, and each mutant faces
#   1. the simulator alone: `sim/tests/mutation_sweep.rs`, every scenario on seeds 1..=SEEDS
#      (madsim build, profile `mutants`); a mutant is killed when any seed fails, and its log
#      names the scenario and the first seed that failed;
#   2. then, for the mutants the simulator missed, the crates' own tests (normal build, the
#      tests of the mutated crate).
# It prints two scores, the simulator alone and the simulator plus the crates' tests, over the
# viable mutants (those that build); sim/MUTANTS.md records the runs and why each survivor
# survives.
#
#   scripts/mutation-score.sh                                   # every module below, 200 seeds
#   scripts/mutation-score.sh --file log/src/hard_state.rs      # one module (repeatable)
#   scripts/mutation-score.sh --seeds 1000 --shard 0/4          # a quarter, on 1,000 seeds
#
# Settings: --seeds N (200), --shard K/N (all), --file F (repeatable; default: the list below),
# --out DIR (target/mutants-out), --sim-only (skip pass 2). The build dir target/mutants-build
# is kept between runs. Every mutant is bounded: its seeds are stopped after three times the
# unmutated run (the baseline; at least 10 minutes), and a hang counts as killed ("timeout").
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
CARGO_MUTANTS_VERSION=27.1.0
SEEDS=200
SHARD=()
FILES=()
OUT="$ROOT/target/mutants-out"
SIM_ONLY=0
while [ $# -gt 0 ]; do
  case $1 in
    --seeds) SEEDS=$2; shift 2 ;;
    --shard) SHARD=(--shard "$2"); shift 2 ;;
    --file) FILES+=("$2"); shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --sim-only) SIM_ONLY=1; shift ;;
    *) echo "mutation-score: unknown argument $1 (see the head of $0)" >&2; exit 2 ;;
  esac
done
# The modules where a slip loses data (issue 20): log recovery, segments and retention, the hard
# state; raft storage, the driver's persist/send, suspects and quarantine, apply; partition
# admit/apply (offsets, dedup); broker produce/fetch/ListOffsets; metadata placement; the
# producer's retries, sequences and outcomes; the consumer's positions and seeks.
if [ ${#FILES[@]} -eq 0 ]; then
  FILES=(log/src/recovery.rs log/src/segment.rs log/src/log.rs log/src/hard_state.rs log/src/reader.rs
    consensus/src/storage.rs consensus/src/node.rs consensus/src/node/suspect.rs consensus/src/node/apply.rs
    consensus/src/node/group.rs consensus/src/node/proposals.rs consensus/src/conf_state_file.rs
    server/src/partition.rs server/src/request/produce.rs server/src/request/fetch.rs server/src/meta.rs
    client/src/producer.rs client/src/consumer.rs)
fi
FILE_ARGS=()
for file in "${FILES[@]}"; do FILE_ARGS+=(--file "$file"); done

MUTANTS="$ROOT/target/tools/bin/cargo-mutants"
if ! "$MUTANTS" mutants --version 2>/dev/null | grep -q "$CARGO_MUTANTS_VERSION"; then
  echo "mutation-score: installing cargo-mutants $CARGO_MUTANTS_VERSION into target/tools"
  cargo install --locked "cargo-mutants@$CARGO_MUTANTS_VERSION" --root "$ROOT/target/tools"
fi
mkdir -p "$OUT"

# Pass 1: the simulator alone. The profile `mutants` (Cargo.toml) is release, incremental and
# without debug info: a mutant rebuilds in a fraction of a release build and runs its seeds at
# release speed. The baseline (the unmutated tree must pass every seed) runs here, not in
# cargo-mutants: its baseline runs the mutated crates' tests whatever --test-package says
# (27.1), and here it also builds the registry dependencies once into the shared build dir.
export RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR="$ROOT/target/mutants-build/madsim" ODRADEK_MUTANT_SEEDS=$SEEDS
echo "mutation-score: baseline, the unmutated tree on $SEEDS seeds per scenario"
cargo test --locked --profile mutants -p odradek-sim --test mutation_sweep --no-run
started=$SECONDS
cargo test --locked --profile mutants -p odradek-sim --test mutation_sweep
TEST_TIMEOUT=$(( (SECONDS - started) * 3 > 600 ? (SECONDS - started) * 3 : 600 ))
echo "mutation-score: pass 1, the simulator alone (${#FILES[@]} files; a mutant's seeds stop after $TEST_TIMEOUT s)"
"$MUTANTS" mutants --no-shuffle --profile mutants --baseline skip --timeout "$TEST_TIMEOUT" --build-timeout 3600 \
  "${SHARD[@]}" "${FILE_ARGS[@]}" --test-package odradek-sim --cargo-test-arg=--test=mutation_sweep --output "$OUT/sim" || true
unset RUSTFLAGS CARGO_TARGET_DIR ODRADEK_MUTANT_SEEDS
SIM="$OUT/sim/mutants.out"
[ -f "$SIM/outcomes.json" ] || { echo "mutation-score: pass 1 wrote no outcomes (see $SIM)" >&2; exit 1; }

# Pass 2: what the simulator missed, against the crates' tests (cargo-mutants' default: the
# tests of the package that holds the mutant).
if [ $SIM_ONLY -eq 0 ] && [ -s "$SIM/missed.txt" ]; then
  RES=()
  while IFS= read -r re; do RES+=(--re "$re"); done < <(python3 -c '
import re, sys
for line in open(sys.argv[1]):
    line = line.strip()
    if line:
        print("^" + re.escape(line) + "$")
' "$SIM/missed.txt")
  echo "mutation-score: pass 2, the crates' tests on the simulator's ${#RES[@]} survivors"
  CARGO_TARGET_DIR="$ROOT/target/mutants-build/normal" \
    "$MUTANTS" mutants --no-shuffle --build-timeout 3600 "${FILE_ARGS[@]}" "${RES[@]}" --output "$OUT/crates" || true
fi

python3 - "$OUT" <<'EOF'
import json, os, sys
out = sys.argv[1]

def outcomes(name):
    path = os.path.join(out, name, "mutants.out", "outcomes.json")
    if not os.path.exists(path):
        return {}
    result = {}
    for outcome in json.load(open(path))["outcomes"]:
        scenario = outcome.get("scenario")
        if not isinstance(scenario, dict) or "Mutant" not in scenario:
            continue  # the baseline
        mutant = scenario["Mutant"]
        key = f'{mutant["file"]}:{mutant["span"]["start"]["line"]}: {mutant.get("name") or mutant.get("description") or mutant["replacement"]}'
        result[key] = outcome["summary"]
    return result

sim, crates = outcomes("sim"), outcomes("crates")
viable = {k: v for k, v in sim.items() if v != "Unviable"}
killed_sim = {k for k, v in viable.items() if v in ("CaughtMutant", "Timeout")}
killed_crates = {k for k, v in crates.items() if v in ("CaughtMutant", "Timeout")}
survivors = sorted(set(viable) - killed_sim - killed_crates)
n = max(len(viable), 1)
print(f"viable mutants: {len(viable)} (unviable: {len(sim) - len(viable)})")
print(f"simulator alone: {len(killed_sim)} killed, score {100 * len(killed_sim) / n:.1f} %")
both = killed_sim | (killed_crates & set(viable))
print(f"simulator + crates' tests: {len(both)} killed, score {100 * len(both) / n:.1f} %")
print(f"survivors ({len(survivors)}):")
for key in survivors:
    print(f"  {key}")
EOF
