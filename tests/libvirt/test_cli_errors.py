"""Bad specs, bad rack files and an unreachable rack give clear errors
(file, line, what) and leave nothing behind: no domain, no secret.

A real libvirtd is used (started by `splitvm rack up` if not running and
stopped again by `rack down`)."""
import os
import shutil

import svmtest
from splitvm_env import splitvm, domain_exists, write, tempdir, guest_files, SPLITVM

VM = "svmtest-errors"


def test():
    tmp = tempdir()
    try:
        run(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp):
    os.chmod(tmp, 0o755)    # QEMU (libvirt-qemu) would open its key in tmp/secrets
    kernel, initrd = guest_files()
    dead_port = svmtest.free_port()       # nothing listens there
    rack = write(os.path.join(tmp, "rack.conf"), f"""\
[rack]
name = svmtest-err
secrets-dir = {tmp}/secrets
state-dir = {tmp}/state
memserver-binary = {svmtest.build_path("memserver", "splitvm-memserver")}

[host local]
emulator = {svmtest.qemu_path()}
library-path = {svmtest.build_path("hypervisor")}

[memserver gone]
tcp = 127.0.0.1:{dead_port}
""")
    good_vm = f"""\
[vm]
name = {VM}
memory = 256M
local-budget = 25%
type = qemu

[boot]
kernel = {kernel}
initrd = {initrd}
cmdline = console=ttyS0
"""
    try:
        for cmd in ["launch", "ls", "stats", "set-budget", "top", "destroy", "rack"]:
            r = splitvm(cmd, "--help")
            if "Usage:" not in r.stdout:
                svmtest.fail(f"splitvm {cmd} --help printed no usage")

        # Bad rack file: file and line in the message, exit status 1.
        bad_rack = write(os.path.join(tmp, "bad-rack.conf"),
                         open(rack).read().replace("tcp = 127", "tcp = nowhere\n#127"))
        spec = write(os.path.join(tmp, "vm.conf"), good_vm)
        r = splitvm("launch", spec, rack=bad_rack, check=False)
        expect = f"{bad_rack}:12: [memserver gone] tcp: 'nowhere' is not HOST:PORT"
        if r.returncode != 1 or expect not in r.stderr:
            svmtest.fail(f"bad rack: wanted exit 1 and '{expect}', got {r.returncode}: "
                         f"{r.stderr}")

        splitvm("rack", "up", rack=rack)

        bad_specs = {
            "budget over memory": (good_vm.replace("local-budget = 25%", "local-budget = 1G"),
                                   ":4: [vm] local-budget: 1G is more than the VM's memory"),
            "typo in key": (good_vm.replace("memory = 256M", "memroy = 256M"),
                            ":3: [vm] memroy: unknown key"),
            "missing kernel": (good_vm.replace(kernel, "/nonexistent/vmlinuz"),
                               ":8: [boot] kernel: cannot read /nonexistent/vmlinuz"),
            "unknown server": (good_vm + "[memory]\nservers = nope\n",
                               ":12: [memory] servers: rack svmtest-err"),
            "syntax": (good_vm + "this is not a key\n", ":11: 'this is not a key' is not"),
        }
        for what, (text, expect) in bad_specs.items():
            spec = write(os.path.join(tmp, "vm.conf"), text)
            r = splitvm("launch", spec, rack=rack, check=False)
            if r.returncode != 1 or expect not in r.stderr or spec not in r.stderr:
                svmtest.fail(f"{what}: wanted exit 1 naming {spec} and '{expect}', got "
                             f"{r.returncode}: {r.stderr}")
            svmtest.log(f"bad spec ({what}): {r.stderr.strip()}")

        # Unreachable rack: clear error, nothing defined, no secret written.
        spec = write(os.path.join(tmp, "vm.conf"), good_vm)
        r = splitvm("launch", spec, rack=rack, check=False)
        expect = f"memory server gone (tcp 127.0.0.1:{dead_port}) is unreachable"
        if r.returncode != 1 or expect not in r.stderr:
            svmtest.fail(f"unreachable rack: wanted '{expect}', got {r.returncode}: {r.stderr}")
        svmtest.log(f"unreachable rack: {r.stderr.strip()}")

        if domain_exists(VM):
            svmtest.fail(f"a failed launch left domain {VM} behind")
        secrets = os.listdir(os.path.join(tmp, "secrets")) \
            if os.path.isdir(os.path.join(tmp, "secrets")) else []
        if any(VM in f for f in secrets):
            svmtest.fail(f"a failed launch left a secret behind: {secrets}")

        r = splitvm("destroy", VM, rack=rack, check=False)
        if r.returncode != 1 or f"no VM named '{VM}'" not in r.stderr:
            svmtest.fail(f"destroy of a missing VM: {r.returncode} {r.stderr}")
    finally:
        if domain_exists(VM):
            splitvm("destroy", VM, rack=rack, check=False)
        splitvm("rack", "down", rack=rack, check=False)


if __name__ == "__main__":
    svmtest.main(test)
