# rdma transport (docs/rdma.md): one-sided UCX reads next to the tcp transport,
# same run, same CPU placement.  No RDMA NIC here: "rdma_shm" is UCX over
# shared memory (posix/sysv, real one-sided gets from the server's pool),
# "rdma_ucxtcp" is UCX's tcp transport with its software RMA emulation
# (SPLITVM_RDMA_INSECURE=1, loopback only).  docs/rdma.md says how to run
# this on an RDMA NIC (UCX_TLS=rc / dc) and what to expect there.
# SPDX-License-Identifier: GPL-2.0-or-later
NB=$SVM_BUILD/bench/netbench
MS=$SVM_BUILD/memserver/splitvm-memserver
ITERS=${SVM_BENCH_ITERS:-20000}
SECS=${SVM_BENCH_SECONDS:-3}
# On a NIC: SVM_BENCH_RDMA_TLS=rc (or dc, or unset for UCX's choice).
RDMA_TLS=${SVM_BENCH_RDMA_TLS:-posix,sysv,cma,self}

secrets=$BENCH_TMP/secrets.ini
printf '[vm bench]\nsecret = bench-secret-0123456789\n' >"$secrets"
chmod 600 "$secrets"
auth=(--vm bench --secret bench-secret-0123456789)

shm_env=(env UCX_TLS="$RDMA_TLS")
ucxtcp_env=(env UCX_TLS=tcp UCX_NET_DEVICES=lo SPLITVM_RDMA_INSECURE=1)

ncpu=$(nproc)
placements="same:0:0"
[ "$ncpu" -gt 1 ] && placements="$placements cross:0:1"

for pl in $placements; do
    IFS=: read -r name scpu ccpu <<<"$pl"
    bench_log "placement $name: servers on CPU $scpu, clients on CPU $ccpu"
    tport=$(bench_free_port)
    sport=$(bench_free_port)
    uport=$(bench_free_port)
    bench_start "$scpu" "$MS" --listen "127.0.0.1:$tport" --capacity 1G \
        --secrets "$secrets" --workers 1 --quiet
    bench_start "$scpu" "${shm_env[@]}" "$MS" --transport rdma --listen "127.0.0.1:$sport" \
        --capacity 1G --secrets "$secrets" --workers 1 --quiet
    bench_start "$scpu" "${ucxtcp_env[@]}" "$MS" --transport rdma \
        --listen "127.0.0.1:$uport" --capacity 1G --secrets "$secrets" --workers 1 --quiet
    bench_wait_port "$tport"
    bench_wait_port "$sport"
    bench_wait_port "$uport"

    declare -A p50 mib1
    for v in tcp rdma_shm rdma_ucxtcp; do
        case $v in
        tcp) addr="tcp:127.0.0.1:$tport"; envv=(env); iters=$ITERS ;;
        rdma_shm) addr="rdma:127.0.0.1:$sport"; envv=("${shm_env[@]}"); iters=$ITERS ;;
        rdma_ucxtcp) addr="rdma:127.0.0.1:$uport"; envv=("${ucxtcp_env[@]}")
                     iters=$((ITERS / 10)) ;;
        esac
        r=$(taskset -c "$ccpu" "${envv[@]}" "$NB" rtt --addr "$addr" "${auth[@]}" \
            --iters "$iters" --samples "$SVM_DATA/$v-read4k-$name.cdf")
        for q in p50 p99 p999; do
            echo "metric ${v}_read4k_rtt_${q}_$name $(bench_result "$r" "memclient_read4k_rtt_$q") us"
        done
        p50[$v]=$(bench_result "$r" memclient_read4k_rtt_p50)
        for depth in 1 4; do
            b=$(taskset -c "$ccpu" "${envv[@]}" "$NB" batch --addr "$addr" "${auth[@]}" \
                --seconds "$SECS" --depth "$depth")
            m=$(bench_result "$b" "memclient_read64_d$depth")
            echo "metric ${v}_read64_depth${depth}_$name $m MiB/s"
            [ "$depth" = 1 ] && mib1[$v]=$m
        done
    done
    echo "ratio rdma_shm_vs_tcp_read4k_p50_$name $(bench_ratio "${p50[rdma_shm]}" "${p50[tcp]}") -" \
         "4 KiB read p50: rdma (UCX shared memory, one-sided) / tcp transport, CPUs $name"
    echo "ratio rdma_shm_vs_tcp_read64_d1_$name $(bench_ratio "${mib1[rdma_shm]}" "${mib1[tcp]}") -" \
         "64-page read batches, 1 in flight: rdma (UCX shared memory) / tcp, CPUs $name"
    echo "ratio rdma_ucxtcp_vs_tcp_read4k_p50_$name" \
         "$(bench_ratio "${p50[rdma_ucxtcp]}" "${p50[tcp]}") -" \
         "4 KiB read p50: rdma over UCX tcp (software RMA) / tcp transport, CPUs $name"
    unset p50 mib1
    bench_stop_all
done
