/*
 * "tcp" transport, client side: a plain blocking socket used directly by
 * the thread that waits for the reply.  For synchronous page faults this is
 * the shortest path (one sendmsg, one recv: no hand-over to another thread),
 * which is what the latency goal is measured against.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "transport-int.h"

/* Blocking recv wakes up this often so callers can enforce their deadlines. */
#define TCP_RECV_TICK_MS    10

struct SvmClientConn {
    int fd;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static SvmClientConn *tcp_connect(const char *address, unsigned timeout_ms, GError **errp)
{
    int fd = svm_sock_connect(address, timeout_ms, errp);
    if (fd < 0) {
        return NULL;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    struct timeval rtv = { .tv_sec = 0, .tv_usec = TCP_RECV_TICK_MS * 1000 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rtv, sizeof(rtv));
    /* A server that stops reading must not block a sender forever. */
    struct timeval stv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &stv, sizeof(stv));

    SvmClientConn *c = g_new0(SvmClientConn, 1);
    c->fd = fd;
    return c;
}

static int tcp_sendv(SvmClientConn *c, const struct iovec *iov_in, int iovcnt)
{
    struct iovec iov[iovcnt];
    memcpy(iov, iov_in, sizeof(iov));
    struct msghdr msg = { .msg_iov = iov, .msg_iovlen = iovcnt };

    while (msg.msg_iovlen > 0) {
        ssize_t r = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno == EAGAIN ? -ETIMEDOUT : -errno;
        }
        /* Partial send: skip what went out and go on. */
        while (msg.msg_iovlen > 0 && (size_t)r >= msg.msg_iov->iov_len) {
            r -= msg.msg_iov->iov_len;
            msg.msg_iov++;
            msg.msg_iovlen--;
        }
        if (msg.msg_iovlen > 0) {
            msg.msg_iov->iov_base = (char *)msg.msg_iov->iov_base + r;
            msg.msg_iov->iov_len -= r;
        }
    }
    return 0;
}

static ssize_t tcp_recv(SvmClientConn *c, void *buf, size_t len, unsigned timeout_ms)
{
    uint64_t deadline = 0;

    for (;;) {
        ssize_t r = recv(c->fd, buf, len, 0);
        if (r >= 0) {
            return r;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno != EAGAIN) {
            return -errno;
        }
        uint64_t now = now_ms();
        if (!deadline) {
            deadline = now + timeout_ms;
        }
        if (now >= deadline) {
            return -EAGAIN;
        }
    }
}

static void tcp_shutdown(SvmClientConn *c)
{
    shutdown(c->fd, SHUT_RDWR);
}

static void tcp_close(SvmClientConn *c)
{
    if (c) {
        close(c->fd);
        g_free(c);
    }
}

const SvmClientTransportOps svm_tcp_client_ops = {
    .name = "tcp",
    .connect = tcp_connect,
    .sendv = tcp_sendv,
    .recv = tcp_recv,
    .shutdown = tcp_shutdown,
    .close = tcp_close,
};
