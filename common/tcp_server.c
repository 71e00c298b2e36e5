/*
 * "tcp" transport, server side: io_uring, one ring per worker (poll group)
 * serving many connections.  All poll groups arm accepts on one shared
 * listening socket, so the kernel spreads connections over the workers.
 *
 * Per connection there is one receive buffer and one transmit buffer,
 * allocated at accept time: the request path allocates nothing.  Requests
 * pipeline: every whole frame in the receive buffer is handed to the
 * protocol core, its reply appended to the transmit buffer, and one send
 * covers all replies produced so far.  When the transmit buffer cannot take
 * the largest possible reply, parsing pauses, and receiving pauses once the
 * receive buffer is full (backpressure instead of unbounded queues).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "splitvm/wire.h"
#include "transport-int.h"

#define RING_ENTRIES    256
#define RX_CAP          (SVM_WIRE_MAX_FRAME + 64 * 1024)
#define TX_CAP          (2 * SVM_WIRE_MAX_FRAME)

enum { UD_ACCEPT = 1, UD_RECV = 2, UD_SEND = 3, UD_WAKE = 4, UD_CANCEL = 5 };
#define UD_MASK 7ull

struct SvmServerTransport {
    SvmServerHooks hooks;
    int listen_fd;
    int port;
};

typedef struct TcpConn TcpConn;
struct TcpConn {
    SvmPollGroup *pg;
    TcpConn *prev, *next;
    int fd;
    void *session;
    uint8_t *rx, *tx;
    size_t rx_head, rx_len;         /* unparsed bytes: [rx_head, rx_len) */
    size_t tx_head, tx_len;
    bool recv_armed, send_armed, closing, close_after_flush;
    unsigned inflight;
    uint64_t rx_time_ns;
};

struct SvmPollGroup {
    SvmServerTransport *t;
    struct io_uring ring;
    int wake_fd;
    uint64_t wake_buf;
    bool accept_armed, wake_armed, ring_disabled;
    volatile int stop;
    TcpConn *conns;
    struct sockaddr_storage peer;
    socklen_t peer_len;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static struct io_uring_sqe *get_sqe(SvmPollGroup *pg)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&pg->ring);
    while (!sqe) {
        io_uring_submit(&pg->ring);
        sqe = io_uring_get_sqe(&pg->ring);
    }
    return sqe;
}

static void set_ud(struct io_uring_sqe *sqe, void *p, unsigned kind)
{
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)p | kind);
}

/* ---- transport ---- */

static SvmServerTransport *tcp_create(const SvmServerHooks *hooks, const SvmServerPool *pool,
                                      GError **errp)
{
    SvmServerTransport *t = g_new0(SvmServerTransport, 1);
    t->hooks = *hooks;
    t->listen_fd = -1;
    return t;
}

static bool tcp_listen(SvmServerTransport *t, const char *address, GError **errp)
{
    t->listen_fd = svm_sock_listen(address, &t->port, errp);
    return t->listen_fd >= 0;
}

static int tcp_bound_port(SvmServerTransport *t)
{
    return t->port;
}

static void tcp_destroy(SvmServerTransport *t)
{
    if (t) {
        if (t->listen_fd >= 0) {
            close(t->listen_fd);
        }
        g_free(t);
    }
}

/* ---- connections ---- */

static void arm_accept(SvmPollGroup *pg)
{
    if (pg->accept_armed || pg->stop) {
        return;
    }
    pg->peer_len = sizeof(pg->peer);
    struct io_uring_sqe *sqe = get_sqe(pg);
    io_uring_prep_accept(sqe, pg->t->listen_fd, (struct sockaddr *)&pg->peer,
                         &pg->peer_len, SOCK_CLOEXEC);
    set_ud(sqe, pg, UD_ACCEPT);
    pg->accept_armed = true;
}

