/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "benchutil.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "splitvm/transport.h"

uint64_t bench_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

int bench_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static int make_blocking(int fd, const char *address, GError **errp)
{
    int flags = fcntl(fd, F_GETFL);

    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(errno),
                    "%s: fcntl: %s", address, g_strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int bench_tcp_connect(const char *address, GError **errp)
{
    int fd = svm_sock_connect(address, 10000, errp);

    return fd < 0 ? -1 : make_blocking(fd, address, errp);
}

int bench_tcp_listen(const char *address, GError **errp)
{
    int port;
    int fd = svm_sock_listen(address, &port, errp);

    return fd < 0 ? -1 : make_blocking(fd, address, errp);
}

static bool io_full(int fd, uint8_t *p, size_t len, bool out)
{
    while (len) {
        ssize_t r = out ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);

        if (r <= 0) {
            if (r < 0 && errno == EINTR) {
                continue;
            }
            return false;
        }
        p += r;
        len -= (size_t)r;
    }
    return true;
}

bool bench_send_full(int fd, const void *buf, size_t len)
{
    return io_full(fd, (uint8_t *)buf, len, true);
}

bool bench_recv_full(int fd, void *buf, size_t len)
{
    return io_full(fd, buf, len, false);
}
