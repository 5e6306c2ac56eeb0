#!/usr/bin/env bash
# Long simulation runs: runs the simulation suites seed after seed, for a number of seeds or
# until a deadline, prints every failing seed with its replay command, and appends one line
# per suite to docs/sim-soak.log (the soak record; docs/simulation.md keeps the total).
#
#   scripts/sim-soak.sh --seeds N [FIRST_SEED] [TEST_FILE...]
#   scripts/sim-soak.sh DEADLINE  [FIRST_SEED] [TEST_FILE...]
#
# N seeds of each test file (SIM_SOAK_SEEDS=N does the same), or seeds until DEADLINE
# (anything `date -d` understands: "06:00", "2 hours"; or a number of minutes). FIRST_SEED
# defaults to a value from the clock (printed, so the run can be resumed). TEST_FILE defaults
# to cluster_faults, deep_faults and kv_faults (sim/tests/<name>.rs). Each seed runs in a
# process of its own by default: a seed replays exactly only when it is the first run of its
# process (some process-wide state outlives a run), so this keeps every recorded failure
# replayable. SIM_SOAK_CHUNK=N runs N seeds per process (less start-up cost); a failing chunk
# is counted up to its first failing seed and the soak goes on after it. The test binaries are built at the start
# and copied aside, so later edits of the tree do not change what a running soak tests.
# Environment: OXETCD_SIM_TARGET_DIR (default target/madsim), MADSIM_TEST_TIME_LIMIT (300),
# SIM_SOAK_LOG (default docs/sim-soak.log; empty: no record), SIM_SOAK_FEATURES (default
# `canary`: the build CI tests, so the two share target/madsim; no suite here plants a
# canary, and an unplanted canary hook is a no-op). Run it at low priority on a
# shared machine: `nice -n 19 scripts/sim-soak.sh ...`. To end a soak early and keep its
# record, send the script SIGTERM or SIGINT (`kill <pid>`): it finishes the chunk that is
# running, then writes the record as at a deadline. A line per chunk reports the progress.
set -euo pipefail

cd "$(dirname "$0")/.."

