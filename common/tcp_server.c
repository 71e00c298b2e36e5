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
 * Receiving: where the kernel has them (6.0+), an idle connection keeps one
 * multishot recv armed on a ring of provided buffers, so a request costs no
 * SQE submission and no poll re-arm, and a request that arrives whole in one
 * buffer is handled in place (no copy).  Bytes that do not make a whole
 * frame are copied into the connection's receive buffer, and the rest of a
 * large frame is received straight into it by single recvs.  Without
 * buffer rings (registration fails), without multishot recv (its first
 * completion is -EINVAL), or with SPLITVM_TCP_FALLBACK=1 in the environment
 * (how the tests cover that path), every receive is a single recv into the
 * receive buffer, as it was before 6.0.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define SVC_TSC 1
#else
#define SVC_TSC 0
#endif
#include "splitvm/wire.h"
#include "transport-int.h"

#define RING_ENTRIES    256
#define RX_CAP          (SVM_WIRE_MAX_FRAME + 64 * 1024)
#define TX_CAP          (2 * SVM_WIRE_MAX_FRAME)

/* Provided buffers for multishot recv, per poll group. */
#define MS_BGID         0
#define MS_NBUFS        64u
#define MS_BUF_SIZE     (64u * 1024u)

enum { UD_ACCEPT = 1, UD_RECV = 2, UD_SEND = 3, UD_WAKE = 4, UD_CANCEL = 5, UD_RECV_MS = 6 };
#define UD_MASK 7ull

/* Part of a provided buffer that did not fit in the receive buffer yet. */
typedef struct HeldBuf {
    uint16_t bid;
    uint32_t off, len;
} HeldBuf;

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
    bool recv_ms;                   /* the armed recv is the multishot one */
    bool ms_cancel_sent;
    bool ms_skip_once;              /* out of provided buffers: one single recv */
    unsigned inflight;
    uint64_t rx_time;               /* svc_ticks() when the last bytes came */
    /* Received into provided buffers while rx was full, in stream order. */
    unsigned nheld;
    HeldBuf held[MS_NBUFS];
};

