# Pager (issue 4): fault service latency against its floor, guest vCPU
# stalls against QEMU's postcopy, guest slowdown against all-local RAM.
# See docs/benchmarks.md for what exactly is measured.
# SPDX-License-Identifier: GPL-2.0-or-later
FB=$SVM_BUILD/bench/faultbench
NB=$SVM_BUILD/bench/netbench
MS=$SVM_BUILD/memserver/splitvm-memserver
PB=$SVM_SRC/bench/pagerbench.py
ITERS=${SVM_BENCH_ITERS:-20000}
# Guest parts: memtouch area; slowdown guest RAM and working set (MiB).
# The slowdown budgets are a share of the guest RAM; the working set covers
# most of that RAM (3/4 by default), so at 25 % it is 3x the budget.
TOUCH_MIB=${SVM_BENCH_PAGER_TOUCH_MIB:-256}
RAM_MIB=${SVM_BENCH_PAGER_RAM_MIB:-1024}
WS_MIB=${SVM_BENCH_PAGER_WS_MIB:-$((RAM_MIB * 3 / 4))}
POSTCOPY_RUNS=${SVM_BENCH_PAGER_POSTCOPY_RUNS:-2}
# Alternating all-local / 25 % rounds of memscan alone for its goal.
GOAL_ROUNDS=${SVM_BENCH_PAGER_GOAL_ROUNDS:-5}
[[ $GOAL_ROUNDS =~ ^[1-9][0-9]*$ ]] || {
    echo "pager: SVM_BENCH_PAGER_GOAL_ROUNDS must be a positive integer, not '$GOAL_ROUNDS'" >&2
    exit 1
}

for f in "$FB" "$NB" "$MS"; do
    [ -x "$f" ] || { echo "pager: $f is not built (ninja -C $SVM_BUILD)" >&2; exit 1; }
done

secret=bench-secret-0123456789
secrets=$BENCH_TMP/secrets.ini
printf '[vm bench]\nsecret = %s\n' "$secret" >"$secrets"
chmod 600 "$secrets"
report_dir=$(dirname "$SVM_DATA")
pdata=$SVM_DATA/pager
rm -rf "$pdata"
mkdir -p "$pdata"

# ratio NAME A B GOAL DESCRIPTION: A / B, or a note when a value is missing.
pager_ratio() {
    local name=$1 a=$2 b=$3 goal=$4; shift 4
    if [ -z "$a" ] || [ -z "$b" ]; then
        bench_log "ratio $name: a value is missing (numerator '$a', floor '$b')"
        return 0
    fi
    echo "ratio $name $(bench_ratio "$a" "$b") $goal $*"
}

# metrics OUTPUT NAME UNIT...: re-print "result NAME VALUE UNIT" as metrics.
pager_metrics() {
    local out=$1 unit=$2; shift 2
    local n v
    for n in "$@"; do
        v=$(bench_result "$out" "$n")
        [ -n "$v" ] && echo "metric $n $v $unit"
    done
    return 0
}

# start_memservers: two memory servers on loopback (not pinned) -> $servers.
# Every guest run gets fresh servers: no namespace left over from an
# earlier VM, and their memory is given back in between.  Their pools are
# preallocated (as a rack's servers would be, running long before a VM
# comes): a fresh pool's first touch is not what a VM pays in production.
# Each holds half of a guest's RAM at most (pages are striped over both;
# the memtouch guest has pagerbench's default 1 GiB).
SRV_MIB=$(( (RAM_MIB > 1024 ? RAM_MIB : 1024) / 2 + 64 ))
start_memservers() {
    local i port list=()
    for i in 1 2; do
        port=$(bench_free_port)
        "$MS" --listen "127.0.0.1:$port" --capacity "${SRV_MIB}M" \
            --prealloc --secrets "$secrets" --workers 1 --quiet >&2 &
        BENCH_PIDS+=($!)
        bench_wait_port "$port" 60
        list+=("tcp:127.0.0.1:$port")
    done
    servers=$(IFS=,; echo "${list[*]}")
}