usage() {
    sed -n '2,18p' "$0"
    exit 2
}
[ $# -ge 1 ] || [ -n "${SIM_SOAK_SEEDS:-}" ] || usage

seeds_max=${SIM_SOAK_SEEDS:-}
deadline=
if [ "${1:-}" = "--seeds" ]; then
    [ $# -ge 2 ] || usage
    seeds_max=$2
    shift 2
elif [ -n "${1:-}" ] && [ -z "$seeds_max" ]; then
    if [[ "$1" =~ ^[0-9]+$ ]]; then
        deadline=$(( $(date +%s) + $1 * 60 ))
    else
        deadline=$(date -d "$1" +%s)
    fi
    shift
fi
[[ -z "$seeds_max" || "$seeds_max" =~ ^[0-9]+$ ]] || usage
first=${1:-$(( $(date +%s) % 1000000 * 1000 ))}
[ $# -ge 1 ] && shift
tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
    tests=(cluster_faults deep_faults kv_faults)
fi
chunk=${SIM_SOAK_CHUNK:-1}
target=${OXETCD_SIM_TARGET_DIR:-target/madsim}
record=${SIM_SOAK_LOG-docs/sim-soak.log}
features=${SIM_SOAK_FEATURES-canary}
export RUSTFLAGS="--cfg madsim" RUSTDOCFLAGS="--cfg madsim"
export MADSIM_TEST_TIME_LIMIT=${MADSIM_TEST_TIME_LIMIT:-300}
unset CARGO_TARGET_DIR
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    commit="$commit+dirty"
fi

done_yet() {
    local ran=$1
    if [ -n "$seeds_max" ]; then
        [ "$ran" -ge "$seeds_max" ]
    else
        [ "$(date +%s)" -ge "$deadline" ]
    fi
}

echo "soak: from seed $first, ${seeds_max:+$seeds_max seeds of each file}${deadline:+until $(date -d "@$deadline")}, tests: ${tests[*]}"
# The test binaries are built once and copied aside: edits and rebuilds in the tree during a
# long soak do not change what it runs (the record names the commit it was built from).
bins=$(mktemp -d)
log=$(mktemp)
trap 'rm -rf "$log" "$bins"' EXIT
for t in "${tests[@]}"; do
    exe=$(cargo test -p sim --target-dir "$target" --features "$features" --test "$t" --no-run --message-format=json \
        | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
    [ -n "$exe" ] || { echo "soak: no test binary for $t" >&2; exit 1; }
    cp "$exe" "$bins/$t"
done

# SIGTERM/SIGINT: stop after the running chunk (bash runs the trap once its child returns)
# and write the record as at the deadline.
stop=0
trap 'stop=1' TERM INT

failures=()
declare -A ran_of bad_of next_of
for t in "${tests[@]}"; do
    ran_of[$t]=0
    bad_of[$t]=0
    next_of[$t]=$first
done
# Round-robin over the files, one chunk each, so a deadline leaves every file with seeds.
while :; do
    progressed=0
    for t in "${tests[@]}"; do
        [ "$stop" -eq 1 ] && break
        done_yet "${ran_of[$t]}" && continue
        progressed=1
        seed=${next_of[$t]}
        n=$chunk
        if [ -n "$seeds_max" ] && [ $(( ${ran_of[$t]} + n )) -gt "$seeds_max" ]; then
            n=$(( seeds_max - ${ran_of[$t]} ))
        fi
        if MADSIM_TEST_SEED=$seed MADSIM_TEST_NUM=$n "$bins/$t" -q >"$log" 2>&1; then
            ran_of[$t]=$(( ${ran_of[$t]} + n ))
            next_of[$t]=$(( seed + n ))
            echo "$(date -u +%H:%M:%S) $t: seeds $seed..$(( seed + n - 1 )) passed (${ran_of[$t]} run, ${bad_of[$t]} violation(s))"
            continue
        fi
        # A chunk killed with the script (SIGINT to the whole process group) is not counted.
        [ "$stop" -eq 1 ] && break
        bad=$(sed -n 's/^simulation failed at seed \([0-9]*\).*/\1/p' "$log" | sort -n | head -1)
        names=$(sed -n 's/^test \([a-z0-9_]*\) \.\.\. FAILED$/\1/p' "$log" | tr '\n' ' ')
        if [ -z "$bad" ]; then
            # A failure without the simulation's report (a panic inside madsim): its note.
            bad=$(sed -n 's/.*MADSIM_TEST_SEED=\([0-9]*\).*/\1/p' "$log" | sort -n | head -1)
        fi
        bad=${bad:-$seed}
        echo "seed $bad: $t FAILED (${names:-see output})"
        grep -E "^simulation failed|^  [a-z]+: " "$log" | head -5 || true
        for name in ${names:-"?"}; do
            # A seed's run can depend on the seeds run before it in the same process (hash
            # keys are drawn once per thread), so check that the seed fails on its own too.
            alone=no
            if ! MADSIM_TEST_SEED=$bad MADSIM_TEST_NUM=1 "$bins/$t" -q "$name" --exact >/dev/null 2>&1; then
                alone=yes
            fi
            failures+=("seed $bad $t::$name (fails alone: $alone)   replay: MADSIM_TEST_SEED=$bad MADSIM_TEST_NUM=1 cargo sim --features $features --test $t -- $name --exact")
        done
        bad_of[$t]=$(( ${bad_of[$t]} + 1 ))
        ran_of[$t]=$(( ${ran_of[$t]} + bad - seed + 1 ))
        next_of[$t]=$(( bad + 1 ))
    done
    [ "$progressed" -eq 1 ] || break
    [ "$stop" -eq 0 ] || { echo "soak: stopped by a signal"; break; }
    if [ -z "$seeds_max" ] && [ "$(date +%s)" -ge "$deadline" ]; then
        break
    fi
done

for t in "${tests[@]}"; do
    echo "soak: $t: ${ran_of[$t]} seeds ($first..$(( ${next_of[$t]} - 1 ))), ${bad_of[$t]} violation(s)"
    if [ -n "$record" ] && [ "${ran_of[$t]}" -gt 0 ]; then
        printf '%s commit=%s suite=%s seeds=%s..%s count=%s violations=%s\n' \
            "$(date -u +%Y-%m-%dT%H:%MZ)" "$commit" "$t" "$first" "$(( ${next_of[$t]} - 1 ))" \
            "${ran_of[$t]}" "${bad_of[$t]}" >>"$record"
    fi
done
if [ -n "$record" ] && [ -f "$record" ]; then
    awk '/^[0-9]/ { for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "count") c += kv[2]; if (kv[1] == "violations") v += kv[2] } }
         END { printf "soak record (%s): %d seeds, %d violation(s) in total\n", FILENAME, c, v }' "$record"
fi
for f in "${failures[@]}"; do
    echo "  $f"
done
[ ${#failures[@]} -eq 0 ]
