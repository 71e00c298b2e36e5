#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Guest-side measurements of the `pager` bench suite (bench/suites/pager.sh).

  pagerbench.py touch --mode local|splitvm|postcopy --mib N [--order O]
                [--servers A,B --vm ID --secret S] [--mem 1G] [--preempt]
                [--repeat K] [--cdf-dir DIR]
      memtouch in the test guest: fill N MiB, make the pages remote, time
      the first read of each page from inside the guest.
        local     RAM is a plain memfd: nothing is remote (TCG baseline)
        splitvm   memory-backend-remote: after the fill the budget drops to
                  16 MiB (pages go to the memory servers) and back to the
                  RAM size, so the touch phase fetches without evicting
        postcopy  memory-backend-memfd migrated with postcopy-ram to a
                  second QEMU on this machine, switched to postcopy at once;
                  the touch phase runs on the destination while pages are
                  still on the source
  pagerbench.py workload --mode local|splitvm --run CMDS [--budget SIZE]
                [--servers ...] [--mem 1G]
      run guest workloads (memscan, memrand) and report their results, and
      the CPU seconds the workloads cost by thread role (vCPU, pager
      threads, memory client threads, other QEMU threads, memory servers)
      with the pager's CPU per page moved.

Prints "result NAME VALUE UNIT" lines on stdout (bench/lib.sh's
bench_result reads them), logs on stderr.  Host and guest synchronise on a
second serial port (ttyS1, a UNIX socket here): memtouch --sync writes 'R'
after its fill and waits for a byte, writes 'D' and its latency histogram
after its touch phase and waits again.  The reads that were page faults are
the F slowest, F being the faults the host counted meanwhile (see
docs/benchmarks.md).  Set SPLITVM_BUILD_ROOT to the build dir;
SVM_PAGERBENCH_DUMP=DIR keeps each run's histogram there (debugging).
"""
import argparse
import contextlib
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

_TESTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests")
sys.path[:0] = [os.path.join(_TESTS, "lib"), os.path.join(_TESTS, "qemu")]
import svmtest  # noqa: E402  (tests/lib: QMP client, process(), run-guest argv)
import remotemem as rm  # noqa: E402  (tests/qemu: backend args, QEMU env, stats)

MIB = 1 << 20
GUESTS = []     # for the post-mortem on failure
DUMP_DIR = os.environ.get("SVM_PAGERBENCH_DUMP")     # raw latencies, for debugging
# memtouch's latency histogram: values < 16 ns have their own bucket, then
# 16 buckets per power of two of nanoseconds up to 2^32 (as in memtouch.c).
HIST_SUB_BITS = 4
HIST_SUB = 1 << HIST_SUB_BITS
HIST_BUCKETS = (32 - HIST_SUB_BITS + 1) * HIST_SUB
STATS_KEYS = ("fills-remote", "fills-zero", "faults-missing", "faults-wp",
              "faults-minor", "evictions", "writebacks", "prefetch-issued",
              "prefetch-hits", "bytes-in", "bytes-out")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] pagerbench: {msg}", file=sys.stderr, flush=True)


def result(name, value, unit):
    print(f"result {name} {value} {unit}", flush=True)


def size_bytes(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text and text[-1].upper() in units:
        return int(text[:-1]) * units[text[-1].upper()]
    return int(text)


def memfd_args(mem):
    return ["-object", f"memory-backend-memfd,id=m0,size={mem},share=on",
            "-machine", "memory-backend=m0"]


def remote_args(args, budget):
    return rm.backend_args(args.servers.split(","), size=args.mem, budget=budget,
                           vm_id=args.vm, secret=args.secret,
                           extra=",".join(o for o in ("prefetch=on", args.backend_opts) if o))


def ctl_args(path):
    """A second serial port (ttyS1 in the guest) on a UNIX socket."""
    return ["-chardev", f"socket,id=svmctl,path={path},server=on,wait=off",
            "-device", "isa-serial,chardev=svmctl"]


class Ctl:
    """The host end of the guest's ttyS1 (memtouch --sync)."""

    def __init__(self, path, timeout=60):
        self.sock = svmtest.wait_for(lambda: svmtest.QMP._try_connect(path), timeout,
                                     f"serial socket {path}")
        self.buf = b""

    def _fill(self, deadline, what):
        left = deadline - time.monotonic()
        if left <= 0:
            svmtest.fail(f"timed out waiting for {what}")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            svmtest.fail(f"timed out waiting for {what}")
        if not data:
            svmtest.fail(f"guest serial closed while waiting for {what}")
        self.buf += data

    def wait_for_byte(self, want, timeout, what):
        """Consume everything up to and including the byte `want`."""
        deadline = time.monotonic() + timeout
        while want not in self.buf:
            self.buf = b""
            self._fill(deadline, what)
        self.buf = self.buf[self.buf.index(want) + 1:]

    def read_exact(self, n, timeout, what):
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            self._fill(deadline, what)
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_histogram(self, timeout):
        """After 'D': memtouch's latency histogram (counts per bucket)."""
        (n,) = struct.unpack("<I", self.read_exact(4, timeout, "memtouch's bucket count"))
        if n != HIST_BUCKETS:
            svmtest.fail(f"memtouch sent {n} histogram buckets, expected {HIST_BUCKETS}")
        raw = self.read_exact(4 * n, timeout, f"memtouch's {n} histogram buckets")
        return list(struct.unpack(f"<{n}I", raw))

    def go(self):
        self.sock.sendall(b"G")

    def close(self):
        self.sock.close()


