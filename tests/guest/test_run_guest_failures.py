#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Self-tests of guest/run-guest: each way a guest run can go wrong must make
run-guest fail with its own exit code and a message saying what happened.

  test_run_guest_failures.py verify-failed | deadline | no-result |
                             qemu-died | qemu-killed | guest-cmd-failed
"""
import os
import signal
import subprocess
import sys
import tempfile
import time

import svmtest
from svmtest import fail, log


def expect(run, rc, message, what):
    if run.rc != rc:
        fail(f"{what}: run-guest exited {run.rc}, expected {rc}; stderr:\n{run.stderr}")
    if message not in run.stderr:
        fail(f"{what}: run-guest's stderr does not say '{message}':\n{run.stderr}")


def qemu_pids(marker):
    """PIDs of QEMU processes whose command line contains marker."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"qemu-system-x86_64") and \
                any(marker.encode() in a for a in argv):
            pids.append(int(d))
    return pids


def case_verify_failed(tmp):
    r = svmtest.run_guest("memverify --mib 32 --corrupt-for-selftest", deadline=60)
    expect(r, svmtest.GUEST_VERIFY_FAILED, "verification failed: memverify", "verify-failed")
    mv = r.results.get("memverify", [{}])[0]
    if mv.get("ok") != "0" or "offset" not in mv:
        fail(f"the ok=0 result line was not passed on: {r.results}")


def case_deadline(tmp):
    serial = os.path.join(tmp, "deadline-serial.log")
    start = time.monotonic()
    r = svmtest.run_guest("sleep 600", deadline=20, serial_log=serial)
    elapsed = time.monotonic() - start
    expect(r, svmtest.GUEST_DEADLINE, "guest hung past deadline of 20 s", "deadline")
    if not 20 <= elapsed < 40:
        fail(f"run-guest returned after {elapsed:.1f} s with a 20 s deadline")
    left = qemu_pids(serial)
    if left:
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        fail(f"QEMU still running after the deadline: pids {left}")


def case_no_result(tmp):
    r = svmtest.run_guest("true", deadline=60)
    expect(r, svmtest.GUEST_NO_RESULT, "no result line", "no-result")
    # ... unless the caller says that is fine.
    r = svmtest.run_guest("true", deadline=60, allow_no_result=True)
    if r.rc != svmtest.GUEST_OK:
        fail(f"--allow-no-result: run-guest exited {r.rc}, expected 0")


def case_qemu_died(tmp):
    # QEMU refuses its command line and exits at once.
    r = svmtest.run_guest("memverify --mib 1", deadline=60,
                          qemu_args=["-object", "no-such-object-type,id=x"])
    expect(r, svmtest.GUEST_QEMU_DIED, "QEMU died", "qemu-died")
    if "no-such-object-type" not in r.stderr:
        fail(f"QEMU's own error message was not shown:\n{r.stderr}")


def case_qemu_killed(tmp):
    # QEMU dies while the guest is running.
    serial = os.path.join(tmp, "killed-serial.log")
    argv = svmtest.guest_argv("sleep 600", deadline=120, serial_log=serial)
    with svmtest.process(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True) as p:
        def ready():
            try:
                with open(serial, errors="replace") as f:
                    return "SPLITVM-GUEST-READY" in f.read()
            except FileNotFoundError:
                return False
        svmtest.wait_for(ready, 60, "the guest to boot")
        pids = qemu_pids(serial)
        if len(pids) != 1:
            fail(f"expected one QEMU for {serial}, found {pids}")
        log(f"killing QEMU (pid {pids[0]}) under the running guest")
        os.kill(pids[0], signal.SIGKILL)
        out, err = p.communicate(timeout=30)
    log(err)
    if p.returncode != svmtest.GUEST_QEMU_DIED:
        fail(f"run-guest exited {p.returncode}, expected {svmtest.GUEST_QEMU_DIED}")
    if "before the guest printed SPLITVM-GUEST-DONE" not in err:
        fail(f"run-guest did not say the guest never finished:\n{err}")


def case_guest_cmd_failed(tmp):
    # A command that fails without a result line.
    r = svmtest.run_guest("false ; memscan --mib 1 --passes 1", deadline=60)
    expect(r, svmtest.GUEST_CMD_FAILED, "guest command failed: rc=1 cmd=false",
           "guest-cmd-failed")
    if r.results.get("memscan", [{}])[0].get("ok") != "1":
        fail(f"the step after the failing command did not run: {r.results}")
    # A second splitvm.run= on the kernel command line is refused in the guest.
    r = svmtest.run_guest("memscan --mib 1", deadline=60, append="splitvm.run=true")
    expect(r, svmtest.GUEST_CMD_FAILED, "guest refused the command line",
           "duplicate splitvm.run")
    # Malformed --run is refused before booting anything.
    r = svmtest.run_guest("memscan --mib 1 ;; true", deadline=60)
    expect(r, svmtest.GUEST_USAGE, "empty step or command", "malformed --run")


CASES = {
    "verify-failed": case_verify_failed,
    "deadline": case_deadline,
    "no-result": case_no_result,
    "qemu-died": case_qemu_died,
    "qemu-killed": case_qemu_killed,
    "guest-cmd-failed": case_guest_cmd_failed,
}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        print(f"usage: {sys.argv[0]} {'|'.join(CASES)}", file=sys.stderr)
        sys.exit(2)
    with tempfile.TemporaryDirectory(prefix="svm-run-guest-") as tmp:
        svmtest.main(lambda: CASES[sys.argv[1]](tmp))


if __name__ == "__main__":
    main()
