#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# `make demo`: a split VM under libvirt on a local rack.
#
#   orchestration/demo.sh [BUILD_DIR]
#
# Prepares the host for libvirt's QEMU (setup-libvirt.sh), brings up a local
# rack (two memory servers in their own network namespaces, libvirtd),
# launches a 1 GiB VM with 25 % of its RAM local, runs memverify and memscan
# in it while printing live stats, live-migrates it to a second host (its
# own libvirtd in a network namespace) while memverify runs, halves the
# budget, then destroys the VM and takes the rack down again -- also when
# interrupted.
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BUILD=$(cd "$BUILD" && pwd)

SPLITVM=$BUILD/orchestration/splitvm
QEMU=${SPLITVM_QEMU:-$(./qemu-patches/build-qemu.sh --print-path)}
DEMO=$BUILD/orchestration/demo
RACK=$DEMO/rack.conf
SPEC=$DEMO/vm.conf
VM=splitvm-demo
CONSOLE=/var/log/splitvm/$VM.console

bold() { printf '\033[1m%s\033[0m\n' "$*"; }
step() { printf '\n'; bold "== $*"; }
die() { echo "demo: error: $*" >&2; exit 1; }

for f in "$SPLITVM" "$QEMU" "$BUILD/memserver/splitvm-memserver" \
         "$BUILD/guest/vmlinuz" "$BUILD/guest/initramfs.cpio.gz"; do
    [ -e "$f" ] || die "$f is missing (run \`make\` and \`make qemu\`)"
done

cleanup() {
    set +e
    step "cleaning up"
    if "$SPLITVM" ls --interval 0 --rack "$RACK" 2>/dev/null | grep -q "^$VM "; then
        "$SPLITVM" destroy --rack "$RACK" "$VM" | sed 's/^/   /'
    fi
    "$SPLITVM" rack down --force --rack "$RACK" | sed 's/^/   /'
}

step "preparing the host for libvirt's QEMU (userfaultfd access)"
./orchestration/setup-libvirt.sh | sed 's/^/   /'
echo "   ok"

# KVM here is a nested PVM that cannot boot Linux: use TCG on such hosts.
TYPE=auto
[ -d /sys/module/kvm_pvm ] && TYPE=qemu
mkdir -p "$DEMO"
cat > "$RACK" <<CONF
# splitvm demo rack: this machine as two hosts (the second with its own
# libvirtd in a network namespace), two memory servers in network namespaces
[rack]
name = demo
secrets-dir = /var/lib/splitvm/demo/secrets
state-dir = /run/splitvm/demo
memserver-binary = $BUILD/memserver/splitvm-memserver

[host local]
libvirt = qemu:///system
emulator = $QEMU
library-path = $BUILD/hypervisor

[host h1]
local = true
veth = 10.213.10.9/30
address = 10.213.10.10
emulator = $QEMU
library-path = $BUILD/hypervisor

[memserver ms0]
tcp = 10.213.10.2:7100
local = true
veth = 10.213.10.1/30
capacity = 2G

[memserver ms1]
tcp = 10.213.10.6:7100
local = true
veth = 10.213.10.5/30
capacity = 2G
CONF
cat > "$SPEC" <<CONF
[vm]
name = $VM
vcpus = 2
memory = 1G
local-budget = 25%
type = $TYPE

[boot]
kernel = $BUILD/guest/vmlinuz
initrd = $BUILD/guest/initramfs.cpio.gz
cmdline = console=ttyS0 panic=-1 splitvm.run="memverify --mib 768 --loops 2 ; memscan --mib 768 --passes 1"

[memory]
servers = any
CONF

trap cleanup EXIT
step "bringing up the local rack ($RACK)"
"$SPLITVM" rack up --rack "$RACK" | sed 's/^/   /'

step "launching $VM: 1 GiB RAM, 256 MiB of it local, the rest on ms0 + ms1"
rm -f "$CONSOLE"    # the console log is appended to (it follows the VM across hosts)
"$SPLITVM" launch --rack "$RACK" "$SPEC" 2>&1 | sed 's/^/   /'
virsh -c qemu:///system list | sed 's/^/   /'

step "running memverify (768 MiB) then memscan in the guest, with live stats"
printf '   %-7s %-9s %9s %9s %9s   %s\n' TIME STATE RESIDENT REMOTE FAULTS/S GUEST
start=$(date +%s)
prev_faults=0
prev_t=$start
budget_changed=0
migrated=0
while :; do
    now=$(date +%s)
    read -r state resident remote faults < <("$SPLITVM" stats --json --rack "$RACK" "$VM" \
        2>/dev/null | python3 -c 'import json, sys
d = json.load(sys.stdin)
print(d["state"].replace(" ", "-"), d.get("resident", 0) >> 20, d.get("remote", 0) >> 20,
      d.get("faults", 0))' 2>/dev/null || echo "gone 0 0 0")
    rate=-
    [ "$faults" -ge "$prev_faults" ] && rate=$(( (faults - prev_faults) / (now > prev_t ? now - prev_t : 1) ))
    prev_faults=$faults; prev_t=$now
    phase="booting"
    if grep -aq 'SPLITVM-GUEST-DONE' "$CONSOLE" 2>/dev/null; then phase="done, powering off"
    elif grep -aq 'cmd=memverify' "$CONSOLE" 2>/dev/null; then phase="memscan"
    elif grep -aq 'SPLITVM-GUEST-READY' "$CONSOLE" 2>/dev/null; then phase="memverify"
    fi
    printf '   %-7s %-9s %5s MiB %5s MiB %9s   %s\n' "+$((now - start))s" "$state" \
        "$resident" "$remote" "$rate" "$phase"
    [ "$state" = running ] || [ "$state" = paused ] || break
    if [ "$migrated" = 0 ] && [ "$phase" = memverify ] && [ "$resident" -gt 64 ]; then
        bold "   -> live-migrating $VM to host h1 while memverify runs (RAM stays on the servers)"
        "$SPLITVM" migrate --rack "$RACK" "$VM" h1 2>&1 | sed 's/^/      /' ||
            echo "      (migration failed; the VM keeps running on host local)"
        migrated=1
        continue
    fi
    if [ "$budget_changed" = 0 ] &&
       grep -aq 'SPLITVM-CMD-EXIT rc=0 cmd=memverify' "$CONSOLE" 2>/dev/null; then
        bold "   -> memverify passed; lowering the budget to 128 MiB while memscan runs"
        "$SPLITVM" set-budget --rack "$RACK" "$VM" 128M 2>&1 | sed 's/^/      /'
        budget_changed=1
    fi
    [ $((now - start)) -lt 900 ] || die "the guest did not finish within 15 min"
    # every second until the migration is done (memverify takes only a few
    # seconds now), then a display refresh every 5 s
    if [ "$migrated" = 0 ]; then sleep 1; else sleep 5; fi
done

step "guest results"
grep -a -E 'SPLITVM-(RESULT|CMD-EXIT|GUEST-DONE)' "$CONSOLE" | sed 's/^/   /'
grep -aq 'SPLITVM-GUEST-DONE rc=0' "$CONSOLE" || die "the guest workloads failed (console: $CONSOLE)"
echo "   the guest powered off; splitvm ls shows it:"
"$SPLITVM" ls --interval 0 --rack "$RACK" | sed 's/^/   /'
