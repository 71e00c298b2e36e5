# SPDX-License-Identifier: GPL-2.0-or-later
"""Helpers for the QEMU remote-memory tests: memory servers on loopback, the
memory-backend-remote command line, and a QMP stats sampler."""
import contextlib
import os
import subprocess
import threading
import time

import svmtest
from svmtest import fail, log

PAGE = 4096
MIB = 1 << 20

VM_ID = "qemu-test-vm"
SECRET = "qemu-test-secret-0123456789abcdef"

# Boot to SPLITVM-GUEST-READY takes ~5 s under TCG; memverify over 768 MiB
# in 1 GiB with a 256 MiB budget against two loopback servers ~25-30 s per
# loop (measured on the idle 2-core dev machine).  Deadlines below are ~4x.


def memserver_path():
    path = os.environ.get("SPLITVM_MEMSERVER") or \
        svmtest.build_path("memserver", "splitvm-memserver")
    if not os.access(path, os.X_OK):
        fail(f"memory server not built ({path} missing)")
    return path


def qemu_env():
    """Environment for QEMU (and run-guest): libsplitvm from the build dir."""
    env = dict(os.environ)
    libdir = svmtest.build_path("hypervisor")
    env["LD_LIBRARY_PATH"] = libdir + (":" + env["LD_LIBRARY_PATH"]
                                       if env.get("LD_LIBRARY_PATH") else "")
    return env


class MemServers:
    """N splitvm-memserver processes on loopback sharing one secrets file.

    Servers can be stopped and started again on the same port (and, with
    file_backing, the same pages)."""

    def __init__(self, tmp, stack, count=2, capacity="1G", file_backing=False,
                 vm_id=VM_ID, secret=SECRET, transports=None):
        self.tmp, self.stack = tmp, stack
        # Transport of each server ("tcp"/"rdma", cycled); tests/rdma sets
        # SPLITVM_TEST_TRANSPORTS (e.g. "rdma" or "tcp,rdma") to rerun tests.
        transports = transports or os.environ.get("SPLITVM_TEST_TRANSPORTS", "tcp").split(",")
        self.transports = [transports[i % len(transports)] for i in range(count)]
        self.capacity, self.file_backing = capacity, file_backing
        self.secrets = os.path.join(tmp, "secrets.ini")
        with open(self.secrets, "w") as f:
            f.write(f"[vm {vm_id}]\nsecret={secret}\n")
        os.chmod(self.secrets, 0o600)
        self.ports = [svmtest.free_port() for _ in range(count)]
        self.procs = [None] * count
        self.starts = [0] * count
        for i in range(count):
            self.start(i)

    def address(self, i):
        return f"{self.transports[i]}:127.0.0.1:{self.ports[i]}"

    def addresses(self):
        return [self.address(i) for i in range(len(self.ports))]

    def start(self, i):
        self.starts[i] += 1
        logpath = os.path.join(self.tmp, f"memserver{i}.{self.starts[i]}.log")
        argv = [memserver_path(), "--listen", f"127.0.0.1:{self.ports[i]}",
                "--capacity", self.capacity, "--secrets", self.secrets,
                "--workers", "1", "--quiet", "--transport", self.transports[i]]
        if self.file_backing:
            argv += ["--backing", os.path.join(self.tmp, f"pool{i}")]
        logf = open(logpath, "w")
        self.stack.callback(logf.close)
        p = self.stack.enter_context(svmtest.process(
            argv, name=f"memserver{i}", stdout=logf, stderr=subprocess.STDOUT))
        self.procs[i] = p

        def listening():
            if p.poll() is not None:
                with open(logpath) as f:
                    fail(f"memory server {i} exited {p.returncode}: {f.read()}")
            with open(logpath) as f:
                return "listening on" in f.read()
        svmtest.wait_for(listening, 30, f"memory server {i} to listen")
        log(f"memory server {i} listening on {self.address(i)} (pid {p.pid})")

    def stop(self, i):
        rc = svmtest.stop_process(self.procs[i])
        log(f"memory server {i} stopped (exit {rc})")