static void arm_wake(SvmPollGroup *pg)
{
    struct io_uring_sqe *sqe = get_sqe(pg);
    io_uring_prep_read(sqe, pg->wake_fd, &pg->wake_buf, sizeof(pg->wake_buf), 0);
    set_ud(sqe, pg, UD_WAKE);
    pg->wake_armed = true;
}

static void conn_free(TcpConn *c)
{
    SvmPollGroup *pg = c->pg;

    if (c->prev) {
        c->prev->next = c->next;
    } else {
        pg->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    pg->t->hooks.session_close(c->session);
    close(c->fd);
    g_free(c->rx);
    g_free(c->tx);
    g_free(c);
}

static void conn_close(TcpConn *c)
{
    if (!c->closing) {
        c->closing = true;
        /* Pending recv/send complete promptly once the socket is shut down. */
        shutdown(c->fd, SHUT_RDWR);
    }
    if (c->inflight == 0) {
        conn_free(c);
    }
}

static void conn_process(TcpConn *c)
{
    const SvmServerHooks *hooks = &c->pg->t->hooks;
    size_t pos = c->rx_head;
    uint64_t t_start = c->rx_time_ns;

    while (!c->closing && !c->close_after_flush) {
        SvmWireHdr h;
        SvmWirePeek pk = svm_wire_peek(c->rx + pos, c->rx_len - pos, &h);
        if (pk == SVM_PEEK_NEED_MORE) {
            break;
        }
        if (pk == SVM_PEEK_BAD) {
            /* The length cannot be trusted, so the stream cannot be
             * resynchronised: say why (if it fits), then close. */
            c->tx_len += svm_wire_enc_bad_length(c->tx + c->tx_len, TX_CAP - c->tx_len, &h);
            if (hooks->account) {
                hooks->account(c->session, UINT64_MAX, c->rx_len - pos, 0);
            }
            c->close_after_flush = true;
            pos = c->rx_len;
            break;
        }
        size_t bound = svm_wire_reply_bound(&h);
        if (TX_CAP - c->tx_len < bound && c->tx_head > 0 && !c->send_armed) {
            memmove(c->tx, c->tx + c->tx_head, c->tx_len - c->tx_head);
            c->tx_len -= c->tx_head;
            c->tx_head = 0;
        }
        if (TX_CAP - c->tx_len < bound) {
            break;      /* paused until the send completes */
        }
        bool close_after = false;
        size_t out = hooks->handle(c->session, c->rx + pos, h.len, c->tx + c->tx_len,
                                   TX_CAP - c->tx_len, &close_after);
        c->tx_len += out;
        pos += h.len;
        if (hooks->account) {
            hooks->account(c->session, now_ns() - t_start, h.len, out);
        }
        if (close_after) {
            c->close_after_flush = true;
        }
    }
    c->rx_head = pos;
    /* A recv in flight writes at rx + rx_len: only move bytes when none is. */
    if (!c->recv_armed && c->rx_head > 0) {
        memmove(c->rx, c->rx + c->rx_head, c->rx_len - c->rx_head);
        c->rx_len -= c->rx_head;
        c->rx_head = 0;
    }
}

/* Arm whatever the connection needs next, or finish closing it. */
static void conn_kick(TcpConn *c)
{
    SvmPollGroup *pg = c->pg;

    if (c->closing) {
        conn_close(c);
        return;
    }
    if (!c->send_armed && c->tx_len > c->tx_head) {
        /*
         * Try the socket directly first: a reply usually fits in the socket
         * buffer, and this saves a trip through the ring for the send
         * completion.  Only what does not go out now becomes an io_uring send.
         */
        ssize_t r = send(c->fd, c->tx + c->tx_head, c->tx_len - c->tx_head,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r < 0 && errno != EAGAIN && errno != EINTR) {
            conn_close(c);
            return;
        }
        if (r > 0) {
            c->tx_head += (size_t)r;
            if (c->tx_head == c->tx_len) {
                c->tx_head = c->tx_len = 0;
                if (c->close_after_flush) {
                    conn_close(c);
                    return;
                }
                /* Frames may have been waiting for transmit space. */
                conn_process(c);
                conn_kick(c);
                return;
            }
        }
    }
    if (!c->send_armed && c->tx_len > c->tx_head) {
        struct io_uring_sqe *sqe = get_sqe(pg);
        io_uring_prep_send(sqe, c->fd, c->tx + c->tx_head, c->tx_len - c->tx_head,
                           MSG_NOSIGNAL);
        set_ud(sqe, c, UD_SEND);
        c->send_armed = true;
        c->inflight++;
    }
    if (c->close_after_flush) {
        if (!c->send_armed) {
            conn_close(c);
        }
        return;
    }
    if (!c->recv_armed && c->rx_len < RX_CAP) {
        struct io_uring_sqe *sqe = get_sqe(pg);
        io_uring_prep_recv(sqe, c->fd, c->rx + c->rx_len, RX_CAP - c->rx_len, 0);
        /* Right after a reply there is nothing to read yet: go straight to
         * waiting instead of trying a recv that fails. */
        sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
        set_ud(sqe, c, UD_RECV);
        c->recv_armed = true;
        c->inflight++;
    }
}

static void on_accept(SvmPollGroup *pg, int res)
{
    pg->accept_armed = false;
    if (res < 0) {
        if (res != -ECANCELED && res != -EINTR && res != -EAGAIN) {
            g_warning("tcp: accept: %s", g_strerror(-res));
        }
        arm_accept(pg);
        return;
    }
    int fd = res;
    if (pg->stop) {
        close(fd);      /* accepted while shutting down */
        return;
    }
    char peer[SVM_SOCK_PEER_NAME_MAX];
    svm_sock_peer_name(&pg->peer, peer, sizeof(peer));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    void *session = pg->t->hooks.session_open(pg->t->hooks.opaque, peer);
    if (!session) {
        close(fd);
    } else {
        TcpConn *c = g_new0(TcpConn, 1);
        c->pg = pg;
        c->fd = fd;
        c->session = session;
        c->rx = g_malloc(RX_CAP);
        c->tx = g_malloc(TX_CAP);
        c->next = pg->conns;
        if (pg->conns) {
            pg->conns->prev = c;
        }
        pg->conns = c;
        conn_kick(c);
    }
    arm_accept(pg);
}

static void on_recv(TcpConn *c, int res)
{
    c->recv_armed = false;
    c->inflight--;
    if (res <= 0 || c->closing) {
        /* End of stream, error, or shut down: a client vanishing mid-frame
         * just loses its partial frame. */
        conn_close(c);
        return;
    }
    c->rx_time_ns = now_ns();
    c->rx_len += (size_t)res;
    conn_process(c);
    conn_kick(c);
}

static void on_send(TcpConn *c, int res)
{
    c->send_armed = false;
    c->inflight--;
    if (res <= 0 || c->closing) {
        conn_close(c);
        return;
    }
    c->tx_head += (size_t)res;
    if (c->tx_head == c->tx_len) {
        c->tx_head = c->tx_len = 0;
    }
    /* Frames may be waiting for transmit space. */
    conn_process(c);
    conn_kick(c);
}

/* ---- poll groups ---- */

static SvmPollGroup *tcp_pg_create(SvmServerTransport *t, GError **errp)
{
    SvmPollGroup *pg = g_new0(SvmPollGroup, 1);
    pg->t = t;
    /*
     * Task work runs only when this worker asks for completions (fewer
     * interruptions on the request path); the ring starts disabled so the
     * worker thread, not the creator, becomes its single issuer.  Older
     * kernels refuse the flags: fall back to a plain ring.
     */
    int rc = io_uring_queue_init(RING_ENTRIES, &pg->ring,
                                 IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                                 IORING_SETUP_R_DISABLED);
    pg->ring_disabled = rc == 0;
    if (rc == -EINVAL) {
        rc = io_uring_queue_init(RING_ENTRIES, &pg->ring, 0);
    }
    if (rc < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-rc),
                    "io_uring_queue_init: %s", g_strerror(-rc));
        g_free(pg);
        return NULL;
    }
    pg->wake_fd = eventfd(0, EFD_CLOEXEC);
    if (pg->wake_fd < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(errno),
                    "eventfd: %s", g_strerror(errno));
        io_uring_queue_exit(&pg->ring);
        g_free(pg);
        return NULL;
    }
    return pg;
}