class Guest:
    """guest/run-guest in the background: QMP, serial log, stdout in files."""

    def __init__(self, stack, tmp, name, run, qemu_args, mem, deadline):
        self.qmp_path = os.path.join(tmp, f"{name}.qmp")
        self.ctl_path = os.path.join(tmp, f"{name}.ctl")
        self.out = os.path.join(tmp, f"{name}.out")
        self.err = os.path.join(tmp, f"{name}.err")
        self.serial = os.path.join(tmp, f"{name}.serial")
        self.name = name
        argv = svmtest.guest_argv(run, mem=mem, deadline=deadline,
                                  serial_log=self.serial, qmp=self.qmp_path,
                                  qemu_args=list(qemu_args) + ctl_args(self.ctl_path))
        log(f"{name}: run-guest --run {run!r}")
        fo = stack.enter_context(open(self.out, "w"))
        fe = stack.enter_context(open(self.err, "w"))
        self.proc = stack.enter_context(svmtest.process(argv, stdout=fo, stderr=fe,
                                                        env=rm.qemu_env()))
        self.deadline = deadline
        GUESTS.append(self)

    def post_mortem(self):
        for path in (self.err, self.serial):
            with contextlib.suppress(OSError), open(path, errors="replace") as f:
                for line in f.read().splitlines()[-15:]:
                    log(f"{self.name}: {os.path.basename(path)}: {line}")

    def finish(self, check=True):
        try:
            self.proc.wait(self.deadline + 30)
        except subprocess.TimeoutExpired:
            svmtest.fail(f"{self.name}: run-guest did not return")
        with open(self.err) as f:
            for line in f.read().splitlines():
                log(f"{self.name}: {line}")
        with open(self.out) as f:
            out = f.read()
        if check and self.proc.returncode != 0:
            svmtest.fail(f"{self.name}: run-guest exited {self.proc.returncode}")
        return svmtest.parse_results(out)


def hist_low(b):
    if b < HIST_SUB:
        return b
    e = b // HIST_SUB + HIST_SUB_BITS - 1
    return (HIST_SUB + b % HIST_SUB) << (e - HIST_SUB_BITS)


def hist_mid_us(b):
    hi = hist_low(b + 1) if b + 1 < HIST_BUCKETS else hist_low(b)
    return (hist_low(b) + hi) / 2 / 1000


def hist_total(h):
    return sum(h)


def hist_quantile(h, q):
    """Bucket middle at quantile q, in microseconds (0 when empty)."""
    total = hist_total(h)
    if not total:
        return 0.0
    rank = min(int(q * total), total - 1)
    seen = 0
    for b, c in enumerate(h):
        seen += c
        if seen > rank:
            return hist_mid_us(b)
    return 0.0


def hist_top(h, n):
    """The histogram of the n largest values of h."""
    top = [0] * len(h)
    for b in range(len(h) - 1, -1, -1):
        if n <= 0:
            break
        take = min(h[b], n)
        top[b] = take
        n -= take
    return top


