"""Helpers shared by the splitvm CLI integration tests (stdlib only)."""
import os
import subprocess
import tempfile

import svmtest

SPLITVM = svmtest.build_path("orchestration", "splitvm")


def splitvm(*args, rack=None, check=True, timeout=300):
    """Runs the CLI; returns CompletedProcess.  check: exit status must be 0."""
    argv = [SPLITVM] + list(args)
    if rack:
        argv[2:2] = ["--rack", rack]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        svmtest.fail(f"`{' '.join(argv)}` exited {r.returncode}:\n{r.stdout}{r.stderr}")
    return r


def virsh(*args, check=True):
    r = subprocess.run(["virsh", "-c", "qemu:///system"] + list(args),
                       capture_output=True, text=True, timeout=120)
    if check and r.returncode != 0:
        svmtest.fail(f"virsh {' '.join(args)} failed: {r.stderr.strip()}")
    return r


def domain_exists(name):
    return virsh("dominfo", name, check=False).returncode == 0


def domain_state(name):
    r = virsh("domstate", name, check=False)
    return r.stdout.strip() if r.returncode == 0 else None


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def guest_files():
    """Kernel and initramfs of the guest/ build."""
    kernel = svmtest.build_path("guest", "vmlinuz")
    initrd = svmtest.build_path("guest", "initramfs.cpio.gz")
    for p in (kernel, initrd):
        if not os.path.exists(p):
            svmtest.fail(f"guest build output {p} missing (build the guest/ targets)")
    return kernel, initrd


def tempdir():
    return tempfile.mkdtemp(prefix="svm-libvirt-")
