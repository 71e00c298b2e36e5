#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Let libvirt's QEMU use /dev/userfaultfd (what the splitvm pager needs), the
# operator settings docs/operations.md describes.  Idempotent; prints one
# line per change and nothing else when all is in place.  Run as root.
#
#   orchestration/setup-libvirt.sh [--check]
#
# 1. /dev/userfaultfd group kvm, mode 0660 (QEMU's user libvirt-qemu is in
#    group kvm), kept across reboots by a udev rule.
# 2. /etc/libvirt/qemu.conf: "/dev/userfaultfd" in cgroup_device_acl, so the
#    device cgroup allows it and libvirt creates it in QEMU's private /dev.
#    A running libvirtd is restarted, as libvirtd reads qemu.conf only at start.
set -eu

QEMU_CONF=${SPLITVM_QEMU_CONF:-/etc/libvirt/qemu.conf}
UDEV_RULE=/etc/udev/rules.d/60-splitvm-userfaultfd.rules
GROUP=kvm
CHECK=0
[ "${1:-}" = "--check" ] && CHECK=1

die() { echo "setup-libvirt: error: $*" >&2; exit 1; }
change() {
    if [ "$CHECK" = 1 ]; then
        echo "setup-libvirt: needed: $*"
        NEEDED=1
        return 1
    fi
    echo "setup-libvirt: $*"
    return 0
}
NEEDED=0

[ "$(id -u)" = 0 ] || die "must run as root"
[ -c /dev/userfaultfd ] || die "/dev/userfaultfd is missing (kernel >= 5.11 with CONFIG_USERFAULTFD needed)"
getent group "$GROUP" >/dev/null || die "group $GROUP does not exist"

# 1. device permissions, now and at every boot
rule='KERNEL=="userfaultfd", GROUP="'$GROUP'", MODE="0660"'
if [ ! -f "$UDEV_RULE" ] || ! grep -qF "$rule" "$UDEV_RULE"; then
    if change "installing $UDEV_RULE"; then
        mkdir -p "$(dirname "$UDEV_RULE")"
        printf '# splitvm: libvirt QEMU (user libvirt-qemu, group %s) opens /dev/userfaultfd\n%s\n' \
            "$GROUP" "$rule" > "$UDEV_RULE"
    fi
fi
if [ "$(stat -c %G:%a /dev/userfaultfd)" != "$GROUP:660" ]; then
    if change "/dev/userfaultfd -> group $GROUP, mode 0660"; then
        chgrp "$GROUP" /dev/userfaultfd
        chmod 0660 /dev/userfaultfd
    fi
fi

# libvirtd reads qemu.conf only at start (SIGHUP does not reread it).
# Running domains survive a libvirtd restart.
restart_libvirtd() {
    pid=$(cat /run/libvirtd.pid 2>/dev/null || true)
    [ -n "$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = libvirtd ] || return 0
    echo "setup-libvirt: restarting libvirtd (pid $pid) so qemu.conf takes effect"
    kill "$pid"
    i=0
    while kill -0 "$pid" 2>/dev/null; do
        i=$((i + 1))
        [ $i -le 300 ] || die "libvirtd (pid $pid) did not exit within 30 s"
        sleep 0.1
    done
    libvirtd -d
}

# 2. cgroup_device_acl in qemu.conf
[ -f "$QEMU_CONF" ] || die "$QEMU_CONF not found (is libvirt-daemon-driver-qemu installed?)"
acl_lines=$(grep -nE '^[[:space:]]*cgroup_device_acl[[:space:]]*=' "$QEMU_CONF" || true)
if [ -z "$acl_lines" ]; then
    if change "adding cgroup_device_acl with /dev/userfaultfd to $QEMU_CONF"; then
        cat >> "$QEMU_CONF" <<'CONF'

# splitvm: libvirt's default device list plus /dev/userfaultfd, which the
# splitvm pager inside QEMU opens (see splitvm docs/operations.md).
cgroup_device_acl = [
    "/dev/null", "/dev/full", "/dev/zero",
    "/dev/random", "/dev/urandom",
    "/dev/ptmx", "/dev/kvm",
    "/dev/userfaultfd"
]
CONF
        restart_libvirtd
    fi
else
    # The operator's own list: we do not rewrite it, only say what is missing.
    start=$(echo "$acl_lines" | tail -1 | cut -d: -f1)
    if ! tail -n +"$start" "$QEMU_CONF" | sed '/\]/q' | grep -q '"/dev/userfaultfd"'; then
        die "$QEMU_CONF:$start sets cgroup_device_acl without \"/dev/userfaultfd\": add it to that list and restart libvirtd"
    fi
fi
[ "$CHECK" = 1 ] && [ "$NEEDED" = 1 ] && exit 1
exit 0
