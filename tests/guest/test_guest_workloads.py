#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Boot the test guest under TCG and run the workloads in it.

  test_guest_workloads.py sequence   1 GiB, 1 vCPU: memverify over 768 MiB,
                                     then memscan and memrand
  test_guest_workloads.py parallel   2 vCPUs: two memverify at once, then
                                     memrand

Measured on the 2-core dev machine (idle): boot to SPLITVM-GUEST-READY ~5 s
wall, memverify 768 MiB ~2.7 s, the whole sequence ~12 s, the parallel case
~10 s.  Deadlines are 5x that, as the machine is shared with builds.
"""
import os
import re
import sys
import tempfile

import svmtest
from svmtest import expect_ok, fail, log

SEQUENCE_DEADLINE = 60
PARALLEL_DEADLINE = 60


def guest_ready_line(serial_log):
    with open(serial_log, errors="replace") as f:
        m = re.search(r"SPLITVM-GUEST-READY uptime=(\S+) cpus=(\d+) memtotal_kib=(\d+)",
                      f.read())
    if not m:
        fail(f"no SPLITVM-GUEST-READY line in {serial_log}")
    return float(m.group(1)), int(m.group(2)), int(m.group(3))


def test_sequence(tmp):
    serial = os.path.join(tmp, "serial.log")
    rc, results = svmtest.run_guest(
        "memverify --mib 768 ; memscan --mib 256 --passes 2 ; memrand --mib 256 --ops 2000000",
        mem="1G", smp=1, deadline=SEQUENCE_DEADLINE, serial_log=serial)
    if rc != svmtest.GUEST_OK:
        fail(f"run-guest exited {rc}, expected 0")
    mv = expect_ok(results, "memverify")[0]
    if mv.get("mib") != "768" or mv.get("loops") != "1":
        fail(f"memverify did not verify 768 MiB once: {mv}")
    ms = expect_ok(results, "memscan")[0]
    if float(ms["read_mibps"]) <= 0 or float(ms["write_mibps"]) <= 0:
        fail(f"memscan reported no bandwidth: {ms}")
    mr = expect_ok(results, "memrand")[0]
    if mr.get("ops") != "2000000":
        fail(f"memrand ran {mr.get('ops')} ops, asked for 2000000")
    uptime, cpus, memkib = guest_ready_line(serial)
    log(f"guest ready at uptime {uptime} s with {cpus} CPU(s), {memkib} KiB; "
        f"memverify 768 MiB took {mv['seconds']} s")
    if cpus != 1 or not 900 * 1024 < memkib <= 1024 * 1024:
        fail(f"guest saw {cpus} CPUs and {memkib} KiB, expected 1 and ~1 GiB")


def test_parallel(tmp):
    serial = os.path.join(tmp, "serial.log")
    rc, results = svmtest.run_guest(
        "memverify --mib 256 --seed 11 --loops 2 & memverify --mib 256 --seed 22 --loops 2"
        " ; memrand --mib 64 --ops 1000000",
        mem="1G", smp=2, deadline=PARALLEL_DEADLINE, serial_log=serial)
    if rc != svmtest.GUEST_OK:
        fail(f"run-guest exited {rc}, expected 0")
    runs = expect_ok(results, "memverify", count=2)
    if sorted(r.get("seed") for r in runs) != ["11", "22"]:
        fail(f"expected one memverify per seed 11 and 22: {runs}")
    expect_ok(results, "memrand")
    _, cpus, _ = guest_ready_line(serial)
    if cpus != 2:
        fail(f"guest saw {cpus} CPUs, expected 2")
    # Both memverify processes must have been running at the same time:
    # the second one started before the first one finished.
    with open(serial, errors="replace") as f:
        console = f.read()
    starts = [m.start() for m in re.finditer(r"memverify: verifying 256 MiB", console)]
    ends = [m.start() for m in re.finditer(r"SPLITVM-RESULT memverify", console)]
    if len(starts) != 2 or len(ends) != 2 or not starts[1] < ends[0]:
        fail("the two memverify commands did not run in parallel")
    if console.find("memrand: ") < ends[1]:
        fail("memrand started before both memverify commands had finished")


def main():
    cases = {"sequence": test_sequence, "parallel": test_parallel}
    if len(sys.argv) != 2 or sys.argv[1] not in cases:
        print(f"usage: {sys.argv[0]} {'|'.join(cases)}", file=sys.stderr)
        sys.exit(2)
    with tempfile.TemporaryDirectory(prefix="svm-guest-") as tmp:
        svmtest.main(lambda: cases[sys.argv[1]](tmp))


if __name__ == "__main__":
    main()
