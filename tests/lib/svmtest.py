"""Shared helpers for splitvm's integration tests (stdlib only).

Rules every test follows: never sleep to synchronise (wait_for a condition
with a deadline), and remove every process/namespace/domain it started, also
on failure (use the context managers here).
"""
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

SOURCE_ROOT = os.environ.get(
    "SPLITVM_SOURCE_ROOT",
    os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD_ROOT = os.environ.get("SPLITVM_BUILD_ROOT", os.path.join(SOURCE_ROOT, "build"))


class TestFailure(Exception):
    pass


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def fail(msg):
    raise TestFailure(msg)


def qemu_path():
    """The patched QEMU built by `make qemu` for the current patch series."""
    env_path = os.environ.get("SPLITVM_QEMU")
    if env_path:
        return env_path
    out = subprocess.run([os.path.join(SOURCE_ROOT, "qemu-patches", "build-qemu.sh"),
                          "--print-path"], check=True, capture_output=True, text=True)
    path = out.stdout.strip()
    if not os.access(path, os.X_OK):
        fail(f"patched QEMU not built ({path} missing): run `make qemu` first")
    return path


def build_path(*parts):
    return os.path.join(BUILD_ROOT, *parts)


def wait_for(cond, timeout, what, interval=0.05):
    """Poll cond() until it returns a true value; fail naming `what` after timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def process(argv, name=None, stdout=None, stderr=None, env=None, **kw):
    """Start argv; on exit terminate it (SIGTERM, then SIGKILL) whatever happened."""
    name = name or os.path.basename(argv[0])
    p = subprocess.Popen(argv, stdout=stdout, stderr=stderr, env=env,
                         start_new_session=True, **kw)
    p.svm_name = name
    try:
        yield p
    finally:
        stop_process(p)


def stop_process(p, timeout=5):
    if p.poll() is not None:
        return p.returncode
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        return p.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        return p.wait()


class QMP:
    """Minimal QMP client over a UNIX socket."""

    def __init__(self, path, timeout=30):
        self.sock = wait_for(lambda: self._try_connect(path), timeout, f"QMP socket {path}")
        self.sock.settimeout(timeout)
        self.buf = b""
        self.events = []
        greeting = self._recv()
        if "QMP" not in greeting:
            fail(f"unexpected QMP greeting {greeting}")
        self.cmd("qmp_capabilities")

    @staticmethod
    def _try_connect(path):
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            return s
        except OSError:
            s.close()
            return None

    def _recv(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                fail("QMP connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd_raw(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._recv()
            if "event" in r:
                self.events.append(r)
                continue
            return r

    def cmd(self, name, **args):
        r = self.cmd_raw(name, **args)
        if "error" in r:
            fail(f"QMP {name} failed: {r['error']}")
        return r["return"]

    def wait_event(self, name, timeout):
        deadline = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e["event"] == name:
                    return self.events.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                fail(f"timed out after {timeout}s waiting for QMP event {name}")
            self.sock.settimeout(left)
            try:
                r = self._recv()
            except socket.timeout:
                continue
            if "event" in r:
                self.events.append(r)

    def close(self):
        self.sock.close()


def main(test_fn):
    """Run test_fn(); exit 0 on success, 1 with a clear message on failure."""
    try:
        test_fn()
    except TestFailure as e:
        print(f"FAIL: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    print("PASS", flush=True)


# --- the test guest (guest/run-guest) -------------------------------------

RUN_GUEST = os.path.join(SOURCE_ROOT, "guest", "run-guest")

# guest/run-guest's exit codes (see guest/README.md).
GUEST_OK = 0
GUEST_VERIFY_FAILED = 1
GUEST_USAGE = 2
GUEST_DEADLINE = 3
GUEST_NO_RESULT = 4
GUEST_QEMU_DIED = 5
GUEST_CMD_FAILED = 6
GUEST_SETUP = 7


def parse_results(text):
    """{workload: [{key: value}, ...]} from the SPLITVM-RESULT lines in text.

    Values stay strings; a workload that ran several times (e.g. two
    memverify processes in parallel) has several entries, in output order.
    """
    results = {}
    for line in text.splitlines():
        pos = line.find("SPLITVM-RESULT ")
        if pos < 0:
            continue
        words = line[pos:].split()
        if len(words) < 2:
            continue
        fields = dict(w.split("=", 1) for w in words[2:] if "=" in w)
        results.setdefault(words[1], []).append(fields)
    return results


def expect_ok(results, name, count=1):
    """The `count` result entries of workload `name`, each with ok=1 (fails
    otherwise)."""
    runs = results.get(name, [])
    if len(runs) != count:
        fail(f"expected {count} {name} result line(s), got {len(runs)}: {results}")
    for r in runs:
        if r.get("ok") != "1":
            fail(f"{name} did not report ok=1: {r}")
    return runs


class GuestRun(tuple):
    """(rc, results) as returned by run_guest(); also .stdout, .stderr, .argv."""

    def __new__(cls, rc, results, stdout, stderr, argv):
        self = super().__new__(cls, (rc, results))
        self.rc, self.results = rc, results
        self.stdout, self.stderr, self.argv = stdout, stderr, argv
        return self


def guest_argv(run, mem="1G", smp=1, deadline=300, serial_log=None, qmp=None,
               qemu_args=(), append=None, allow_no_result=False, qemu=None,
               build_dir=None, verbose=False):
    """guest/run-guest's command line (for tests that start it themselves,
    e.g. with process() to talk QMP to the guest while it runs)."""
    argv = [RUN_GUEST, "--qemu", qemu or qemu_path(),
            "--build-dir", build_dir or BUILD_ROOT,
            "--mem", str(mem), "--smp", str(smp),
            "--deadline", str(int(deadline)), "--run", run]
    if serial_log:
        argv += ["--serial-log", serial_log]
    if qmp:
        argv += ["--qmp", qmp]
    if append:
        argv += ["--append", append]
    if allow_no_result:
        argv.append("--allow-no-result")
    if verbose:
        argv.append("-v")
    if qemu_args:
        argv += ["--"] + list(qemu_args)
    return argv


def run_guest(run, deadline=300, **kw):
    """Boot the test guest, run `run` in it (';' = in sequence, '&' = in
    parallel), wait for it (at most the deadline) and return
    GuestRun(rc, results): rc is run-guest's exit code (GUEST_OK ...),
    results is parse_results() of the result lines.  Keyword arguments are
    those of guest_argv()."""
    argv = guest_argv(run, deadline=deadline, **kw)
    log(f"run-guest: {run!r} (deadline {deadline} s)")
    with process(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                 text=True) as p:
        try:
            out, err = p.communicate(timeout=deadline + 30)
        except subprocess.TimeoutExpired:
            fail(f"run-guest did not return within {deadline + 30} s "
                 f"(its own deadline was {deadline} s)")
    for line in err.splitlines():
        log(f"  {line}")
    for line in out.splitlines():
        log(f"  {line}")
    log(f"run-guest exited {p.returncode}")
    return GuestRun(p.returncode, parse_results(out), out, err, argv)
