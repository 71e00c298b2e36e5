#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Integration test of splitvm-memserver: a real server process, driven by
mstool (the client library) and by raw sockets for bad input.

Usage: test_memserver.py SPLITVM_MEMSERVER MSTOOL [--tcp-fallback]

--tcp-fallback runs the servers with SPLITVM_TCP_FALLBACK=1: the tcp
transport's paths for kernels without multishot recv (single recvs).
"""
import hashlib
import hmac
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading

from svmtest import fail, free_port, log, main, process, wait_for

MEMSERVER, MSTOOL = sys.argv[1], sys.argv[2]
TCP_FALLBACK = "--tcp-fallback" in sys.argv[3:]
if TCP_FALLBACK:
    os.environ["SPLITVM_TCP_FALLBACK"] = "1"     # inherited by every server
# tests/rdma runs this file again over the rdma transport (UCX_TLS set there).
TRANSPORT = os.environ.get("SPLITVM_TEST_TRANSPORT", "tcp")

SECRETS = """\
[admin]
secret = admin-secret-0123456789

[vm quota]
secret = secret-quota-0123456789
quota = 1M

[vm b]
secret = secret-b-0123456789

[vm c]
secret = secret-c-0123456789
"""
SECRET = {"quota": "secret-quota-0123456789", "b": "secret-b-0123456789",
          "c": "secret-c-0123456789"}

HDR = struct.Struct("<IBBHQ")       # len, op, flags, status, req_id
OP_HELLO, OP_AUTH, OP_ATTACH, OP_READ, OP_WRITE, OP_STATS = 1, 2, 3, 4, 5, 7
ST_BAD_FRAME, ST_UNKNOWN_OP, ST_NEED_AUTH = 1, 2, 4


def mstool(cmd, addr, vm, *args, secret=None, npages=8192, expect_rc=0, timeout=120):
    argv = [MSTOOL, cmd, "--addr", addr, "--vm", vm, "--secret",
            secret if secret is not None else SECRET[vm], "--npages", str(npages)]
    argv += [str(a) for a in args]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    out = (r.stdout + r.stderr).strip()
    if r.returncode != expect_rc:
        fail(f"mstool {cmd} {vm} {' '.join(map(str, args))}: exit {r.returncode}, "
             f"expected {expect_rc}: {out}")
    return out


class Server:
    """A splitvm-memserver process on a free loopback port."""

    def __init__(self, tmp, capacity="64M", backing=None, port=None, workers=2,
                 prealloc=False):
        self.port = port or free_port()
        self.listen = f"127.0.0.1:{self.port}"
        self.addr = self.listen if TRANSPORT == "tcp" else f"{TRANSPORT}:{self.listen}"
        self.secrets = os.path.join(tmp, "secrets.ini")
        if not os.path.exists(self.secrets):
            with open(self.secrets, "w") as f:
                f.write(SECRETS)
            os.chmod(self.secrets, 0o600)
        self.log = open(os.path.join(tmp, f"memserver-{self.port}.log"), "a")
        self.argv = [MEMSERVER, "--listen", self.listen, "--transport", TRANSPORT,
                     "--capacity", capacity,
                     "--secrets", self.secrets, "--workers", str(workers)]
        if backing:
            self.argv += ["--backing", backing]
        if prealloc:
            self.argv.append("--prealloc")

    def __enter__(self):
        self.cm = process(self.argv, stderr=self.log)
        self.proc = self.cm.__enter__()
        try:
            wait_for(self._accepting, 10, f"memserver on {self.addr}")
        except BaseException:
            self.__exit__(*sys.exc_info())      # `with` only exits what entered
            raise
        return self

    def _accepting(self):
        if self.proc.poll() is not None:
            fail(f"memserver exited with {self.proc.returncode}; see {self.log.name}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self):
        """SIGTERM and check the clean exit."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            fail("memserver did not stop within 20 s of SIGTERM")
        if rc != 0:
            fail(f"memserver exited with {rc} after SIGTERM; see {self.log.name}")

    def __exit__(self, *exc):
        self.cm.__exit__(*exc)
        self.log.close()

    def alive(self):
        if self.proc.poll() is not None:
            fail(f"memserver died (exit {self.proc.returncode}); see {self.log.name}")

    def stats(self, *extra, expect_rc=0):
        r = subprocess.run([MEMSERVER, "--stats", self.addr, "--secrets", self.secrets,
                            *extra], capture_output=True, text=True, timeout=30)
        if r.returncode != expect_rc:
            fail(f"--stats exit {r.returncode}: {r.stderr}")
        return dict(line.split(" ", 1) for line in r.stdout.splitlines()) \
            if expect_rc == 0 else r.stderr


