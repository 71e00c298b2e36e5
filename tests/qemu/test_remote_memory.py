#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""End-to-end tests of QEMU's memory-backend-remote (qemu-patches/) with
the real pager (libsplitvm), real memory servers and the Debian kernel
under TCG.

  test_remote_memory.py boot         1 GiB guest, 256 MiB budget, two servers:
                                     memverify over 768 MiB; stats sampled all
                                     along stay within the budget and show
                                     remote fills and evictions
  test_remote_memory.py budget       budget lowered to 128 MiB and raised to
                                     512 MiB over QMP during a memverify loop
  test_remote_memory.py server-lost  a memory server (file backing) stops
                                     during a run: event naming it, VM paused
                                     (io-error) with QMP still answering;
                                     restarted: event, VM resumes, memverify
                                     passes
  test_remote_memory.py refuse       QEMU refuses to start (unreachable server,
                                     wrong secret, budget > RAM, bad servers
                                     entry, prealloc, mem-lock, service-nice
                                     above 19) and refuses postcopy/
                                     background-snapshot/bad budgets over QMP;
                                     a correct command line starts, with the
                                     pager's threads (only) at nice +5
  test_remote_memory.py smp2         2 vCPUs, two memverify processes at once
  test_remote_memory.py kvm          under -accel kvm (the guest starts to
                                     boot): evictions, remote fills, a server
                                     outage and the resume (skipped without
                                     /dev/kvm)
