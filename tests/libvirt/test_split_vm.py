"""A split VM under a real libvirtd, end to end.

`splitvm rack up` starts two memory servers in their own network namespaces
(and libvirtd/virtlogd if they do not run).  Then:
  A. `splitvm launch`: the VM shows in `virsh list`, boots the unmodified
     Debian kernel and passes memverify with 25 % of its RAM local; ls and
     stats show pages on the memory servers; set-budget lowers the resident
     size; virsh suspend/resume/shutdown/destroy work; `splitvm destroy`
     leaves no page of the VM on the servers.
  B. The --dry-run XML validates with virt-xml-validate and runs through
     plain `virsh define` + `virsh start`; the guest powers off by itself at
     the end and the VM is shut off as any VM would be.
Everything (domains, namespaces, processes, secrets) is removed on the way
out, also on failure."""
import os
import shutil
import subprocess

import svmtest
from splitvm_env import (splitvm, virsh, domain_exists, domain_state, write, tempdir,
                         vm_spec, console, stats, server_pages, MEMSERVER)

MIB = 1 << 20
VM_A = "svmtest-split-a"
VM_B = "svmtest-split-b"
SERVERS = (("ms0", "10.213.200.2:7100"), ("ms1", "10.213.200.6:7100"))


def rack_file(tmp):
    # Subnet 10.213.200.0/24 is only used inside this test's namespaces.
    return write(os.path.join(tmp, "rack.conf"), f"""\
[rack]
name = svmtest-vm
secrets-dir = {tmp}/secrets
state-dir = {tmp}/state
memserver-binary = {MEMSERVER}

[host local]
libvirt = qemu:///system
emulator = {svmtest.qemu_path()}
library-path = {svmtest.build_path("hypervisor")}

[memserver ms0]
tcp = 10.213.200.2:7100
local = true
veth = 10.213.200.1/30
capacity = 1G

[memserver ms1]
tcp = 10.213.200.6:7100
local = true
veth = 10.213.200.5/30
capacity = 1G
""")


def wait_console(tmp, name, marker, timeout):
    def seen():
        text = console(tmp, name)
        if "Kernel panic" in text or "SPLITVM-GUEST-ERROR" in text:
            svmtest.fail(f"guest {name} failed:\n{text[-3000:]}")
        return marker in text
    try:
        svmtest.wait_for(seen, timeout, f"'{marker}' on {name}'s console")
    except svmtest.TestFailure:
        svmtest.log(f"console of {name}:\n{console(tmp, name)[-3000:]}")
        raise


def failed_start_leaves_nothing(tmp, rack):
    """QEMU refusing to start (an unknown machine type) is undone completely."""
    spec = vm_spec(tmp, VM_A, "memverify --mib 8")
    with open(spec) as f:
        text = f.read().replace("type = qemu", "type = qemu\nmachine = no-such-machine")
    write(spec, text)
    r = splitvm("launch", spec, rack=rack, check=False, timeout=120)
    if r.returncode != 1 or VM_A not in r.stderr or "libvirt" not in r.stderr:
        svmtest.fail(f"launch with a bad machine type: {r.returncode} {r.stderr}")
    if domain_exists(VM_A):
        svmtest.fail("a launch that failed at start left its domain behind")
    for f in os.listdir(os.path.join(tmp, "secrets")):
        path = os.path.join(tmp, "secrets", f)
        if f == f"vm-{VM_A}.key" or f"[vm {VM_A}]" in open(path).read():
            svmtest.fail(f"a launch that failed at start left its secret in {path}")
    svmtest.log(f"failed start undone: {r.stderr.strip()[:200]}")