# ---- raw protocol helpers for bad input ----

def raw_conn(srv):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_frame(s):
    """One reply frame, or None if the server closed the connection."""
    buf = b""
    while len(buf) < HDR.size:
        chunk = s.recv(HDR.size - len(buf))
        if not chunk:
            return None
        buf += chunk
    length, op, flags, status, req_id = HDR.unpack(buf)
    if length < HDR.size or length > 1 << 20:
        fail(f"server sent a frame of absurd length {length}")
    while len(buf) < length:
        chunk = s.recv(length - len(buf))
        if not chunk:
            fail("server closed the connection mid-frame")
        buf += chunk
    return op, flags, status, req_id, buf[HDR.size:]


def expect_closed(s, what):
    s.settimeout(10)
    try:
        while True:
            f = recv_frame(s)
            if f is None:
                return
    except (ConnectionResetError, BrokenPipeError):
        return
    except socket.timeout:
        fail(f"{what}: the server kept the connection open")


def bad_input(srv):
    """Every kind of bad input gets an error reply or a closed connection."""
    # Requests before HELLO/AUTH get NEED_AUTH and the connection stays usable.
    s = raw_conn(srv)
    body = struct.pack("<II", 1, 0) + struct.pack("<Q", 0)
    s.sendall(HDR.pack(HDR.size + len(body), OP_READ, 0, 0, 11) + body)
    op, flags, status, rid, _ = recv_frame(s)
    if (status, rid, flags & 1) != (ST_NEED_AUTH, 11, 1):
        fail(f"READ before AUTH: got status {status} id {rid}")
    s.sendall(HDR.pack(HDR.size, 99, 0, 0, 12))
    op, flags, status, rid, _ = recv_frame(s)
    if (status, rid) != (ST_UNKNOWN_OP, 12):
        fail(f"unknown op: got status {status} id {rid}")
    s.sendall(HDR.pack(HDR.size, OP_STATS, 0, 0, 13))
    if recv_frame(s)[2] != ST_NEED_AUTH:
        fail("STATS before AUTH was not refused")
    # A malformed HELLO body: error reply, then closed.
    s.sendall(HDR.pack(HDR.size + 3, OP_HELLO, 0, 0, 14) + b"abc")
    f = recv_frame(s)
    if not f or f[2] != ST_BAD_FRAME:
        fail(f"malformed HELLO: got {f}")
    expect_closed(s, "malformed HELLO")
    s.close()

    # Absurd lengths: an error reply naming it, then closed.
    for length in (3, 0xffffffff, (260 << 10) + 1):
        s = raw_conn(srv)
        s.sendall(HDR.pack(length, OP_WRITE, 0, 0, 21))
        f = recv_frame(s)
        if not f or f[2] != ST_BAD_FRAME or b"frame length" not in f[4]:
            fail(f"length {length}: expected BAD_FRAME, got {f}")
        expect_closed(s, f"frame length {length}")
        s.close()

    # Garbage bytes.
    s = raw_conn(srv)
    s.sendall(os.urandom(4096))
    expect_closed(s, "random bytes")
    s.close()

    # Truncated frames and clients vanishing mid-request.
    for data in (HDR.pack(100, OP_HELLO, 0, 0, 1)[:7],
                 HDR.pack(HDR.size + 8 + 8 + 4096, OP_WRITE, 0, 0, 2) + b"\0" * 1000):
        s = raw_conn(srv)
        s.sendall(data)
        s.close()
    # Reset instead of FIN.
    s = raw_conn(srv)
    s.sendall(HDR.pack(HDR.size + 16, OP_HELLO, 0, 0, 3)[:10])
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    srv.alive()


