# Memory server: client library vs. raw TCP floors, same run, same CPUs.
# SPDX-License-Identifier: GPL-2.0-or-later
NB=$SVM_BUILD/bench/netbench
MS=$SVM_BUILD/memserver/splitvm-memserver
ITERS=${SVM_BENCH_ITERS:-20000}
SECS=${SVM_BENCH_SECONDS:-3}

secrets=$BENCH_TMP/secrets.ini
printf '[vm bench]\nsecret = bench-secret-0123456789\n' >"$secrets"
chmod 600 "$secrets"
auth=(--vm bench --secret bench-secret-0123456789)

ncpu=$(nproc)
placements="same:0:0"
[ "$ncpu" -gt 1 ] && placements="$placements cross:0:1"

for pl in $placements; do
    IFS=: read -r name scpu ccpu <<<"$pl"
    bench_log "placement $name: servers on CPU $scpu, clients on CPU $ccpu"
    rport=$(bench_free_port)
    mport=$(bench_free_port)
    bench_start "$scpu" "$NB" raw-server --listen "127.0.0.1:$rport"
    bench_start "$scpu" "$MS" --listen "127.0.0.1:$mport" --capacity 1G \
        --secrets "$secrets" --workers 1 --quiet
    bench_wait_port "$rport"
    bench_wait_port "$mport"

    raw=$(taskset -c "$ccpu" "$NB" raw-rtt --addr "127.0.0.1:$rport" --iters "$ITERS" \
          --samples "$SVM_DATA/raw-tcp-4k-rtt-$name.cdf")
    mc=$(taskset -c "$ccpu" "$NB" rtt --addr "127.0.0.1:$mport" "${auth[@]}" --iters "$ITERS" \
         --samples "$SVM_DATA/memclient-read4k-$name.cdf")
    # Diagnostic: the same READ without the client library (server cost only).
    pr=$(taskset -c "$ccpu" "$NB" rtt-proto --addr "127.0.0.1:$mport" "${auth[@]}" \
         --iters "$ITERS")
    p50=$(bench_result "$pr" proto_read4k_rtt_p50)
    echo "metric bare_protocol_read4k_rtt_p50_$name $p50 us"
    echo "ratio read4k_bare_protocol_p50_$name $(bench_ratio "$p50" \
         "$(bench_result "$raw" raw_tcp_rtt_p50)") -" \
         "4 KiB READ on a bare connection (no memclient) / raw TCP ping-pong, p50, CPUs $name"
    for q in p50 p99 p999; do
        r=$(bench_result "$raw" "raw_tcp_rtt_$q")
        m=$(bench_result "$mc" "memclient_read4k_rtt_$q")
        echo "metric raw_tcp_4k_rtt_${q}_$name $r us"
        echo "metric memclient_read4k_rtt_${q}_$name $m us"
        goal=-
        [ "$q" = p50 ] && goal="<=1.15"
        echo "ratio read4k_rtt_${q}_$name $(bench_ratio "$m" "$r") $goal" \
             "4 KiB READ through memclient / raw TCP 4 KiB ping-pong, $q, CPUs $name"
    done

    stream=$(taskset -c "$ccpu" "$NB" raw-stream --addr "127.0.0.1:$rport" --seconds "$SECS")
    s=$(bench_result "$stream" raw_tcp_stream)
    echo "metric raw_tcp_stream_$name $s MiB/s"
    for depth in 1 4; do
        b=$(taskset -c "$ccpu" "$NB" batch --addr "127.0.0.1:$mport" "${auth[@]}" \
            --seconds "$SECS" --depth "$depth")
        v=$(bench_result "$b" "memclient_read64_d$depth")
        echo "metric memclient_read64_depth${depth}_$name $v MiB/s"
        goal=-
        [ "$depth" = 4 ] && goal=">=0.7"
        echo "ratio read64_depth${depth}_vs_stream_$name $(bench_ratio "$v" "$s") $goal" \
             "64-page READ batches ($depth in flight) / raw TCP stream, CPUs $name"
    done
    bench_stop_all
done

bench_log "metadata overhead"
mport=$(bench_free_port)
bench_start 0 "$MS" --listen "127.0.0.1:$mport" --capacity 1G --secrets "$secrets" \
    --workers 1 --quiet
bench_wait_port "$mport"
md=$("$NB" metadata --addr "127.0.0.1:$mport" "${auth[@]}" --pages 131072 --fill 50)
echo "metric metadata_pages_stored $(bench_result "$md" metadata_pages_stored) pages"
echo "metric metadata_bytes $(bench_result "$md" metadata_bytes) bytes"
ov=$(bench_result "$md" metadata_overhead)
echo "ratio metadata_per_stored_byte $(awk -v p="$ov" 'BEGIN{printf "%.5f", p/100}') <=0.01" \
     "server metadata bytes / stored bytes (512 MiB namespace, 50 % written at random)"
bench_stop_all
