#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Integration test of the "rdma" transport (docs/rdma.md) against a real
splitvm-memserver.  There is no RDMA NIC here, so UCX runs over its
shared-memory transports and, with the insecure opt-in, over tcp on loopback.

  - the server picks the right one-sided mode (shared-memory pool; two-sided
    with file backing; per-extent keys in the forced test mode)
  - isolation: each VM's LOOKUPs name only its own extents; MAP/LOOKUP before
    ATTACH, after DETACH, past the namespace and by a fenced owner are
    refused; a one-sided read with a forged key gets nothing
  - per-extent keys (forced mode): every key issued is revoked again
    (DETACH, fencing, FREE_NS, connection gone)
  - bad input on the bootstrap port; a tcp client against an rdma server
    and the other way round; a client killed mid-traffic
  - clear errors when UCX cannot be used (UCX tcp without the opt-in, a
    transport that does not exist), naming the UCX devices found

Usage: test_rdma.py SPLITVM_MEMSERVER RDMATOOL MSTOOL
"""
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile

from svmtest import fail, free_port, log, main, process, wait_for

MEMSERVER, RDMATOOL, MSTOOL = sys.argv[1], sys.argv[2], sys.argv[3]

SHM = {"UCX_TLS": "posix,sysv,cma,self"}
UCX_TCP = {"UCX_TLS": "tcp", "UCX_NET_DEVICES": "lo", "SPLITVM_RDMA_INSECURE": "1"}

SECRETS = """\
[admin]
secret = admin-secret-0123456789

[vm a]
secret = secret-a-0123456789

[vm b]
secret = secret-b-0123456789
"""
SECRET = {"a": "secret-a-0123456789", "b": "secret-b-0123456789"}


def env_with(extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("UCX_") and not k.startswith("SPLITVM_RDMA_")}
    env.update(extra)
    return env


class Server:
    """splitvm-memserver --transport rdma with the given UCX environment."""

    def __init__(self, tmp, env, name, backing=None, capacity="64M", transport="rdma"):
        self.port = free_port()
        self.addr = f"{transport}:127.0.0.1:{self.port}"
        self.env = env_with(env)
        self.secrets = os.path.join(tmp, "secrets.ini")
        if not os.path.exists(self.secrets):
            with open(self.secrets, "w") as f:
                f.write(SECRETS)
            os.chmod(self.secrets, 0o600)
        self.logpath = os.path.join(tmp, f"memserver-{name}.log")
        self.argv = [MEMSERVER, "--listen", f"127.0.0.1:{self.port}", "--transport",
                     transport, "--capacity", capacity, "--secrets", self.secrets,
                     "--workers", "2"]
        if backing:
            self.argv += ["--backing", backing]

    def __enter__(self):
        self.logf = open(self.logpath, "w")
        self.cm = process(self.argv, stdout=self.logf, stderr=self.logf, env=self.env)
        self.proc = self.cm.__enter__()
        try:
            wait_for(self._listening, 20, f"memserver ({self.logpath}) to listen")
        except BaseException:
            self.__exit__(*sys.exc_info())      # `with` only exits what entered
            raise
        return self

    def _listening(self):
        if self.proc.poll() is not None:
            fail(f"memserver exited with {self.proc.returncode}: {self.log()}")
        return "listening on" in self.log()

    def log(self):
        with open(self.logpath) as f:
            return f.read()

    def alive(self):
        if self.proc.poll() is not None:
            fail(f"memserver died (exit {self.proc.returncode}): {self.log()}")

    def stop(self):
        """SIGTERM, clean exit; returns the whole log."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            fail("memserver did not stop within 20 s of SIGTERM")
        if rc != 0:
            fail(f"memserver exited with {rc} after SIGTERM: {self.log()}")
        return self.log()

    def __exit__(self, *exc):
        self.cm.__exit__(*exc)
        self.logf.close()


def run(argv, env, expect_rc=0, timeout=120):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                       env=env_with(env))
    out = (r.stdout + r.stderr).strip()
    if expect_rc is not None and r.returncode != expect_rc:
        fail(f"{' '.join(os.path.basename(a) for a in argv[:2])}: exit {r.returncode}, "
             f"expected {expect_rc}: {out}")
    return out


def rdmatool(cmd, srv, vm="a", extra=(), env=None, expect_rc=0):
    return run([RDMATOOL, cmd, "--addr", srv.addr.split(":", 1)[1], "--vm", vm,
                "--secret", SECRET[vm], *extra], env if env is not None else srv.env,
               expect_rc=expect_rc)