def raw_login(srv, vm):
    """A raw connection through HELLO, AUTH and ATTACH (8192 pages) as vm."""
    s = raw_conn(srv)
    s.sendall(HDR.pack(HDR.size + 16, OP_HELLO, 0, 0, 1) +
              struct.pack("<IHHII", 0x314d5653, 1, 1, 0, 0))
    f = recv_frame(s)
    if not f or f[2] != 0:
        fail(f"raw HELLO refused: {f}")
    server_nonce, client_nonce, ident = f[4][16:48], os.urandom(32), vm.encode()
    mac = hmac.new(SECRET[vm].encode(), b"splitvm-auth-client-v1\0" + server_nonce +
                   client_nonce + bytes([0, len(ident)]) + ident, hashlib.sha256).digest()
    body = struct.pack("<BBHI", 0, len(ident), 0, 0) + client_nonce + mac + ident
    s.sendall(HDR.pack(HDR.size + len(body), OP_AUTH, 0, 0, 2) + body)
    f = recv_frame(s)
    if not f or f[2] != 0:
        fail(f"raw AUTH refused: {f}")
    s.sendall(HDR.pack(HDR.size + 24, OP_ATTACH, 0, 0, 3) + struct.pack("<QQII", 8192, 0, 0, 0))
    f = recv_frame(s)
    if not f or f[2] != 0:
        fail(f"raw ATTACH refused: {f}")
    return s


def pipelined_reads(srv):
    """A client that sends far more than the server buffers before it reads.

    1200 READs of 64 pages: 300 MiB of replies, 640 KiB of requests.  The
    server stops parsing while its transmit buffer is full, its receive
    buffer fills up behind that, then the socket buffers; the reader thread
    then catches up.  Every reply must arrive, whole and in order.
    """
    n, batch = 1200, 64
    s = raw_login(srv, "b")
    mstool("fill", srv.addr, "b", "--first", 0, "--count", batch, "--tag", 33)
    body = struct.pack("<II", batch, 0) + b"".join(struct.pack("<Q", p) for p in range(batch))
    frames = b"".join(HDR.pack(HDR.size + len(body), OP_READ, 0, 0, 1000 + i) + body
                      for i in range(n))
    sent = {}

    def sender():
        try:
            s.sendall(frames)
            sent["ok"] = True
        except OSError as e:
            sent["error"] = e

    t = threading.Thread(target=sender)
    t.start()
    try:
        first = None
        for i in range(n):
            f = recv_frame_big(s)
            if f is None:
                fail(f"pipelined READs: connection closed after {i} replies")
            op, flags, status, rid, data = f
            if (op, status, rid, len(data)) != (OP_READ, 0, 1000 + i, batch * 4096):
                fail(f"pipelined READ {i}: op {op} status {status} id {rid} "
                     f"{len(data)} bytes")
            if first is None:
                first = data
            elif data != first:
                fail(f"pipelined READ {i}: other data than the first reply")
    finally:
        t.join()
    if "ok" not in sent:
        fail(f"pipelined READs: sending failed: {sent.get('error')}")
    s.close()


def recv_frame_big(s):
    """recv_frame for frames up to the protocol's 260 KiB."""
    buf = bytearray()
    while len(buf) < HDR.size:
        chunk = s.recv(HDR.size - len(buf))
        if not chunk:
            return None
        buf += chunk
    length, op, flags, status, req_id = HDR.unpack(bytes(buf))
    if length < HDR.size or length > 260 << 10:
        fail(f"server sent a frame of absurd length {length}")
    while len(buf) < length:
        chunk = s.recv(min(length - len(buf), 1 << 20))
        if not chunk:
            fail("server closed the connection mid-frame")
        buf += chunk
    return op, flags, status, req_id, bytes(buf[HDR.size:])


