/*
 * Thin userfaultfd wrappers (see uffd.h).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "uffd.h"

int svm_uffd_open(const char **how)
{
    int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    int fd;

    if (dev >= 0) {
        fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
        close(dev);
        if (fd >= 0) {
            *how = "/dev/userfaultfd";
            return fd;
        }
    }
    /* Without UFFD_USER_MODE_ONLY: needs CAP_SYS_PTRACE or the sysctl. */
    fd = syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        return -errno;
    }
    *how = "userfaultfd(2)";
    return fd;
}

int svm_uffd_api(int uffd, uint64_t want, uint64_t *got)
{
    struct uffdio_api api = { .api = UFFD_API, .features = want };

    if (ioctl(uffd, UFFDIO_API, &api) < 0) {
        return -errno;
    }
    *got = api.features;
    return 0;
}

int svm_uffd_register(int uffd, void *addr, uint64_t len, uint64_t modes,
                      uint64_t *ioctls)
{
    struct uffdio_register r = {
        .range = { .start = (uintptr_t)addr, .len = len },
        .mode = modes,
    };

    if (ioctl(uffd, UFFDIO_REGISTER, &r) < 0) {
        return -errno;
    }
    if (ioctls) {
        *ioctls = r.ioctls;
    }
    return 0;
}

int svm_uffd_unregister(int uffd, void *addr, uint64_t len)
{
    struct uffdio_range r = { .start = (uintptr_t)addr, .len = len };

    return ioctl(uffd, UFFDIO_UNREGISTER, &r) < 0 ? -errno : 0;
}

int svm_uffd_copy_some(int uffd, void *dst, const void *src, uint64_t len,
                       bool wp, uint64_t *copied)
{
    struct uffdio_copy c = {
        .dst = (uintptr_t)dst, .src = (uintptr_t)src, .len = len,
        .mode = wp ? UFFDIO_COPY_MODE_WP : 0,
    };

    *copied = 0;
    for (;;) {
        if (ioctl(uffd, UFFDIO_COPY, &c) == 0) {
            *copied += c.copy;
            return 0;
        }
        if (c.copy > 0) {
            *copied += c.copy;
        }
        if (errno != EAGAIN) {
            return -errno;
        }
        /* EAGAIN: the mapping changed under us; go on after what was copied */
        if (c.copy > 0) {
            c.dst += c.copy;
            c.src += c.copy;
            c.len -= c.copy;
        }
        c.copy = 0;
    }
}

int svm_uffd_copy(int uffd, void *dst, const void *src, uint64_t len, bool wp)
{
    uint64_t copied;

    return svm_uffd_copy_some(uffd, dst, src, len, wp, &copied);
}

int svm_uffd_continue(int uffd, void *addr, uint64_t len, bool wp)
{
    struct uffdio_continue c = {
        .range = { .start = (uintptr_t)addr, .len = len },
        .mode = wp ? UFFDIO_CONTINUE_MODE_WP : 0,
    };

    for (;;) {
        if (ioctl(uffd, UFFDIO_CONTINUE, &c) == 0) {
            return 0;
        }
        if (errno != EAGAIN) {
            return -errno;
        }
        if (c.mapped > 0) {
            c.range.start += c.mapped;
            c.range.len -= c.mapped;
        }
        c.mapped = 0;
    }
}

int svm_uffd_writeprotect(int uffd, void *addr, uint64_t len, bool wp,
                          bool dontwake)
{
    struct uffdio_writeprotect w = {
        .range = { .start = (uintptr_t)addr, .len = len },
        .mode = (wp ? UFFDIO_WRITEPROTECT_MODE_WP : 0) |
                (dontwake ? UFFDIO_WRITEPROTECT_MODE_DONTWAKE : 0),
    };

    for (;;) {
        if (ioctl(uffd, UFFDIO_WRITEPROTECT, &w) == 0) {
            return 0;
        }
        if (errno != EAGAIN) {
            return -errno;
        }
    }
}

int svm_uffd_wake(int uffd, void *addr, uint64_t len)
{
    struct uffdio_range r = { .start = (uintptr_t)addr, .len = len };

    return ioctl(uffd, UFFDIO_WAKE, &r) < 0 ? -errno : 0;
}
