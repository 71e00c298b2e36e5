"""Helpers shared by the splitvm CLI integration tests (stdlib only)."""
import json
import os
import subprocess
import tempfile

import svmtest

SPLITVM = svmtest.build_path("orchestration", "splitvm")
MEMSERVER = svmtest.build_path("memserver", "splitvm-memserver")


def splitvm(*args, rack=None, check=True, timeout=300):
    """Runs the CLI; returns CompletedProcess.  check: exit status must be 0."""
    argv = [SPLITVM] + list(args)
    if rack:
        argv[2:2] = ["--rack", rack]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        svmtest.fail(f"`{' '.join(argv)}` exited {r.returncode}:\n{r.stdout}{r.stderr}")
    return r


def virsh(*args, check=True):
    r = subprocess.run(["virsh", "-c", "qemu:///system"] + list(args),
                       capture_output=True, text=True, timeout=120)
    if check and r.returncode != 0:
        svmtest.fail(f"virsh {' '.join(args)} failed: {r.stderr.strip()}")
    return r


def domain_exists(name):
    return virsh("dominfo", name, check=False).returncode == 0


def domain_state(name):
    r = virsh("domstate", name, check=False)
    return r.stdout.strip() if r.returncode == 0 else None


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def guest_files():
    """Kernel and initramfs of the guest/ build."""
    kernel = svmtest.build_path("guest", "vmlinuz")
    initrd = svmtest.build_path("guest", "initramfs.cpio.gz")
    for p in (kernel, initrd):
        if not os.path.exists(p):
            svmtest.fail(f"guest build output {p} missing (build the guest/ targets)")
    return kernel, initrd


def tempdir():
    return tempfile.mkdtemp(prefix="svm-libvirt-")


def vm_spec(tmp, name, run, vcpus=2):
    """A 512 MiB VM spec running `run` in the guest, console log in tmp."""
    kernel, initrd = guest_files()
    return write(os.path.join(tmp, f"{name}.conf"), f"""\
[vm]
name = {name}
vcpus = {vcpus}
memory = 512M
local-budget = 25%
type = qemu

[boot]
kernel = {kernel}
initrd = {initrd}
cmdline = console=ttyS0 panic=-1 splitvm.run="{run}"

[memory]
servers = any

[devices]
console-log = {tmp}/{name}.console
""")


def console(tmp, name):
    """What VM name's guest has printed so far ("" before it starts)."""
    try:
        with open(os.path.join(tmp, f"{name}.console"), errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def stats(rack, name):
    return json.loads(splitvm("stats", "--json", name, rack=rack).stdout)


def server_pages(tmp, vm, servers):
    """{server: pages of vm stored} for servers ((name, address), ...), asked
    as admin with the servers' own client."""
    out = {}
    for server, addr in servers:
        r = subprocess.run([MEMSERVER, "--stats", addr, "--secrets",
                            os.path.join(tmp, "secrets", f"memserver-{server}.secrets")],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            svmtest.fail(f"memserver --stats {addr}: {r.stderr.strip()}")
        out[server] = 0
        for line in r.stdout.splitlines():
            key, _, value = line.partition(" ")
            if key == f"vm.{vm}.pages_stored":
                out[server] = int(value)
    return out
