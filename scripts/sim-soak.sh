#!/usr/bin/env bash
# Long simulation runs by hand: runs seed after seed of the simulation suites until a deadline,
# then prints every failing seed with its replay command.
#
#   scripts/sim-soak.sh DEADLINE [FIRST_SEED] [TEST_FILE...]
#
# DEADLINE is anything `date -d` understands ("06:00", "2 hours", "tomorrow 08:00") or a number
# of minutes. FIRST_SEED defaults to a value from the clock (printed, so the run can be resumed).
# TEST_FILE defaults to cluster_faults and kv_faults (sim/tests/<name>.rs).
# Environment: OXETCD_SIM_TARGET_DIR (default target/madsim), MADSIM_TEST_TIME_LIMIT (300).
set -euo pipefail

cd "$(dirname "$0")/.."

if [ $# -lt 1 ]; then
    sed -n '2,11p' "$0"
    exit 2
fi
if [[ "$1" =~ ^[0-9]+$ ]]; then
    deadline=$(( $(date +%s) + $1 * 60 ))
else
    deadline=$(date -d "$1" +%s)
fi
seed=${2:-$(( $(date +%s) % 1000000 * 1000 ))}
shift $(( $# >= 2 ? 2 : 1 ))
tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
    tests=(cluster_faults kv_faults)
fi
target=${OXETCD_SIM_TARGET_DIR:-target/madsim}
export RUSTFLAGS="--cfg madsim" RUSTDOCFLAGS="--cfg madsim"
export MADSIM_TEST_TIME_LIMIT=${MADSIM_TEST_TIME_LIMIT:-300}
unset CARGO_TARGET_DIR

cargo_test() {
    cargo test -q -p sim --target-dir "$target" --test "$1" -- "${@:2}"
}

echo "soak: seeds from $seed until $(date -d "@$deadline"), tests: ${tests[*]}"
for t in "${tests[@]}"; do
    cargo test -q -p sim --target-dir "$target" --test "$t" --no-run
done

failures=()
runs=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
while [ "$(date +%s)" -lt "$deadline" ]; do
    for t in "${tests[@]}"; do
        if ! MADSIM_TEST_SEED=$seed MADSIM_TEST_NUM=1 cargo_test "$t" >"$log" 2>&1; then
            names=$(sed -n 's/^test \([a-z0-9_]*\) \.\.\. FAILED$/\1/p' "$log" | tr '\n' ' ')
            for name in ${names:-"?"}; do
                failures+=("seed $seed $t::$name   replay: MADSIM_TEST_SEED=$seed MADSIM_TEST_NUM=1 cargo sim --test $t -- $name --exact")
            done
            echo "seed $seed: $t FAILED (${names:-see output})"
            grep -E "^simulation failed|^  [a-z]+: " "$log" | head -5 || true
        fi
    done
    runs=$((runs + 1))
    seed=$((seed + 1))
done

echo "soak: $runs seeds run, next seed $seed, ${#failures[@]} failure(s)"
for f in "${failures[@]}"; do
    echo "  $f"
done
[ ${#failures[@]} -eq 0 ]
