#!/bin/bash
# Run every test suite (unit, integration, fuzz smoke) of the build in $1 and
# end with one line "N passed, N failed".  Exit status is non-zero when any
# test failed or none ran.
#
#   tests/run-all.sh [BUILD_DIR] [extra `meson test` args, e.g. --suite unit]
set -uo pipefail
BUILD=${1:-build}
shift || true
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

export SPLITVM_QEMU=${SPLITVM_QEMU:-$(./qemu-patches/build-qemu.sh --print-path)}

echo "check: running tests from $BUILD/ (QEMU: $SPLITVM_QEMU)"
start=$(date +%s)
# Integration tests are registered is_parallel: false; unit tests run 2 at once.
# Our own log base: another `meson test` in the same build dir must not
# overwrite the log this summary is read from.
meson test -C "$BUILD" --no-rebuild --print-errorlogs --num-processes 2 --logbase check "$@"
rc=$?

summary=$(/usr/bin/python3 - "$BUILD/meson-logs/check.json" <<'PY'
import json, sys
counts = {"OK": 0, "FAIL": 0, "SKIP": 0, "TIMEOUT": 0, "ERROR": 0, "EXPECTEDFAIL": 0, "UNEXPECTEDPASS": 0}
try:
    with open(sys.argv[1]) as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            counts[r["result"]] = counts.get(r["result"], 0) + 1
except FileNotFoundError:
    pass
passed = counts["OK"] + counts["EXPECTEDFAIL"]
failed = counts["FAIL"] + counts["TIMEOUT"] + counts["ERROR"] + counts["UNEXPECTEDPASS"]
print(passed, failed, counts["SKIP"])
PY
)
read -r passed failed skipped <<<"$summary"
if [ -z "$passed" ]; then
    echo "check: could not read the results in $BUILD/meson-logs/check.json" >&2
    passed=0 failed=1 skipped=0
fi
echo "check: finished in $(( $(date +%s) - start )) s, $skipped skipped"
if [ "$passed" = 0 ] && [ "$failed" = 0 ]; then
    echo "check: no test ran" >&2
    failed=1
fi
echo "$passed passed, $failed failed"
[ "$rc" = 0 ] && [ "$failed" = 0 ]