"""
import contextlib
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import svmtest                                      # noqa: E402
from svmtest import fail, log                       # noqa: E402
import remotemem as rm                              # noqa: E402
from remotemem import MIB, PAGE                     # noqa: E402

SKIP = 77


def test_boot(tmp):
    with contextlib.ExitStack() as stack:
        servers = rm.MemServers(tmp, stack)
        args = rm.backend_args(servers.addresses(), budget="256M")
        with rm.guest(tmp, "memverify --mib 768", args, deadline=240) as \
                (p, _qmp, stats_qmp):
            sampler = rm.StatsSampler(stats_qmp)
            rc, results = rm.finish_guest(p, 270)
            sampler.stop()
        if rc != svmtest.GUEST_OK:
            fail(f"run-guest exited {rc}, expected 0")
        mv = svmtest.expect_ok(results, "memverify")[0]
        if mv.get("mib") != "768":
            fail(f"memverify did not cover 768 MiB: {mv}")
        peak = sampler.check(min_samples=20)
        last = sampler.last()
        log(f"last stats: {last}")
        if last["budget"] != 256 * MIB or last["size"] != 1024 * MIB:
            fail(f"stats report budget {last['budget']} size {last['size']}")
        # Pages come back on demand (fills-remote) or ahead of the demand
        # (prefetch); bytes-in counts both.
        if last["fills-remote"] == 0 or last["bytes-in"] < 128 * MIB:
            fail(f"{last['fills-remote']} demand fills, {last['bytes-in'] // MIB} "
                 f"MiB fetched: memverify should have read back more than "
                 f"128 MiB from the servers")
        if last["evictions"] * PAGE < 256 * MIB:
            fail(f"only {last['evictions']} evictions for 768 MiB through a "
                 f"256 MiB budget")
        if peak < 200 * MIB:
            fail(f"peak resident {peak // MIB} MiB: the budget was never used")


def set_budget(qmp, sampler, old, new):
    """x-remote-memory-set-budget; while it runs the sampler allows the
    larger of both, afterwards only the new one."""
    sampler.allow(max(old, new))
    t0 = time.monotonic()
    qmp.cmd("x-remote-memory-set-budget", id="m0", budget=new)
    sampler.allow(new)
    log(f"budget {old // MIB} -> {new // MIB} MiB took {time.monotonic() - t0:.2f} s")
    st = qmp.cmd("x-remote-memory-stats", id="m0")[0]
    if st["budget"] != new:
        fail(f"stats report budget {st['budget']} after setting {new}")
    if st["resident-pages"] * PAGE > new:
        fail(f"resident {st['resident-pages'] * PAGE // MIB} MiB right after "
             f"lowering the budget to {new // MIB} MiB")
    got = qmp.cmd("qom-get", path="/objects/m0", property="budget")
    if got != new:
        fail(f"qom-get budget says {got}, expected {new}")


def wait_fetched(qmp, mib, timeout, what):
    """Wait until the pager fetched `mib` more MiB from the servers (demand
    fills and prefetch)."""
    start = qmp.cmd("x-remote-memory-stats", id="m0")[0]["bytes-in"]
    svmtest.wait_for(
        lambda: qmp.cmd("x-remote-memory-stats", id="m0")[0]["bytes-in"]
        >= start + mib * MIB, timeout, what, interval=0.2)


def test_budget(tmp):
    with contextlib.ExitStack() as stack:
        servers = rm.MemServers(tmp, stack)
        args = rm.backend_args(servers.addresses(), budget="256M")
        with rm.guest(tmp, "memverify --mib 768 --loops 3", args,
                      deadline=420) as (p, qmp_path, stats_qmp):
            sampler = rm.StatsSampler(stats_qmp)
            qmp = svmtest.QMP(qmp_path, timeout=60)
            # The first loop has pushed pages out and reads them back.
            wait_fetched(qmp, 16, 180, "pages fetched at 256 MiB")
            set_budget(qmp, sampler, 256 * MIB, 128 * MIB)
            wait_fetched(qmp, 64, 180, "pages fetched at 128 MiB")
            set_budget(qmp, sampler, 128 * MIB, 512 * MIB)
            svmtest.wait_for(
                lambda: qmp.cmd("x-remote-memory-stats", id="m0")[0]
                ["resident-pages"] * PAGE > 256 * MIB, 180,
                "residency to grow past 256 MiB under the 512 MiB budget",
                interval=0.2)
            rc, results = rm.finish_guest(p, 450)
            sampler.stop()
        if rc != svmtest.GUEST_OK:
            fail(f"run-guest exited {rc}, expected 0")
        mv = svmtest.expect_ok(results, "memverify")[0]
        if mv.get("loops") != "3":
            fail(f"memverify ran {mv.get('loops')} loops, expected 3")
        sampler.check(min_samples=20)
        low = [s for s in sampler.samples if s["budget"] == 128 * MIB]
        if not low:
            fail("no stats sample was taken while the budget was 128 MiB")


def event_time(ev):
    return ev["timestamp"]["seconds"] + ev["timestamp"]["microseconds"] / 1e6


def test_server_lost(tmp):
    with contextlib.ExitStack() as stack:
        servers = rm.MemServers(tmp, stack, file_backing=True)
        lost = servers.address(1)
        args = rm.backend_args(servers.addresses(), budget="256M")
        with rm.guest(tmp, "memverify --mib 768 --loops 2", args,
                      deadline=420) as (p, qmp_path, _stats):
            qmp = svmtest.QMP(qmp_path, timeout=60)
            wait_fetched(qmp, 16, 180, "pages fetched before the outage")

            servers.stop(1)
            ev = qmp.wait_event("REMOTE_MEMORY_SERVER_LOST", 60)
            log(f"event: {ev}")
            if ev["data"]["id"] != "m0" or ev["data"]["server"] != lost:
                fail(f"REMOTE_MEMORY_SERVER_LOST names {ev['data']}, expected "
                     f"id m0 and server {lost}")
            if not ev["data"].get("reason"):
                fail(f"REMOTE_MEMORY_SERVER_LOST without a reason: {ev}")
            qmp.wait_event("STOP", 30)
            # QMP answers while a vCPU is blocked in a fault on the lost server
            t0 = time.monotonic()
            status = qmp.cmd("query-status")
            st = qmp.cmd("x-remote-memory-stats", id="m0")[0]
            log(f"while lost ({time.monotonic() - t0:.3f} s for two commands): "
                f"status {status}, lost-servers {st['lost-servers']}")
            if status["status"] != "io-error" or status["running"]:
                fail(f"VM not paused with io-error while {lost} is down: {status}")
            if st["lost-servers"] != [lost] or st["servers-down"] != 1:
                fail(f"stats do not show {lost} as lost: {st}")

            servers.start(1)
            back = qmp.wait_event("REMOTE_MEMORY_SERVER_BACK", 60)
            log(f"event: {back}")
            if back["data"] != {"id": "m0", "server": lost}:
                fail(f"REMOTE_MEMORY_SERVER_BACK says {back['data']}")
            resume = qmp.wait_event("RESUME", 30)
            if event_time(resume) < event_time(back):
                fail(f"VM resumed before the server was back: {resume} {back}")
            status = qmp.cmd("query-status")
            if status["status"] != "running":
                fail(f"VM not running after {lost} came back: {status}")
            st = qmp.cmd("x-remote-memory-stats", id="m0")[0]
            if st["lost-servers"] or st["servers-down"]:
                fail(f"stats still show lost servers: {st}")
            rc, results = rm.finish_guest(p, 450)
        if rc != svmtest.GUEST_OK:
            fail(f"run-guest exited {rc}, expected 0")
        mv = svmtest.expect_ok(results, "memverify")[0]
        if mv.get("loops") != "2":
            fail(f"memverify ran {mv.get('loops')} loops, expected 2")


def qemu_fails(args, expect, what):
    """QEMU must exit non-zero at start-up with every string of `expect`
    in its error output."""
    argv = [svmtest.qemu_path(), "-accel", "tcg", "-M", "pc", "-m", "1G",
            "-nodefaults", "-display", "none", "-S"] + args
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                           env=rm.qemu_env())
    except subprocess.TimeoutExpired:
        fail(f"{what}: QEMU did not exit within 60 s")
    err = r.stderr.strip()
    log(f"{what}: exit {r.returncode}: {err}")
    if r.returncode == 0:
        fail(f"{what}: QEMU started")
    for e in expect:
        if e.lower() not in err.lower():
            fail(f"{what}: QEMU's error does not mention '{e}': {err!r}")


def test_refuse(tmp):
    with contextlib.ExitStack() as stack:
        servers = rm.MemServers(tmp, stack)
        good = servers.addresses()
        nobody = f"tcp:127.0.0.1:{svmtest.free_port()}"

        qemu_fails(rm.backend_args([good[0], nobody]),
                   [nobody, "refused"], "unreachable server")
        qemu_fails(rm.backend_args(good, secret="not-the-secret-0123456789"),
                   [good[0], "secret"], "wrong secret")
        qemu_fails(rm.backend_args(good, size="1G", budget="2G"),
                   ["budget 2 GiB is larger than the RAM size 1 GiB"],
                   "budget larger than RAM")
        qemu_fails(rm.backend_args([good[0], "udp:127.0.0.1:9"]),
                   ["servers entry 'udp:127.0.0.1:9'", "unknown transport"],
                   "bad servers entry")
        qemu_fails(rm.backend_args([good[0], "127.0.0.1:99999"]),
                   ["servers entry '127.0.0.1:99999'", "port"], "bad port")
        qemu_fails(rm.backend_args(good, extra="prealloc=on"),
                   ["prealloc"], "prealloc")
        qemu_fails(["-overcommit", "mem-lock=on"] + rm.backend_args(good),
                   ["mem-lock"], "mem-lock")
        qemu_fails(rm.backend_args(good, vm_id="no-such-vm"),
                   ["no-such-vm"], "unknown VM id")
        qemu_fails(rm.backend_args(good, extra="service-nice=20"),
                   ["service-nice", "0..19", "not 20"], "service-nice out of range")

        # The same command line, correct, starts: the refusals above were
        # about the one thing that was wrong each time.
        qmp_path = os.path.join(tmp, "ok.qmp")
        argv = [svmtest.qemu_path(), "-accel", "tcg", "-M", "pc", "-m", "1G",
                "-nodefaults", "-display", "none", "-S",
                "-qmp", f"unix:{qmp_path},server=on,wait=off"] + \
            rm.backend_args(good)
        with svmtest.process(argv, env=rm.qemu_env()) as p:
            qmp = svmtest.QMP(qmp_path, timeout=60)
            status = qmp.cmd("query-status")
            if status["status"] != "prelaunch":
                fail(f"QEMU with correct arguments: status {status}")
            for cap in ("postcopy-ram", "background-snapshot"):
                r = qmp.cmd_raw("migrate-set-capabilities", capabilities=[
                    {"capability": cap, "state": True}])
                log(f"{cap}: {r}")
                if "error" not in r or "remote memory" not in r["error"]["desc"]:
                    fail(f"migration capability {cap} was not refused: {r}")
            r = qmp.cmd_raw("x-remote-memory-set-budget", id="m0", budget=2 << 30)
            if "error" not in r or "larger than its RAM size" not in r["error"]["desc"]:
                fail(f"budget above the RAM size accepted over QMP: {r}")
            r = qmp.cmd_raw("x-remote-memory-set-budget", id="nosuch", budget=MIB)
            if "error" not in r or "nosuch" not in r["error"]["desc"]:
                fail(f"set-budget on a missing object: {r}")
            r = qmp.cmd_raw("qom-set", path="/objects/m0", property="prealloc",
                            value=True)
            if "error" not in r or "prealloc" not in r["error"]["desc"]:
                fail(f"prealloc switched on at runtime: {r}")
            check_service_nice(p.pid, qmp)
            qmp.cmd("quit")
            p.wait(30)


def thread_nices(pid):
    """{comm: [nice, ...]} of a process's threads (/proc/PID/task/*/stat)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except FileNotFoundError:
            continue                # the thread ended meanwhile
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out.setdefault(comm, []).append(int(fields[16]))   # field 19: nice
    return out