# ---------------------------------------------------------------------------
# 1. Fault service latency from a host thread: pager vs. floor, same process,
#    rounds alternating, same CPU placement.
#    same:  reader, handler threads and servers on CPU 0
#    cross: reader CPU 1, handler threads CPU 0, servers CPU 1 (every hop
#           between reader, handler and server crosses CPUs)
# ---------------------------------------------------------------------------
pages=512
rounds=$((ITERS / 400))
[ "$rounds" -lt 5 ] && rounds=5
placements="same:0:0:0"
[ "$(nproc)" -gt 1 ] && placements="$placements cross:1:0:1"
for pl in $placements; do
    IFS=: read -r name tcpu hcpu scpu <<<"$pl"
    bench_log "host faults, placement $name: reader CPU $tcpu, handlers CPU $hcpu," \
              "servers CPU $scpu; $rounds rounds of $pages pages"
    rport=$(bench_free_port)
    mport=$(bench_free_port)
    bench_start "$scpu" "$NB" raw-server --listen "127.0.0.1:$rport"
    bench_start "$scpu" "$MS" --listen "127.0.0.1:$mport" --capacity 1G \
        --secrets "$secrets" --workers 1 --quiet
    bench_wait_port "$rport"
    bench_wait_port "$mport"
    out=$("$FB" --addr "127.0.0.1:$rport" --server "tcp:127.0.0.1:$mport" --vm bench \
          --secret "$secret" --pages "$pages" --rounds "$rounds" \
          --toucher-cpu "$tcpu" --handler-cpu "$hcpu" \
          --samples "$SVM_DATA/pager-fault-$name" 2> >(grep -v 'splitvm-pager: budget' >&2))
    for side in handler touch; do
        for q in p50 p99; do
            f=$(bench_result "$out" "floor_${side}_$q")
            p=$(bench_result "$out" "pager_${side}_$q")
            echo "metric floor_fault_${side}_${q}_$name $f us"
            echo "metric pager_fault_${side}_${q}_$name $p us"
            goal="<=2"
            [ "$q" = p50 ] && goal="<=1.3"
            if [ "$side" = handler ]; then
                what="handler side (event read -> resolved)"
            else
                what="seen by the faulting thread"
            fi
            pager_ratio "fault_${side}_${q}_$name" "$p" "$f" "$goal" \
                "pager remote fault / floor (uffd + raw TCP 4 KiB + COPY), $what, $q, CPUs $name"
        done
    done
    for n in floor_touch_count:faults pager_touch_count:faults pager_local_faults:faults \
             pager_skipped_resident:pages pager_bad_pages:pages floor_touch_max:us \
             pager_touch_max:us; do
        v=$(bench_result "$out" "${n%%:*}")
        [ -n "$v" ] && echo "metric ${n%%:*}_$name $v ${n#*:}"
    done
    bench_stop_all
done

# ---------------------------------------------------------------------------
# Guest parts need the patched QEMU and the guest with memtouch.
# ---------------------------------------------------------------------------
export SPLITVM_BUILD_ROOT=$SVM_BUILD SPLITVM_SOURCE_ROOT=$SVM_SRC
export PYTHONPATH=$SVM_SRC/tests/lib${PYTHONPATH:+:$PYTHONPATH}
qemu=${SPLITVM_QEMU:-$("$SVM_SRC/qemu-patches/build-qemu.sh" --print-path 2>/dev/null || true)}
if [ -z "$qemu" ] || [ ! -x "$qemu" ]; then
    bench_log "SKIPPED guest parts: the patched QEMU '${qemu:-?}' is not built" \
              "(SPLITVM_PKG_CONFIG_PATH=$SVM_BUILD/meson-uninstalled qemu-patches/build-qemu.sh)"
    echo "metric guest_parts_skipped 1 no-qemu"
    return 0
fi
# Every guest run of this suite uses this one binary (the patch series may
# change while the suite runs).
export SPLITVM_QEMU=$qemu
bench_log "QEMU: $qemu"
if [ ! -x "$SVM_BUILD/guest/memtouch" ] || [ ! -r "$SVM_BUILD/guest/initramfs.cpio.gz" ]; then
    bench_log "SKIPPED guest parts: $SVM_BUILD/guest has no memtouch/initramfs (ninja -C $SVM_BUILD)"
    echo "metric guest_parts_skipped 1 no-guest"
    return 0
fi

# pagerbench ARGS...: run it; on failure log it and print only a
# "metric pagerbench_failed_..." line (the suite goes on).
pagerbench() {
    local out
    if out=$(python3 "$PB" "$@"); then
        echo "$out"
    else
        bench_log "pagerbench $* FAILED (see above)"
        echo "metric pagerbench_failed_${1}_${3} 1 run"
    fi
}

