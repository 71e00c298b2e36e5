/*
 * Memory-server client core: request slots matched by request id, requests
 * pipelined on one connection, reconnect with backoff, timeouts.
 *
 * Who reads the socket: exactly one thread at a time holds the "reader"
 * role.  A synchronous caller that finds nobody reading takes the role and
 * reads until its own reply is there: the common case (one fault, one
 * request) costs one send and one receive on the faulting thread and no
 * thread hand-over.  Otherwise the completion thread reads.  Replies for
 * other requests are delivered by whoever reads; callbacks of asynchronous
 * requests always run on the completion thread.
 *
 * When the connection breaks (error, end of stream, or a reply overdue by
 * timeout_ms), requests in flight go back to the queue and the completion
 * thread reconnects with exponential backoff and resends them; a request
 * that has waited for a connection for reconnect_ms fails with -ETIMEDOUT.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <time.h>
#include "splitvm/clientproto.h"
#include "splitvm/memclient.h"
#include "splitvm/thread.h"
#include "splitvm/transport.h"
#include "splitvm/wire.h"

#define NSLOTS          256u            /* requests in flight per client */
#define RX_CAP          (SVM_WIRE_MAX_FRAME + 64 * 1024)
#define SCAN_MS         50u             /* how often the reader checks deadlines */
#define BACKOFF_MIN_MS  10u
#define BACKOFF_MAX_MS  1000u
#define CTRL_REQ_MAX    64u

_Static_assert(SVM_MAX_BATCH == SVM_WIRE_MAX_BATCH, "API and wire batch limits differ");
_Static_assert(SVM_PAGE_SIZE == SVM_WIRE_PAGE_SIZE, "API and wire page sizes differ");

typedef enum SlotState {
    SLOT_FREE,
    SLOT_QUEUED,        /* waiting for a connection to be (re)sent on */
    SLOT_SENT,          /* on the wire, reply pending */
    SLOT_DONE,          /* status valid; sync owner or callback takes it */
} SlotState;

typedef struct Slot Slot;
struct Slot {
    uint64_t id;
    SlotState state;
    uint8_t op;
    bool async;
    unsigned n;
    int status;
    uint64_t t_sent_ms;
    uint64_t t_lost_ms;                 /* first time it lost its connection */
    void *const *rbufs;
    const void *const *wbufs;
    SvmMemClientDone done;
    void *opaque;
    /* Control replies (STATS) land here. */
    uint8_t *ctrl_rep;
    size_t ctrl_cap, ctrl_len;
    char *errmsg;                       /* control ops: server's message */
    size_t frame_prefix;                /* bytes of frame[] to send */
    Slot *next_free, *next_done;
    pthread_cond_t cond;
    uint8_t frame[SVM_WIRE_HDR_SIZE + 8 + 8 * SVM_WIRE_MAX_BATCH];
};

struct SvmMemClient {
    char *address, *vm_id, *transport;
    uint8_t *secret;
    size_t secret_len;
    uint64_t npages;
    unsigned timeout_ms, reconnect_ms;
    int thread_nice;                /* of the completion thread */
    void (*state_cb)(void *opaque, SvmMemClient *c, bool connected);
    void *state_opaque;
    uint64_t owner_epoch;               /* sent with every ATTACH */
    _Atomic uint64_t ns_epoch;          /* from the last ATTACH reply */
    const SvmClientTransportOps *ops;

    /* Lock order: send_lock before lock. */
    pthread_mutex_t lock;
    pthread_mutex_t send_lock;          /* one frame at a time on the wire */
    pthread_cond_t work_cond;           /* completion thread sleeps here */
    pthread_cond_t slot_cond;           /* waiting for a free slot */

    SvmClientConn *conn;                /* current or broken connection */
    uint64_t conn_gen;                  /* bumped when a connection breaks */
    bool connected;
    bool reported_down;
    bool closing;
    bool reader_busy;
    char down_reason[128];

    unsigned inflight, queued;
    uint64_t next_seq;
    uint64_t last_scan_ms;
    uint64_t last_submit_ms;
    bool completion_idle;               /* completion thread in its long sleep */
    Slot *free_list;
    Slot *done_head, *done_tail;        /* async completions to call back */
    pthread_t thread;

    size_t rx_len;                      /* owned by the reader */
    uint8_t *rx;
    Slot slots[NSLOTS];
};

/*
 * Millisecond time for request timeouts.  The coarse clock is good to a
 * scheduler tick, plenty for timeouts of tens of ms and more, and it reads
 * no TSC: under virtualisation a precise clock_gettime costs ~0.15 us, and
 * a round trip read the clock twice.
 */
