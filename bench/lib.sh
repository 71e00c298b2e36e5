# Helpers for bench suites (sourced by bench/suites/*.sh via bench/run.sh).
# SPDX-License-Identifier: GPL-2.0-or-later
#
# A suite prints result lines on stdout, and nothing else there:
#   metric NAME VALUE UNIT
#   ratio  NAME VALUE GOAL DESCRIPTION...   (GOAL like <=1.15, >=0.7, or -)
# and may write CDF files "x_us fraction" to $SVM_DATA/NAME.cdf, which
# run.sh plots together.  Logs go to stderr.

BENCH_PIDS=()
BENCH_TMP=$(mktemp -d /tmp/svm-bench-XXXXXX)

bench_cleanup() {
    local p
    for p in "${BENCH_PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${BENCH_PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    BENCH_PIDS=()
    rm -rf "$BENCH_TMP"
}
trap bench_cleanup EXIT

bench_log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

bench_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# bench_wait_port PORT [SECONDS]: until something accepts on 127.0.0.1:PORT.
bench_wait_port() {
    local deadline=$((SECONDS + ${2:-10}))
    until python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),1).close()" \
            2>/dev/null; do
        if [ $SECONDS -ge "$deadline" ]; then
            echo "bench: nothing listens on port $1" >&2
            return 1
        fi
        sleep 0.05
    done
}

# bench_start CPU CMD...: start CMD pinned to CPU in the background.
bench_start() {
    local cpu=$1; shift
    taskset -c "$cpu" "$@" >&2 &
    BENCH_PIDS+=($!)
}

# bench_stop_all: stop every process started with bench_start.
bench_stop_all() {
    local p
    for p in "${BENCH_PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    BENCH_PIDS=()
}

# bench_result OUTPUT NAME: the value of "result NAME VALUE UNIT" in OUTPUT.
bench_result() {
    awk -v n="$2" '$1 == "result" && $2 == n { print $3 }' <<<"$1"
}

# bench_ratio A B: A / B with 3 decimals.
bench_ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "nan" }'
}
