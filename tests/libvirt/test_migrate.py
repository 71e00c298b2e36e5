"""Live migration of a split VM between two libvirtds on this machine.

`splitvm rack up` starts two memory servers and a second host h1 (its own
network namespace, virtlogd and libvirtd with its own run/state/config
dirs and host UUID) next to the root namespace's libvirtd (host local).
A VM running memverify in a loop
  1. refuses a migration to an unknown host and to the host it runs on,
     and keeps running;
  2. moves local -> h1 with `splitvm migrate` (libvirt peer to peer);
     ls, stats and set-budget find it on h1, memverify keeps passing there;
  3. moves h1 -> local with plain `virsh migrate --live`;
memverify never fails, the guest never reboots and its uptime continues.
`splitvm destroy` then leaves no page on the servers and `splitvm rack
down` no namespace, libvirtd or host dir.  Everything is removed on the
way out, also on failure."""
import os
import re
import shutil
import subprocess

import svmtest
from splitvm_env import (splitvm, write, tempdir, vm_spec, console, stats, server_pages,
                         MEMSERVER)

MIB = 1 << 20
VM = "svmtest-mig-vm"
RACK = "svmtest-mig"
SERVERS = (("ms0", "10.213.201.2:7100"), ("ms1", "10.213.201.6:7100"))
H1_ADDRESS, H1_VETH_ROOT = "10.213.201.10", "10.213.201.9"
# memverify runs this long: through boot, both migrations and some loops.
SECONDS = 150


def rack_file(tmp):
    # Subnet 10.213.201.0/24 is only used inside this test's namespaces.
    qemu, lib = svmtest.qemu_path(), svmtest.build_path("hypervisor")
    return write(os.path.join(tmp, "rack.conf"), f"""\
[rack]
name = {RACK}
secrets-dir = {tmp}/secrets
state-dir = {tmp}/state
memserver-binary = {MEMSERVER}

[host local]
libvirt = qemu:///system
emulator = {qemu}
library-path = {lib}

[host h1]
local = true
veth = {H1_VETH_ROOT}/30
address = {H1_ADDRESS}
emulator = {qemu}
library-path = {lib}

[memserver ms0]
tcp = {SERVERS[0][1]}
local = true
veth = 10.213.201.1/30
capacity = 1G

[memserver ms1]
tcp = {SERVERS[1][1]}
local = true
veth = 10.213.201.5/30
capacity = 1G
""")


def h1_uri(tmp):
    return f"qemu+unix:///system?socket={tmp}/state/host-h1/run/libvirt-sock"


def virsh_at(uri, *args, check=True, timeout=120):
    r = subprocess.run(["virsh", "-c", uri] + list(args), capture_output=True,
                       text=True, timeout=timeout)
    if check and r.returncode != 0:
        svmtest.fail(f"virsh -c {uri} {' '.join(args)} failed: {r.stderr.strip()}")
    return r


def state_on(uri, name):
    r = virsh_at(uri, "domstate", name, check=False)
    return r.stdout.strip() if r.returncode == 0 else None


def check_console(tmp, VM):
    """Fails on any sign of a failed verification or a reboot."""
    text = console(tmp, VM)
    for bad in ("MISMATCH", "ok=0", "Kernel panic", "SPLITVM-GUEST-ERROR"):
        if bad in text:
            svmtest.fail(f"guest console shows '{bad}':\n{text[-3000:]}")
    if text.count("SPLITVM-GUEST-READY") > 1:
        svmtest.fail(f"the guest booted again:\n{text[-3000:]}")
    return text


def loops_ok(tmp):
    found = re.findall(r"memverify: loop (\d+): ok", check_console(tmp, VM))
    return int(found[-1]) if found else 0


def wait_loops(tmp, n, timeout, what):
    try:
        svmtest.wait_for(lambda: loops_ok(tmp) >= n, timeout, what)
    except svmtest.TestFailure:
        svmtest.log(f"console:\n{console(tmp, VM)[-3000:]}")
        raise
    if "SPLITVM-RESULT" in console(tmp, VM):
        svmtest.fail(f"memverify already finished ({SECONDS} s) before {what}: "
                     "this machine is too slow for the test, raise SECONDS")


def uptime(text, marker):
    m = re.search(marker + r".*?uptime=([0-9.]+)", text)
    if not m:
        svmtest.fail(f"no {marker} line on the console")
    return float(m.group(1))


def bad_inputs(rack):
    for host, expect in (("nowhere", "no host 'nowhere'"), ("local", "already runs on")):
        r = splitvm("migrate", VM, host, rack=rack, check=False)
        if r.returncode != 1 or expect not in r.stderr:
            svmtest.fail(f"migrate to {host}: exit {r.returncode}, expected an error "
                         f"with '{expect}':\n{r.stdout}{r.stderr}")
        svmtest.log(f"migrate to {host}: {r.stderr.strip()}")
    r = splitvm("migrate", "no-such-vm", "h1", rack=rack, check=False)
    if r.returncode != 1 or "no VM named 'no-such-vm'" not in r.stderr:
        svmtest.fail(f"migrate of an unknown VM: {r.returncode} {r.stderr}")
    if state_on("qemu:///system", VM) != "running":
        svmtest.fail(f"{VM} is {state_on('qemu:///system', VM)} after refused migrations")