static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void timespec_in_ms(struct timespec *ts, unsigned ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

static void cond_init_mono(pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
}

/* ---- slots (lock held) ---- */

static bool on_completion_thread(SvmMemClient *c)
{
    return pthread_equal(pthread_self(), c->thread);
}

static Slot *slot_get(SvmMemClient *c, int *err)
{
    while (!c->free_list) {
        if (c->closing) {
            *err = -ESHUTDOWN;
            return NULL;
        }
        if (on_completion_thread(c)) {
            /* Waiting here would wait for ourselves. */
            *err = -EAGAIN;
            return NULL;
        }
        struct timespec ts;
        timespec_in_ms(&ts, c->timeout_ms + c->reconnect_ms);
        if (pthread_cond_timedwait(&c->slot_cond, &c->lock, &ts) == ETIMEDOUT &&
            !c->free_list) {
            *err = -ETIMEDOUT;
            return NULL;
        }
    }
    Slot *s = c->free_list;
    c->free_list = s->next_free;
    c->next_seq++;
    s->id = (c->next_seq << 8) | (uint64_t)(s - c->slots);
    s->state = SLOT_FREE;
    s->async = false;
    s->status = 0;
    s->t_lost_ms = 0;
    s->ctrl_rep = NULL;
    s->ctrl_cap = s->ctrl_len = 0;
    s->errmsg = NULL;
    s->done = NULL;
    return s;
}

static void slot_put(SvmMemClient *c, Slot *s)
{
    s->state = SLOT_FREE;
    s->id = 0;
    s->next_free = c->free_list;
    c->free_list = s;
    pthread_cond_signal(&c->slot_cond);
}

static void slot_complete(SvmMemClient *c, Slot *s, int status)
{
    if (s->state == SLOT_SENT) {
        c->inflight--;
    } else if (s->state == SLOT_QUEUED) {
        c->queued--;
    }
    s->state = SLOT_DONE;
    s->status = status;
    if (s->async) {
        s->next_done = NULL;
        if (c->done_tail) {
            c->done_tail->next_done = s;
        } else {
            c->done_head = s;
        }
        c->done_tail = s;
        pthread_cond_signal(&c->work_cond);
    } else {
        pthread_cond_signal(&s->cond);
    }
}

/* Run queued callbacks (completion thread only; drops the lock around them). */
static void run_callbacks(SvmMemClient *c)
{
    while (c->done_head) {
        Slot *s = c->done_head;
        c->done_head = s->next_done;
        if (!c->done_head) {
            c->done_tail = NULL;
        }
        SvmMemClientDone done = s->done;
        void *opaque = s->opaque;
        int status = s->status;
        slot_put(c, s);
        pthread_mutex_unlock(&c->lock);
        done(opaque, status);
        pthread_mutex_lock(&c->lock);
    }
}

/* ---- connection state (lock held) ---- */

static void conn_broken(SvmMemClient *c, uint64_t gen, const char *why)
{
    uint64_t now = now_ms();

    if (gen != c->conn_gen || !c->connected) {
        return;                         /* somebody already noticed */
    }
    c->connected = false;
    c->conn_gen++;
    g_strlcpy(c->down_reason, why, sizeof(c->down_reason));
    c->ops->shutdown(c->conn);          /* wakes a reader blocked in recv */
    for (unsigned i = 0; i < NSLOTS; i++) {
        Slot *s = &c->slots[i];
        if (s->state == SLOT_SENT) {
            s->state = SLOT_QUEUED;
            if (!s->t_lost_ms) {
                s->t_lost_ms = now;
            }
            c->inflight--;
            c->queued++;
        }
    }
    pthread_cond_signal(&c->work_cond);
}

static int send_slot(SvmMemClient *c, SvmClientConn *conn, Slot *s)
{
    struct iovec iov[1 + SVM_WIRE_MAX_BATCH];
    int niov = 1;

    iov[0].iov_base = s->frame;
    iov[0].iov_len = s->frame_prefix;
    if (s->op == SVM_OP_WRITE) {
        for (unsigned i = 0; i < s->n; i++, niov++) {
            iov[niov].iov_base = (void *)s->wbufs[i];
            iov[niov].iov_len = SVM_PAGE_SIZE;
        }
    }
    return c->ops->sendv(conn, iov, niov);
}

/* Put s on the wire, or queue it for the next connection.  Lock held. */
static void submit(SvmMemClient *c, Slot *s)
{
    /* The request id lives in the frame header. */
    svm_put_le64(s->frame + 8, s->id);
    if (!c->connected) {
        s->state = SLOT_QUEUED;
        s->t_lost_ms = now_ms();
        c->queued++;
        pthread_cond_signal(&c->work_cond);
        return;
    }
    s->state = SLOT_SENT;
    s->t_sent_ms = now_ms();
    c->last_submit_ms = s->t_sent_ms;
    c->inflight++;
    if (!s->async && c->completion_idle) {
        /* First request after a quiet second: the completion thread must
         * watch its deadline (a synchronous reader waits without one). */
        c->completion_idle = false;
        pthread_cond_signal(&c->work_cond);
    }
    if (s->async && !c->reader_busy) {
        /* Nobody will wait for this reply on its own: wake the reader. */
        pthread_cond_signal(&c->work_cond);
    }
    uint64_t gen = c->conn_gen;
    uint64_t id = s->id;
    int rc;
    if (pthread_mutex_trylock(&c->send_lock) == 0) {
        /* Nobody is sending (the common case): no need to let go of lock
         * first, and s is certainly still ours to send. */
        SvmClientConn *conn = c->conn;
        pthread_mutex_unlock(&c->lock);
        rc = send_slot(c, conn, s);
        pthread_mutex_unlock(&c->send_lock);
    } else {
        pthread_mutex_unlock(&c->lock);
        pthread_mutex_lock(&c->send_lock);
        pthread_mutex_lock(&c->lock);
        /* The connection may have broken meanwhile (s is then queued and
         * will be resent by the completion thread) or s may even be done
         * already. */
        bool go = gen == c->conn_gen && s->id == id && s->state == SLOT_SENT;
        SvmClientConn *conn = c->conn;
        pthread_mutex_unlock(&c->lock);
        rc = go ? send_slot(c, conn, s) : 0;
        pthread_mutex_unlock(&c->send_lock);
    }

    pthread_mutex_lock(&c->lock);
    if (rc < 0) {
        char why[96];
        g_snprintf(why, sizeof(why), "send failed: %s", g_strerror(-rc));
        conn_broken(c, gen, why);
    }
}

/* ---- receiving (reader role held) ---- */

/* in_place: a READ reply whose pages were received straight into s->rbufs. */
static void deliver(SvmMemClient *c, const SvmWireHdr *h, const uint8_t *body, size_t blen,
                    bool in_place)
{
    Slot *s = &c->slots[h->req_id & 0xff];

    if (s->id != h->req_id || s->state != SLOT_SENT) {
        return;     /* reply to a request that already timed out */
    }
    if (h->op != s->op || !(h->flags & SVM_WIRE_F_REPLY)) {
        slot_complete(c, s, -EPROTO);
        return;
    }
    if (h->status != SVM_ST_OK) {
        if (s->errmsg) {
            svm_wire_dec_error(body, blen, s->errmsg, SVM_WIRE_ERRMSG_MAX + 1);
        }
        slot_complete(c, s, svm_wire_status_errno(h->status));
        return;
    }
    switch (s->op) {
    case SVM_OP_READ:
        if (blen != (size_t)s->n * SVM_PAGE_SIZE) {
            slot_complete(c, s, -EPROTO);
            return;
        }
        for (unsigned i = 0; !in_place && i < s->n; i++) {
            memcpy(s->rbufs[i], body + (size_t)i * SVM_PAGE_SIZE, SVM_PAGE_SIZE);
        }
        break;
    case SVM_OP_STATS:
        if (blen > s->ctrl_cap) {
            slot_complete(c, s, -EPROTO);
            return;
        }
        memcpy(s->ctrl_rep, body, blen);
        s->ctrl_len = blen;
        break;
    default:
        if (blen != 0) {
            slot_complete(c, s, -EPROTO);
            return;
        }
        break;
    }
    slot_complete(c, s, 0);
}

/* True if some request has waited longer than timeout_ms for its reply. */
static bool reply_overdue(SvmMemClient *c, uint64_t now)
{
    for (unsigned i = 0; i < NSLOTS; i++) {
        Slot *s = &c->slots[i];
        if (s->state == SLOT_SENT && now - s->t_sent_ms > c->timeout_ms) {
            return true;
        }
    }
    return false;
}

/* Every SCAN_MS: break the connection if a reply is overdue (true then). */
static bool check_overdue(SvmMemClient *c, uint64_t gen)
{
    uint64_t now = now_ms();

    if (now - c->last_scan_ms < SCAN_MS) {
        return false;
    }
    c->last_scan_ms = now;
    if (!reply_overdue(c, now)) {
        return false;
    }
    char why[96];
    g_snprintf(why, sizeof(why), "no reply within %u ms", c->timeout_ms);
    conn_broken(c, gen, why);
    return true;
}

/*
 * Receiving a READ reply in place.  A synchronous reader waiting for its own
 * READ, at a frame boundary, bets that the next frame is its reply: it
 * receives the header into rx and the pages straight into the caller's
 * buffers, and whatever follows into rx right after where the pages would
 * have been.  So rx keeps its usual layout, with a gap where the pages are.
 * If the header says otherwise, the bytes that went into the buffers are
 * copied back into the gap and nothing else changes.
 *
 * Only for batches: measured on the project's machines, a 4 KiB READ got
 * slower this way (recvmsg over three buffers costs more than recv plus a
 * copy of one page from a hot buffer), 64-page READs ~8 % faster.
 */
#define IN_PLACE_MIN_PAGES  2u

typedef struct InPlace {
    Slot *s;            /* NULL: receiving into rx only */
    uint64_t id;
    bool confirmed;     /* the header in rx is s's reply */
} InPlace;

static int in_place_iov(SvmMemClient *c, const InPlace *ip, struct iovec *iov)
{
    const size_t data = SVM_WIRE_READ_REP_DATA, end = svm_wire_read_rep_len(ip->s->n);
    size_t o = c->rx_len;
    int k = 0;

    if (o < data) {
        iov[k++] = (struct iovec){ .iov_base = c->rx + o, .iov_len = data - o };
        o = data;
    }
    while (o < end) {
        size_t i = (o - data) / SVM_PAGE_SIZE, off = (o - data) % SVM_PAGE_SIZE;
        iov[k++] = (struct iovec){ .iov_base = (uint8_t *)ip->s->rbufs[i] + off,
                                   .iov_len = SVM_PAGE_SIZE - off };
        o += SVM_PAGE_SIZE - off;
    }
    iov[k++] = (struct iovec){ .iov_base = c->rx + o, .iov_len = RX_CAP - o };
    return k;
}

/* Lost the bet (or giving up): move the page bytes back into rx's gap. */
static void in_place_undo(SvmMemClient *c, InPlace *ip)
{
    const size_t data = SVM_WIRE_READ_REP_DATA;
    size_t end = MIN(c->rx_len, svm_wire_read_rep_len(ip->s->n));

    for (size_t o = data; o < end; o += SVM_PAGE_SIZE) {
        size_t i = (o - data) / SVM_PAGE_SIZE;
        memcpy(c->rx + o, ip->s->rbufs[i], MIN((size_t)SVM_PAGE_SIZE, end - o));
    }
    ip->s = NULL;
}

/*
 * Read replies until `me` is done (sync reader) or nothing is in flight
 * (completion thread, me == NULL).  Lock held on entry and exit.
 */
static void reader_loop(SvmMemClient *c, Slot *me)
{
    uint64_t gen = c->conn_gen;
    SvmClientConn *conn = c->conn;
    InPlace ip = { NULL };
    struct iovec iov[SVM_WIRE_MAX_BATCH + 2];
    /*
     * A synchronous caller waits for data without a timeout (a timed wait
     * costs a timer per receive: ~0.25 us of a ~17 us round trip here);
     * the completion thread watches the deadlines meanwhile and breaks the
     * connection, which wakes the caller.  The completion thread itself
     * wakes every SCAN_MS to check them.
     */
    unsigned wait_ms = me ? SVM_RECV_WAIT_FOREVER : SCAN_MS;

    while (!c->closing && c->connected && c->conn_gen == gen) {
        if (me ? me->state == SLOT_DONE : c->inflight == 0) {
            break;
        }
        if (check_overdue(c, gen)) {
            break;
        }
        if (!ip.s && me && me->op == SVM_OP_READ && me->n >= IN_PLACE_MIN_PAGES &&
            c->rx_len == 0 && c->ops->recvv) {
            ip = (InPlace){ .s = me, .id = me->id };
        }
        ssize_t r;
        if (ip.s) {
            int niov = in_place_iov(c, &ip, iov);
            pthread_mutex_unlock(&c->lock);
            r = c->ops->recvv(conn, iov, niov, wait_ms);
        } else {
            pthread_mutex_unlock(&c->lock);
            r = c->ops->recv(conn, c->rx + c->rx_len, RX_CAP - c->rx_len, wait_ms);
        }
        pthread_mutex_lock(&c->lock);
        if (r == -EAGAIN) {
            continue;
        }
        if (r <= 0) {
            conn_broken(c, gen, r == 0 ? "connection closed by the server"
                                       : g_strerror((int)-r));
            break;
        }
        c->rx_len += (size_t)r;
        if (ip.s && !ip.confirmed && c->rx_len >= SVM_WIRE_HDR_SIZE) {
            SvmWireHdr h;
            if (svm_wire_peek(c->rx, c->rx_len, &h) != SVM_PEEK_BAD &&
                svm_wire_is_read_rep(&h, ip.id, ip.s->n)) {
                ip.confirmed = true;
            } else {
                in_place_undo(c, &ip);
            }
        }
        size_t pos = 0;
        for (;;) {
            SvmWireHdr h;
            SvmWirePeek pk = svm_wire_peek(c->rx + pos, c->rx_len - pos, &h);
            if (pk == SVM_PEEK_NEED_MORE) {
                break;
            }
            if (pk == SVM_PEEK_BAD) {
                conn_broken(c, gen, "malformed frame from the server");
                c->rx_len = pos = 0;
                break;
            }
            bool in_place = ip.s && ip.confirmed && pos == 0;
            deliver(c, &h, c->rx + pos + SVM_WIRE_HDR_SIZE, h.len - SVM_WIRE_HDR_SIZE,
                    in_place);
            if (in_place) {
                ip.s = NULL;
            }
            pos += h.len;
        }
        if (pos > 0) {
            memmove(c->rx, c->rx + pos, c->rx_len - pos);
            c->rx_len -= pos;
        }
        if (!me) {
            run_callbacks(c);
        }
    }
    if (ip.s) {
        in_place_undo(c, &ip);      /* keep rx whole for the next reader */
    }
}

/* ---- completion thread: callbacks, reading, reconnecting ---- */

static void fail_expired(SvmMemClient *c, uint64_t now, bool all)
{
    for (unsigned i = 0; i < NSLOTS; i++) {
        Slot *s = &c->slots[i];
        if (s->state == SLOT_QUEUED &&
            (all || now - s->t_lost_ms >= c->reconnect_ms)) {
            slot_complete(c, s, all ? -ESHUTDOWN : -ETIMEDOUT);
        }
    }
}

/* Lock held; returns with lock held.  Runs with the reader role. */
static void reconnect(SvmMemClient *c)
{
    unsigned backoff = BACKOFF_MIN_MS;

    c->reader_busy = true;
    SvmClientConn *old = c->conn;
    c->conn = NULL;
    c->rx_len = 0;
    bool report = !c->reported_down;
    c->reported_down = true;
    pthread_mutex_unlock(&c->lock);

    if (old) {
        pthread_mutex_lock(&c->send_lock);     /* nobody is inside sendv */
        c->ops->close(old);
        pthread_mutex_unlock(&c->send_lock);
    }
    if (report) {
        g_warning("memclient %s (VM %s): connection lost: %s", c->address, c->vm_id,
                  c->down_reason);
        if (c->state_cb) {
            c->state_cb(c->state_opaque, c, false);
        }
    }

    pthread_mutex_lock(&c->lock);
    while (!c->closing) {
        pthread_mutex_unlock(&c->lock);
        SvmWireAttach attach = { .npages = c->npages, .owner_epoch = c->owner_epoch };
        SvmWireAttach attach_rep = { 0 };
        SvmProtoLogin login = {
            .address = c->address, .role = SVM_ROLE_VM, .id = c->vm_id,
            .secret = c->secret, .secret_len = c->secret_len,
            .timeout_ms = c->timeout_ms, .attach = &attach,
        };
        g_autoptr(GError) err = NULL;
        SvmClientConn *conn = svm_proto_login(c->ops, &login, &attach_rep, &err);
        if (conn) {
            atomic_store(&c->ns_epoch, attach_rep.owner_epoch);
        }
        if (conn) {
            /* Publish the connection and resend the queue, in order. */
            pthread_mutex_lock(&c->send_lock);
            pthread_mutex_lock(&c->lock);
            c->conn = conn;
            c->connected = true;
            uint64_t gen = c->conn_gen;
            uint64_t now = now_ms();
            Slot *resend[NSLOTS];
            unsigned nresend = 0;
            for (unsigned i = 0; i < NSLOTS; i++) {
                Slot *s = &c->slots[i];
                if (s->state == SLOT_QUEUED) {
                    s->state = SLOT_SENT;
                    s->t_sent_ms = now;
                    c->queued--;
                    c->inflight++;
                    resend[nresend++] = s;
                }
            }
            pthread_mutex_unlock(&c->lock);
            int rc = 0;
            for (unsigned i = 0; i < nresend && rc == 0; i++) {
                svm_put_le64(resend[i]->frame + 8, resend[i]->id);
                rc = send_slot(c, conn, resend[i]);
            }
            pthread_mutex_unlock(&c->send_lock);
            pthread_mutex_lock(&c->lock);
            c->reported_down = false;
            if (rc < 0) {
                conn_broken(c, gen, "send failed right after reconnecting");
            }
            pthread_mutex_unlock(&c->lock);
            g_message("memclient %s (VM %s): reconnected", c->address, c->vm_id);
            if (c->state_cb) {
                c->state_cb(c->state_opaque, c, true);
            }
            pthread_mutex_lock(&c->lock);
            break;
        }
        pthread_mutex_lock(&c->lock);
        g_strlcpy(c->down_reason, err->message, sizeof(c->down_reason));
        fail_expired(c, now_ms(), false);
        run_callbacks(c);
        if (!c->closing) {
            struct timespec ts;
            timespec_in_ms(&ts, backoff);
            pthread_cond_timedwait(&c->work_cond, &c->lock, &ts);
        }
        backoff = MIN(backoff * 2, BACKOFF_MAX_MS);
    }
    c->reader_busy = false;
}

static void *completion_thread(void *opaque)
{
    SvmMemClient *c = opaque;

    svm_thread_lower_priority(c->thread_nice, "memory client completion thread");
    pthread_mutex_lock(&c->lock);
    while (!c->closing) {
        if (c->done_head) {
            run_callbacks(c);
            continue;
        }
        if (!c->connected && !c->reader_busy) {
            reconnect(c);
            continue;
        }
        if (c->connected && c->inflight > 0 && !c->reader_busy) {
            c->reader_busy = true;
            reader_loop(c, NULL);
            c->reader_busy = false;
            continue;
        }
        /*
         * A synchronous caller reads without a timeout: watch the deadlines
         * every SCAN_MS while requests come and go, sleep long once the
         * client has been quiet for a second (submit wakes us then).
         */
        unsigned wait_ms = 1000;
        if (c->connected && (c->inflight > 0 || now_ms() - c->last_submit_ms < 1000)) {
            if (c->inflight > 0 && c->reader_busy && check_overdue(c, c->conn_gen)) {
                continue;
            }
            wait_ms = SCAN_MS;
        }
        c->completion_idle = wait_ms > SCAN_MS;
        struct timespec ts;
        timespec_in_ms(&ts, wait_ms);
        pthread_cond_timedwait(&c->work_cond, &c->lock, &ts);
        c->completion_idle = false;
    }
    /* Closing: nothing in flight will be answered any more. */
    for (unsigned i = 0; i < NSLOTS; i++) {
        Slot *s = &c->slots[i];
        if (s->state == SLOT_SENT || s->state == SLOT_QUEUED) {
            slot_complete(c, s, -ESHUTDOWN);
        }
    }
    run_callbacks(c);
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

/* ---- synchronous wait (lock held; the caller frees the slot) ---- */

static int wait_sync(SvmMemClient *c, Slot *s)
{
    while (s->state != SLOT_DONE) {
        if (s->state == SLOT_SENT && !c->reader_busy && c->connected) {
            c->reader_busy = true;
            reader_loop(c, s);
            c->reader_busy = false;
            /* Hand reading (or reconnecting) over to the completion thread. */
            if (c->inflight > 0 || !c->connected || c->done_head) {
                pthread_cond_signal(&c->work_cond);
            }
            continue;
        }
        struct timespec ts;
        timespec_in_ms(&ts, 1000);
        pthread_cond_timedwait(&s->cond, &c->lock, &ts);
    }
    return s->status;
}

/*
 * The receive buffer is where the kernel copies every reply.  Measured on
 * the project's (virtualised) machines, a pre-faulted, huge-page-backed
 * buffer makes that copy measurably cheaper than a fresh malloc'ed one.
 */
#define RX_ALLOC (2u << 20)
_Static_assert(RX_CAP <= RX_ALLOC, "receive buffer larger than its allocation");

static uint8_t *rx_buffer_alloc(void)
{
    void *p = mmap(NULL, RX_ALLOC * 2, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        return g_malloc0(RX_ALLOC);     /* only costs speed */
    }
    /* Keep the 2 MiB-aligned half so it can be one huge page. */
    uintptr_t a = ((uintptr_t)p + RX_ALLOC - 1) & ~(uintptr_t)(RX_ALLOC - 1);
    if (a > (uintptr_t)p) {
        munmap(p, a - (uintptr_t)p);
    }
    munmap((void *)(a + RX_ALLOC), (uintptr_t)p + RX_ALLOC * 2 - (a + RX_ALLOC));
    madvise((void *)a, RX_ALLOC, MADV_HUGEPAGE);
    memset((void *)a, 0, RX_CAP);
    return (uint8_t *)a;
}

static void rx_buffer_free(uint8_t *rx)
{
    /* g_malloc0 fallback buffers are not 2 MiB aligned. */
    if (((uintptr_t)rx & (RX_ALLOC - 1)) == 0) {
        munmap(rx, RX_ALLOC);
    } else {
        g_free(rx);
    }
}

/* ---- public API ---- */

SvmMemClient *svm_memclient_connect(const SvmMemClientConfig *cfg, GError **errp)
{
    /* Without cfg->transport, the address may name it: "rdma:HOST:PORT". */
    g_autofree char *prefix = NULL;
    const char *address = cfg->transport ? cfg->address
                                         : svm_transport_split(cfg->address, &prefix);
    const char *tname = cfg->transport ? cfg->transport : prefix;
    const SvmClientTransportOps *ops = svm_client_transport_find(tname);

    if (!ops) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "memory server %s: unknown transport '%s'", cfg->address, tname);
        return NULL;
    }
    if (!cfg->vm_id || !*cfg->vm_id || strlen(cfg->vm_id) > SVM_WIRE_ID_MAX) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "memory server %s: VM id must be 1..%u characters", cfg->address,
                    SVM_WIRE_ID_MAX);
        return NULL;
    }
    if (cfg->thread_nice < 0 || cfg->thread_nice > SVM_THREAD_NICE_MAX) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "memory server %s: thread nice increment %d is not in 0..%d",
                    cfg->address, cfg->thread_nice, SVM_THREAD_NICE_MAX);
        return NULL;
    }
    if (cfg->npages == 0 || cfg->npages > SVM_WIRE_MAX_NS_PAGES) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "memory server %s: namespace size %" G_GUINT64_FORMAT
                    " pages is not in 1..2^32", cfg->address, cfg->npages);
        return NULL;
    }

    SvmMemClient *c = g_new0(SvmMemClient, 1);
    c->address = g_strdup(address);
    c->vm_id = g_strdup(cfg->vm_id);
    c->secret = g_memdup2(cfg->secret, cfg->secret_len);
    c->secret_len = cfg->secret_len;
    c->npages = cfg->npages;
    c->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 5000;
    c->reconnect_ms = cfg->reconnect_ms ? cfg->reconnect_ms : 5000;
    c->thread_nice = cfg->thread_nice;
    c->state_cb = cfg->state_cb;
    c->state_opaque = cfg->state_opaque;
    c->ops = ops;
    c->owner_epoch = cfg->owner_epoch;
    c->rx = rx_buffer_alloc();

    SvmWireAttach attach = { .npages = c->npages, .owner_epoch = c->owner_epoch };
    SvmWireAttach attach_rep = { 0 };
    SvmProtoLogin login = {
        .address = c->address, .role = SVM_ROLE_VM, .id = c->vm_id,
        .secret = c->secret, .secret_len = c->secret_len,
        .timeout_ms = c->timeout_ms, .attach = &attach,
    };
    c->conn = svm_proto_login(ops, &login, &attach_rep, errp);
    c->ns_epoch = attach_rep.owner_epoch;
    if (!c->conn) {
        rx_buffer_free(c->rx);
        g_free(c->address);
        g_free(c->vm_id);
        g_free(c->secret);
        g_free(c);
        return NULL;
    }
    c->connected = true;

    pthread_mutex_init(&c->lock, NULL);
    pthread_mutex_init(&c->send_lock, NULL);
    cond_init_mono(&c->work_cond);
    cond_init_mono(&c->slot_cond);
    for (unsigned i = NSLOTS; i-- > 0;) {
        cond_init_mono(&c->slots[i].cond);
        c->slots[i].next_free = c->free_list;
        c->free_list = &c->slots[i];
    }
    pthread_create(&c->thread, NULL, completion_thread, c);
    /* named, so that `top -H` and the pager bench can tell it apart */
    pthread_setname_np(c->thread, "svm-memclient");
    return c;
}