def mstool(cmd, srv, vm, *args, env=None, expect_rc=0, npages=4096):
    return run([MSTOOL, cmd, "--addr", srv.addr, "--vm", vm, "--secret", SECRET[vm],
                "--npages", str(npages), *map(str, args)],
               env if env is not None else srv.env, expect_rc=expect_rc)


def security(srv):
    out = rdmatool("security", srv, "a", ["--vm2", "b", "--secret2", SECRET["b"]])
    for line in out.splitlines():
        log(f"  {line}")
    if "ok security checks passed" not in out:
        fail(f"security checks incomplete: {out}")


def test_shm(tmp):
    log("shared memory: one-sided mode, isolation, forged keys")
    with Server(tmp, SHM, "shm") as srv:
        out = rdmatool("mode", srv)
        if not out.startswith("mode 2 "):
            fail(f"expected the shared-memory pool mode: {out}")
        security(srv)
        out = rdmatool("swrma", srv)
        if not out.startswith("refused"):
            fail(f"a forged key was not refused: {out}")
        log(f"  forged key: {out}")
        srv.alive()

        log("one-sided data path under concurrent random traffic")
        out = mstool("traffic", srv, "a", "--clients", 2, "--threads", 4, "--ops", 1500,
                     "--seed", 5, npages=8192)
        log(f"  {out.splitlines()[-1]}")

        log("a client killed mid-traffic: the server cleans up and carries on")
        p = subprocess.Popen([MSTOOL, "traffic", "--addr", srv.addr, "--vm", "b",
                              "--secret", SECRET["b"], "--npages", "8192", "--clients", "2",
                              "--threads", "2", "--ops", "1000000", "--seed", "6"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=srv.env, start_new_session=True)
        try:
            wait_for(lambda: srv.log().count("authenticated VM 'b'") >= 3, 20,
                     "the traffic clients to connect")
        finally:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()

        def no_connections():
            st = run([MEMSERVER, "--stats", srv.addr, "--secrets", srv.secrets], srv.env)
            m = re.search(r"server\.connections (\d+)", st)
            if not m:
                fail(f"--stats shows no connection count: {st}")
            return m.group(1) == "1"        # the stats client itself
        wait_for(no_connections, 20, "the killed client's connections to be closed")
        mstool("fill", srv, "a", "--first", 0, "--count", 64, "--tag", 9, npages=8192)
        mstool("check", srv, "a", "--first", 0, "--count", 64, "--tag", 9, npages=8192)
        text = srv.stop()
    # The forged read did reach the server as UCX software RMA, which has no
    # handler there (UCX logs to stdout, flushed at exit).
    if "no handler installed" not in text:
        fail(f"the server log does not show the software-RMA request dropped: {text}")


def test_extent_keys(tmp):
    log("per-extent keys (forced, over UCX's software RMA): issued and revoked")
    env = dict(UCX_TCP, SPLITVM_RDMA_FORCE_EXTENT="1")
    with Server(tmp, env, "extent") as srv:
        out = rdmatool("mode", srv)
        if not out.startswith("mode 1 "):
            fail(f"expected the per-extent mode: {out}")
        security(srv)
        mstool("fill", srv, "a", "--first", 0, "--count", 256, "--tag", 4)
        mstool("fill", srv, "a", "--first", 0, "--count", 256, "--tag", 5)
        mstool("check", srv, "a", "--first", 0, "--count", 256, "--tag", 5)
        text = srv.stop()
    for vm in ("a", "b"):
        if f"VM '{vm}' gets a UCX context (protection domain) of its own" not in text:
            fail(f"VM {vm} did not get a protection domain of its own: {text}")
    if "revoking the keys of" not in text:
        fail(f"the newer owner epoch did not revoke the older one's keys: {text}")
    m = re.search(r"(\d+) extent keys issued, (\d+) revoked", text)
    if not m:
        fail(f"no key summary in the log: {text}")
    issued, revoked = int(m.group(1)), int(m.group(2))
    log(f"  {issued} extent keys issued, {revoked} revoked")
    if issued < 8 or revoked != issued:
        fail(f"{issued} keys issued but {revoked} revoked")


def test_two_sided(tmp):
    log("file backing: no one-sided access, frames over UCX")
    pool = os.path.join(tmp, "pool.img")
    with Server(tmp, SHM, "file", backing=pool, capacity="16M") as srv:
        out = rdmatool("mode", srv)
        if not out.startswith("mode 0 "):
            fail(f"expected two-sided mode with file backing: {out}")
        if "not in UCX shared memory" not in srv.log():
            fail(f"the server did not say why pages go two-sided: {srv.log()}")
        mstool("fill", srv, "a", "--first", 0, "--count", 200, "--tag", 7)
        mstool("check", srv, "a", "--first", 0, "--count", 200, "--tag", 7)
        out = rdmatool("swrma", srv)
        if not out.startswith("refused"):
            fail(f"a forged key was not refused: {out}")
        srv.stop()


def test_bad_peers(tmp):
    log("bad input on the bootstrap port, transports mixed up")
    with Server(tmp, SHM, "bad") as srv, \
            Server(tmp, {}, "tcp", transport="tcp") as tcp_srv:
        for data in (os.urandom(4096), b"SVMRDMA1" + b"\xff" * 8,
                     b"SVMRDMA1\x01\x00\x00\x00\xff\xff\xff\xff",
                     b"SVMRDMA1\x01\x00\x00\x00\x10\x00\x00\x00" + b"x" * 16):
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
                s.sendall(data)
                s.settimeout(15)
                try:
                    while s.recv(4096):
                        pass
                except (ConnectionResetError, socket.timeout):
                    pass
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(b"SVMRDMA1\x01\x00")       # half a hello, then gone
        # Requests before AUTH (each answered NEED_AUTH) from a peer that never
        # reads: once its socket is full the server drops it, not waits.
        frame = struct.pack("<IBBHQ", 16, 7, 0, 0, 1)  # STATS, no body
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)    # before connect
            s.settimeout(10)
            s.connect(("127.0.0.1", srv.port))
            try:
                for _ in range(20000):
                    s.sendall(frame * 100)
                fail("a peer that never reads its replies was not disconnected")
            except (BrokenPipeError, ConnectionResetError):
                pass
            except socket.timeout:
                fail("the server stopped reading a flooding peer instead of dropping it")
        wait_for(lambda: "does not read its replies" in srv.log(), 10,
                 "the server to log the dropped flooding peer")
        srv.alive()
        # A tcp-transport client speaks frames at the bootstrap: refused.
        out = run([MSTOOL, "connect", "--addr", f"tcp:127.0.0.1:{srv.port}", "--vm", "a",
                   "--secret", SECRET["a"]], SHM, expect_rc=3)
        if "uses the rdma transport" not in out:
            fail(f"tcp client -> rdma server: unclear error: {out}")
        log(f"  tcp client -> rdma server: {out.splitlines()[-1]}")
        # An rdma client at a tcp server is told what it talks to.
        out = run([MSTOOL, "connect", "--addr", "rdma:" + tcp_srv.addr.split(":", 1)[1],
                   "--vm", "a", "--secret", SECRET["a"]], SHM, expect_rc=3)
        if "does not speak the splitvm rdma bootstrap" not in out:
            fail(f"rdma client -> tcp server: unclear error: {out}")
        log(f"  rdma client -> tcp server: {out.splitlines()[-1]}")
        mstool("fill", srv, "a", "--first", 0, "--count", 10, "--tag", 3)
        mstool("check", srv, "a", "--first", 0, "--count", 10, "--tag", 3)
        srv.stop()
        tcp_srv.stop()