struct SvmPollGroup {
    SvmServerTransport *t;
    struct io_uring ring;
    int wake_fd;
    uint64_t wake_buf;
    bool accept_armed, wake_armed, ring_disabled;
    bool multishot;                 /* multishot recv on the buffer ring */
    bool ms_confirmed;              /* ... and the kernel has delivered with it */
    struct io_uring_buf_ring *br;
    size_t br_bytes;
    uint8_t *ms_bufs;
    /* Service-time clock (svc_ticks): calibration against CLOCK_MONOTONIC. */
    uint64_t clk_ns0, clk_tk0;
    double ns_per_tk;
    unsigned clk_refresh;
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

/*
 * Service times (frame received to reply queued, for the STATS histogram)
 * take two clock readings per request.  Under the virtualisation this runs
 * on, clock_gettime costs ~0.15 us and the TSC alone a third of that, so
 * requests read the TSC; svc_ns converts with a rate calibrated against
 * CLOCK_MONOTONIC from the start of the poll group (refined on every use
 * during the first 100 ms, then every 4096 uses).  Elsewhere the ticks are
 * CLOCK_MONOTONIC nanoseconds.
 */
static inline uint64_t svc_ticks(void)
{
#if SVC_TSC
    return __rdtsc();
#else
    return now_ns();
#endif
}

static void svc_clock_start(SvmPollGroup *pg)
{
    pg->clk_ns0 = now_ns();
    pg->clk_tk0 = svc_ticks();
    pg->ns_per_tk = 1.0;
    pg->clk_refresh = 0;
}

static uint64_t svc_ns(SvmPollGroup *pg, uint64_t t_start)
{
    uint64_t t_end = svc_ticks();

    if (t_end <= t_start) {
        return 0;       /* TSCs of two CPUs a little apart */
    }
#if SVC_TSC
    if (pg->clk_refresh-- == 0) {
        uint64_t ns = now_ns(), tk = svc_ticks();
        if (ns > pg->clk_ns0 && tk > pg->clk_tk0) {
            pg->ns_per_tk = (double)(ns - pg->clk_ns0) / (double)(tk - pg->clk_tk0);
        }
        pg->clk_refresh = ns - pg->clk_ns0 < 100000000u ? 0 : 4095;
    }
    return (uint64_t)((double)(t_end - t_start) * pg->ns_per_tk);
#else
    (void)pg;
    return t_end - t_start;
#endif
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

/*
 * SPLITVM_TCP_FALLBACK=1 in the environment makes the server use the paths
 * it takes on older kernels (tests run both).
 */
static bool svm_tcp_fallback_forced(void)
{
    const char *env = getenv("SPLITVM_TCP_FALLBACK");

    return env && !strcmp(env, "1");
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

/* ---- provided buffers (multishot recv) ---- */

static uint8_t *ms_buf(SvmPollGroup *pg, unsigned bid)
{
    return pg->ms_bufs + (size_t)bid * MS_BUF_SIZE;
}

static void ms_recycle(SvmPollGroup *pg, unsigned bid)
{
    io_uring_buf_ring_add(pg->br, ms_buf(pg, bid), MS_BUF_SIZE, (unsigned short)bid,
                          io_uring_buf_ring_mask(MS_NBUFS), 0);
    io_uring_buf_ring_advance(pg->br, 1);
}

/*
 * Register the buffer ring.  Failing is fine: the kernel is older than 5.19
 * (or the environment asked for single recvs) and every recv is a single one.
 */
static void ms_setup(SvmPollGroup *pg)
{
    if (svm_tcp_fallback_forced()) {
        g_message("tcp: SPLITVM_TCP_FALLBACK=1: single recvs");
        return;
    }
    size_t pagesz = (size_t)sysconf(_SC_PAGESIZE);
    pg->br_bytes = (MS_NBUFS * sizeof(struct io_uring_buf) + pagesz - 1) & ~(pagesz - 1);
    void *mem = mmap(NULL, pg->br_bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        return;
    }
    pg->br = mem;
    io_uring_buf_ring_init(pg->br);
    struct io_uring_buf_reg reg = {
        .ring_addr = (uintptr_t)mem, .ring_entries = MS_NBUFS, .bgid = MS_BGID,
    };
    int rc = io_uring_register_buf_ring(&pg->ring, &reg, 0);
    if (rc < 0) {
        g_message("tcp: no io_uring buffer rings (%s): single recvs", g_strerror(-rc));
        munmap(mem, pg->br_bytes);
        pg->br = NULL;
        return;
    }
    pg->ms_bufs = g_malloc((size_t)MS_NBUFS * MS_BUF_SIZE);
    for (unsigned i = 0; i < MS_NBUFS; i++) {
        io_uring_buf_ring_add(pg->br, ms_buf(pg, i), MS_BUF_SIZE, (unsigned short)i,
                              io_uring_buf_ring_mask(MS_NBUFS), (int)i);
    }
    io_uring_buf_ring_advance(pg->br, MS_NBUFS);
    pg->multishot = true;
}

/* ---- connections ---- */

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
    for (unsigned i = 0; i < c->nheld; i++) {
        ms_recycle(pg, c->held[i].bid);
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

/*
 * Hand the whole frames at the start of buf to the protocol core; returns
 * the bytes consumed.  Stops at a partial frame, when the transmit buffer
 * cannot take the largest reply of the next frame, or once the connection
 * is to be closed.
 */
static size_t process_frames(TcpConn *c, const uint8_t *buf, size_t avail)
{
    const SvmServerHooks *hooks = &c->pg->t->hooks;
    size_t pos = 0;
    uint64_t t_start = c->rx_time;

    while (!c->closing && !c->close_after_flush) {
        SvmWireHdr h;
        SvmWirePeek pk = svm_wire_peek(buf + pos, avail - pos, &h);
        if (pk == SVM_PEEK_NEED_MORE) {
            break;
        }
        if (pk == SVM_PEEK_BAD) {
            /* The length cannot be trusted, so the stream cannot be
             * resynchronised: say why (if it fits), then close. */
            c->tx_len += svm_wire_enc_bad_length(c->tx + c->tx_len, TX_CAP - c->tx_len, &h);
            if (hooks->account) {
                hooks->account(c->session, UINT64_MAX, avail - pos, 0);
            }
            c->close_after_flush = true;
            pos = avail;
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
        size_t out = hooks->handle(c->session, buf + pos, h.len, c->tx + c->tx_len,
                                   TX_CAP - c->tx_len, &close_after);
        c->tx_len += out;
        pos += h.len;
        if (hooks->account) {
            hooks->account(c->session, svc_ns(c->pg, t_start), h.len, out);
        }
        if (close_after) {
            c->close_after_flush = true;
        }
    }
    return pos;
}

/* Drop parsed bytes from the front of rx (never under a recv writing to it). */
static void rx_compact(TcpConn *c)
{
    if (c->recv_armed && !c->recv_ms) {
        return;         /* a single recv writes at rx + rx_len */
    }
    if (c->rx_head == c->rx_len) {
        c->rx_head = c->rx_len = 0;
    } else if (c->rx_head > 0) {
        memmove(c->rx, c->rx + c->rx_head, c->rx_len - c->rx_head);
        c->rx_len -= c->rx_head;
        c->rx_head = 0;
    }
}

/* Copy held provided-buffer bytes into rx while it has room; true if any moved. */
static bool rx_take_held(TcpConn *c)
{
    bool moved = false;

    while (c->nheld > 0 && c->rx_len < RX_CAP) {
        HeldBuf *hb = &c->held[0];
        size_t n = MIN((size_t)hb->len, RX_CAP - c->rx_len);
        memcpy(c->rx + c->rx_len, ms_buf(c->pg, hb->bid) + hb->off, n);
        c->rx_len += n;
        hb->off += (uint32_t)n;
        hb->len -= (uint32_t)n;
        moved = true;
        if (hb->len == 0) {
            ms_recycle(c->pg, hb->bid);
            memmove(&c->held[0], &c->held[1], --c->nheld * sizeof(c->held[0]));
        }
    }
    return moved;
}

static void conn_process(TcpConn *c)
{
    do {
        c->rx_head += process_frames(c, c->rx + c->rx_head, c->rx_len - c->rx_head);
        rx_compact(c);
    } while (!c->closing && rx_take_held(c));
}

/* Stop the multishot recv (its last completion re-arms what fits). */
static void ms_cancel(TcpConn *c)
{
    if (c->recv_armed && c->recv_ms && !c->ms_cancel_sent) {
        struct io_uring_sqe *sqe = get_sqe(c->pg);
        io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)c | UD_RECV_MS, 0);
        set_ud(sqe, c, UD_CANCEL);
        c->ms_cancel_sent = true;
    }
}

/* Bytes of a provided buffer that arrived on c's multishot recv. */
static void ms_consume(TcpConn *c, unsigned bid, size_t len)
{
    const uint8_t *data = ms_buf(c->pg, bid);
    size_t used = 0;

    c->rx_time = svc_ticks();
    if (c->rx_head == c->rx_len && c->nheld == 0) {
        /* Nothing pending: whole frames are handled right in the buffer. */
        c->rx_head = c->rx_len = 0;
        used = process_frames(c, data, len);
    }
    if (used < len && c->nheld == 0) {
        rx_compact(c);
        size_t n = MIN(len - used, RX_CAP - c->rx_len);
        memcpy(c->rx + c->rx_len, data + used, n);
        c->rx_len += n;
        used += n;
    }
    if (used < len) {
        /* rx is full (parsing is paused): keep the rest for later. */
        c->held[c->nheld++] = (HeldBuf){ .bid = (uint16_t)bid, .off = (uint32_t)used,
                                         .len = (uint32_t)(len - used) };
    } else {
        ms_recycle(c->pg, bid);
    }
    conn_process(c);

    SvmWireHdr h;
    if (c->nheld > 0) {
        ms_cancel(c);
    } else if (svm_wire_peek(c->rx + c->rx_head, c->rx_len - c->rx_head, &h) ==
                   SVM_PEEK_NEED_MORE && c->rx_len - c->rx_head >= SVM_WIRE_HDR_SIZE &&
               h.len - (c->rx_len - c->rx_head) > MS_BUF_SIZE) {
        /* The rest of a large frame goes straight into rx by single recvs. */
        ms_cancel(c);
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
    if (c->recv_armed || c->nheld > 0 || c->rx_len >= RX_CAP) {
        return;
    }
    struct io_uring_sqe *sqe = get_sqe(pg);
    if (pg->multishot && c->rx_head == c->rx_len && !c->ms_skip_once) {
        c->rx_head = c->rx_len = 0;
        io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = MS_BGID;
        set_ud(sqe, c, UD_RECV_MS);
        c->recv_ms = true;
        c->ms_cancel_sent = false;
    } else {
        c->ms_skip_once = false;
        io_uring_prep_recv(sqe, c->fd, c->rx + c->rx_len, RX_CAP - c->rx_len, 0);
        /* Right after a reply there is nothing to read yet: go straight to
         * waiting instead of trying a recv that fails. */
        sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
        set_ud(sqe, c, UD_RECV);
        c->recv_ms = false;
    }
    c->recv_armed = true;
    c->inflight++;
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
    c->rx_time = svc_ticks();
    c->rx_len += (size_t)res;
    conn_process(c);
    conn_kick(c);
}

static void on_recv_ms(TcpConn *c, const struct io_uring_cqe *cqe)
{
    SvmPollGroup *pg = c->pg;
    int res = cqe->res;
    bool more = cqe->flags & IORING_CQE_F_MORE;

    if (!more) {
        c->recv_armed = false;
        c->inflight--;
    }
    if (res > 0 && (cqe->flags & IORING_CQE_F_BUFFER)) {
        unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        pg->ms_confirmed = true;
        if (c->closing) {
            ms_recycle(pg, bid);
        } else {
            ms_consume(c, bid, (size_t)res);
        }
    } else if (res == -ENOBUFS) {
        /* Every provided buffer is in use: one single recv, then back. */
        c->ms_skip_once = true;
    } else if (res == -EINVAL && !pg->ms_confirmed) {
        /* Buffer rings but no multishot recv (Linux 5.19): single recvs. */
        g_message("tcp: no multishot recv in this kernel: single recvs");
        pg->multishot = false;
    } else if (res != -ECANCELED) {
        /* End of stream, error, or shut down: a client vanishing mid-frame
         * just loses its partial frame. */
        conn_close(c);
        return;
    }
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
    case UD_RECV_MS:
        on_recv_ms(p, cqe);
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
    svc_clock_start(pg);
    ms_setup(pg);
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
        if (pg->br) {
            munmap(pg->br, pg->br_bytes);
        }
        g_free(pg->ms_bufs);
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
