#!/bin/bash
# Build splitvm's patched qemu-system-x86_64.
#
#   build-qemu.sh [--print-path]
#
# Fetches Debian bookworm's qemu source package (the exact version pinned in
# qemu-patches/debian-version) with `apt-get source`, unpacks it with Debian's
# own patches, applies qemu-patches/series in order, configures for
# x86_64-softmmu and installs into a cache directory outside the checkout:
#
#   $SPLITVM_CACHE/qemu-<debian version>-<key>/bin/qemu-system-x86_64
#
# <key> hashes everything that changes the binary: the pinned version, the
# series and its patches, this script (configure options) and libsplitvm's
# public headers (the ABI QEMU is compiled against).  A second run with the
# same key is a cache hit and builds nothing.
#
# Environment:
#   SPLITVM_CACHE            cache root (default /var/cache/splitvm)
#   SPLITVM_PKG_CONFIG_PATH  where libsplitvm's (uninstalled) .pc file lives
#   SPLITVM_QEMU_JOBS        parallel compile jobs (default: nproc)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CACHE=${SPLITVM_CACHE:-/var/cache/splitvm}
DEBVER=$(tr -d ' \n' < "$HERE/debian-version")
DEBVER_DIR=$(echo "$DEBVER" | tr ':+~' '___')

die() { echo "qemu: error: $*" >&2; exit 1; }

series_patches() {
    sed -e 's/#.*//' -e 's/[[:space:]]*$//' "$HERE/series" | grep -v '^$' || true
}

compute_key() {
    {
        echo "$DEBVER"
        cat "$HERE/series" "$0"
        for p in $(series_patches); do
            [ -f "$HERE/$p" ] || die "qemu-patches/series names '$p', which does not exist"
            cat "$HERE/$p"
        done
        if [ -d "$ROOT/hypervisor/include" ]; then
            find "$ROOT/hypervisor/include" -type f -name '*.h' | LC_ALL=C sort | xargs cat
        fi
    } | sha256sum | cut -c1-16
}

KEY=$(compute_key)
OUT="$CACHE/qemu-$DEBVER_DIR-$KEY"

if [ "${1:-}" = "--print-path" ]; then
    echo "$OUT/bin/qemu-system-x86_64"
    exit 0
elif [ -n "${1:-}" ]; then
    echo "usage: $0 [--print-path]" >&2
    exit 2
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/qemu-build.lock"
flock 9

if [ -f "$OUT/.complete" ] && [ -x "$OUT/bin/qemu-system-x86_64" ]; then
    echo "qemu: cache hit: $OUT (key $KEY, debian $DEBVER)"
    exit 0
fi
echo "qemu: cache miss for key $KEY (debian $DEBVER, $(series_patches | wc -l) patches): building"

# 1. Source package, downloaded once per Debian version.
SRCDIR="$CACHE/src-$DEBVER_DIR"
if ! ls "$SRCDIR"/qemu_*.dsc >/dev/null 2>&1; then
    command -v apt-get >/dev/null || die "apt-get not found (this needs Debian 12)"
    served=$(apt-cache showsrc qemu 2>/dev/null | sed -n 's/^Version: //p' | tr '\n' ' ')
    if ! echo " $served" | grep -qF " $DEBVER "; then
        die "Debian does not serve source package qemu=$DEBVER (have deb-src lines been" \
            "enabled and apt-get update run?  served versions:" \
            "${served:-none})." \
            "Update qemu-patches/debian-version and rebase the series."
    fi
    rm -rf "$SRCDIR.tmp" && mkdir -p "$SRCDIR.tmp"
    echo "qemu: [1/5] downloading source package qemu=$DEBVER"
    (cd "$SRCDIR.tmp" && apt-get source --download-only -qq "qemu=$DEBVER") \
        || die "apt-get source qemu=$DEBVER failed"
    rm -rf "$SRCDIR" && mv "$SRCDIR.tmp" "$SRCDIR"
else
    echo "qemu: [1/5] source package qemu=$DEBVER already downloaded"
fi

