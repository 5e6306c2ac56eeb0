#!/usr/bin/env bash
# Long real-process nemesis runs (tests/chaos.rs) by hand: runs the suite again and again until
# DURATION has passed, appending every run's report to a report file, then prints a summary
# (runs, operations, faults per type, anomalies, recovery times per fault type).
#
#   scripts/chaos-soak.sh DURATION [REPORT_FILE]
#
# DURATION: seconds, or a number with s/m/h ("900", "45m", "8h"). REPORT_FILE defaults to
# target/chaos-soak-<date>.txt.
# Environment: OXETCD_CHAOS_RUN_SECS (length of one oxetcd run, default 300; etcd runs half as
# long), OXETCD_CHAOS_TARGET (oxetcd | etcd | both, default oxetcd), OXETCD_CHAOS_MEMBERS (3).
set -euo pipefail

cd "$(dirname "$0")/.."

if [ $# -lt 1 ]; then
    sed -n '2,11p' "$0"
    exit 2
fi
case "$1" in
    *h) total=$(( ${1%h} * 3600 )) ;;
    *m) total=$(( ${1%m} * 60 )) ;;
    *s) total=${1%s} ;;
    *) total=$1 ;;
esac
report=${2:-target/chaos-soak-$(date -u +%Y%m%dT%H%M%SZ).txt}
run_secs=${OXETCD_CHAOS_RUN_SECS:-300}
case "${OXETCD_CHAOS_TARGET:-oxetcd}" in
    oxetcd) filter=(oxetcd_members) ;;
    etcd) filter=(etcd_3_5) ;;
    both) filter=() ;;
    *) echo "OXETCD_CHAOS_TARGET must be oxetcd, etcd or both" >&2; exit 2 ;;
esac

mkdir -p "$(dirname "$report")"
: >>"$report"
report=$(cd "$(dirname "$report")" && pwd)/$(basename "$report")
cargo test -q --test chaos --no-run
deadline=$(( $(date +%s) + total ))
runs=0
failed=0
echo "chaos soak until $(date -u -d "@$deadline"), runs of ${run_secs}s, report: $report"
while [ "$(date +%s)" -lt "$deadline" ]; do
    runs=$((runs + 1))
    if ! OXETCD_CHAOS_SECS=$run_secs OXETCD_CHAOS_REPORT=$report \
        cargo test -q --test chaos -- --test-threads=1 "${filter[@]}" >"$report.last" 2>&1; then
        failed=$((failed + 1))
        cp "$report.last" "$report.failed-$runs"
        echo "run $runs FAILED: output kept in $report.failed-$runs"
    else
        echo "run $runs passed"
    fi
done
rm -f "$report.last"

echo
echo "==== chaos soak summary ($runs runs, $failed failed) ===="
awk '
    /^chaos run: / { label = $3; runs[label]++ }
    /^  operations: / { ops[label] += $2 }
    /^  anomalies: / { anomalies[label] += $2 }
    /^    .*recovery ms/ {
        name = $0; sub(/^    /, "", name); sub(/ +[0-9]+  recovery.*/, "", name)
        split($0, parts, "recovery ms min/median/max ")
        split(parts[2], t, "/"); sub(/,.*/, "", t[3])
        key = label SUBSEP name
        match($0, / +[0-9]+  recovery/); cnt = substr($0, RSTART, RLENGTH); gsub(/[^0-9]/, "", cnt)
        faults[key] += cnt
        if (!(key in lo) || t[1] + 0 < lo[key]) lo[key] = t[1] + 0
        if (t[3] + 0 > hi[key]) hi[key] = t[3] + 0
        med[key] = med[key] " " t[2]
    }
    END {
        for (l in runs) {
            printf "%s: %d runs, %d operations, %d anomalies\n", l, runs[l], ops[l], anomalies[l]
            for (k in faults) {
                split(k, kk, SUBSEP)
                if (kk[1] != l) continue
                printf "  %-44s %5d faults, recovery ms min %d, max %d, per-run medians:%s\n", kk[2], faults[k], lo[k], hi[k], med[k]
            }
        }
    }
' "$report" | tee -a "$report"
[ "$failed" -eq 0 ]