remote_args() { echo --servers "$servers" --vm bench --secret "$secret"; }

# ---------------------------------------------------------------------------
# 2. Per-fault vCPU stall seen from inside the guest (memtouch, random
#    order): splitvm vs. QEMU postcopy (plain and with postcopy-preempt).
# ---------------------------------------------------------------------------
bench_log "guest fault stalls: memtouch --mib $TOUCH_MIB (random order)"
touch_out=""
for mode in local splitvm postcopy postcopy-preempt; do
    args=(touch --mode "${mode%-preempt}" --mib "$TOUCH_MIB" --cdf-dir "$pdata")
    case $mode in
    splitvm) start_memservers; args+=($(remote_args)) ;;
    postcopy) args+=(--repeat "$POSTCOPY_RUNS") ;;
    postcopy-preempt) args+=(--preempt --repeat "$POSTCOPY_RUNS") ;;
    esac
    out=$(pagerbench "${args[@]}")
    bench_stop_all
    grep '^metric pagerbench_failed' <<<"$out" || true
    touch_out+=$out$'\n'
done
for m in local splitvm postcopy postcopy_preempt; do
    pager_metrics "$touch_out" us ${m}_touch_p50 ${m}_touch_p99 \
        ${m}_fault_stall_p50 ${m}_fault_stall_p99 ${m}_fault_stall_max
    pager_metrics "$touch_out" faults ${m}_faults
    pager_metrics "$touch_out" reads ${m}_reads ${m}_reads_over_10us
    pager_metrics "$touch_out" s/run ${m}_touch_seconds
done
pager_metrics "$touch_out" count splitvm_touch_phase_fills_remote \
    splitvm_touch_phase_prefetch_issued splitvm_touch_phase_evictions
for peer in postcopy postcopy_preempt; do
    for q in p50 p99; do
        pager_ratio "guest_fault_stall_${q}_vs_$peer" \
            "$(bench_result "$touch_out" splitvm_fault_stall_$q)" \
            "$(bench_result "$touch_out" ${peer}_fault_stall_$q)" "<=1" \
            "splitvm / QEMU $peer: vCPU stall per remote page fault, from inside the guest, $q"
    done
done

# ---------------------------------------------------------------------------
# 3. Slowdown curve: memscan and memrand over WS_MIB in a RAM_MIB guest,
#    budget 100/50/25/12.5 % of the guest RAM (prefetch on) vs. all-local
#    RAM.  100 % never evicts: it is the cost of the pager's own faults.
# ---------------------------------------------------------------------------
wl="memscan --mib $WS_MIB --passes 2 ; memrand --mib $WS_MIB --seconds 3"
bench_log "slowdown curve: '$wl' in a $RAM_MIB MiB guest"
# The all-local baseline runs before and after the curve (the machine's
# load drifts over the minutes in between); the mean of both is the floor,
# and the ratios are computed at the end.
local_out=$(pagerbench workload --mode local --mem "${RAM_MIB}M" --run "$wl")
grep '^metric pagerbench_failed' <<<"$local_out" || true
points="100 50 25 12.5"
declare -A scan rand cpu_row
for pct in $points; do
    budget=$(awk -v m="$RAM_MIB" -v p="$pct" 'BEGIN { printf "%d", m * p / 100 }')
    tag=${pct/./_}pct
    bench_log "slowdown: budget $budget MiB ($pct % of the $RAM_MIB MiB guest RAM)"
    start_memservers
    out=$(pagerbench workload --mode splitvm --mem "${RAM_MIB}M" --budget "${budget}M" \
          --run "$wl" $(remote_args))
    bench_stop_all
    grep '^metric pagerbench_failed' <<<"$out" || true
    scan[$pct]=$(bench_result "$out" memscan_seconds)
    rand[$pct]=$(bench_result "$out" memrand_ops_per_sec)
    echo "metric memscan_seconds_$tag ${scan[$pct]:-nan} s"
    echo "metric memrand_ops_per_sec_$tag ${rand[$pct]:-nan} ops/s"
    for n in fills_remote fills_zero faults_missing faults_wp faults_minor evictions \
             writebacks prefetch_issued prefetch_hits; do
        v=$(bench_result "$out" "pager_$n")
        [ -n "$v" ] && echo "metric pager_${n}_$tag $v pages"
    done
    # CPU the workloads cost (boot excluded), by thread role
    cpu_row[$pct]="$pct%"
    for n in vcpu pager memclient memservers; do
        v=$(bench_result "$out" "cpu_${n}_s")
        [ -n "$v" ] && echo "metric cpu_${n}_s_$tag $v s"
        cpu_row[$pct]+=" ${v:-0}"
    done
    v=$(bench_result "$out" cpu_per_page_moved_us)
    [ -n "$v" ] && echo "metric cpu_per_page_moved_us_$tag $v us"
    v=$(bench_result "$out" vcpu_runq_wait_s)
    [ -n "$v" ] && echo "metric vcpu_runq_wait_s_$tag $v s"