def backend_args(servers, size="1G", budget="256M", vm_id=VM_ID,
                 secret=SECRET, extra="", mem_id="m0"):
    """QEMU arguments for guest RAM in a memory-backend-remote."""
    srv = ",".join(f"servers={s}" for s in servers)
    opts = f"memory-backend-remote,id={mem_id},size={size},{srv},vm-id={vm_id},secret=sec0"
    if budget:
        opts += f",budget={budget}"
    if extra:
        opts += "," + extra
    return ["-object", f"secret,id=sec0,data={secret}",
            "-object", opts, "-machine", f"memory-backend={mem_id}"]


class StatsSampler:
    """Samples x-remote-memory-stats on its own QMP connection in a thread
    until stop(); checks every sample against the budget allowed then."""

    def __init__(self, qmp_path, mem_id="m0", interval=0.2):
        self.qmp = svmtest.QMP(qmp_path, timeout=60)
        self.mem_id, self.interval = mem_id, interval
        self.samples = []
        self.violations = []
        self.lock = threading.Lock()
        self.allowed = None         # bytes; None = the budget the stats report
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def allow(self, nbytes):
        with self.lock:
            self.allowed = nbytes

    def _limit(self, st):
        with self.lock:
            return self.allowed if self.allowed is not None else st["budget"]

    def _run(self):
        while not self.done.is_set():
            try:
                before = None
                with self.lock:
                    before = self.allowed
                r = self.qmp.cmd_raw("x-remote-memory-stats", id=self.mem_id)
            except (svmtest.TestFailure, OSError):
                return      # QEMU exited (the guest powered off)
            if "error" in r:
                self.violations.append(f"x-remote-memory-stats failed: {r['error']}")
                return
            st = r["return"][0]
            st["t"] = time.monotonic()
            limit = max(x for x in (before, self._limit(st)) if x is not None)
            resident = st["resident-pages"] * PAGE
            if resident > limit:
                self.violations.append(
                    f"resident {resident // MIB} MiB > allowed {limit // MIB} MiB: {st}")
            self.samples.append(st)
            self.done.wait(self.interval)

    def stop(self):
        self.done.set()
        self.thread.join(30)
        with contextlib.suppress(OSError):
            self.qmp.close()

    def last(self):
        if not self.samples:
            fail("no stats sample was taken")
        return self.samples[-1]

    def check(self, min_samples=10):
        if self.violations:
            fail(f"{len(self.violations)} stats samples broke the budget, first: "
                 f"{self.violations[0]}")
        if len(self.samples) < min_samples:
            fail(f"only {len(self.samples)} stats samples taken (want >= {min_samples})")
        peak = max(s["resident-pages"] for s in self.samples) * PAGE
        log(f"{len(self.samples)} stats samples, peak resident {peak // MIB} MiB, "
            f"all within the budget")
        return peak


@contextlib.contextmanager
def guest(tmp, run, qemu_args, deadline, smp=1, mem="1G", name="guest"):
    """Start run-guest in the background with QMP on two sockets (one for
    the test, one for a StatsSampler); yields (proc, qmp_path, sampler_path).
    run-guest's stdout/stderr go to files in tmp."""
    qmp_path = os.path.join(tmp, f"{name}.qmp")
    sampler_path = os.path.join(tmp, f"{name}-stats.qmp")
    serial = os.path.join(tmp, f"{name}.serial")
    out = os.path.join(tmp, f"{name}.out")
    err = os.path.join(tmp, f"{name}.err")
    extra = list(qemu_args) + ["-qmp", f"unix:{sampler_path},server=on,wait=off"]
    argv = svmtest.guest_argv(run, mem=mem, smp=smp, deadline=deadline,
                              serial_log=serial, qmp=qmp_path, qemu_args=extra)
    log(f"run-guest: {run!r} (deadline {deadline} s)")
    with open(out, "w") as fo, open(err, "w") as fe:
        with svmtest.process(argv, stdout=fo, stderr=fe, env=qemu_env()) as p:
            p.svm_out, p.svm_err, p.svm_serial = out, err, serial
            yield p, qmp_path, sampler_path


def finish_guest(p, timeout):
    """Wait for run-guest; return (rc, results) and log its output."""
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        fail(f"run-guest did not return within {timeout} s")
    with open(p.svm_out) as f:
        out = f.read()
    with open(p.svm_err) as f:
        for line in f.read().splitlines():
            log(f"  {line}")
    for line in out.splitlines():
        log(f"  {line}")
    log(f"run-guest exited {p.returncode}")
    return p.returncode, svmtest.parse_results(out)
