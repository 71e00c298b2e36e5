# Migration (issue 7): live migration of a split VM (RAM stays on the
# memory servers) against QEMU's precopy and postcopy of the same guest
# with plain memfd RAM, memverify looping in the guest.
# See docs/benchmarks.md for what exactly is measured.
# SPDX-License-Identifier: GPL-2.0-or-later
MB=$SVM_SRC/bench/migbench.py
MEM=${SVM_BENCH_MIG_MEM:-2G}
RUNS=${SVM_BENCH_MIG_RUNS:-3}
BOUND=${SVM_BENCH_MIG_BOUND:-120}
# 10 Gbit/s: one rack link; QEMU's default 300 ms downtime limit.
MAX_BW=${SVM_BENCH_MIG_MAX_BANDWIDTH:-1250000000}
DOWNTIME_LIMIT=${SVM_BENCH_MIG_DOWNTIME_LIMIT:-300}

case $MEM in
*[Gg]) mem_mib=$((${MEM%?} * 1024)) ;;
*[Mm]) mem_mib=${MEM%?} ;;
*) echo "migration: SVM_BENCH_MIG_MEM='$MEM' is not a size like 2G or 1536M" >&2; exit 1 ;;
esac
# memverify over 3/8 of the RAM, splitvm budget 1/4 of it: the proportions
# of tests/migration (384 MiB and 256 MiB of 1 GiB).
VERIFY_MIB=${SVM_BENCH_MIG_VERIFY_MIB:-$((mem_mib * 3 / 8))}
BUDGET=${SVM_BENCH_MIG_BUDGET:-$((mem_mib / 4))M}

[ -x "$SVM_BUILD/memserver/splitvm-memserver" ] ||
    { echo "migration: $SVM_BUILD/memserver/splitvm-memserver is not built" >&2; exit 1; }
export SPLITVM_BUILD_ROOT=$SVM_BUILD SPLITVM_SOURCE_ROOT=$SVM_SRC
qemu=${SPLITVM_QEMU:-$("$SVM_SRC/qemu-patches/build-qemu.sh" --print-path 2>/dev/null || true)}
if [ -z "$qemu" ] || [ ! -x "$qemu" ]; then
    bench_log "SKIPPED: the patched QEMU '${qemu:-?}' is not built" \
              "(SPLITVM_PKG_CONFIG_PATH=$SVM_BUILD/meson-uninstalled qemu-patches/build-qemu.sh)"
    echo "metric migration_skipped 1 no-qemu"
    return 0
fi
export SPLITVM_QEMU=$qemu
if [ ! -x "$SVM_BUILD/guest/memverify" ] || [ ! -r "$SVM_BUILD/guest/initramfs.cpio.gz" ]; then
    bench_log "SKIPPED: $SVM_BUILD/guest has no memverify/initramfs (ninja -C $SVM_BUILD)"
    echo "metric migration_skipped 1 no-guest"
    return 0
fi

# One placement for every method: source QEMU on CPU 0, destination QEMU on
# CPU 1, memory servers (splitvm only) on CPU 1.
src_cpu=0 dst_cpu=0 srv_cpu=0
[ "$(nproc)" -gt 1 ] && dst_cpu=1 srv_cpu=1
bench_log "QEMU: $qemu"
bench_log "guest $MEM, memverify --mib $VERIFY_MIB looping, splitvm budget $BUDGET;" \
          "max-bandwidth $MAX_BW B/s, downtime-limit $DOWNTIME_LIMIT ms, bound $BOUND s;" \
          "$RUNS runs per method; CPUs: source $src_cpu, destination $dst_cpu," \
          "servers $srv_cpu"
rc=0
out=$(python3 "$MB" --mem "$MEM" --verify-mib "$VERIFY_MIB" --budget "$BUDGET" \
      --runs "$RUNS" --bound "$BOUND" --max-bandwidth "$MAX_BW" \
      --downtime-limit "$DOWNTIME_LIMIT" --src-cpu "$src_cpu" --dst-cpu "$dst_cpu" \
      --server-cpu "$srv_cpu") || rc=$?
[ "$rc" = 0 ] || bench_log "migbench exited $rc (see above)"