def test_clear_errors(tmp):
    log("UCX cannot be used: the error says why and names the UCX devices")
    secrets = os.path.join(tmp, "secrets.ini")
    with open(secrets, "w") as f:
        f.write(SECRETS)
    os.chmod(secrets, 0o600)
    argv = [MEMSERVER, "--listen", f"127.0.0.1:{free_port()}", "--transport", "rdma",
            "--capacity", "16M", "--secrets", secrets]
    out = run(argv, {"UCX_TLS": "tcp"}, expect_rc=1, timeout=60)
    if "arbitrary memory" not in out or "UCX devices on this host:" not in out \
            or "tcp/lo" not in out:
        fail(f"UCX tcp without the opt-in: unclear error: {out}")
    log(f"  {out.splitlines()[-1][:160]}...")
    out = run(argv, {"UCX_TLS": "rc"}, expect_rc=1, timeout=60)
    if "UCX_TLS=rc" not in out or "UCX devices on this host:" not in out:
        fail(f"UCX_TLS=rc without a NIC: unclear error: {out}")
    log(f"  {out.splitlines()[-1][:160]}...")
    # The client side says the same.
    with Server(tmp, SHM, "clienterr") as srv:
        out = mstool("connect", srv, "a", env={"UCX_TLS": "tcp"}, expect_rc=3)
        if "arbitrary memory" not in out or "UCX devices on this host:" not in out:
            fail(f"client with UCX tcp: unclear error: {out}")
        srv.stop()


def run_all():
    with tempfile.TemporaryDirectory(prefix="svm-rdma-") as tmp:
        test_clear_errors(tmp)
        test_shm(tmp)
        test_two_sided(tmp)
        test_bad_peers(tmp)
        test_extent_keys(tmp)


if __name__ == "__main__":
    main(run_all)
