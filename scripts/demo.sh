#!/bin/bash
# `make demo`: show splitvm working on this machine.
#
#   scripts/demo.sh [BUILD_DIR]
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
QEMU=$(./qemu-patches/build-qemu.sh --print-path)

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "booting the unmodified Debian kernel under the patched QEMU (TCG, 1 GiB)"
echo "   QEMU:   $QEMU"
echo "   guest:  $BUILD/guest/ (Debian vmlinuz + busybox initramfs with splitvm workloads)"
step "running memverify (512 MiB, seeded pattern, verified) and memscan in the guest"
./guest/run-guest --qemu "$QEMU" --build-dir "$BUILD" --mem 1G --deadline 300 -v \
    --run "memverify --mib 512; memscan --mib 256 --passes 2"
step "done"