done
local_out2=$(pagerbench workload --mode local --mem "${RAM_MIB}M" --run "$wl")
grep '^metric pagerbench_failed' <<<"$local_out2" || true
mean() { # A B: their mean, or the one that is there
    awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "") printf "%.4f", (a + b) / 2;
                                     else if (a != "") print a; else if (b != "") print b }'
}
v=$(bench_result "$local_out" cpu_vcpu_s)
[ -n "$v" ] && echo "metric cpu_vcpu_s_local_before $v s"
v=$(bench_result "$local_out2" cpu_vcpu_s)
[ -n "$v" ] && echo "metric cpu_vcpu_s_local_after $v s"
s1=$(bench_result "$local_out" memscan_seconds)
s2=$(bench_result "$local_out2" memscan_seconds)
r1=$(bench_result "$local_out" memrand_ops_per_sec)
r2=$(bench_result "$local_out2" memrand_ops_per_sec)
echo "metric memscan_seconds_local_before ${s1:-nan} s"
echo "metric memscan_seconds_local_after ${s2:-nan} s"
echo "metric memrand_ops_per_sec_local_before ${r1:-nan} ops/s"
echo "metric memrand_ops_per_sec_local_after ${r2:-nan} ops/s"
scan_local=$(mean "$s1" "$s2")
rand_local=$(mean "$r1" "$r2")
cpu_dat=$pdata/cpu.dat
{
    echo "# point vcpu pager memclient memservers (CPU seconds of the workloads)"
    echo "all-local $(bench_result "$local_out" cpu_vcpu_s) 0 0 0"
    for pct in $points; do
        echo "${cpu_row[$pct]}"
    done
} >"$cpu_dat"
curve=$pdata/slowdown.dat
echo "# budget_pct memscan_slowdown memrand_slowdown" >"$curve"
for pct in $points; do
    tag=${pct/./_}pct
    what="budget $pct % of the $RAM_MIB MiB guest RAM ($WS_MIB MiB scanned)"
    [ "$pct" = 100 ] && what="$what: no eviction"
    # one run per point draws the curve; the goal is judged on the rounds (3b)
    pager_ratio "memscan_slowdown_$tag" "${scan[$pct]}" "$scan_local" - \
        "memscan time at $what / all-local (prefetch on)"
    pager_ratio "memrand_slowdown_$tag" "$rand_local" "${rand[$pct]}" - \
        "memrand ops/s all-local / at $what"
    printf '%s %s %s\n' "$pct" \
        "$(bench_ratio "${scan[$pct]:-0}" "${scan_local:-0}")" \
        "$(bench_ratio "${rand_local:-0}" "${rand[$pct]:-0}")" >>"$curve"
done
bench_stop_all

# ---------------------------------------------------------------------------
# 3b. The goal point in alternating rounds: memscan alone, all-local then
#     25 % budget, GOAL_ROUNDS times.  One run of each moves by 20-40 % with
#     the load of the machine; a round's ratio pairs two runs a few seconds
#     apart, and the median of the rounds is what the goal is judged on.
# ---------------------------------------------------------------------------
wl_scan="memscan --mib $WS_MIB --passes 2"
budget=$((RAM_MIB / 4))
rounds_dat=$pdata/rounds.dat
echo "# round local_s splitvm_s ratio" >"$rounds_dat"
bench_log "goal rounds: '$wl_scan', all-local vs. budget $budget MiB, $GOAL_ROUNDS rounds"
for r in $(seq "$GOAL_ROUNDS"); do
    bench_log "goal round $r of $GOAL_ROUNDS"
    out=$(pagerbench workload --mode local --mem "${RAM_MIB}M" --run "$wl_scan")
    grep '^metric pagerbench_failed' <<<"$out" || true
    l=$(bench_result "$out" memscan_seconds)
    start_memservers
    out=$(pagerbench workload --mode splitvm --mem "${RAM_MIB}M" --budget "${budget}M" \
          --run "$wl_scan" $(remote_args))
    bench_stop_all
    grep '^metric pagerbench_failed' <<<"$out" || true
    sv=$(bench_result "$out" memscan_seconds)
    if [ -z "$l" ] || [ -z "$sv" ]; then
        bench_log "goal round $r: a run gave no memscan time (local '$l', splitvm '$sv')"
        continue
    fi
    echo "metric memscan_seconds_local_round$r $l s"
    echo "metric memscan_seconds_25pct_round$r $sv s"
    v=$(bench_result "$out" vcpu_runq_wait_s)
    [ -n "$v" ] && echo "metric vcpu_runq_wait_s_25pct_round$r $v s"
    echo "$r $l $sv $(bench_ratio "$sv" "$l")" >>"$rounds_dat"