def test_main_server(tmp):
    with Server(tmp, capacity="64M") as srv:
        if TRANSPORT == "tcp":
            log("pipelined READs far beyond the server's buffers")
            pipelined_reads(srv)

        log("wrong secret and unknown VM are refused")
        out = mstool("connect", srv.addr, "b", secret="not-the-secret", expect_rc=3)
        if "EACCES" not in out:
            fail(f"wrong secret: expected EACCES, got: {out}")
        out = mstool("connect", srv.addr, "nobody", secret="whatever", expect_rc=3)
        if "EACCES" not in out:
            fail(f"unknown VM: expected EACCES, got: {out}")
        err = subprocess.run([MSTOOL, "connect", "--addr", srv.addr, "--vm", "b",
                              "--secret", SECRET["c"]], capture_output=True, text=True)
        if err.returncode != 3:
            fail("VM b with VM c's secret was accepted")

        log("concurrent random traffic from two VMs, with bad input alongside")
        results = {}

        def traffic(vm, seed):
            try:
                results[vm] = mstool("traffic", srv.addr, vm, "--clients", 2, "--threads", 4,
                                     "--ops", 3000, "--seed", seed, npages=8192, timeout=240)
            except Exception as e:      # reported below
                results[vm] = e

        threads = [threading.Thread(target=traffic, args=(vm, i + 1))
                   for i, vm in enumerate(("b", "c"))]
        for t in threads:
            t.start()
        try:
            bad_input(srv)      # rdma: frames travel on TCP until AUTH, so the same
        finally:
            for t in threads:
                t.join()
        for vm in ("b", "c"):
            if isinstance(results[vm], Exception):
                raise results[vm]
            log(f"  {vm}: {results[vm]}")
        srv.alive()

        log("two VMs with the same page numbers never see each other's data")
        mstool("fill", srv.addr, "b", "--first", 0, "--count", 300, "--tag", 11)
        mstool("fill", srv.addr, "c", "--first", 0, "--count", 300, "--tag", 22)
        mstool("check", srv.addr, "b", "--first", 0, "--count", 300, "--tag", 11)
        mstool("check", srv.addr, "c", "--first", 0, "--count", 300, "--tag", 22)
        out = mstool("check", srv.addr, "c", "--first", 0, "--count", 1, "--tag", 11,
                     expect_rc=1)
        if "expected tag 11" not in out:
            fail(f"a wrong pattern was not detected: {out}")

        log("pages past the namespace are refused")
        out = mstool("fill", srv.addr, "b", "--first", 8191, "--count", 2, expect_rc=3)
        if "ERANGE" not in out:
            fail(f"expected ERANGE, got: {out}")

        log("quota: 1M = 256 pages")
        mstool("fill", srv.addr, "quota", "--first", 0, "--count", 256, "--tag", 3)
        out = mstool("fill", srv.addr, "quota", "--first", 256, "--count", 1, expect_rc=3)
        if "ENOSPC" not in out:
            fail(f"expected ENOSPC past the quota, got: {out}")
        out = mstool("stats", srv.addr, "quota")
        if "ns_pages_stored=256 " not in out or "ns_quota_pages=256 " not in out:
            fail(f"quota stats wrong: {out}")

        log("FREE_NS drops every page of a VM")
        mstool("free", srv.addr, "quota")
        mstool("check", srv.addr, "quota", "--first", 0, "--count", 256, "--tag", 0)

        log("stats client: admin sees every namespace, a VM only its own")
        st = srv.stats()
        for key in ("server.pages_stored", "server.requests", "server.errors",
                    "server.bytes_in", "server.bytes_out", "latency.service_p99_us_max",
                    "vm.b.pages_stored", "vm.c.pages_stored"):
            if key not in st:
                fail(f"--stats output lacks {key}: {st}")
        if int(st["server.errors"]) == 0:
            fail("bad input was not counted as errors")
        stb = srv.stats("--vm", "b")
        if "vm.c.pages_stored" in stb or "vm.b.pages_stored" not in stb:
            fail(f"VM stats show the wrong namespaces: {stb}")
        bad = os.path.join(tmp, "bad-admin.ini")
        with open(bad, "w") as f:
            f.write("[admin]\nsecret = wrong-admin-secret-000\n")
        os.chmod(bad, 0o600)
        r = subprocess.run([MEMSERVER, "--stats", srv.addr, "--secrets", bad],
                           capture_output=True, text=True, timeout=30)
        if r.returncode == 0 or "authentication failed" not in r.stderr:
            fail(f"--stats with a wrong admin secret: exit {r.returncode}: {r.stderr}")
        srv.alive()

        log("a server that stops answering: the request fails with ETIMEDOUT in time")
        try:
            out = mstool("check", srv.addr, "b", "--first", 0, "--count", 1, "--tag", 11,
                         "--timeout-ms", 300, "--reconnect-ms", 1000,
                         "--stop-pid", srv.proc.pid, expect_rc=3, timeout=60)
        finally:
            os.kill(srv.proc.pid, signal.SIGCONT)
        m = re.search(r"ERROR ETIMEDOUT: .* after (\d+) ms", out)
        if not m:
            fail(f"expected ETIMEDOUT from a stopped server, got: {out}")
        # 300 ms to notice, then 1000 ms of failing reconnects (plus slack).
        if not 1000 <= int(m.group(1)) <= 8000:
            fail(f"ETIMEDOUT after {m.group(1)} ms, expected about 1300 ms")
        mstool("check", srv.addr, "b", "--first", 0, "--count", 300, "--tag", 11)
        srv.alive()
        srv.stop()
    with open(srv.log.name) as f:
        forced = "SPLITVM_TCP_FALLBACK=1: single recvs" in f.read()
    if TRANSPORT == "tcp" and forced != TCP_FALLBACK:
        fail(f"tcp fallback {'not ' if TCP_FALLBACK else ''}taken; see {srv.log.name}")


