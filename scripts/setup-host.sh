#!/bin/sh
# Install every Debian package splitvm needs to build, test and demo.
# Idempotent and quiet: when everything is present it prints one line and
# touches nothing.  Must run as root on Debian 12 (bookworm).
set -eu

PACKAGES="
build-essential pkg-config meson ninja-build git
libglib2.0-dev liburing-dev
libucx-dev ucx-utils rdma-core libibverbs-dev librdmacm-dev libibumad-dev
libvirt-daemon-system libvirt-clients libvirt-dev libxml2-utils libjson-glib-dev
dpkg-dev devscripts
python3 python3-venv libfdt-dev libcapstone-dev libpixman-1-dev libslirp-dev
zlib1g-dev libseccomp-dev libcap-ng-dev libaio-dev ccache
qemu-system-data seabios ipxe-qemu
busybox-static linux-image-amd64 cpio zstd
iproute2 gnuplot-nox
clang llvm libclang-rt-14-dev
"

if [ "$(id -u)" != 0 ]; then
    echo "setup: must run as root (installs Debian packages)" >&2
    exit 1
fi
if ! grep -q 'bookworm' /etc/os-release 2>/dev/null; then
    echo "setup: warning: not Debian 12 (bookworm); continuing anyway" >&2
fi

# deb-src is needed by `apt-get source qemu` (make qemu).
SRC=/etc/apt/sources.list.d/debian.sources
need_update=0
if [ -f "$SRC" ] && ! grep -q '^Types:.*deb-src' "$SRC"; then
    echo "setup: enabling deb-src in $SRC"
    sed -i 's/^Types: deb$/Types: deb deb-src/' "$SRC"
    need_update=1
elif [ ! -f "$SRC" ] && ! grep -rqs '^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "setup: enabling deb-src in /etc/apt/sources.list"
    grep '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' >> /etc/apt/sources.list
    need_update=1
fi

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed'; then
        missing="$missing $p"
    fi
done
# apt-get source needs the deb-src indexes even if every package is present.
if ! ls /var/lib/apt/lists/*_source_Sources* >/dev/null 2>&1; then
    need_update=1
fi

export DEBIAN_FRONTEND=noninteractive
if [ -z "$missing" ] && [ "$need_update" = 0 ]; then
    echo "setup: all packages present"
else
    echo "setup: apt-get update"
    apt-get update -qq
fi
if [ -n "$missing" ]; then
    echo "setup: installing:$missing"
    # libvirt's postinst tries to start services; without systemd that is harmless.
    apt-get install -y -qq --no-install-recommends $missing >/tmp/splitvm-apt.log 2>&1 || {
        tail -30 /tmp/splitvm-apt.log >&2
        echo "setup: apt-get install failed (full log: /tmp/splitvm-apt.log)" >&2
        exit 1
    }
fi
# libvirt's QEMU needs /dev/userfaultfd (docs/operations.md); quiet when set.
"$(dirname "$0")/../orchestration/setup-libvirt.sh"