void svm_memclient_close(SvmMemClient *c)
{
    if (!c) {
        return;
    }
    pthread_mutex_lock(&c->lock);
    c->closing = true;
    if (c->conn) {
        c->ops->shutdown(c->conn);
    }
    pthread_cond_broadcast(&c->work_cond);
    pthread_cond_broadcast(&c->slot_cond);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);

    if (c->conn) {
        c->ops->close(c->conn);
    }
    for (unsigned i = 0; i < NSLOTS; i++) {
        pthread_cond_destroy(&c->slots[i].cond);
    }
    pthread_cond_destroy(&c->work_cond);
    pthread_cond_destroy(&c->slot_cond);
    pthread_mutex_destroy(&c->lock);
    pthread_mutex_destroy(&c->send_lock);
    memset(c->secret, 0, c->secret_len);
    g_free(c->secret);
    g_free(c->address);
    g_free(c->vm_id);
    rx_buffer_free(c->rx);
    g_free(c);
}

uint64_t svm_memclient_namespace_epoch(const SvmMemClient *c)
{
    return atomic_load(&((SvmMemClient *)c)->ns_epoch);
}

const char *svm_memclient_address(const SvmMemClient *c)
{
    return c->address;
}

bool svm_memclient_connected(const SvmMemClient *c)
{
    return __atomic_load_n(&c->connected, __ATOMIC_RELAXED);
}

