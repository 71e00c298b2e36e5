#!/bin/bash
# Run splitvm benchmarks and write bench/report/ (report.md, results.tsv,
# PNG plots).  Benchmarks report; they never fail on a missed goal.
#
#   bench/run.sh [--build DIR] [--report DIR] [SUITE ...]
#
# SUITE names a file bench/suites/SUITE.sh (default: all of them).
# SPDX-License-Identifier: GPL-2.0-or-later
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
build=$src/build
report=$src/bench/report
suites=()
while [ $# -gt 0 ]; do
    case $1 in
    --build) build=$(cd "$2" && pwd); shift 2 ;;
    --report) report=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    -*) echo "run.sh: unknown option '$1'" >&2; exit 2 ;;
    *) suites+=("$1"); shift ;;
    esac
done
if [ ${#suites[@]} -eq 0 ]; then
    for f in "$src"/bench/suites/*.sh; do
        suites+=("$(basename "$f" .sh)")
    done
fi
for s in "${suites[@]}"; do
    [ -f "$src/bench/suites/$s.sh" ] || { echo "run.sh: no suite '$s'" >&2; exit 2; }
done
for tool in gnuplot taskset python3; do
    command -v $tool >/dev/null || { echo "run.sh: $tool is missing (scripts/setup-host.sh)" >&2; exit 1; }
done

mkdir -p "$report/data"
rm -f "$report"/data/*.cdf "$report"/*.png
results=$report/results.tsv
printf 'suite\tkind\tname\tvalue\tunit_or_goal\tdescription\n' >"$results"

for s in "${suites[@]}"; do
    echo "== suite $s" >&2
    out=$(SVM_SRC=$src SVM_BUILD=$build SVM_DATA=$report/data \
          bash -c 'set -euo pipefail; . "$SVM_SRC/bench/lib.sh"; . "$0"' \
          "$src/bench/suites/$s.sh" 2> >(tee "$report/$s.log" >&2)) || {
        echo "run.sh: suite $s failed (log: $report/$s.log)" >&2
        printf '%s\terror\tsuite failed\t-\t-\tsee %s.log\n' "$s" "$s" >>"$results"
        continue
    }
    while read -r kind name value rest; do
        case $kind in
        metric) printf '%s\tmetric\t%s\t%s\t%s\t\n' "$s" "$name" "$value" "$rest" ;;
        ratio) goal=${rest%% *}; desc=${rest#* }
               printf '%s\tratio\t%s\t%s\t%s\t%s\n' "$s" "$name" "$value" "$goal" "$desc" ;;
        esac
    done <<<"$out" >>"$results"
done

python3 "$src/bench/report.py" "$results" "$report"
echo "report: $report/report.md" >&2