def part_a(tmp, rack):
    spec = vm_spec(tmp, VM_A, "memverify --mib 384 ; sleep 100000")
    r = splitvm("launch", spec, rack=rack, timeout=120)
    svmtest.log(r.stdout.strip())
    if VM_A not in virsh("list", "--name").stdout.split():
        svmtest.fail(f"{VM_A} is not in `virsh list`")

    wait_console(tmp, VM_A, "SPLITVM-GUEST-READY", 300)
    wait_console(tmp, VM_A, "SPLITVM-CMD-EXIT rc=", 600)
    if "SPLITVM-CMD-EXIT rc=0 cmd=memverify" not in console(tmp, VM_A):
        svmtest.fail(f"memverify failed in {VM_A}:\n{console(tmp, VM_A)[-2000:]}")
    svmtest.log("memverify passed in the split VM")

    s = stats(rack, VM_A)
    budget = 128 * MIB
    if s["budget"] != budget or s["resident"] > budget:
        svmtest.fail(f"budget/resident wrong after memverify: {s}")
    remote = sum(server_pages(tmp, VM_A, SERVERS).values())
    if remote * 4096 < 200 * MIB or s["remote"] < 200 * MIB:
        svmtest.fail(f"384 MiB written with 128 MiB local, but only {remote} pages on the "
                     f"servers (pager says {s['remote']} bytes remote)")
    ls = splitvm("ls", "--interval", "0.5", rack=rack).stdout
    if VM_A not in ls or "running" not in ls:
        svmtest.fail(f"`splitvm ls` does not show {VM_A} running:\n{ls}")
    svmtest.log(f"splitvm ls:\n{ls}")

    splitvm("set-budget", VM_A, "64M", rack=rack)
    s = svmtest.wait_for(lambda: (lambda x: x if x["resident"] <= 64 * MIB else None)(
        stats(rack, VM_A)), 60, "resident size to drop to the new budget of 64 MiB")
    if s["budget"] != 64 * MIB:
        svmtest.fail(f"stats shows budget {s['budget']} after set-budget 64M")
    svmtest.log(f"after set-budget 64M: resident {s['resident'] // MIB} MiB")

    virsh("suspend", VM_A)
    svmtest.wait_for(lambda: domain_state(VM_A) == "paused", 30, f"{VM_A} paused")
    virsh("resume", VM_A)
    svmtest.wait_for(lambda: domain_state(VM_A) == "running", 30, f"{VM_A} running again")
    splitvm("stats", VM_A, rack=rack)           # QEMU still answers after resume

    # The guest's acpid powers it off on the ACPI power button.
    virsh("shutdown", VM_A)
    svmtest.wait_for(lambda: domain_state(VM_A) == "shut off", 120,
                     f"{VM_A} to power off after virsh shutdown")
    virsh("start", VM_A)
    virsh("destroy", VM_A)
    svmtest.wait_for(lambda: domain_state(VM_A) == "shut off", 30, f"{VM_A} shut off")

    splitvm("destroy", VM_A, rack=rack)
    if domain_exists(VM_A):
        svmtest.fail(f"{VM_A} still defined after splitvm destroy")
    left = server_pages(tmp, VM_A, SERVERS)
    if any(left.values()):
        svmtest.fail(f"pages of {VM_A} remain on the memory servers: {left}")
    if os.path.exists(os.path.join(tmp, "secrets", f"vm-{VM_A}.key")):
        svmtest.fail(f"the secret of {VM_A} remains after destroy")
    svmtest.log("splitvm destroy: domain gone, no pages left, secret removed")


def part_b(tmp, rack):
    spec = vm_spec(tmp, VM_B, "memverify --mib 256")
    xml = write(os.path.join(tmp, f"{VM_B}.xml"),
                splitvm("launch", "--dry-run", spec, rack=rack).stdout)
    if domain_exists(VM_B):
        svmtest.fail("launch --dry-run defined the domain")
    r = subprocess.run(["virt-xml-validate", xml], capture_output=True, text=True)
    if r.returncode != 0:
        svmtest.fail(f"virt-xml-validate rejects the XML: {r.stdout}{r.stderr}")
    with open(xml) as f:
        text = f.read()
    with open(os.path.join(tmp, "secrets", f"vm-{VM_B}.key")) as f:
        if f.read() in text:
            svmtest.fail("the secret value appears in the domain XML")
    virsh("define", xml)
    virsh("start", VM_B)
    wait_console(tmp, VM_B, "SPLITVM-GUEST-DONE", 600)
    if "SPLITVM-CMD-EXIT rc=0 cmd=memverify" not in console(tmp, VM_B):
        svmtest.fail(f"memverify failed in {VM_B}:\n{console(tmp, VM_B)[-2000:]}")
    svmtest.wait_for(lambda: domain_state(VM_B) == "shut off", 60,
                     f"{VM_B} to be shut off after the guest powered off")
    svmtest.log("plain virsh define + start of the --dry-run XML: memverify passed")
    splitvm("destroy", VM_B, rack=rack)
    left = server_pages(tmp, VM_B, SERVERS)
    if any(left.values()) or domain_exists(VM_B):
        svmtest.fail(f"{VM_B} left behind: domain={domain_exists(VM_B)} pages={left}")


def test():
    tmp = tempdir()
    os.chmod(tmp, 0o755)    # QEMU (libvirt-qemu) opens its key in tmp/secrets
    rack = None
    try:
        rack = rack_file(tmp)
        r = splitvm("rack", "up", rack=rack, timeout=120)
        svmtest.log(r.stdout.strip())
        failed_start_leaves_nothing(tmp, rack)
        part_a(tmp, rack)
        part_b(tmp, rack)
    finally:
        if rack:
            for vm in (VM_A, VM_B):
                if domain_exists(vm):
                    splitvm("destroy", vm, rack=rack, check=False)
            r = splitvm("rack", "down", "--force", rack=rack, check=False)
            if r.returncode != 0:
                print(r.stdout, r.stderr)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    svmtest.main(test)
