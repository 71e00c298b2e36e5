#!/bin/bash
# Build the memory-server fuzz target with clang + libFuzzer (ASan, UBSan)
# and run it for a bounded time.  Independent of the meson (gcc) build.
#
#   tests/memserver/fuzz.sh [--seconds N] [--workdir DIR] [-- libFuzzer args]
#
# The corpus lives in DIR/corpus (seeded from fuzz_seeds.c), crashes in
# DIR/crashes.  Exit status is libFuzzer's: non-zero when it found a crash.
# SPDX-License-Identifier: GPL-2.0-or-later
set -euo pipefail

seconds=60
src=$(cd "$(dirname "$0")/../.." && pwd)
workdir=$src/build-fuzz
while [ $# -gt 0 ]; do
    case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --workdir) workdir=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "fuzz.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
if ! command -v clang >/dev/null; then
    echo "fuzz.sh: clang is not installed (scripts/setup-host.sh installs it)" >&2
    exit 1
fi
mkdir -p "$workdir/corpus" "$workdir/crashes"
bin=$workdir/fuzz-dispatch
sources=(
    "$src/tests/memserver/fuzz_dispatch.c" "$src/tests/memserver/fuzz_seeds.c"
    "$src/common/wire.c" "$src/common/auth.c"
    "$src/memserver/session.c" "$src/memserver/store.c" "$src/memserver/config.c"
)
# Rebuild only when a source is newer than the binary.
stale=1
if [ -x "$bin" ]; then
    stale=0
    for f in "${sources[@]}" "$src"/common/include/splitvm/*.h "$src"/memserver/*.h; do
        [ "$f" -nt "$bin" ] && stale=1
    done
fi
if [ $stale = 1 ]; then
    echo "fuzz.sh: building $bin with clang"
    # shellcheck disable=SC2046
    clang -g -O1 -std=gnu11 -D_GNU_SOURCE \
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
        -I"$src/common/include" -I"$src/memserver" \
        $(pkg-config --cflags glib-2.0 gio-2.0) \
        "${sources[@]}" -o "$bin" \
        $(pkg-config --libs glib-2.0 gio-2.0) -lpthread
fi
echo "fuzz.sh: fuzzing for ${seconds}s (corpus $workdir/corpus)"
SVM_FUZZ_SEED_DIR=$workdir/corpus exec "$bin" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$workdir/crashes/" "$@" "$workdir/corpus"
