#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Live migration measurements of the `migration` bench suite
(bench/suites/migration.sh): several runs of each method, taking turns.

  migbench.py [--methods splitvm,precopy,postcopy] [--mem 2G] [--verify-mib N]
              [--budget SIZE] [--runs K] [--bound S] [--max-bandwidth B/s]
              [--downtime-limit MS] [--src-cpu C] [--dst-cpu C] [--server-cpu C]

Each run boots a fresh guest running `memverify --mib N` in a loop on the
source QEMU, waits for its first full loop (the whole area is written),
starts an `-incoming defer` destination QEMU on this machine and migrates
over tcp loopback:

  splitvm   RAM in memory-backend-remote on two fresh memory servers; both
            QEMUs get the same backend options (patch 0005 migrates it)
  precopy   RAM in memory-backend-memfd,share=on; QEMU's default precopy
  postcopy  as precopy with postcopy-ram on both sides, and
            migrate-start-postcopy once the first pass over RAM is done
            (query-migrate's dirty-sync-count reaches 2)

The figures come from query-migrate on the source once the migration is
over (total-time, downtime, setup-time, ram.transferred), plus the gap
between the source's STOP and the destination's RESUME QMP events (both
stamped with this host's clock): when the guest really ran again.  A migration
still running after --bound seconds is cancelled and reported as not
converged, with the time it ran.  After every migration the destination's
guest must complete two more memverify loops with no mismatch (the loop
that was running during the migration verifies pages written before it)
and neither guest kernel may crash;
otherwise this prints "result METHOD_verify_failed 1", says so on stderr,
reports no timing of that method (and exits 1 at the end; other failures
print "result METHOD_error 1").

Prints "result NAME VALUE UNIT" lines on stdout, logs on stderr.  Uses
pagerbench.py's Guest (run-guest in the background) and
tests/qemu/remotemem.py's memory servers and backend arguments.
"""
import argparse
import contextlib
import os
import re
import statistics
import sys
import tempfile
import time

import pagerbench as pb     # also puts tests/lib and tests/qemu on sys.path
import remotemem as rm      # noqa: E402
import svmtest              # noqa: E402

MIB = pb.MIB
LOOP_OK = re.compile(r"memverify: loop (\d+): ok")
# What memverify (and the guest init) print when a verification fails.
# memverify's own verdict, or a guest kernel that fell over (its memory was
# corrupted as surely as if memverify had seen it)
VERIFY_BAD = re.compile(r"MISMATCH|SPLITVM-RESULT memverify [^\n]*ok=0|"
                        r"kernel BUG at|Kernel panic|Oops:|general protection fault")
result = pb.result


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] migbench: {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def pinned(cpu):
    """Children started inside inherit CPU `cpu` (this process's own
    affinity is restored after): QEMU's threads (vCPU, migration, pager) and
    the memory servers' threads are all created later, by those children."""
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)


class VerifyFailed(Exception):
    pass


def console(g):
    try:
        with open(g.serial, errors="replace") as f:
            return f.read().replace("\r", "")
    except FileNotFoundError:
        return ""


def check_console(g):
    text = console(g)
    m = VERIFY_BAD.search(text)
    if m:
        line = text[max(0, text.rfind("\n", 0, m.start()) + 1):].split("\n", 1)[0]
        raise VerifyFailed(f"{g.name}: memverify failed verification: {line}")
    return text


def last_loop(g):
    loops = [int(n) for n in LOOP_OK.findall(check_console(g))]
    return max(loops) if loops else 0


def wait_loop(g, want, timeout, what):
    """Until memverify in guest g has verified loop `want` (or fails)."""
    def seen():
        if last_loop(g) >= want:
            return True
        if g.proc.poll() is not None:
            check_console(g)
            svmtest.fail(f"{g.name}: run-guest exited {g.proc.returncode} while "
                         f"waiting for {what}")
        return False
    svmtest.wait_for(seen, timeout, what, interval=0.2)


def quit_qemu(g, qmp):
    with contextlib.suppress(svmtest.TestFailure, OSError):
        qmp.cmd("quit")
    log(f"{g.name}: QEMU quit by the bench (run-guest will call that 'QEMU died': "
        "expected)")
    g.finish(check=False)


def one_run(args, tmp, stack, i):
    """One migration; returns a dict of its figures."""
    name = f"{args.method}{i}"
    run = f"memverify --mib {args.verify_mib} --seconds 100000 {args.memverify_extra}".strip()
    if args.method == "splitvm":
        with pinned(args.server_cpu):
            srv = rm.MemServers(tmp, stack, count=2, capacity=args.mem)
        qargs = rm.backend_args(srv.addresses(), size=args.mem, budget=args.budget,
                                extra="prefetch=on")
    else:
        qargs = pb.memfd_args(args.mem)
    deadline = args.bound + 1200
    with pinned(args.src_cpu):
        src = pb.Guest(stack, tmp, f"{name}-src", run, qargs, args.mem, deadline)
    sqmp = svmtest.QMP(src.qmp_path, timeout=60)
    stack.callback(sqmp.close)
    wait_loop(src, 1, 600, f"{name}: memverify's first loop on the source")
    with pinned(args.dst_cpu):
        dst = pb.Guest(stack, tmp, f"{name}-dst", run, qargs + ["-incoming", "defer"],
                       args.mem, deadline)
    dqmp = svmtest.QMP(dst.qmp_path, timeout=60)
    stack.callback(dqmp.close)

    if args.method == "postcopy":
        caps = [{"capability": "postcopy-ram", "state": True}]
        sqmp.cmd("migrate-set-capabilities", capabilities=caps)
        dqmp.cmd("migrate-set-capabilities", capabilities=caps)
    sqmp.cmd("migrate-set-parameters", **{"max-bandwidth": args.max_bandwidth,
                                           "downtime-limit": args.downtime_limit})
    port = svmtest.free_port()
    uri = f"tcp:127.0.0.1:{port}"
    dqmp.cmd("migrate-incoming", uri=uri)
    loop0 = last_loop(src)
    st0 = sqmp.cmd("x-remote-memory-stats", id="m0")[0] if args.method == "splitvm" else None
    t0 = time.monotonic()
    sqmp.cmd("migrate", uri=uri)
    switched = None
    while True:
        r = sqmp.cmd("query-migrate")
        status = r.get("status")
        if status in ("completed", "failed", "cancelled"):
            break
        elapsed = time.monotonic() - t0
        # a guest that crashed meanwhile would leave postcopy running forever
        check_console(src)
        check_console(dst)
        if status == "postcopy-active" and elapsed > 3 * args.bound:
            svmtest.fail(f"{name}: postcopy still not complete after {elapsed:.0f} s")
        if (args.method == "postcopy" and switched is None and status == "active"
                and r.get("ram", {}).get("dirty-sync-count", 0) >= 2):
            sqmp.cmd("migrate-start-postcopy")
            switched = elapsed
            log(f"{name}: migrate-start-postcopy after {elapsed:.1f} s (first pass done)")
        if elapsed > args.bound and status != "postcopy-active":
            ram = r.get("ram", {})
            log(f"{name}: NOT CONVERGED after {elapsed:.0f} s (status {status}, "
                f"{ram.get('transferred', 0) // MIB} MiB sent, "
                f"{ram.get('dirty-sync-count')} passes, {ram.get('remaining', 0) // MIB} "
                f"MiB remaining, expected downtime {r.get('expected-downtime')} ms): "
                "cancelling")
            sqmp.cmd("migrate_cancel")
            svmtest.wait_for(lambda: sqmp.cmd("query-migrate").get("status") == "cancelled",
                             120, f"{name}: the migration to cancel")
            svmtest.wait_for(lambda: sqmp.cmd("query-status")["status"] == "running", 60,
                             f"{name}: the source to run again")
            # The guest goes on on the source: it must still verify.
            wait_loop(src, last_loop(src) + 2, 600,
                      f"{name}: two memverify loops on the source after the cancel")
            out = {"converged": False, "ran_ms": elapsed * 1000,
                   "transferred": ram.get("transferred", 0),
                   "passes": ram.get("dirty-sync-count", 0)}
            quit_qemu(dst, dqmp)
            quit_qemu(src, sqmp)
            return out
        time.sleep(0.1)
    if status != "completed":
        svmtest.fail(f"{name}: migration {status}: {r}")
    ram = r.get("ram", {})
    out = {"converged": True, "total_ms": r.get("total-time"), "downtime_ms": r.get("downtime"),
           "setup_ms": r.get("setup-time"), "transferred": ram.get("transferred", 0),
           "passes": ram.get("dirty-sync-count", 0),
           "postcopy_requests": ram.get("postcopy-requests", 0)}
    if switched is not None:
        out["switchover_ms"] = switched * 1000
    if st0 is not None:
        st1 = sqmp.cmd("x-remote-memory-stats", id="m0")[0]
        out["flushed"] = (st1["writebacks"] - st0["writebacks"]) * rm.PAGE
    svmtest.wait_for(lambda: dqmp.cmd("query-status")["status"] == "running", 120,
                     f"{name}: the destination to run")
    # query-migrate's downtime ends when the source has sent everything; the
    # guest really runs again when the destination resumes it.  Both QEMUs
    # stamp their events with this host's clock.
    stop, resume = event_time(sqmp, "STOP"), event_time(dqmp, "RESUME")
    if stop is not None and resume is not None:
        out["stop_to_resume_ms"] = (resume - stop) * 1000
    else:
        log(f"{name}: no STOP event from the source or RESUME from the destination: "
            "no stop-to-resume figure")
    # memverify on the destination: the loop that ran during the migration
    # and one whole loop after it must verify.
    loop1 = last_loop(src)
    wait_loop(dst, loop1 + 2, 600,
              f"{name}: memverify loops {loop1 + 1} and {loop1 + 2} on the destination")
    log(f"{name}: total {out['total_ms']} ms, downtime {out['downtime_ms']} ms, setup "
        f"{out['setup_ms']} ms, stop-to-resume {out.get('stop_to_resume_ms', -1):.0f} ms, "
        f"{out['transferred'] // MIB} MiB sent"
        + (f", {out['flushed'] // MIB} MiB flushed to the servers" if "flushed" in out else "")
        + f"; memverify loops {loop0} -> {loop1} on the source, "
        f"{last_loop(dst)} verified on the destination")
    quit_qemu(dst, dqmp)
    quit_qemu(src, sqmp)
    return out


def event_time(qmp, name):
    """Host time (s) of the first QMP event `name` this connection saw."""
    for e in qmp.events:
        if e["event"] == name:
            return e["timestamp"]["seconds"] + e["timestamp"]["microseconds"] / 1e6
    return None


def median(xs):
    return statistics.median(xs) if xs else None


def report(args, runs):
    m = args.method
    conv = [r for r in runs if r["converged"]]
    result(f"{m}_runs", len(runs), "runs")
    result(f"{m}_not_converged_runs", len(runs) - len(conv), "runs")
    for i, r in enumerate(runs, 1):
        if r["converged"]:
            result(f"{m}_run{i}_total_ms", r["total_ms"], "ms")
            result(f"{m}_run{i}_downtime_ms", r["downtime_ms"], "ms")
            if "stop_to_resume_ms" in r:
                result(f"{m}_run{i}_stop_to_resume_ms", f"{r['stop_to_resume_ms']:.0f}", "ms")
        else:
            result(f"{m}_run{i}_not_converged_after_ms", f"{r['ran_ms']:.0f}", "ms")
    # A run that did not converge took at least as long as it ran: the
    # median over all runs is then a lower bound (and says so).
    totals = [r["total_ms"] if r["converged"] else r["ran_ms"] for r in runs]
    result(f"{m}_total_ms", f"{median(totals):.0f}", "ms")
    result(f"{m}_total_is_lower_bound", int(len(conv) < len(runs) and
                                            median(totals) >= min(r["ran_ms"] for r in runs
                                                                  if not r["converged"])), "-")
    if conv:
        for k in ("downtime_ms", "setup_ms"):
            result(f"{m}_{k}", f"{median([r[k] for r in conv]):.0f}", "ms")
    result(f"{m}_transferred_mib", f"{median([r['transferred'] for r in runs]) / MIB:.0f}",
           "MiB")
    result(f"{m}_passes", f"{median([r['passes'] for r in runs]):.0f}", "passes")
    for k, unit, scale in (("flushed", "MiB", MIB), ("switchover_ms", "ms", 1),
                           ("stop_to_resume_ms", "ms", 1),
                           ("postcopy_requests", "requests", 1)):
        xs = [r[k] for r in conv if k in r]
        if xs and (k != "postcopy_requests" or m == "postcopy"):
            name = "flushed_mib" if k == "flushed" else k
            result(f"{m}_{name}", f"{median(xs) / scale:.0f}", unit)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default="splitvm,precopy,postcopy",
                    help="comma-separated, from splitvm, precopy, postcopy")
    ap.add_argument("--mem", default="2G", help="guest RAM (QEMU size)")
    ap.add_argument("--verify-mib", type=int, default=768, help="memverify area (MiB)")
    ap.add_argument("--budget", default="512M", help="splitvm: local budget (SIZE)")
    ap.add_argument("--runs", type=int, default=3, help="runs per method")
    ap.add_argument("--bound", type=float, default=120,
                    help="cancel a migration still running after this many seconds")
    ap.add_argument("--max-bandwidth", type=int, default=1250000000, help="bytes/s")
    ap.add_argument("--downtime-limit", type=int, default=300, help="ms")
    ap.add_argument("--memverify-extra", default="",
                    help="more memverify options (--corrupt-for-selftest checks that a "
                    "failed verification is reported)")
    ap.add_argument("--src-cpu", type=int, default=0)
    ap.add_argument("--dst-cpu", type=int, default=0)
    ap.add_argument("--server-cpu", type=int, default=0)
    args = ap.parse_args()
    methods = args.methods.split(",")
    for m in methods:
        if m not in ("splitvm", "precopy", "postcopy"):
            ap.error(f"--methods: unknown method '{m}'")
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    runs = {m: [] for m in methods}
    failed = {}
    # Methods take turns (run 1 of each, then run 2 ...): the load on the
    # shared machine drifts over the minutes this takes.
    for i in range(1, args.runs + 1):
        for m in methods:
            if m in failed:
                continue
            args.method = m
            pb.GUESTS.clear()
            try:
                with tempfile.TemporaryDirectory(prefix="migbench-") as tmp:
                    try:
                        with contextlib.ExitStack() as stack:
                            runs[m].append(one_run(args, tmp, stack, i))
                    except (svmtest.TestFailure, OSError, VerifyFailed):
                        for g in pb.GUESTS:
                            g.post_mortem()
                        raise
            except VerifyFailed as e:
                failed[m] = "verify_failed"
                print(f"migbench: *** GUEST VERIFICATION FAILED ({m}, run {i}): {e} ***\n"
                      f"migbench: *** no timing is reported for {m} ***",
                      file=sys.stderr, flush=True)
            except (svmtest.TestFailure, OSError) as e:
                failed[m] = "error"
                print(f"migbench: *** {m} run {i} FAILED: {e} ***\n"
                      f"migbench: *** no timing is reported for {m} ***",
                      file=sys.stderr, flush=True)
    for m in methods:
        if m in failed:
            result(f"{m}_{failed[m]}", 1, "-")
        else:
            args.method = m
            report(args, runs[m])
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
