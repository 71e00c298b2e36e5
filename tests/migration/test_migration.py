#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Live migration of a guest whose RAM stays on the memory servers: two
patched QEMUs on this machine (a source and an -incoming destination), QMP
`migrate` over a unix socket, memverify looping in the guest.

  test_migration.py there-and-back   A -> B -> A' while memverify loops;
                                     verification never fails, no reboot,
                                     the guest's uptime continues
  test_migration.py dest-killed      the destination is killed mid-way: the
                                     source keeps running (and owning) and
                                     memverify passes
  test_migration.py stale-source     the old source resumed after the hand-over
                                     is fenced: its write-backs are refused
"""
import contextlib
import os
import subprocess
import tempfile
import re
import sys
import time

import svmtest
from svmtest import fail, log

sys.path.insert(0, os.path.join(svmtest.SOURCE_ROOT, "tests", "qemu"))
import remotemem as rm  # noqa: E402

MEM, BUDGET, MIB_VERIFY = "1G", "256M", 384


def qemu_argv(tmp, name, servers, run, incoming=None):
    """The same machine run-guest starts, with remote RAM and QMP."""
    build = svmtest.BUILD_ROOT
    kernel = os.path.join(build, "guest", "vmlinuz")
    if not os.path.exists(kernel):
        kernel = subprocess.check_output(
            [os.path.join(svmtest.SOURCE_ROOT, "guest", "find-kernel.sh")],
            text=True).strip()
    argv = [svmtest.qemu_path(), "-accel", "tcg", "-M", "pc", "-m", MEM,
            "-smp", "1", "-nographic", "-no-reboot", "-nodefaults",
            "-kernel", kernel,
            "-initrd", os.path.join(build, "guest", "initramfs.cpio.gz"),
            "-append", f'console=ttyS0 quiet panic=-1 splitvm.run="{run}"',
            "-serial", f"file:{os.path.join(tmp, name + '.serial')}",
            "-qmp", f"unix:{os.path.join(tmp, name + '.qmp')},server=on,wait=off"]
    argv += rm.backend_args(servers, size=MEM, budget=BUDGET)
    if incoming:
        argv += ["-incoming", incoming]
    return argv


class Vm:
    def __init__(self, tmp, stack, name, servers, run, incoming=None):
        self.tmp, self.name = tmp, name
        self.serial = os.path.join(tmp, name + ".serial")
        self.errpath = os.path.join(tmp, name + ".err")
        errf = open(self.errpath, "w")
        stack.callback(errf.close)
        self.proc = stack.enter_context(svmtest.process(
            qemu_argv(tmp, name, servers, run, incoming), name=name,
            stdout=errf, stderr=errf, env=rm.qemu_env()))
        self.qmp = svmtest.QMP(os.path.join(tmp, name + ".qmp"), timeout=60)
        stack.callback(self.qmp.close)

    def console(self):
        with open(self.serial, errors="replace") as f:
            return f.read().replace("\r", "")

    def stderr(self):
        with open(self.errpath, errors="replace") as f:
            return f.read()

    def status(self):
        return self.qmp.cmd("query-status")["status"]

    def stats(self):
        return self.qmp.cmd("x-remote-memory-stats", id="m0")[0]


def wait_console(vm, pattern, timeout, what):
    def seen():
        # Exit first, console second: a guest that prints the pattern and
        # powers off between two polls must count as seen.
        exited = vm.proc.poll() is not None
        m = re.search(pattern, vm.console())
        if m or not exited:
            return m
        fail(f"{vm.name} QEMU exited {vm.proc.returncode} while waiting for "
             f"{what}: {vm.stderr()[-2000:]}")
    return svmtest.wait_for(seen, timeout, what, interval=0.2)


def migration_ended(src, timeout, what):
    """query-migrate's answer once the migration from src is over."""
    def ended():
        r = src.qmp.cmd("query-migrate")
        return r if r.get("status") in ("completed", "failed", "cancelled") else None
    return svmtest.wait_for(ended, timeout, what, interval=0.2)


def migrate(src, dst, uri, timeout=240):
    """QMP migrate src -> dst; returns query-migrate's final answer."""
    src.qmp.cmd("migrate-set-parameters", **{"downtime-limit": 2000})
    t0 = time.monotonic()
    src.qmp.cmd("migrate", uri=uri)
    r = migration_ended(src, timeout, f"migration {src.name} -> {dst.name}")
    if r["status"] != "completed":
        fail(f"migration {src.name} -> {dst.name} {r['status']}: {r}\n"
             f"dest stderr: {dst.stderr()[-2000:]}")
    svmtest.wait_for(lambda: dst.status() == "running", 60,
                     f"{dst.name} to run after the migration")
    log(f"migrated {src.name} -> {dst.name} in {time.monotonic() - t0:.1f} s: "
        f"total-time {r.get('total-time')} ms, downtime {r.get('downtime')} ms")
    if src.status() != "postmigrate":
        fail(f"source {src.name} is {src.status()} after the migration")
    return r


def results_of(text):
    return svmtest.expect_ok(svmtest.parse_results(text), "memverify")[0]


def uptime(text, marker):
    m = re.search(marker + r".*?uptime=([0-9.]+)", text)
    if not m:
        fail(f"no {marker} line")
    return float(m.group(1))