static void dispatch_cqe(SvmPollGroup *pg, struct io_uring_cqe *cqe)
{
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    void *p = (void *)(uintptr_t)(ud & ~UD_MASK);

    switch (ud & UD_MASK) {
    case UD_ACCEPT:
        on_accept(pg, cqe->res);
        break;
    case UD_RECV:
        on_recv(p, cqe->res);
        break;
    case UD_SEND:
        on_send(p, cqe->res);
        break;
    case UD_WAKE:
        pg->wake_armed = false;
        if (!pg->stop) {
            arm_wake(pg);
        }
        break;
    default:
        break;
    }
}

static int tcp_pg_run(SvmPollGroup *pg)
{
    if (pg->ring_disabled) {
        /* liburing 2.3 declares io_uring_enable_rings but does not export it. */
        if (syscall(__NR_io_uring_register, pg->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS,
                    NULL, 0) < 0) {
            int err = errno;
            g_warning("tcp: enabling the io_uring: %s", g_strerror(err));
            return -err;
        }
        pg->ring_disabled = false;
    }
    io_uring_register_ring_fd(&pg->ring);   /* an optimisation: failure is fine */
    arm_wake(pg);
    arm_accept(pg);

    bool stopping = false;
    for (;;) {
        if (pg->stop && !stopping) {
            stopping = true;
            if (pg->accept_armed) {
                struct io_uring_sqe *sqe = get_sqe(pg);
                io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)pg | UD_ACCEPT, 0);
                set_ud(sqe, pg, UD_CANCEL);
            }
            for (TcpConn *c = pg->conns, *n; c; c = n) {
                n = c->next;
                conn_close(c);
            }
        }
        if (stopping && !pg->conns && !pg->accept_armed && !pg->wake_armed) {
            break;
        }
        int rc = io_uring_submit_and_wait(&pg->ring, 1);
        if (rc < 0 && rc != -EINTR && rc != -EBUSY) {
            g_warning("tcp: io_uring_submit_and_wait: %s", g_strerror(-rc));
            return rc;
        }
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&pg->ring, head, cqe) {
            dispatch_cqe(pg, cqe);
            seen++;
        }
        io_uring_cq_advance(&pg->ring, seen);
        if (stopping && pg->wake_armed) {
            /* Make the pending eventfd read complete. */
            uint64_t one = 1;
            if (write(pg->wake_fd, &one, sizeof(one)) < 0) {
                /* cannot happen with a counter far from overflow */
            }
        }
    }
    return 0;
}

static void tcp_pg_stop(SvmPollGroup *pg)
{
    uint64_t one = 1;

    pg->stop = 1;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (write(pg->wake_fd, &one, sizeof(one)) < 0) {
        g_warning("tcp: cannot wake worker: %s", g_strerror(errno));
    }
}

static void tcp_pg_destroy(SvmPollGroup *pg)
{
    if (pg) {
        io_uring_queue_exit(&pg->ring);
        close(pg->wake_fd);
        g_free(pg);
    }
}

const SvmServerTransportOps svm_tcp_server_ops = {
    .name = "tcp",
    .create = tcp_create,
    .listen = tcp_listen,
    .bound_port = tcp_bound_port,
    .poll_group_create = tcp_pg_create,
    .poll_group_run = tcp_pg_run,
    .poll_group_stop = tcp_pg_stop,
    .poll_group_destroy = tcp_pg_destroy,
    .destroy = tcp_destroy,
};