def check_service_nice(pid, qmp):
    """The default service-nice (5): the pager's threads, and only they, run
    5 nice levels below QEMU's main thread; it cannot change at runtime."""
    if qmp.cmd("qom-get", path="/objects/m0", property="service-nice") != 5:
        fail("service-nice does not default to 5")
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    base = int(stat[stat.rindex(")") + 2:].split()[16])
    want = min(base + 5, 19)
    nices = thread_nices(pid)
    log(f"thread nice values (QEMU at {base}): {nices}")
    pager = {c: n for c, n in nices.items() if c.startswith("svm-")}
    for role in ("svm-fault", "svm-evict", "svm-retry", "svm-memclient"):
        if role not in pager:
            fail(f"no {role} thread in QEMU: {sorted(nices)}")
    wrong = {c: n for c, n in pager.items() if any(x != want for x in n)}
    if wrong:
        fail(f"pager threads not at nice {want}: {wrong}")
    others = {c: n for c, n in nices.items() if not c.startswith("svm-")}
    if any(x != base for n in others.values() for x in n):
        fail(f"QEMU's own threads should stay at nice {base}: {others}")
    r = qmp.cmd_raw("qom-set", path="/objects/m0", property="service-nice", value=0)
    if "error" not in r or "service-nice" not in r["error"]["desc"]:
        fail(f"service-nice changed at runtime: {r}")