/*
 * One-sided transports (rdma) move the pages themselves; -EAGAIN means
 * "use frames" (page not stored yet, no connection, endpoint failed).
 * send_lock keeps the connection from being closed underneath.
 */
static int one_sided(SvmMemClient *c, uint8_t op, const uint64_t *pages, unsigned n,
                     void *const *rbufs, const void *const *wbufs)
{
    int rc = -EAGAIN;

    if ((op == SVM_OP_READ && !c->ops->read_pages) ||
        (op == SVM_OP_WRITE && !c->ops->write_pages) ||
        (op != SVM_OP_READ && op != SVM_OP_WRITE)) {
        return -EAGAIN;
    }
    pthread_mutex_lock(&c->send_lock);
    pthread_mutex_lock(&c->lock);
    SvmClientConn *conn = c->connected ? c->conn : NULL;
    pthread_mutex_unlock(&c->lock);
    if (conn) {
        rc = op == SVM_OP_READ ? c->ops->read_pages(conn, pages, n, rbufs)
                               : c->ops->write_pages(conn, pages, n, wbufs);
    }
    pthread_mutex_unlock(&c->send_lock);
    return rc;
}

static int page_op(SvmMemClient *c, uint8_t op, const uint64_t *pages, unsigned n,
                   void *const *rbufs, const void *const *wbufs,
                   SvmMemClientDone done, void *opaque)
{
    int err = 0;

    if (n == 0 || n > SVM_MAX_BATCH) {
        return -EINVAL;
    }
    for (unsigned i = 0; i < n; i++) {
        if (pages[i] >= c->npages) {
            return -ERANGE;
        }
    }
    int rc = one_sided(c, op, pages, n, rbufs, wbufs);
    if (rc != -EAGAIN && !done) {
        return rc;
    }
    pthread_mutex_lock(&c->lock);
    Slot *s = slot_get(c, &err);
    if (!s) {
        pthread_mutex_unlock(&c->lock);
        return err;
    }
    if (rc != -EAGAIN) {
        /* Done one-sided: the callback still runs on the completion thread. */
        s->async = true;
        s->done = done;
        s->opaque = opaque;
        slot_complete(c, s, rc);
        pthread_mutex_unlock(&c->lock);
        return 0;
    }
    s->op = op;
    s->n = n;
    s->rbufs = rbufs;
    s->wbufs = wbufs;
    s->frame_prefix = svm_wire_enc_pagevec_req(s->frame, sizeof(s->frame), s->id, op,
                                               pages, n);
    if (done) {
        s->async = true;
        s->done = done;
        s->opaque = opaque;
        submit(c, s);
        pthread_mutex_unlock(&c->lock);
        return 0;
    }
    submit(c, s);
    int status = wait_sync(c, s);
    slot_put(c, s);
    pthread_mutex_unlock(&c->lock);
    return status;
}

