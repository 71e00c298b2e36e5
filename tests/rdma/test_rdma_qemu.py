#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""End-to-end runs of the patched QEMU (memory-backend-remote, the real
pager, the Debian kernel under TCG) with memory servers on the "rdma"
transport.  Needs the QEMU `make qemu` builds.

  test_rdma_qemu.py mixed      one VM striped over a tcp and an rdma server
                               (UCX shared memory): 1 GiB guest, 256 MiB
                               budget, memverify over 768 MiB; both servers
                               hold pages and the rdma one went one-sided
  test_rdma_qemu.py small-tcp  UCX's tcp transport on loopback (software RMA,
                               SPLITVM_RDMA_INSECURE=1): 512 MiB guest,
                               128 MiB budget, memverify over 384 MiB

The 25 % budget run over shared memory is tests/qemu/test_remote_memory.py
boot with SPLITVM_TEST_TRANSPORTS=rdma (tests/rdma/meson.build).
"""
import contextlib
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "qemu"))

import svmtest                                      # noqa: E402
from svmtest import fail, log                       # noqa: E402
import remotemem as rm                              # noqa: E402
from remotemem import MIB, PAGE                     # noqa: E402

SHM = {"UCX_TLS": "posix,sysv,cma,self"}
UCX_TCP = {"UCX_TLS": "tcp", "UCX_NET_DEVICES": "lo", "SPLITVM_RDMA_INSECURE": "1"}


def server_stats(servers, i):
    r = subprocess.run([rm.memserver_path(), "--stats", servers.address(i), "--secrets",
                        servers.secrets, "--vm", rm.VM_ID], capture_output=True, text=True,
                       timeout=60)
    if r.returncode != 0:
        fail(f"--stats of server {i}: {r.stderr}")
    return dict(line.split(" ", 1) for line in r.stdout.splitlines())


def lookups_in_logs(tmp, i):
    """LOOKUPs the rdma server i answered (from its shutdown summary)."""
    total = 0
    for name in sorted(os.listdir(tmp)):
        if name.startswith(f"memserver{i}."):
            with open(os.path.join(tmp, name)) as f:
                m = re.search(r"(\d+) LOOKUPs for (\d+) pages", f.read())
            if m:
                total += int(m.group(2))
    return total


def run_guest(tmp, transports, mem, budget, mib, deadline):
    with contextlib.ExitStack() as stack:
        servers = rm.MemServers(tmp, stack, transports=transports)
        args = rm.backend_args(servers.addresses(), size=mem, budget=budget)
        with rm.guest(tmp, f"memverify --mib {mib}", args, mem=mem, deadline=deadline) as \
                (p, _qmp, stats_qmp):
            sampler = rm.StatsSampler(stats_qmp)
            rc, results = rm.finish_guest(p, deadline + 30)
            sampler.stop()
        if rc != svmtest.GUEST_OK:
            fail(f"run-guest exited {rc}, expected 0")
        mv = svmtest.expect_ok(results, "memverify")[0]
        if mv.get("mib") != str(mib):
            fail(f"memverify did not cover {mib} MiB: {mv}")
        sampler.check(min_samples=10)
        last = sampler.last()
        log(f"last stats: {last}")
        if last["bytes-in"] < mib * MIB // 4 or last["evictions"] == 0:
            fail(f"{last['bytes-in'] // MIB} MiB fetched, {last['evictions']} evictions: "
                 f"the budget did not make the guest use the servers")
        stored = []
        for i in range(len(transports)):
            st = server_stats(servers, i)
            stored.append(int(st.get(f"vm.{rm.VM_ID}.pages_stored", 0)))
            log(f"server {i} ({servers.address(i)}): {stored[-1]} pages stored")
        if min(stored) == 0:
            fail(f"a server holds none of the VM's pages: {stored}")
    # The servers are stopped now; their logs have the rdma summary.
    for i, t in enumerate(transports):
        if t == "rdma":
            n = lookups_in_logs(tmp, i)
            log(f"server {i}: one-sided LOOKUPs located {n} pages")
            if n < 1000:
                fail(f"rdma server {i} located only {n} pages: the pager's pages did not "
                     f"go one-sided")


def test_mixed(tmp):
    os.environ.update(SHM)
    run_guest(tmp, ["tcp", "rdma"], "1G", "256M", 768, 240)


def test_small_tcp(tmp):
    os.environ.update(UCX_TCP)
    run_guest(tmp, ["rdma", "rdma"], "512M", "128M", 384, 420)


TESTS = {"mixed": test_mixed, "small-tcp": test_small_tcp}


def run():
    name = sys.argv[1] if len(sys.argv) == 2 else ""
    if name not in TESTS:
        fail(f"usage: test_rdma_qemu.py {'|'.join(TESTS)}")
    svmtest.qemu_path()
    with tempfile.TemporaryDirectory(prefix=f"svm-rdma-{name}-") as tmp:
        TESTS[name](tmp)


if __name__ == "__main__":
    svmtest.main(run)