def migrate_there_and_back(tmp, rack):
    wait_loops(tmp, 2, 300, "memverify to pass 2 loops on host local")
    bad_inputs(rack)

    before = loops_ok(tmp)
    r = splitvm("migrate", VM, "h1", rack=rack, timeout=300)
    svmtest.log(r.stdout.strip())
    if "migrated to host h1" not in r.stdout or " s  " not in r.stdout:
        svmtest.fail(f"splitvm migrate printed no progress or no result:\n{r.stdout}")
    if state_on(h1_uri(tmp), VM) != "running":
        svmtest.fail(f"{VM} is not running on h1 after splitvm migrate")
    if state_on("qemu:///system", VM) is not None:
        svmtest.fail(f"{VM} is still defined on host local after the migration")
    wait_loops(tmp, before + 2, 300, "memverify to pass 2 more loops on h1")

    # The CLI finds the VM on its new host.
    ls = splitvm("ls", "--interval", "0", rack=rack).stdout
    if not re.search(rf"^{VM}\s+running", ls, re.M):
        svmtest.fail(f"`splitvm ls` does not show {VM} running after the migration:\n{ls}")
    splitvm("set-budget", VM, "96M", rack=rack)
    s = svmtest.wait_for(lambda: (lambda x: x if x["resident"] <= 96 * MIB else None)(
        stats(rack, VM)), 60, "resident size on h1 to drop to the new budget of 96 MiB")
    if s["budget"] != 96 * MIB or s["pager"].get("fills-remote", 0) == 0:
        svmtest.fail(f"stats on h1 after set-budget 96M: {s}")
    svmtest.log(f"on h1: budget {s['budget'] // MIB} MiB, resident "
                f"{s['resident'] / MIB:.1f} MiB, {s['pager']['fills-remote']} remote fills")

    # Back with plain virsh (client-driven, not peer to peer).
    before = loops_ok(tmp)
    virsh_at(h1_uri(tmp), "migrate-setmaxdowntime", VM, "2000")
    virsh_at(h1_uri(tmp), "migrate", "--live", "--persistent", "--undefinesource", VM,
             "qemu:///system", f"tcp://{H1_VETH_ROOT}", timeout=300)
    if state_on("qemu:///system", VM) != "running" or state_on(h1_uri(tmp), VM):
        svmtest.fail(f"after virsh migrate: local {state_on('qemu:///system', VM)}, "
                     f"h1 {state_on(h1_uri(tmp), VM)}")
    svmtest.log("virsh migrate --live h1 -> local done")
    wait_loops(tmp, before + 1, 300, "memverify to pass another loop back on local")

    svmtest.wait_for(lambda: "SPLITVM-GUEST-DONE" in check_console(tmp, VM), SECONDS + 300,
                     "memverify to finish")
    text = check_console(tmp, VM)
    if "SPLITVM-CMD-EXIT rc=0 cmd=memverify" not in text:
        svmtest.fail(f"memverify failed:\n{text[-3000:]}")
    m = re.search(r"SPLITVM-RESULT memverify ok=1 .*loops=(\d+) seconds=([0-9.]+)", text)
    if not m:
        svmtest.fail(f"no memverify result:\n{text[-3000:]}")
    ready, done = uptime(text, "SPLITVM-GUEST-READY"), uptime(text, "SPLITVM-GUEST-DONE")
    if done < ready + float(m.group(2)) * 0.9:
        svmtest.fail(f"guest uptime did not continue: ready {ready}, done {done}, "
                     f"memverify ran {m.group(2)} s")
    svmtest.log(f"memverify passed {m.group(1)} loops in {m.group(2)} s across two "
                f"migrations; uptime {ready} -> {done} s")


def rack_leftovers(tmp):
    out = []
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    out += [line.split()[0] for line in ns.splitlines() if f"splitvm-{RACK}-" in line]
    if os.path.exists(os.path.join(tmp, "state", "host-h1")):
        out.append("state/host-h1")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/stat") as f:
                zombie = f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except (FileNotFoundError, ProcessLookupError, IndexError, PermissionError):
            continue
        if not zombie and f"{tmp}/state" in cmd:
            out.append(f"pid {pid}: {cmd}")
    return out


def test():
    tmp = tempdir()
    os.chmod(tmp, 0o755)    # QEMU (libvirt-qemu) opens its key in tmp/secrets
    rack = None
    try:
        rack = rack_file(tmp)
        r = splitvm("rack", "up", rack=rack, timeout=180)
        svmtest.log(r.stdout.strip())
        if "host h1 started" not in r.stdout:
            svmtest.fail(f"rack up did not start host h1:\n{r.stdout}")
        r = splitvm("rack", "up", rack=rack, timeout=180)     # idempotent
        if "host h1 already running" not in r.stdout:
            svmtest.fail(f"a second rack up did not find h1 running:\n{r.stdout}")
        splitvm("rack", "status", rack=rack)

        r = splitvm("launch", vm_spec(tmp, VM, f"memverify --mib 192 --seconds {SECONDS}", vcpus=1), rack=rack, timeout=120)
        svmtest.log(r.stdout.strip())
        migrate_there_and_back(tmp, rack)

        splitvm("destroy", VM, rack=rack)
        if state_on("qemu:///system", VM) or state_on(h1_uri(tmp), VM):
            svmtest.fail(f"{VM} is still defined after splitvm destroy")
        left = server_pages(tmp, VM, SERVERS)
        if any(left.values()):
            svmtest.fail(f"pages of {VM} remain on the memory servers: {left}")
        svmtest.log("destroy: no pages left on the servers")

        splitvm("rack", "down", rack=rack, timeout=120)
        rack = None
        left = rack_leftovers(tmp)
        if left:
            svmtest.fail(f"rack down left behind: {left}")
        svmtest.log("rack down: no namespace, daemon or host dir left")
    finally:
        if rack:
            for uri in ("qemu:///system", h1_uri(tmp)):
                if state_on(uri, VM):
                    splitvm("destroy", VM, rack=rack, check=False)
            r = splitvm("rack", "down", "--force", rack=rack, check=False)
            if r.returncode != 0:
                print(r.stdout, r.stderr)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    svmtest.main(test)
