#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Print the path of Debian's packaged guest kernel (unmodified vmlinuz from
# linux-image-amd64).  Optionally also record it:
#
#   find-kernel.sh [--write PATH-FILE SYMLINK]
#
# The kernel is the one the linux-image-amd64 metapackage currently depends
# on (e.g. linux-image-6.1.0-56-amd64 -> /boot/vmlinuz-6.1.0-56-amd64).  If
# the metapackage cannot be asked (no dpkg), the newest installed
# /boot/vmlinuz-6.1.0-*-amd64 is used.  Exits 1 with a clear message when
# no such kernel is installed.
set -eu

die() {
    echo "find-kernel: error: $*" >&2
    exit 1
}

kernel=""
if command -v dpkg-query >/dev/null 2>&1; then
    status=$(dpkg-query -W -f='${Status}' linux-image-amd64 2>/dev/null || true)
    case "$status" in
    *"ok installed")
        # Depends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)
        pkg=$(dpkg-query -W -f='${Depends}' linux-image-amd64 |
              tr ',' '\n' | sed -n 's/^ *\(linux-image-[^ ]*\).*/\1/p' | head -n1)
        [ -n "$pkg" ] || die "cannot tell which kernel linux-image-amd64 depends on"
        kernel=/boot/vmlinuz-${pkg#linux-image-}
        [ -f "$kernel" ] || die "linux-image-amd64 depends on $pkg, but $kernel" \
            "does not exist (reinstall it: apt-get install --reinstall $pkg)"
        ;;
    *)
        die "Debian's linux-image-amd64 is not installed (run scripts/setup-host.sh" \
            "or apt-get install linux-image-amd64); the guest boots its vmlinuz"
        ;;
    esac
else
    kernel=$(ls /boot/vmlinuz-6.1.0-*-amd64 2>/dev/null | sort -V | tail -n1 || true)
    [ -n "$kernel" ] || die "no /boot/vmlinuz-6.1.0-*-amd64 found (install linux-image-amd64)"
fi
[ -r "$kernel" ] || die "$kernel is not readable"

if [ "${1:-}" = "--write" ]; then
    [ $# -eq 3 ] || die "usage: find-kernel.sh [--write PATH-FILE SYMLINK]"
    # Rewrite only on change so nothing downstream rebuilds needlessly.
    if [ "$(cat "$2" 2>/dev/null || true)" != "$kernel" ]; then
        echo "$kernel" > "$2.tmp"
        mv "$2.tmp" "$2"
    fi
    ln -sfn "$kernel" "$3"
elif [ -n "${1:-}" ]; then
    die "usage: find-kernel.sh [--write PATH-FILE SYMLINK]"
fi
[ "${1:-}" = "--write" ] || echo "$kernel"