int svm_memclient_read(SvmMemClient *c, const uint64_t *pages, unsigned n,
                       void *const *bufs)
{
    return page_op(c, SVM_OP_READ, pages, n, bufs, NULL, NULL, NULL);
}

int svm_memclient_write(SvmMemClient *c, const uint64_t *pages, unsigned n,
                        const void *const *bufs)
{
    return page_op(c, SVM_OP_WRITE, pages, n, NULL, bufs, NULL, NULL);
}

int svm_memclient_discard(SvmMemClient *c, const uint64_t *pages, unsigned n)
{
    return page_op(c, SVM_OP_DISCARD, pages, n, NULL, NULL, NULL, NULL);
}

int svm_memclient_read_async(SvmMemClient *c, const uint64_t *pages, unsigned n,
                             void *const *bufs, SvmMemClientDone done, void *opaque)
{
    if (!done) {
        return -EINVAL;
    }
    return page_op(c, SVM_OP_READ, pages, n, bufs, NULL, done, opaque);
}

int svm_memclient_write_async(SvmMemClient *c, const uint64_t *pages, unsigned n,
                              const void *const *bufs, SvmMemClientDone done,
                              void *opaque)
{
    if (!done) {
        return -EINVAL;
    }
    return page_op(c, SVM_OP_WRITE, pages, n, NULL, bufs, done, opaque);
}