def test_capacity(tmp):
    log("capacity: 1M = 4 extents of 64 pages")
    with Server(tmp, capacity="1M") as srv:
        mstool("fill", srv.addr, "b", "--first", 0, "--count", 200, "--tag", 5)
        out = mstool("fill", srv.addr, "c", "--first", 0, "--count", 100, "--tag", 6,
                     expect_rc=3)
        if "ENOSPC" not in out:
            fail(f"expected ENOSPC at capacity, got: {out}")
        # b's own extents still have room for 56 more pages
        mstool("fill", srv.addr, "b", "--first", 200, "--count", 56, "--tag", 5)
        mstool("fill", srv.addr, "b", "--first", 256, "--count", 1, expect_rc=3)
        mstool("check", srv.addr, "b", "--first", 0, "--count", 256, "--tag", 5)
        srv.stop()


def test_restart(tmp):
    pool = os.path.join(tmp, "pool.img")
    log("file backing keeps pages across a restart")
    with Server(tmp, capacity="32M", backing=pool) as srv:
        port = srv.port
        mstool("fill", srv.addr, "b", "--first", 0, "--count", 500, "--tag", 33)
        mstool("fill", srv.addr, "c", "--first", 100, "--count", 50, "--tag", 44)
        srv.stop()
    with Server(tmp, capacity="32M", backing=pool, port=port) as srv:
        mstool("check", srv.addr, "b", "--first", 0, "--count", 500, "--tag", 33)
        mstool("check", srv.addr, "c", "--first", 100, "--count", 50, "--tag", 44)
        mstool("check", srv.addr, "c", "--first", 0, "--count", 100, "--tag", 0)

        log("a client rides through a server restart (reconnect, retry)")
        result = {}

        def traffic():
            try:
                result["out"] = mstool("traffic", srv.addr, "c", "--clients", 2, "--threads",
                                       4, "--ops", 20000, "--seed", 9, "--reconnect-ms",
                                       20000, npages=8192, timeout=280)
            except Exception as e:
                result["err"] = e

        t = threading.Thread(target=traffic)
        t.start()
        try:
            wait_for(lambda: int(srv.stats().get("vm.c.requests", 0)) > 2000, 60,
                     "traffic to reach the server")
            srv.stop()
        except Exception:
            t.join()
            raise
    with Server(tmp, capacity="32M", backing=pool, port=port) as srv:
        t.join()
        if "err" in result:
            raise result["err"]
        if "reconnected" not in result["out"]:
            fail(f"the client never reconnected, so the restart was not exercised: "
                 f"{result['out']}")
        log("  " + [l for l in result["out"].splitlines() if l.startswith("ok")][-1])
        # b's pages were untouched by all of that.
        mstool("check", srv.addr, "b", "--first", 0, "--count", 500, "--tag", 33)
        srv.stop()

    log("anonymous backing does not keep pages across a restart")
    with Server(tmp, capacity="32M") as srv:
        port = srv.port
        mstool("fill", srv.addr, "b", "--first", 0, "--count", 100, "--tag", 55)
        srv.stop()
    with Server(tmp, capacity="32M", port=port) as srv:
        mstool("check", srv.addr, "b", "--first", 0, "--count", 100, "--tag", 0)
        srv.stop()