done
# median (and range) of the rounds' ratios
read -r nr med lo hi < <(awk '!/^#/ { print $4 }' "$rounds_dat" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) { print 0; exit }
          m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
          printf "%d %.3f %.3f %.3f\n", NR, m, v[1], v[NR] }')
if [ "$nr" -gt 0 ]; then
    echo "ratio memscan_slowdown_25pct_rounds $med <=1.3 memscan time at budget 25 %" \
         "of the $RAM_MIB MiB guest RAM ($WS_MIB MiB scanned) / all-local run just" \
         "before it: median of $nr alternating rounds (range $lo-$hi)"
else
    bench_log "goal rounds: no round gave both times"
fi

# ---------------------------------------------------------------------------
# Plots: the slowdown curve and the guest-side fault stall CDFs.
# ---------------------------------------------------------------------------
gnuplot <<EOF || bench_log "gnuplot failed (slowdown plot)"
set terminal pngcairo noenhanced size 900,550 font ",10"
set output "$report_dir/pager-slowdown.png"
set title "Guest slowdown vs. all-local RAM (${WS_MIB} MiB working set, ${RAM_MIB} MiB guest, TCG, prefetch on)"
set xlabel "local budget, % of the guest RAM"
set ylabel "slowdown (x, log)"
set logscale y
set logscale x 2
set xrange [10:120]
set xtics ("12.5" 12.5, "25" 25, "50" 50, "100 (no eviction)" 100)
set grid
set key top right
plot "$curve" using 1:2 with linespoints lw 2 pt 7 title "memscan (time)", \
     "$curve" using 1:3 with linespoints lw 2 pt 5 title "memrand (1/ops per s)", \
     "$rounds_dat" using (25):4 with points pt 6 ps 1.5 lc rgb "dark-green" title "memscan at 25 %, alternating rounds", \
     "+" using (25):(1.3) with points pt 2 ps 2 lc rgb "red" title "goal: memscan at 25 % <= 1.3x (median of the rounds)"
EOF
gnuplot <<EOF || bench_log "gnuplot failed (CPU plot)"
set terminal pngcairo noenhanced size 900,550 font ",10"
set output "$report_dir/pager-cpu.png"
set title "CPU seconds of memscan + memrand by thread role (boot excluded)"
set xlabel "local budget, % of the guest RAM"
set ylabel "CPU seconds"
set style data histograms
set style histogram rowstacked
set style fill solid 0.8 border -1
set boxwidth 0.6
set grid ytics
set key top left
plot "$cpu_dat" using 2:xtic(1) title "vCPU", "" using 3 title "pager threads", \
     "" using 4 title "memory clients", "" using 5 title "memory servers"
EOF
cdfs=$(ls "$pdata"/*.cdf 2>/dev/null || true)
if [ -n "$cdfs" ]; then
    plot=""
    for c in $cdfs; do
        plot+="${plot:+, }\"$c\" using 1:2 with lines lw 2 title \"$(basename "$c" .cdf)\""
    done
    gnuplot <<EOF || bench_log "gnuplot failed (stall plot)"
set terminal pngcairo noenhanced size 900,550 font ",10"
set output "$report_dir/pager-guest-stalls.png"
set title "vCPU stall per remote page fault, measured in the guest (memtouch, TCG)"
set logscale x
set xlabel "microseconds"
set ylabel "fraction of faults"
set grid
set key bottom right
plot $plot
EOF
fi