class Touches:
    """memtouch runs of one mode, pooled.  In each run the `faults` slowest
    reads are taken as the page faults the host counted in the touch phase
    (its other reads were local; a few were delayed by guest interrupts)."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.all = [0] * HIST_BUCKETS
        self.stalls = [0] * HIST_BUCKETS
        self.faults = self.over = 0
        self.seconds = 0.0
        self.runs = 0

    def add(self, r, hist, faults):
        n = hist_total(hist)
        if n != int(r["pages"]):
            svmtest.fail(f"{self.prefix}: histogram holds {n} reads for {r['pages']} pages")
        if DUMP_DIR:
            with open(os.path.join(DUMP_DIR, f"{self.prefix}-{self.runs + 1}.hist"), "w") as f:
                f.write(f"# faults {faults}\n")
                f.write("".join(f"{hist_mid_us(b):.3f} {c}\n" for b, c in enumerate(hist) if c))
        faults = min(faults, n)
        self.all = [a + b for a, b in zip(self.all, hist)]
        self.stalls = [a + b for a, b in zip(self.stalls, hist_top(hist, faults))]
        self.faults += faults
        self.over += int(r["stalls"])
        self.stall_us = r["stall_us"]
        self.seconds += float(r["touch_seconds"])
        self.runs += 1
        log(f"{self.prefix}: {faults} faults of {n} reads; guest clocksource "
            f"{r.get('clock')}")

    def report(self, cdf_dir):
        p = self.prefix
        result(f"{p}_runs", self.runs, "runs")
        result(f"{p}_reads", hist_total(self.all), "reads")
        result(f"{p}_touch_seconds", f"{self.seconds / self.runs:.3f}", "s/run")
        result(f"{p}_touch_p50", f"{hist_quantile(self.all, 0.5):.2f}", "us")
        result(f"{p}_touch_p99", f"{hist_quantile(self.all, 0.99):.2f}", "us")
        result(f"{p}_faults", self.faults, "faults")
        result(f"{p}_reads_over_{self.stall_us}us", self.over, "reads")
        n = hist_total(self.stalls)
        if not n:
            return
        result(f"{p}_fault_stall_p50", f"{hist_quantile(self.stalls, 0.5):.1f}", "us")
        result(f"{p}_fault_stall_p99", f"{hist_quantile(self.stalls, 0.99):.1f}", "us")
        result(f"{p}_fault_stall_max", f"{hist_quantile(self.stalls, 1.0):.1f}", "us")
        if cdf_dir:
            with open(os.path.join(cdf_dir, f"{p}.cdf"), "w") as f:
                seen = 0
                for b, c in enumerate(self.stalls):
                    if c:
                        seen += c
                        f.write(f"{hist_mid_us(b):.3f} {seen / n:.5f}\n")


def memtouch_cmd(args):
    return (f"memtouch --mib {args.mib} --order {args.order} --sync /dev/ttyS1 "
            f"--stall-us {args.stall_us}")


def touch_local(args, tmp, stack, acc, tag):
    g = Guest(stack, tmp, "local", memtouch_cmd(args), memfd_args(args.mem), args.mem,
              args.deadline)
    ctl = Ctl(g.ctl_path)
    ctl.wait_for_byte(b"R", args.deadline, "memtouch to finish its fill")
    ctl.go()
    ctl.wait_for_byte(b"D", args.deadline, "memtouch to finish touching")
    hist = ctl.read_histogram(60)
    ctl.go()
    # Nothing is remote: no read is a page fault served by the host.
    acc.add(g.finish()["memtouch"][0], hist, 0)


def touch_splitvm(args, tmp, stack, acc, tag):
    g = Guest(stack, tmp, "splitvm", memtouch_cmd(args), remote_args(args, args.mem),
              args.mem, args.deadline)
    qmp = svmtest.QMP(g.qmp_path, timeout=60)
    ctl = Ctl(g.ctl_path)
    ctl.wait_for_byte(b"R", args.deadline, "memtouch to finish its fill")
    t0 = time.monotonic()
    qmp.cmd("x-remote-memory-set-budget", id="m0", budget=16 * MIB)
    t1 = time.monotonic()
    qmp.cmd("x-remote-memory-set-budget", id="m0", budget=size_bytes(args.mem))
    st0 = qmp.cmd("x-remote-memory-stats", id="m0")[0]
    log(f"splitvm: evicted down to 16 MiB in {t1 - t0:.1f} s; "
        f"{st0['remote-pages']} pages remote, {st0['resident-pages']} resident")
    ctl.go()
    ctl.wait_for_byte(b"D", args.deadline, "memtouch to finish touching")
    st1 = qmp.cmd("x-remote-memory-stats", id="m0")[0]
    hist = ctl.read_histogram(60)
    ctl.go()
    qmp.close()
    # Faults that stalled a read: pages fetched from the servers on demand.
    acc.add(g.finish()["memtouch"][0], hist, st1["fills-remote"] - st0["fills-remote"])
    for k in STATS_KEYS:
        result(f"splitvm{tag}_touch_phase_{k.replace('-', '_')}", st1[k] - st0[k], "count")
    # The pager's histogram is cumulative since the VM started (boot, fill
    # and eviction included): a diagnostic only.
    result(f"splitvm{tag}_handler_since_boot_p50", st1["fault-latency-p50-ns"] / 1000, "us")
    result(f"splitvm{tag}_handler_since_boot_p99", st1["fault-latency-p99-ns"] / 1000, "us")


def migration_status(qmp):
    return qmp.cmd("query-migrate").get("status", "none")


def touch_postcopy(args, tmp, stack, acc, tag):
    prefix = acc.prefix + tag
    run = memtouch_cmd(args)
    src = Guest(stack, tmp, "pc-src", run, memfd_args(args.mem), args.mem, args.deadline)
    sqmp = svmtest.QMP(src.qmp_path, timeout=60)
    sctl = Ctl(src.ctl_path)
    sctl.wait_for_byte(b"R", args.deadline, "memtouch to finish its fill (source)")

    port = svmtest.free_port()
    dst = Guest(stack, tmp, "pc-dst", run,
                memfd_args(args.mem) + ["-incoming", "defer"], args.mem, args.deadline)
    dqmp = svmtest.QMP(dst.qmp_path, timeout=60)
    dctl = Ctl(dst.ctl_path)
    caps = [{"capability": "postcopy-ram", "state": True}]
    if args.preempt:
        caps.append({"capability": "postcopy-preempt", "state": True})
    dqmp.cmd("migrate-set-capabilities", capabilities=caps)
    sqmp.cmd("migrate-set-capabilities", capabilities=caps)
    dqmp.cmd("migrate-incoming", uri=f"tcp:127.0.0.1:{port}")
    t0 = time.monotonic()
    sqmp.cmd("migrate", uri=f"tcp:127.0.0.1:{port}")
    sqmp.cmd("migrate-start-postcopy")
    svmtest.wait_for(lambda: dqmp.cmd("query-status")["status"] == "running", 120,
                     "the destination to run (postcopy)", interval=0.005)
    t1 = time.monotonic()
    st0 = sqmp.cmd("query-migrate")
    ram0 = st0.get("ram", {})
    log(f"{prefix}: destination running {t1 - t0:.2f} s after migrate; source status "
        f"{st0.get('status')}, {ram0.get('transferred', 0) // MIB} MiB sent so far")
    dctl.go()
    dctl.wait_for_byte(b"D", args.deadline, "memtouch to finish touching (destination)")
    ram1 = sqmp.cmd("query-migrate").get("ram", {})
    hist = dctl.read_histogram(60)
    # Keep the guest from powering off before the migration is over.
    svmtest.wait_for(lambda: migration_status(sqmp) in ("completed", "failed"), 120,
                     "the postcopy migration to complete", interval=0.1)
    st = sqmp.cmd("query-migrate")
    ram = st.get("ram", {})
    dctl.go()
    sqmp.cmd("quit")
    log("pc-src: quitting the source QEMU after the migration (run-guest will call "
        "that 'QEMU died': expected)")
    src.finish(check=False)
    # Faults that stalled a read: page requests the destination sent.
    requests = ram1.get("postcopy-requests", 0) - ram0.get("postcopy-requests", 0)
    acc.add(dst.finish()["memtouch"][0], hist, requests)
    result(f"{prefix}_migration_status", st.get("status"), "-")
    result(f"{prefix}_requests_total", ram.get("postcopy-requests", 0), "requests")
    result(f"{prefix}_total_ms", st.get("total-time", 0), "ms")
    result(f"{prefix}_transferred_mib", ram.get("transferred", 0) // MIB, "MiB")
    result(f"{prefix}_sent_before_switch_mib", ram0.get("transferred", 0) // MIB, "MiB")


CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_stat(path):
    """(comm, ppid, CPU seconds) from a /proc stat file, or None if gone."""
    try:
        with open(path) as f:
            st = f.read()
    except OSError:
        return None
    comm = st[st.index("(") + 1:st.rindex(")")]
    fields = st[st.rindex(")") + 2:].split()
    # fields[0] is field 3 (state): ppid is field 4, utime/stime 14/15
    return comm, int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def run_queue_wait(path):
    """Seconds a thread spent runnable but not running (schedstat field 2),
    or None if gone or without schedstats."""
    try:
        with open(path) as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def all_pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def find_qemu(root):
    """The QEMU process run-guest (pid root) started, or None."""
    parent = {}
    for pid in all_pids():
        st = proc_stat(f"/proc/{pid}/stat")
        if st:
            parent[pid] = (st[1], st[0])
    for pid, (_, comm) in parent.items():
        if not comm.startswith("qemu-system"):
            continue
        p = pid
        while p in parent and p != root:
            p = parent[p][0]
        if p == root:
            return pid
    return None


def find_memservers(servers):
    """PIDs of the memory servers listening on the --servers addresses."""
    want = [a.split(":", 1)[1] for a in (servers or "").split(",") if ":" in a]
    found = []
    for pid in all_pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if argv and argv[0].endswith("splitvm-memserver") and \
                any(a in argv for a in want):
            found.append(pid)
    return found


def thread_role(comm):
    if comm.startswith("CPU "):
        return "vcpu"               # QEMU's vCPU threads (debug-threads=on)
    if comm == "svm-memclient":
        return "memclient"          # completions of the memory clients
    if comm.startswith("svm-"):
        return "pager"              # fault, evict, retry, warm-up threads
    return "qemu_other"


class CpuSampler:
    """CPU seconds of the guest's QEMU threads by role, and of the memory
    servers, from the guest's READY line on (the workload's, not the
    boot's) to the last sample before QEMU exits (every 0.2 s).  A thread
    that ends (the pager's, at shutdown) counts with its last sample."""

    def __init__(self, guest, servers):
        self.guest, self.servers = guest, servers
        self.seen = {}              # (kind, id) -> (role, CPU seconds)
        self.start = None           # self.seen at the READY line
        self.start_t = self.last_t = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _ready(self):
        with contextlib.suppress(OSError), open(self.guest.serial, errors="replace") as f:
            return "SPLITVM-GUEST-READY" in f.read()
        return False

    def _sample(self, qemu, servers):
        tids = os.listdir(f"/proc/{qemu}/task")     # OSError once QEMU is gone
        for tid in tids:
            st = proc_stat(f"/proc/{qemu}/task/{tid}/stat")
            if st:
                role = thread_role(st[0])
                self.seen[("thread", tid)] = (role, st[2])
                if role == "vcpu":
                    # runnable but not running: waiting for a CPU
                    wait = run_queue_wait(f"/proc/{qemu}/task/{tid}/schedstat")
                    if wait is not None:
                        self.seen[("runq", tid)] = ("vcpu_runq_wait", wait)
        for pid in servers:
            st = proc_stat(f"/proc/{pid}/stat")
            if st:
                self.seen[("server", pid)] = ("memservers", st[2])

    def _run(self):
        qemu = servers = None
        while not self.done.wait(0.2):
            try:
                if qemu is None:
                    qemu = find_qemu(self.guest.proc.pid)
                    servers = find_memservers(self.servers)
                    continue
                if self.start is None and not self._ready():
                    continue
                self._sample(qemu, servers)
            except OSError:
                return      # QEMU exited
            if self.start is None:
                self.start, self.start_t = dict(self.seen), time.monotonic()
            else:
                self.last_t = time.monotonic()

    def stop(self):
        self.done.set()
        self.thread.join()

    def report(self, stats):
        """result lines; stats: the StatsSampler's samples (or None)."""
        if self.start is None or self.last_t is None:
            log("cpu: no samples of the workload (QEMU or READY not found)")
            return
        spent = {}
        for key, (role, sec) in self.seen.items():
            before = self.start.get(key, (role, 0.0))[1]
            spent[role] = spent.get(role, 0.0) + sec - before
        result("cpu_window_s", f"{self.last_t - self.start_t:.2f}", "s")
        for role in ("vcpu", "pager", "memclient", "qemu_other", "memservers"):
            if role in spent:
                result(f"cpu_{role}_s", f"{spent[role]:.2f}", "s")
        if "vcpu_runq_wait" in spent:
            # per vCPU thread: the window is either running, waiting for a
            # CPU, or blocked (on a page, or halted)
            result("vcpu_runq_wait_s", f"{spent['vcpu_runq_wait']:.2f}", "s")
        if not stats:
            return
        before = [x for x in stats if x["t"] <= self.start_t] or stats[:1]
        after = [x for x in stats if x["t"] <= self.last_t] or stats[-1:]
        moved = sum(after[-1][k] - before[-1][k] for k in ("fills-remote", "writebacks"))
        if moved > 0:
            us = sum(spent.get(r, 0.0) for r in ("pager", "memclient", "memservers"))
            result("cpu_per_page_moved_us", f"{us / moved * 1e6:.2f}", "us")
            result("pages_moved", moved, "pages")


def workload(args, tmp, stack):
    if args.mode == "local":
        qargs = memfd_args(args.mem)
    else:
        qargs = remote_args(args, args.budget)
    # named vCPU threads, for the CPU accounting
    qargs = list(qargs) + ["-name", "pagerbench,debug-threads=on"]
    g = Guest(stack, tmp, f"wl-{args.mode}", args.run, qargs, args.mem, args.deadline)
    cpu = CpuSampler(g, args.servers if args.mode == "splitvm" else None)
    sampler = None
    if args.mode == "splitvm":
        try:
            sampler = rm.StatsSampler(g.qmp_path, interval=0.5)
        except OSError as e:
            svmtest.fail(f"QMP of the guest: {e}")
    res = g.finish()
    cpu.stop()
    if sampler:
        sampler.stop()
    for name, runs in res.items():
        for k, v in runs[0].items():
            if k != "ok":
                result(f"{name}_{k}", v, "-")
    if sampler and sampler.samples:
        for k in STATS_KEYS:
            result(f"pager_{k.replace('-', '_')}", sampler.samples[-1][k], "count")
    cpu.report(sampler.samples if sampler else None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=("touch", "workload"))
    ap.add_argument("--mode", required=True, choices=("local", "splitvm", "postcopy"))
    ap.add_argument("--mib", type=int, default=128, help="memtouch area (MiB)")
    ap.add_argument("--order", default="random", choices=("random", "seq"))
    ap.add_argument("--stall-us", type=int, default=10)
    ap.add_argument("--run", help="workload: guest commands")
    ap.add_argument("--budget", default=None, help="workload: splitvm budget (SIZE)")
    ap.add_argument("--servers", help="memory servers, comma-separated")
    ap.add_argument("--vm", default="bench")
    ap.add_argument("--secret")
    ap.add_argument("--mem", default="1G", help="guest RAM (QEMU size)")
    ap.add_argument("--backend-opts", default="",
                    help="more memory-backend-remote properties, e.g. service-nice=0")
    ap.add_argument("--deadline", type=int, default=300)
    ap.add_argument("--preempt", action="store_true",
                    help="postcopy: also the postcopy-preempt capability")
    ap.add_argument("--repeat", type=int, default=1,
                    help="touch: runs to pool (each boots its own guests)")
    ap.add_argument("--cdf-dir", help="touch: write the fault stall CDF to DIR/MODE.cdf")
    args = ap.parse_args()
    if args.mode == "splitvm" and not (args.servers and args.secret):
        ap.error("--mode splitvm needs --servers and --secret")
    if args.what == "workload":
        if not args.run:
            ap.error("workload needs --run")
        if args.mode == "postcopy":
            ap.error("workload runs in --mode local or splitvm")
        if args.mode == "splitvm" and not args.budget:
            ap.error("workload --mode splitvm needs --budget")
    try:
        with tempfile.TemporaryDirectory(prefix="pagerbench-") as tmp:
            try:
                if args.what == "workload":
                    with contextlib.ExitStack() as stack:
                        workload(args, tmp, stack)
                else:
                    fn = {"local": touch_local, "splitvm": touch_splitvm,
                          "postcopy": touch_postcopy}[args.mode]
                    prefix = args.mode + ("_preempt" if args.preempt else "")
                    acc = Touches(prefix)
                    for i in range(args.repeat):
                        tag = f"_run{i + 1}" if args.repeat > 1 else ""
                        GUESTS.clear()
                        run_tmp = os.path.join(tmp, str(i))
                        os.mkdir(run_tmp)
                        with contextlib.ExitStack() as stack:
                            fn(args, run_tmp, stack, acc, tag)
                    acc.report(args.cdf_dir)
            except (svmtest.TestFailure, OSError):
                for g in GUESTS:
                    g.post_mortem()
                raise
    except (svmtest.TestFailure, OSError) as e:
        print(f"pagerbench: {e}", file=sys.stderr, flush=True)
        sys.exit(1)

if __name__ == "__main__":
    main()
