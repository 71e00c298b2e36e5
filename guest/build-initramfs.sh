#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Build the guest's initramfs: a gzip'd newc cpio holding busybox (with its
# applet symlinks), our /init and the static workloads.
#
#   build-initramfs.sh --output FILE --init FILE [--busybox PATH]
#                      [--kernel-path-file FILE] WORKLOAD...
#
# Workloads land in /usr/local/bin.  With --kernel-path-file (written by
# find-kernel.sh) the ACPI power-button modules of that very kernel are
# added, so `virsh shutdown` reaches the guest's acpid.  Everything must be statically linked
# (the archive has no shared libraries); that is checked.  Needs no root:
# the one device node the kernel wants before /init runs (/dev/console) is
# written as a raw newc entry and appended as a second archive, which the
# kernel's unpacker accepts.
set -eu

die() {
    echo "build-initramfs: error: $*" >&2
    exit 1
}

usage() {
    sed -n '3,15s/^# \{0,1\}//p' "$0"
}

output="" init="" busybox=/bin/busybox kernel_path_file=""
while [ $# -gt 0 ]; do
    case "$1" in
    --output) [ $# -ge 2 ] || die "--output needs a value"; output=$2; shift 2 ;;
    --init) [ $# -ge 2 ] || die "--init needs a value"; init=$2; shift 2 ;;
    --busybox) [ $# -ge 2 ] || die "--busybox needs a value"; busybox=$2; shift 2 ;;
    --kernel-path-file) [ $# -ge 2 ] || die "--kernel-path-file needs a value"
        kernel_path_file=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    -*) die "unknown option '$1' (try --help)" ;;
    *) break ;;
    esac
done
[ -n "$output" ] || die "--output is required"
[ -n "$init" ] || die "--init is required"
[ -f "$init" ] || die "init script '$init' does not exist"
[ -x "$busybox" ] || die "busybox '$busybox' not found: install Debian's busybox-static" \
    "(scripts/setup-host.sh does)"
for tool in cpio gzip readelf; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' is not installed"
done

is_static() {
    # A dynamically linked ELF has a program interpreter.
    readelf -l "$1" 2>/dev/null | grep -q 'Elf file type' &&
        ! readelf -l "$1" 2>/dev/null | grep -q 'Requesting program interpreter'
}

is_static "$busybox" || die "'$busybox' is not a static executable" \
    "(Debian's busybox-static package provides one as /bin/busybox)"
for w in "$@"; do
    [ -f "$w" ] || die "workload '$w' does not exist"
    is_static "$w" || die "workload '$w' is not statically linked"
done

stage=$(mktemp -d "${TMPDIR:-/tmp}/splitvm-initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT INT TERM

mkdir -p "$stage/bin" "$stage/sbin" "$stage/usr/bin" "$stage/usr/sbin" \
    "$stage/usr/local/bin" "$stage/dev" "$stage/proc" "$stage/sys" \
    "$stage/tmp" "$stage/root" "$stage/etc"
cp "$busybox" "$stage/bin/busybox"
chmod 755 "$stage/bin/busybox"
(
    cd "$stage"
    for applet in $(bin/busybox --list-full); do
        [ -e "$applet" ] || ln -s /bin/busybox "$applet"
    done
)
cp "$init" "$stage/init"
chmod 755 "$stage/init"
for w in "$@"; do
    cp "$w" "$stage/usr/local/bin/"
    chmod 755 "$stage/usr/local/bin/$(basename "$w")"
done
# ACPI power button -> acpid -> clean power-off (virsh shutdown).  The
# modules must match the kernel exactly, so they come from its own tree.
if [ -n "$kernel_path_file" ]; then
    kernel=$(cat "$kernel_path_file") || die "cannot read '$kernel_path_file'"
    kver=${kernel##*/vmlinuz-}
    mkdir -p "$stage/lib/modules" "$stage/etc/acpi/PWRF"
    for m in drivers/input/evdev drivers/acpi/button; do
        src=/lib/modules/$kver/kernel/$m.ko
        if [ -f "$src" ]; then
            cp "$src" "$stage/lib/modules/"
        elif [ -f "$src.xz" ]; then
            xz -dc "$src.xz" > "$stage/lib/modules/${m##*/}.ko"
        else
            die "kernel module $src not found (is linux-image-$kver fully installed?)"
        fi
    done
    cat > "$stage/etc/acpi/PWRF/00000080" <<'ACPI'
#!/bin/sh
# Power button (virsh shutdown, system_powerdown): stop the workloads and
# power off cleanly.
echo "SPLITVM-GUEST-SHUTDOWN reason=acpi-power-button" > /dev/console
kill -TERM -1 2>/dev/null
sync
poweroff -f
ACPI
    chmod 755 "$stage/etc/acpi/PWRF/00000080"
fi
cat > "$stage/etc/profile" <<'PROFILE'
export PATH=/usr/local/bin:/bin:/sbin:/usr/bin:/usr/sbin
PS1='splitvm-guest# '
echo "splitvm guest shell; workloads: memverify memscan memrand (each has --help); 'poweroff -f' to quit"
PROFILE
echo "root:x:0:0:root:/root:/bin/sh" > "$stage/etc/passwd"
echo "root:x:0:" > "$stage/etc/group"
chmod 1777 "$stage/tmp"
# Fixed timestamps: the same inputs give the same archive.
find "$stage" -exec touch -h -d @0 {} +

# newc header fields are ASCII hex, so the device node entry is plain printf.
newc_entry() { # name mode rdevmajor rdevminor inode
    namesize=$((${#1} + 1))
    printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%s\0' \
        "$5" "$2" 0 0 1 0 0 0 0 "$3" "$4" "$namesize" 0 "$1"
    pad=$(( (4 - (110 + namesize) % 4) % 4 ))
    [ "$pad" -eq 0 ] || head -c "$pad" /dev/zero
}

out_tmp="$output.tmp.$$"
{
    (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort |
        cpio --quiet -o -H newc --owner=0:0 --reproducible)
    newc_entry dev/console $((0020600)) 5 1 1
    newc_entry TRAILER!!! 0 0 0 0
} | gzip -9 -n > "$out_tmp" || { rm -f "$out_tmp"; die "writing the archive failed"; }
mv "$out_tmp" "$output"