echo "metric guest_ram_mib $mem_mib MiB"
echo "metric memverify_mib $VERIFY_MIB MiB"
echo "metric max_bandwidth $MAX_BW B/s"
echo "metric downtime_limit $DOWNTIME_LIMIT ms"
declare -A total down s2r lower
for m in splitvm precopy postcopy; do
    if [ -n "$(bench_result "$out" ${m}_verify_failed)" ]; then
        bench_log "*** $m: THE GUEST FAILED VERIFICATION after a migration: no number" \
                  "is reported for $m ***"
        echo "metric ${m}_GUEST_VERIFICATION_FAILED 1 FAILED"
        continue
    fi
    if [ -n "$(bench_result "$out" ${m}_error)" ]; then
        bench_log "*** $m: a run failed (see above): no number is reported for $m ***"
        echo "metric ${m}_FAILED 1 FAILED"
        continue
    fi
    # Everything migbench measured, as it named it.
    awk -v p="${m}_" '$1 == "result" && index($2, p) == 1 { print "metric", $2, $3, $4 }' <<<"$out"
    total[$m]=$(bench_result "$out" ${m}_total_ms)
    down[$m]=$(bench_result "$out" ${m}_downtime_ms)
    s2r[$m]=$(bench_result "$out" ${m}_stop_to_resume_ms)
    lower[$m]=$(bench_result "$out" ${m}_total_is_lower_bound)
done

# ratio NAME A B GOAL DESCRIPTION: A / B, or a note when a value is missing.
mig_ratio() {
    local name=$1 a=$2 b=$3 goal=$4; shift 4
    if [ -z "$a" ] || [ -z "$b" ]; then
        bench_log "ratio $name: a value is missing (numerator '$a', denominator '$b')"
        return 0
    fi
    echo "ratio $name $(bench_ratio "$a" "$b") $goal $*"
}

for peer in precopy postcopy; do
    note=""
    [ "${lower[$peer]:-0}" = 1 ] &&
        note=" (LOWER BOUND: $peer did not converge within $BOUND s in most runs)"
    [ "${lower[splitvm]:-0}" = 1 ] &&
        note="$note (splitvm did NOT converge within $BOUND s in most runs)"
    mig_ratio "total_${peer}_vs_splitvm" "${total[$peer]:-}" "${total[splitvm]:-}" ">=10" \
        "$peer total migration time / splitvm's, $MEM guest, medians$note"
    mig_ratio "downtime_splitvm_vs_$peer" "${down[splitvm]:-}" "${down[$peer]:-}" "<=1" \
        "splitvm downtime / $peer's (query-migrate), medians"
    mig_ratio "stop_to_resume_splitvm_vs_$peer" "${s2r[splitvm]:-}" "${s2r[$peer]:-}" "<=1" \
        "splitvm / $peer: source STOP -> destination RESUME, medians"
done

# Plot: median total time and downtimes per method.
report_dir=$(dirname "$SVM_DATA")
dat=$SVM_DATA/migration.dat
echo "# method total_s downtime_ms stop_to_resume_ms total_is_lower_bound" >"$dat"
for m in splitvm precopy postcopy; do
    [ -n "${total[$m]:-}" ] || continue
    awk -v m="$m" -v t="${total[$m]}" -v d="${down[$m]:-NaN}" -v r="${s2r[$m]:-NaN}" \
        -v l="${lower[$m]:-0}" 'BEGIN { printf "%s %.3f %s %s %s\n", m, t / 1000, d, r, l }' >>"$dat"
done
if [ "$(grep -vc '^#' "$dat")" -gt 0 ]; then
    gnuplot <<EOF || bench_log "gnuplot failed (migration plot)"
set terminal pngcairo noenhanced size 1100,500 font ",10"
set output "$report_dir/migration.png"
set multiplot layout 1,2 title "Live migration of a $MEM TCG guest running memverify ($VERIFY_MIB MiB), medians of $RUNS runs"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.7
set boxwidth 0.9
set grid y
set logscale y
set yrange [0.01:*]
set title "total migration time (query-migrate total-time)"
set ylabel "seconds (log)"
plot "$dat" using 2:xtic(1) notitle lc rgb "#4060c0", \
     "" using 0:(\$2 * 1.3):(\$5 > 0 ? "not converged: >=" : "") with labels notitle
set title "guest stopped"
set ylabel "milliseconds (log)"
set yrange [0.5:*]
set key outside bottom center horizontal
plot "$dat" using 3:xtic(1) title "downtime (query-migrate)" lc rgb "#c06040", \
     "" using 4 title "source STOP -> destination RESUME" lc rgb "#40a060"
unset multiplot
EOF
fi