def test_prealloc(tmp):
    log("--prealloc: the pool is backed at start and still serves and refuses as usual")
    with Server(tmp, capacity="1M", prealloc=True) as srv:
        with open(srv.log.name) as f:
            text = f.read()
        if "preallocated the pool (1 MiB)" not in text or "(preallocated)" not in text:
            fail(f"--prealloc: no preallocation in the start lines; see {srv.log.name}")
        mstool("fill", srv.addr, "b", "--first", 0, "--count", 256, "--tag", 3)
        mstool("fill", srv.addr, "c", "--first", 0, "--count", 1, expect_rc=3)
        mstool("check", srv.addr, "b", "--first", 0, "--count", 256, "--tag", 3)
        srv.stop()

    # A file pool that does not fit on its file system: refused at start,
    # with the file and the reason, not ENOSPC from a write much later.
    mnt = os.path.join(tmp, "small-fs")
    os.mkdir(mnt)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", mnt],
                      capture_output=True).returncode != 0:
        log("--prealloc on a full file system: cannot mount a tmpfs here, not checked")
        return
    try:
        pool = os.path.join(mnt, "pool.img")
        r = subprocess.run([MEMSERVER, "--listen", f"127.0.0.1:{free_port()}", "--capacity",
                            "4M", "--backing", pool, "--prealloc", "--secrets",
                            srv.secrets], capture_output=True, text=True, timeout=30)
        want = f"--prealloc: {pool}: cannot preallocate 4 MiB: No space left on device"
        if r.returncode != 1 or want not in r.stderr:
            fail(f"--prealloc on a 1 MiB file system: exit {r.returncode}, expected 1 and "
                 f"'{want}': {r.stderr}")
    finally:
        subprocess.run(["umount", mnt], check=True)


def test_cli(tmp):
    log("--help, bad options and bad secrets files")
    r = subprocess.run([MEMSERVER, "--help"], capture_output=True, text=True)
    if r.returncode != 0 or "--listen" not in r.stdout or "--stats" not in r.stdout:
        fail(f"--help: exit {r.returncode}: {r.stdout}")
    r = subprocess.run([MEMSERVER, "--listen", "127.0.0.1:1", "--capacity", "lots",
                        "--secrets", "/nonexistent"], capture_output=True, text=True)
    if r.returncode == 0 or "--capacity 'lots'" not in r.stderr:
        fail(f"bad --capacity: exit {r.returncode}: {r.stderr}")
    bad = os.path.join(tmp, "bad-secrets.ini")
    with open(bad, "w") as f:
        f.write("[vm x]\nsecret = 0123456789abcdef\nquota = many\n")
    r = subprocess.run([MEMSERVER, "--listen", f"127.0.0.1:{free_port()}", "--capacity",
                        "1M", "--secrets", bad], capture_output=True, text=True, timeout=30)
    if r.returncode == 0 or f"{bad}:3: [vm x] key 'quota'" not in r.stderr:
        fail(f"bad secrets file: exit {r.returncode}: {r.stderr}")


def test_secrets_reload(tmp):
    """SIGHUP re-reads the secrets file: a VM added later can connect, a
    removed one cannot, a broken file keeps the old secrets, data stays."""
    sub = os.path.join(tmp, "reload")
    os.mkdir(sub)
    with Server(sub) as srv:
        mstool("fill", srv.addr, "b", "--first", 0, "--count", 10, "--tag", 7)
        mstool("connect", srv.addr, "late", secret="secret-late-0123456789", expect_rc=3)

        def reload(text):
            with open(srv.secrets, "w") as f:
                f.write(text)
            with open(srv.log.name) as f:
                before = f.read().count("SIGHUP")
            srv.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: open(srv.log.name).read().count("SIGHUP") > before, 10,
                     "the memserver to log the SIGHUP reload")

        reload(SECRETS.replace("[vm c]\nsecret = secret-c-0123456789\n", "")
               + "\n[vm late]\nsecret = secret-late-0123456789\n")
        mstool("connect", srv.addr, "late", secret="secret-late-0123456789")
        mstool("connect", srv.addr, "c", expect_rc=3)
        reload("[vm broken\n")
        if "keeping the old secrets" not in open(srv.log.name).read():
            fail("a broken secrets file on SIGHUP was not reported")
        mstool("connect", srv.addr, "late", secret="secret-late-0123456789")
        mstool("check", srv.addr, "b", "--first", 0, "--count", 10, "--tag", 7)
        srv.alive()


def run():
    with tempfile.TemporaryDirectory(prefix="svm-memserver-") as tmp:
        test_cli(tmp)
        test_secrets_reload(tmp)
        test_main_server(tmp)
        test_capacity(tmp)
        test_prealloc(tmp)
        test_restart(tmp)


if __name__ == "__main__":
    main(run)