def start_source(tmp, stack, seconds):
    """Two memory servers and the source VM a, memverify looping for
    `seconds`, booted and with pages dirtied; returns (servers, run, a)."""
    srv = rm.MemServers(tmp, stack, count=2, capacity="2G")
    servers = srv.addresses()
    run = f"memverify --mib {MIB_VERIFY} --seconds {seconds}"
    a = Vm(tmp, stack, "a", servers, run)
    wait_console(a, r"SPLITVM-GUEST-READY", 120, "the guest to boot on a")
    # let memverify dirty pages first
    svmtest.wait_for(lambda: a.stats()["dirty-pages"] > 1000, 60,
                     "memverify to dirty pages on a")
    return servers, run, a


def test_there_and_back(tmp):
    with contextlib.ExitStack() as stack:
        seconds = 75
        servers, run, a = start_source(tmp, stack, seconds)
        ready_up = uptime(a.console(), "SPLITVM-GUEST-READY")
        b = Vm(tmp, stack, "b", servers, run, incoming=f"unix:{tmp}/mig-b.sock")
        migrate(a, b, f"unix:{tmp}/mig-b.sock")
        sb = b.stats()
        log(f"b after hand-over: {sb}")
        svmtest.stop_process(a.proc)

        svmtest.wait_for(lambda: b.stats()["fills-remote"] > 1000, 60,
                         "the guest on b to fault pages in from the servers")
        a2 = Vm(tmp, stack, "a2", servers, run, incoming=f"unix:{tmp}/mig-a2.sock")
        migrate(b, a2, f"unix:{tmp}/mig-a2.sock")
        svmtest.stop_process(b.proc)

        done = wait_console(a2, r"SPLITVM-GUEST-DONE rc=(\d+)", seconds + 120,
                            "memverify to finish on a2")
        text = a.console() + b.console() + a2.console()
        mv = results_of(text)
        if text.count("SPLITVM-GUEST-READY") != 1:
            fail("the guest booted more than once")
        done_up = uptime(a2.console(), "SPLITVM-GUEST-DONE")
        if done_up < ready_up + float(mv["seconds"]) * 0.9:
            fail(f"guest uptime did not continue: ready {ready_up}, done {done_up}, "
                 f"memverify ran {mv['seconds']} s")
        log(f"memverify {mv}; uptime {ready_up} -> {done_up} s across 2 migrations")
        if done.group(1) != "0":
            fail(f"guest reported a failed command: {done.group(0)}")


def test_dest_killed(tmp):
    with contextlib.ExitStack() as stack:
        seconds = 40
        servers, run, a = start_source(tmp, stack, seconds)
        b = Vm(tmp, stack, "b", servers, run, incoming=f"unix:{tmp}/mig-b.sock")
        # slow enough that the migration is surely still running when b dies
        a.qmp.cmd("migrate-set-parameters", **{"max-bandwidth": 32 * 1024})
        a.qmp.cmd("migrate", uri=f"unix:{tmp}/mig-b.sock")
        svmtest.wait_for(lambda: a.qmp.cmd("query-migrate").get("status") == "active",
                         30, "the migration to be active")
        b.proc.kill()
        b.proc.wait(10)
        r = migration_ended(a, 60, "the migration to fail")
        if r["status"] != "failed":
            fail(f"migration with a killed destination ended {r['status']}")
        if a.status() != "running":
            fail(f"source is {a.status()} after the failed migration")
        # the source still owns the pages: its write-backs keep being accepted
        wb = a.stats()["writebacks"]
        svmtest.wait_for(lambda: a.stats()["writebacks"] > wb + 1000, 60,
                         "the source to keep writing pages back")
        st = a.stats()
        if st["lost-servers"] or a.status() != "running":
            fail(f"source unhealthy after the failed migration: {st}")
        # (the guest powers off after DONE, so QEMU exits: no QMP after this)
        wait_console(a, r"SPLITVM-GUEST-DONE", seconds + 120, "memverify to finish on a")
        mv = results_of(a.console())
        log(f"source kept running: memverify {mv}; writebacks {st['writebacks']}")


def test_stale_source(tmp):
    """After the hand-over the old source is resumed by mistake: the servers
    refuse its write-backs and the new owner's guest still verifies."""
    with contextlib.ExitStack() as stack:
        seconds = 45
        servers, run, a = start_source(tmp, stack, seconds)
        b = Vm(tmp, stack, "b", servers, run, incoming=f"unix:{tmp}/mig-b.sock")
        migrate(a, b, f"unix:{tmp}/mig-b.sock")
        a.qmp.cmd("cont")
        ev = a.qmp.wait_event("REMOTE_MEMORY_SERVER_LOST", 90)
        reason = ev["data"].get("reason", "")
        log(f"stale source: {ev}")
        if "fenced" not in reason.lower():
            fail(f"stale source lost a server for another reason: {ev}")
        svmtest.stop_process(a.proc)
        wait_console(b, r"SPLITVM-GUEST-DONE", seconds + 120, "memverify to finish on b")
        log(f"new owner verified: {results_of(b.console())}")


def main():
    tests = {"there-and-back": test_there_and_back, "dest-killed": test_dest_killed,
             "stale-source": test_stale_source}
    if len(sys.argv) != 2 or sys.argv[1] not in tests:
        print(f"usage: {sys.argv[0]} {'|'.join(tests)}", file=sys.stderr)
        sys.exit(2)

    def run():
        with tempfile.TemporaryDirectory(prefix="svm-mig-") as tmp:
            tests[sys.argv[1]](tmp)
    svmtest.main(run)


if __name__ == "__main__":
    main()