/* A control request through the slot machinery (so it survives reconnects). */
static bool control_op(SvmMemClient *c, uint8_t op, uint8_t *rep, size_t rep_cap,
                       size_t *rep_len, GError **errp)
{
    char errmsg[SVM_WIRE_ERRMSG_MAX + 1] = "";
    int err = 0;

    pthread_mutex_lock(&c->lock);
    Slot *s = slot_get(c, &err);
    if (!s) {
        pthread_mutex_unlock(&c->lock);
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-err),
                    "memory server %s: %s: %s", c->address, svm_wire_op_name(op),
                    g_strerror(-err));
        return false;
    }
    s->op = op;
    s->n = 0;
    s->ctrl_rep = rep;
    s->ctrl_cap = rep_cap;
    s->errmsg = errmsg;
    if (op == SVM_OP_STATS) {
        s->frame_prefix = svm_wire_enc_stats_req(s->frame, sizeof(s->frame), s->id, 0);
    } else {
        s->frame_prefix = svm_wire_enc_empty(s->frame, sizeof(s->frame), s->id, op, 0, 0);
    }
    submit(c, s);
    int status = wait_sync(c, s);
    if (status == 0 && rep_len) {
        *rep_len = s->ctrl_len;
    }
    slot_put(c, s);
    pthread_mutex_unlock(&c->lock);
    if (status < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-status),
                    "memory server %s: %s failed: %s%s%s", c->address,
                    svm_wire_op_name(op), g_strerror(-status), *errmsg ? ": " : "",
                    errmsg);
        return false;
    }
    return true;
}