# 2. Unpack with Debian's patches (the dfsg tarball needs them).
WORK="$CACHE/work-$KEY"
rm -rf "$WORK" && mkdir -p "$WORK"
echo "qemu: [2/5] unpacking with Debian's patches"
dpkg-source --no-check -x "$SRCDIR"/qemu_*.dsc "$WORK/src" >"$WORK/unpack.log" 2>&1 \
    || { tail -20 "$WORK/unpack.log" >&2; die "dpkg-source -x failed"; }

# 3. Our series.
echo "qemu: [3/5] applying qemu-patches/series ($(series_patches | wc -l) patches)"
for p in $(series_patches); do
    echo "qemu:       $p"
    patch -d "$WORK/src" -p1 --batch --forward --quiet < "$HERE/$p" \
        || die "patch $p does not apply to qemu $DEBVER"
done

# 4. Configure: one target, and the features configure finds by default (as
# Debian's build).  Firmware comes from Debian's qemu-system-data/seabios/
# ipxe-qemu packages (the dfsg tarball has no blobs).
# Not --without-default-features: built that way (with or without our
# series) QEMU 7.2 corrupted the guest in 4 of ~17 TCG precopy/postcopy
# migrations of plain memfd RAM (kernel Oops or memverify segfault on the
# destination, bench/migbench.py); with the default features, like Debian's
# own binary, 0 of 19.
echo "qemu: [4/5] configuring"
export PATH="/usr/lib/ccache:$PATH"
export CCACHE_DIR="$CACHE/ccache" CCACHE_BASEDIR="$WORK" CCACHE_NOHASHDIR=1
export CCACHE_MAXSIZE=5G
export PKG_CONFIG_PATH="${SPLITVM_PKG_CONFIG_PATH:-}${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
mkdir -p "$WORK/build"
(cd "$WORK/build" && ../src/configure \
    --prefix="$OUT" \
    --target-list=x86_64-softmmu \
    --firmwarepath=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu \
    --disable-install-blobs --disable-docs --disable-werror \
    --enable-kvm --enable-tcg --enable-seccomp --enable-slirp \
    --enable-linux-aio --enable-cap-ng --enable-vhost-net --enable-vhost-kernel \
    $(grep -q remotemem "$WORK/src/meson_options.txt" && echo --enable-remotemem) \
    ) >"$WORK/configure.log" 2>&1 \
    || { tail -30 "$WORK/configure.log" >&2; die "configure failed (log: $WORK/configure.log)"; }

# 5. Build with a progress line every 5 %.
echo "qemu: [5/5] compiling (a few minutes on 2 cores; log: $WORK/build.log)"
set +e
ninja -C "$WORK/build" -j"${SPLITVM_QEMU_JOBS:-$(nproc)}" 2>&1 | tee "$WORK/build.log" | awk '
    match($0, /^\[([0-9]+)\/([0-9]+)\]/) {
        split(substr($0, 2, RLENGTH - 2), a, "/")
        pct = int(a[1] * 100 / a[2])
        if (pct >= last + 5) { printf "qemu:       %3d%% (%d/%d)\n", pct, a[1], a[2]; fflush(); last = pct }
    }'
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" != 0 ]; then
    grep -B2 -A10 -m3 'error' "$WORK/build.log" >&2 || tail -30 "$WORK/build.log" >&2
    die "build failed (log: $WORK/build.log)"
fi
rm -rf "$OUT"
ninja -C "$WORK/build" install >"$WORK/install.log" 2>&1 \
    || { tail -20 "$WORK/install.log" >&2; die "install failed"; }
# libsplitvm is found through LD_LIBRARY_PATH at run time (not installed).
SVM_LIBDIRS=$(pkg-config --libs-only-L splitvm 2>/dev/null | sed 's/-L//g; s/ \+/:/g; s/:$//') || true
LD_LIBRARY_PATH="$SVM_LIBDIRS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    "$OUT/bin/qemu-system-x86_64" --version | head -1 | sed 's/^/qemu: built: /'
touch "$OUT/.complete"
rm -rf "$WORK"
echo "qemu: installed $OUT"

# Keep the cache bounded: the newest few builds stay (checkouts on other
# branches may still use them), older ones go.
ls -1dt "$CACHE"/qemu-*/ 2>/dev/null | tail -n +"$((${SPLITVM_QEMU_KEEP:-4} + 1))" | while read -r old; do
    echo "qemu: pruning old build $old"
    rm -rf "$old"
done