def test_smp2(tmp):
    with contextlib.ExitStack() as stack:
        servers = rm.MemServers(tmp, stack)
        args = rm.backend_args(servers.addresses(), budget="256M")
        with rm.guest(tmp, "memverify --mib 384 --seed 1 & memverify --mib 384 --seed 2",
                      args, deadline=300, smp=2) as (p, _qmp, stats_qmp):
            sampler = rm.StatsSampler(stats_qmp)
            rc, results = rm.finish_guest(p, 330)
            sampler.stop()
        if rc != svmtest.GUEST_OK:
            fail(f"run-guest exited {rc}, expected 0")
        runs = svmtest.expect_ok(results, "memverify", count=2)
        if sorted(r.get("seed") for r in runs) != ["1", "2"]:
            fail(f"expected memverify with seeds 1 and 2: {runs}")
        sampler.check(min_samples=10)
        last = sampler.last()
        if last["bytes-in"] == 0 or last["evictions"] == 0:
            fail(f"no remote paging happened: {last}")


def test_kvm(tmp):
    """Nested KVM here cannot boot Linux (see machine facts), but the guest
    starts booting and touches its RAM through KVM; with an 8 MiB budget
    that is enough for evictions and remote fills.  Then the server goes
    away and comes back: the pause must not wait for vCPUs (kvmclock's
    state change handler does run_on_cpu)."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
        os.close(fd)
    except OSError as e:
        print(f"SKIP: /dev/kvm: {e}")
        sys.exit(SKIP)
    with contextlib.ExitStack() as stack:
        servers = rm.MemServers(tmp, stack, count=1, file_backing=True)
        qmp_path = os.path.join(tmp, "kvm.qmp")
        guest_dir = svmtest.build_path("guest")
        argv = [svmtest.qemu_path(), "-accel", "kvm",
                "-cpu", "host,-arch-capabilities", "-M", "pc", "-m", "1G",
                "-nodefaults", "-display", "none",
                "-serial", f"file:{os.path.join(tmp, 'kvm.serial')}",
                "-kernel", os.path.join(guest_dir, "vmlinuz"),
                "-initrd", os.path.join(guest_dir, "initramfs.cpio.gz"),
                "-append", "console=ttyS0",
                "-qmp", f"unix:{qmp_path},server=on,wait=off"] + \
            rm.backend_args(servers.addresses(), budget="8M")
        with svmtest.process(argv, env=rm.qemu_env()) as p:
            qmp = svmtest.QMP(qmp_path, timeout=60)
            accel = qmp.cmd("query-kvm")
            if not accel["enabled"]:
                fail(f"KVM is not in use: {accel}")

            def stats():
                return qmp.cmd("x-remote-memory-stats", id="m0")[0]
            svmtest.wait_for(lambda: stats()["fills-remote"] > 0 and
                             stats()["evictions"] > 0, 90,
                             "evictions and remote fills under KVM")
            st = stats()
            log(f"under KVM: {st}")
            if st["resident-pages"] * PAGE > 8 * MIB:
                fail(f"resident above the budget under KVM: {st}")

            servers.stop(0)
            ev = qmp.wait_event("REMOTE_MEMORY_SERVER_LOST", 90)
            log(f"event: {ev}")
            qmp.wait_event("STOP", 30)
            status = qmp.cmd("query-status")
            if status["status"] != "io-error":
                fail(f"VM not paused with io-error under KVM: {status}")
            servers.start(0)
            qmp.wait_event("REMOTE_MEMORY_SERVER_BACK", 60)
            qmp.wait_event("RESUME", 30)
            status = qmp.cmd("query-status")
            if status["status"] != "running":
                fail(f"VM not running after the server came back: {status}")
            before = stats()["faults-missing"]
            svmtest.wait_for(lambda: stats()["faults-missing"] > before, 60,
                             "the guest to fault again after resuming")
            qmp.cmd("quit")
            p.wait(30)


CASES = {
    "boot": test_boot,
    "budget": test_budget,
    "server-lost": test_server_lost,
    "refuse": test_refuse,
    "smp2": test_smp2,
    "kvm": test_kvm,
}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        print(f"usage: {sys.argv[0]} {{{'|'.join(CASES)}}}", file=sys.stderr)
        sys.exit(2)
    case = CASES[sys.argv[1]]
    with tempfile.TemporaryDirectory(prefix="svm-qemu-") as tmp:
        svmtest.main(lambda: case(tmp))


if __name__ == "__main__":
    main()