bool svm_memclient_stats(SvmMemClient *c, SvmMemServerStats *out, GError **errp)
{
    g_autofree uint8_t *rep = g_malloc(SVM_WIRE_MAX_FRAME);
    size_t len = 0;
    SvmWireStats st;

    if (!control_op(c, SVM_OP_STATS, rep, SVM_WIRE_MAX_FRAME, &len, errp)) {
        return false;
    }
    if (!svm_wire_dec_stats_rep(rep, len, &st)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "memory server %s: malformed STATS reply", c->address);
        return false;
    }
    memset(out, 0, sizeof(*out));
    out->ns_pages_stored = st.field[SVM_SF_NS_PAGES_STORED];
    out->ns_quota_pages = st.field[SVM_SF_NS_QUOTA_PAGES];
    out->server_pages_stored = st.field[SVM_SF_SERVER_PAGES_STORED];
    out->server_capacity_pages = st.field[SVM_SF_SERVER_CAPACITY_PAGES];
    out->requests = st.field[SVM_SF_REQUESTS];
    out->errors = st.field[SVM_SF_ERRORS];
    out->bytes_in = st.field[SVM_SF_BYTES_IN];
    out->bytes_out = st.field[SVM_SF_BYTES_OUT];
    out->server_metadata_bytes = st.field[SVM_SF_METADATA_BYTES];
    return true;
}

bool svm_memclient_free_namespace(SvmMemClient *c, GError **errp)
{
    return control_op(c, SVM_OP_FREE_NS, NULL, 0, NULL, errp);
}
