/*
 * "rdma" transport, server side (UCX ucp API).
 *
 * Every poll group (worker thread) accepts bootstrap connections on the
 * shared listening socket (EPOLLEXCLUSIVE) and serves the connections it
 * accepted: HELLO/AUTH frames on the bootstrap socket, then an endpoint on
 * the poll group's UCX worker for the client's domain (see RdmaDomain).
 * The loop progresses the workers, reads frames from the ready stream
 * endpoints and answers them through SvmServerHooks.handle, answers MAP
 * itself, serves LOOKUP active messages through SvmServerHooks.locate, and
 * sleeps in epoll on the workers' event fds, the bootstrap sockets and a
 * wake-up eventfd.
 *
 * Keys and what they reach (docs/rdma.md has the whole argument):
 *  - EXTENT mode (RDMA NICs): every VM has its own UCX context, i.e. its
 *    own protection domain on the NIC, for its endpoints and keys.  Each
 *    extent of a namespace is registered on its own (ucp_mem_map), per
 *    connection, the first time a LOOKUP of that
 *    connection finds a page in it, while the namespace is locked.  The
 *    registration is revoked (ucp_mem_unmap) when the extent leaves the
 *    namespace (store hook, before it can be reused), on DETACH, when a
 *    newer owner epoch attaches (fencing), and when the connection goes.
 *    The NIC refuses any access outside a registration.
 *  - POOL mode (UCX shared memory, same host): the pool is one segment UCX
 *    allocated; its single key maps all of it.  Whoever can map it could
 *    ptrace this process anyway, so the OS is the boundary; LOOKUPs still
 *    only answer for the session's own namespace.
 *  - EMULATED (UCX software RMA, SPLITVM_RDMA_INSECURE=1 only): no boundary
 *    at all; for tests.
 * The context never enables UCP_FEATURE_RMA otherwise, so UCX's software
 * RMA handlers (which write wherever a peer asks) are not installed.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include "splitvm/wire.h"
#include "rdma-int.h"
#include "transport-int.h"

#define RX_MAX          (SVM_WIRE_MAX_FRAME + 1024u * 1024u)
#define TX_MAX_INFLIGHT 64u         /* replies not yet sent: stop reading */
#define LOOKUP_QUEUE_MAX 256u
#define EPOLL_BATCH     32

typedef struct RdmaConn RdmaConn;

/*
 * A UCX context endpoints and registrations live in.  In EXTENT mode each
 * VM gets one of its own -- its own protection domain on the NIC -- so a
 * key of one VM's extent is worthless on another VM's connections even if
 * guessed (NIC keys are 32-bit and far from random).  Otherwise everything
 * shares the transport's context.
 */
typedef struct RdmaDomain {
    char vm_id[SVM_WIRE_ID_MAX + 1];
    SvmRdmaContext *ctx;
    bool own;                           /* ctx is ours to free */
    unsigned refs;                      /* poll-group workers (domain_lock) */
} RdmaDomain;

/* The worker of one domain in one poll group. */
typedef struct PgWorker PgWorker;
struct PgWorker {
    PgWorker *next;
    RdmaDomain *dom;
    ucp_worker_h worker;
    int efd;
    ucp_address_t *addr;
    size_t addr_len;
    unsigned conns;
};

/* One extent registered for one connection (EXTENT mode). */
typedef struct RdmaReg RdmaReg;
struct RdmaReg {
    uint64_t extent;
    ucp_context_h ucp;                  /* the connection's domain */
    ucp_mem_h memh;
    RdmaConn *conn;
    RdmaReg *next_in_conn, *next_in_extent;
    bool key_sent;
};

struct SvmServerTransport {
    SvmServerHooks hooks;
    SvmRdmaContext *ctx;
    SvmServerPool pool;
    bool have_pool, watching;
    SvmRdmaMode mode;
    ucp_mem_h pool_memh;            /* EMULATED: our registration of the pool */
    void *pool_rkey;
    size_t pool_rkey_len;
    int listen_fd;
    int port;

    /* Domains by VM id (EXTENT mode) and the shared one. */
    pthread_mutex_t domain_lock;
    GHashTable *domains;
    RdmaDomain shared;

    /* Registrations and the attachment state of every connection. */
    pthread_mutex_t reg_lock;
    GHashTable *regs_by_extent;     /* extent -> RdmaReg list */
    RdmaConn *all_conns;

    uint64_t n_lookups, n_located, n_regs, n_revoked, n_maps;   /* atomics */
    uint64_t regs_now;
};

typedef struct SvmPollGroup {
    SvmServerTransport *t;
    PgWorker *workers;              /* created with the first connection of a domain */
    int epfd, wake_fd;
    int stop;
    RdmaConn *conns;
    GHashTable *by_ep;              /* ucp_ep_h -> RdmaConn (LOOKUP's reply_ep) */
} SvmPollGroup;

/*
 * Nothing a peer sends reaches UCX before it has authenticated: UCX's
 * worker-address parser trusts its input (a malformed address trips an
 * assertion that aborts the process).  So HELLO and AUTH frames travel on
 * the bootstrap socket, through the same frame parser as the tcp
 * transport; only then are worker addresses exchanged.
 */
typedef enum ConnState {
    CONN_PRE,                       /* frames on the bootstrap socket until AUTH */
    CONN_HELLO,                     /* authenticated: waiting for the rdma hello */
    CONN_ACTIVE,                    /* frames on the ucp stream */
} ConnState;

typedef struct PendingLookup {
    uint64_t seq;
    uint32_t n;
    uint64_t pages[SVM_WIRE_MAX_BATCH];
} PendingLookup;

struct RdmaConn {
    SvmPollGroup *pg;
    RdmaConn *prev, *next;              /* in pg->conns */
    RdmaConn *all_prev, *all_next;      /* in t->all_conns (reg_lock) */
    ConnState state;
    int fd;
    char peer[SVM_SOCK_PEER_NAME_MAX];
    uint64_t boot_deadline;

    PgWorker *w;                        /* set once ACTIVE */
    ucp_ep_h ep;
    bool peer_mode;
    void *session;
    uint8_t *rx;
    size_t rx_len, rx_cap;
    bool rx_pending;                    /* UCX holds stream data we have not taken */
    unsigned tx_inflight;
    bool close_after_flush, want_close, zombie;
    GQueue lookups;                     /* PendingLookup, from the AM handler */
    uint64_t rx_time_ns;

    /* What the frames told us (reg_lock). */
    bool authed, attached;
    uint8_t role;
    char vm_id[SVM_WIRE_ID_MAX + 1];
    uint64_t epoch, ns_pages;
    RdmaReg *regs;
};

typedef struct TxBuf {
    RdmaConn *conn;
    size_t len;
    uint8_t data[];
} TxBuf;

/* ---- registrations (EXTENT mode) ---- */

static void reg_free(SvmServerTransport *t, RdmaReg *r)
{
    ucs_status_t st = ucp_mem_unmap(r->ucp, r->memh);
    if (st != UCS_OK) {
        g_warning("rdma: revoking the key of extent %" G_GUINT64_FORMAT ": %s", r->extent,
                  ucs_status_string(st));
    }
    __atomic_fetch_add(&t->n_revoked, 1, __ATOMIC_RELAXED);
    t->regs_now--;
    g_free(r);
}

/* Unlink r from its extent's list (reg_lock held). */
static void reg_unlink_extent(SvmServerTransport *t, RdmaReg *r)
{
    gpointer key = GUINT_TO_POINTER((guint)r->extent);
    RdmaReg *head = g_hash_table_lookup(t->regs_by_extent, key);
    RdmaReg **pp = &head;
    while (*pp && *pp != r) {
        pp = &(*pp)->next_in_extent;
    }
    if (*pp) {
        *pp = r->next_in_extent;
    }
    if (head) {
        g_hash_table_insert(t->regs_by_extent, key, head);
    } else {
        g_hash_table_remove(t->regs_by_extent, key);
    }
}

/* Revoke every key of c (reg_lock held): DETACH, fencing, connection gone. */
static void revoke_conn(SvmServerTransport *t, RdmaConn *c)
{
    while (c->regs) {
        RdmaReg *r = c->regs;
        c->regs = r->next_in_conn;
        reg_unlink_extent(t, r);
        reg_free(t, r);
    }
}

/* Store hook: the extent left its namespace (called before it is reused). */
static void on_extent_released(void *opaque, uint64_t extent)
{
    SvmServerTransport *t = opaque;

    if (t->mode == SVM_RDMA_MODE_POOL) {
        /* Shared memory keeps its pages after MADV_DONTNEED; give them back. */
        uint8_t *p = (uint8_t *)t->pool.base + extent * t->pool.extent_len;
        madvise(p, t->pool.extent_len, MADV_REMOVE);
        return;
    }
    if (t->mode != SVM_RDMA_MODE_EXTENT) {
        return;
    }
    pthread_mutex_lock(&t->reg_lock);
    RdmaReg *r = g_hash_table_lookup(t->regs_by_extent, GUINT_TO_POINTER((guint)extent));
    g_hash_table_remove(t->regs_by_extent, GUINT_TO_POINTER((guint)extent));
    while (r) {
        RdmaReg *next = r->next_in_extent;
        RdmaReg **pp = &r->conn->regs;
        while (*pp && *pp != r) {
            pp = &(*pp)->next_in_conn;
        }
        if (*pp) {
            *pp = r->next_in_conn;
        }
        reg_free(t, r);
        r = next;
    }
    pthread_mutex_unlock(&t->reg_lock);
}

/* Keys a LOOKUP reply must carry. */
typedef struct LookupKeys {
    SvmServerTransport *t;
    RdmaConn *conn;
    RdmaReg *send[SVM_WIRE_MAX_BATCH];
    unsigned nsend;
    bool failed;
} LookupKeys;

/* locate() callback, namespace locked: make sure the connection has a key
 * for this extent. */
static void register_extent(void *opaque, uint64_t extent)
{
    LookupKeys *lk = opaque;
    SvmServerTransport *t = lk->t;
    RdmaConn *c = lk->conn;

    if (t->mode != SVM_RDMA_MODE_EXTENT || lk->failed) {
        return;
    }
    pthread_mutex_lock(&t->reg_lock);
    RdmaReg *r = g_hash_table_lookup(t->regs_by_extent, GUINT_TO_POINTER((guint)extent));
    while (r && r->conn != c) {
        r = r->next_in_extent;
    }
    if (!r && c->attached) {
        ucp_mem_map_params_t mp = {
            .field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH,
            .address = (uint8_t *)t->pool.base + extent * t->pool.extent_len,
            .length = t->pool.extent_len,
        };
        ucp_mem_h memh;
        ucs_status_t st = ucp_mem_map(c->w->dom->ctx->ucp, &mp, &memh);
        if (st != UCS_OK) {
            g_warning("rdma: cannot register extent %" G_GUINT64_FORMAT ": %s", extent,
                      ucs_status_string(st));
            lk->failed = true;
            pthread_mutex_unlock(&t->reg_lock);
            return;
        }
        r = g_new0(RdmaReg, 1);
        r->extent = extent;
        r->memh = memh;
        r->ucp = c->w->dom->ctx->ucp;
        r->conn = c;
        r->next_in_conn = c->regs;
        c->regs = r;
        r->next_in_extent = g_hash_table_lookup(t->regs_by_extent,
                                                GUINT_TO_POINTER((guint)extent));
        g_hash_table_insert(t->regs_by_extent, GUINT_TO_POINTER((guint)extent), r);
        t->regs_now++;
        __atomic_fetch_add(&t->n_regs, 1, __ATOMIC_RELAXED);
    }
    if (r && !r->key_sent) {
        bool listed = false;
        for (unsigned i = 0; i < lk->nsend; i++) {
            listed |= lk->send[i] == r;
        }
        if (!listed && lk->nsend < SVM_WIRE_MAX_BATCH) {
            lk->send[lk->nsend++] = r;
        }
    }
    pthread_mutex_unlock(&t->reg_lock);
}

/* ---- sending ---- */

static void conn_close(RdmaConn *c);

static void conn_maybe_free(RdmaConn *c)
{
    if (c->zombie && c->tx_inflight == 0) {
        g_free(c);
    }
}

static void tx_done(void *request, ucs_status_t status, void *user_data)
{
    TxBuf *tb = user_data;
    RdmaConn *c = tb->conn;

    c->tx_inflight--;
    g_free(tb);
    conn_maybe_free(c);
}

static TxBuf *tx_new(RdmaConn *c, size_t cap)
{
    TxBuf *tb = g_malloc(sizeof(TxBuf) + cap);
    tb->conn = c;
    tb->len = 0;
    return tb;
}

/* Queue a stream send of tb (ownership passes). */
static void tx_stream(RdmaConn *c, TxBuf *tb)
{
    ucp_request_param_t p = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA,
        .cb.send = tx_done,
        .user_data = tb,
    };
    c->tx_inflight++;
    void *req = ucp_stream_send_nbx(c->ep, tb->data, tb->len, &p);
    if (req == NULL) {
        c->tx_inflight--;
        g_free(tb);
    } else if (UCS_PTR_IS_ERR(req)) {
        c->tx_inflight--;
        g_free(tb);
        g_warning("rdma: %s: sending a reply: %s", c->peer,
                  ucs_status_string(UCS_PTR_STATUS(req)));
        c->want_close = true;
    } else {
        ucp_request_free(req);          /* tx_done still runs */
    }
}

/*
 * Replies before ACTIVE go straight onto the bootstrap socket, never
 * waiting: a client reads each reply of its login before it sends the next
 * request, so a socket too full to take a small reply means a peer that
 * does not read (and would otherwise stall this poll group).
 */
static bool boot_send_all(RdmaConn *c, const void *buf, size_t len)
{
    size_t done = 0;

    while (done < len) {
        ssize_t r = send(c->fd, (const uint8_t *)buf + done, len - done,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r > 0) {
            done += (size_t)r;
        } else if (r < 0 && errno == EINTR) {
            continue;
        } else {
            if (r < 0 && errno == EAGAIN) {
                g_warning("rdma: %s: does not read its replies; closing", c->peer);
            }
            return false;
        }
    }
    return true;
}

/* A reply goes on the ucp stream once active, else on the bootstrap socket. */
static void emit(RdmaConn *c, TxBuf *tb)
{
    if (c->state == CONN_ACTIVE) {
        tx_stream(c, tb);
        return;
    }
    if (!boot_send_all(c, tb->data, tb->len)) {
        c->want_close = true;
    }
    g_free(tb);
}

/* ---- what the frames tell the transport ---- */

typedef struct Sniff {
    SvmWireAuth auth;
    bool have_auth;
    SvmWireAttach attach;
    bool have_attach;
} Sniff;

static void sniff_request(const SvmWireHdr *h, const uint8_t *body, size_t blen, Sniff *s)
{
    memset(s, 0, sizeof(*s));
    if (h->op == SVM_OP_AUTH) {
        s->have_auth = svm_wire_dec_auth_req(body, blen, &s->auth);
    } else if (h->op == SVM_OP_ATTACH) {
        s->have_attach = svm_wire_dec_attach_req(body, blen, &s->attach);
    }
}

static void sniff_reply(SvmServerTransport *t, RdmaConn *c, const SvmWireHdr *h,
                        const Sniff *s, const uint8_t *rep, size_t rlen)
{
    SvmWireHdr rh;

    if (rlen < SVM_WIRE_HDR_SIZE) {
        return;
    }
    svm_wire_hdr_get(rep, &rh);
    if (rh.status != SVM_ST_OK) {
        return;
    }
    pthread_mutex_lock(&t->reg_lock);
    if (h->op == SVM_OP_AUTH && s->have_auth) {
        c->authed = true;
        c->role = s->auth.role;
        g_strlcpy(c->vm_id, s->auth.id, sizeof(c->vm_id));
    } else if (h->op == SVM_OP_ATTACH && s->have_attach) {
        SvmWireAttach a;
        if (svm_wire_dec_attach_rep(rep + SVM_WIRE_HDR_SIZE, rlen - SVM_WIRE_HDR_SIZE, &a)) {
            c->attached = true;
            c->epoch = s->attach.owner_epoch;
            c->ns_pages = a.npages;
        }
        /* A newer owner fences the older ones: their keys go now, not
         * when they next try to write. */
        for (RdmaConn *o = t->all_conns; o && c->epoch; o = o->all_next) {
            if (o != c && o->attached && !strcmp(o->vm_id, c->vm_id) &&
                o->epoch < c->epoch && o->regs) {
                g_message("rdma: %s: VM '%s' attached with owner epoch %" G_GUINT64_FORMAT
                          "; revoking the keys of %s (epoch %" G_GUINT64_FORMAT ")",
                          c->peer, c->vm_id, c->epoch, o->peer, o->epoch);
                revoke_conn(t, o);
            }
        }
    } else if (h->op == SVM_OP_DETACH) {
        c->attached = false;
        revoke_conn(t, c);
    }
    pthread_mutex_unlock(&t->reg_lock);
}

/* MAP: the one-sided mode and the pool geometry (attached sessions only). */
static TxBuf *answer_map(SvmServerTransport *t, RdmaConn *c, const SvmWireHdr *h)
{
    size_t cap = SVM_WIRE_HDR_SIZE + SVM_RDMA_MAP_FIXED + t->pool_rkey_len +
                 SVM_WIRE_ERRMSG_MAX + 64;
    TxBuf *tb = tx_new(c, cap);

    pthread_mutex_lock(&t->reg_lock);
    bool attached = c->attached;
    uint64_t ns_pages = c->ns_pages;
    pthread_mutex_unlock(&t->reg_lock);
    if (h->len != SVM_WIRE_HDR_SIZE) {
        tb->len = svm_wire_enc_error(tb->data, cap, h->req_id, SVM_OP_MAP, SVM_ST_BAD_FRAME,
                                     "MAP has no body");
        return tb;
    }
    if (!attached) {
        tb->len = svm_wire_enc_error(tb->data, cap, h->req_id, SVM_OP_MAP,
                                     SVM_ST_NOT_ATTACHED, "ATTACH before MAP");
        return tb;
    }
    bool with_key = t->mode == SVM_RDMA_MODE_POOL || t->mode == SVM_RDMA_MODE_EMULATED;
    size_t klen = with_key ? t->pool_rkey_len : 0;
    size_t len = SVM_WIRE_HDR_SIZE + SVM_RDMA_MAP_FIXED + klen;
    uint8_t *b = tb->data + SVM_WIRE_HDR_SIZE;
    svm_wire_hdr_put(tb->data, (uint32_t)len, SVM_OP_MAP, SVM_WIRE_F_REPLY, SVM_ST_OK,
                     h->req_id);
    memset(b, 0, SVM_RDMA_MAP_FIXED);
    svm_put_le32(b, SVM_RDMA_MAP_MAGIC);
    svm_put_le16(b + 4, SVM_RDMA_MAP_VERSION);
    b[6] = (uint8_t)t->mode;
    svm_put_le64(b + 8, (uint64_t)(uintptr_t)t->pool.base);
    svm_put_le64(b + 16, t->pool.len);
    svm_put_le64(b + 24, ns_pages);
    svm_put_le32(b + 32, SVM_WIRE_PAGE_SIZE);
    svm_put_le32(b + 36, (uint32_t)(t->pool.extent_len / SVM_WIRE_PAGE_SIZE));
    svm_put_le32(b + 40, (uint32_t)klen);
    if (klen) {
        memcpy(b + SVM_RDMA_MAP_FIXED, t->pool_rkey, klen);
    }
    tb->len = len;
    __atomic_fetch_add(&t->n_maps, 1, __ATOMIC_RELAXED);
    return tb;
}

/* ---- LOOKUP ---- */

static ucs_status_t on_lookup(void *arg, const void *header, size_t hlen, void *data,
                              size_t len, const ucp_am_recv_param_t *param)
{
    SvmPollGroup *pg = arg;
    RdmaConn *c = param->reply_ep ? g_hash_table_lookup(pg->by_ep, param->reply_ep) : NULL;

    if (!c || c->state != CONN_ACTIVE || c->want_close) {
        return UCS_OK;
    }
    uint32_t n = hlen >= SVM_RDMA_LOOKUP_HDR ? svm_get_le32((const uint8_t *)header + 8) : 0;
    if ((param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) || n == 0 ||
        n > SVM_WIRE_MAX_BATCH || len != 8u * n ||
        g_queue_get_length(&c->lookups) >= LOOKUP_QUEUE_MAX) {
        /* Not something our client sends: drop the connection. */
        g_warning("rdma: %s: malformed LOOKUP (%zu header bytes, %zu data bytes); "
                  "closing", c->peer, hlen, len);
        c->want_close = true;
        return UCS_OK;
    }
    PendingLookup *pl = g_new(PendingLookup, 1);
    pl->seq = svm_get_le64(header);
    pl->n = n;
    for (uint32_t i = 0; i < n; i++) {
        pl->pages[i] = svm_get_le64((const uint8_t *)data + 8 * i);
    }
    g_queue_push_tail(&c->lookups, pl);
    return UCS_OK;
}

static void answer_lookup(SvmServerTransport *t, RdmaConn *c, PendingLookup *pl)
{
    uint64_t pool_pages[SVM_WIRE_MAX_BATCH];
    char msg[SVM_WIRE_ERRMSG_MAX] = "";
    LookupKeys lk = { .t = t, .conn = c };
    int status;

    __atomic_fetch_add(&t->n_lookups, 1, __ATOMIC_RELAXED);
    pthread_mutex_lock(&t->reg_lock);
    bool attached = c->attached;
    pthread_mutex_unlock(&t->reg_lock);
    if (t->mode == SVM_RDMA_MODE_NONE) {
        status = SVM_ST_UNSUPPORTED;
        g_strlcpy(msg, "this server offers no one-sided access", sizeof(msg));
    } else if (!attached || !t->hooks.locate) {
        status = SVM_ST_NOT_ATTACHED;
        g_strlcpy(msg, "ATTACH before LOOKUP", sizeof(msg));
    } else {
        status = t->hooks.locate(c->session, pl->pages, pl->n, pool_pages, register_extent,
                                 &lk, msg, sizeof(msg));
        if (status == SVM_ST_OK && lk.failed) {
            status = SVM_ST_INTERNAL;
            g_strlcpy(msg, "cannot register the extent", sizeof(msg));
        }
    }

    size_t cap = SVM_RDMA_LOOKUP_REP_HDR + SVM_RDMA_LOOKUP_REP_MAX;
    TxBuf *tb = tx_new(c, cap);
    uint8_t *hdr = tb->data;
    uint8_t *body = tb->data + SVM_RDMA_LOOKUP_REP_HDR;
    size_t blen = 0;
    unsigned nkeys = 0;
    if (status == SVM_ST_OK) {
        for (uint32_t i = 0; i < pl->n; i++) {
            uint32_t v = pool_pages[i] == UINT64_MAX ? 0 : (uint32_t)(pool_pages[i] + 1);
            svm_put_le32(body + blen, v);
            blen += 4;
        }
        __atomic_fetch_add(&t->n_located, pl->n, __ATOMIC_RELAXED);
        pthread_mutex_lock(&t->reg_lock);
        for (unsigned k = 0; k < lk.nsend; k++) {
            RdmaReg *r = lk.send[k];
            /* The registration may have been revoked since (extent released,
             * fenced): only send keys still in c's list. */
            RdmaReg *q = c->regs;
            while (q && q != r) {
                q = q->next_in_conn;
            }
            if (!q) {
                continue;
            }
            void *blob;
            size_t klen;
            if (ucp_rkey_pack(r->ucp, r->memh, &blob, &klen) != UCS_OK ||
                klen > SVM_RDMA_RKEY_MAX || blen + 8 + klen > SVM_RDMA_LOOKUP_REP_MAX) {
                continue;
            }
            svm_put_le32(body + blen, (uint32_t)r->extent);
            svm_put_le32(body + blen + 4, (uint32_t)klen);
            memcpy(body + blen + 8, blob, klen);
            blen += 8 + klen;
            ucp_rkey_buffer_release(blob);
            r->key_sent = true;
            nkeys++;
        }
        pthread_mutex_unlock(&t->reg_lock);
    } else {
        blen = strnlen(msg, sizeof(msg));
        memcpy(body, msg, blen);
    }
    svm_put_le64(hdr, pl->seq);
    svm_put_le16(hdr + 8, (uint16_t)status);
    svm_put_le16(hdr + 10, 0);
    svm_put_le32(hdr + 12, status == SVM_ST_OK ? pl->n : 0);
    svm_put_le32(hdr + 16, nkeys);
    svm_put_le32(hdr + 20, 0);

    ucp_request_param_t p = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA,
        .cb.send = tx_done,
        .user_data = tb,
    };
    c->tx_inflight++;
    void *req = ucp_am_send_nbx(c->ep, SVM_RDMA_AM_LOOKUP_REP, hdr, SVM_RDMA_LOOKUP_REP_HDR,
                                body, blen, &p);
    if (req == NULL) {
        c->tx_inflight--;
        g_free(tb);
    } else if (UCS_PTR_IS_ERR(req)) {
        c->tx_inflight--;
        g_free(tb);
        c->want_close = true;
    } else {
        ucp_request_free(req);
    }
}

/* ---- frames ---- */

static void conn_process(RdmaConn *c)
{
    SvmServerTransport *t = c->pg->t;
    const SvmServerHooks *hooks = &t->hooks;
    size_t pos = 0;

    while (!c->want_close && !c->close_after_flush && c->tx_inflight < TX_MAX_INFLIGHT) {
        SvmWireHdr h;
        SvmWirePeek pk = svm_wire_peek(c->rx + pos, c->rx_len - pos, &h);
        if (pk == SVM_PEEK_NEED_MORE) {
            break;
        }
        if (pk == SVM_PEEK_BAD) {
            TxBuf *tb = tx_new(c, SVM_WIRE_BAD_LENGTH_REPLY_MAX);
            tb->len = svm_wire_enc_bad_length(tb->data, SVM_WIRE_BAD_LENGTH_REPLY_MAX, &h);
            emit(c, tb);
            if (hooks->account) {
                hooks->account(c->session, UINT64_MAX, c->rx_len - pos, 0);
            }
            c->close_after_flush = true;
            pos = c->rx_len;
            break;
        }
        const uint8_t *frame = c->rx + pos;
        TxBuf *tb;
        if (h.op == SVM_OP_MAP && !(h.flags & SVM_WIRE_F_REPLY)) {
            tb = answer_map(t, c, &h);
        } else {
            Sniff s;
            bool close_after = false;
            size_t bound = svm_wire_reply_bound(&h);
            tb = tx_new(c, bound);
            sniff_request(&h, frame + SVM_WIRE_HDR_SIZE, h.len - SVM_WIRE_HDR_SIZE, &s);
            tb->len = hooks->handle(c->session, frame, h.len, tb->data, bound, &close_after);
            sniff_reply(t, c, &h, &s, tb->data, tb->len);
            if (close_after) {
                c->close_after_flush = true;
            }
        }
        pos += h.len;
        if (hooks->account) {
            hooks->account(c->session, svm_rdma_now_ns() - c->rx_time_ns, h.len, tb->len);
        }
        if (tb->len) {
            emit(c, tb);
        } else {
            g_free(tb);
        }
        if (c->state == CONN_PRE && c->authed) {
            /* What follows on the socket is the rdma hello, not frames. */
            c->state = CONN_HELLO;
            break;
        }
    }
    if (pos > 0) {
        memmove(c->rx, c->rx + pos, c->rx_len - pos);
        c->rx_len -= pos;
    }
}

/* Take stream data from UCX and serve the frames in it. */
static void conn_pull(RdmaConn *c)
{
    for (;;) {
        conn_process(c);
        if (c->want_close || c->close_after_flush) {
            return;
        }
        if (c->tx_inflight >= TX_MAX_INFLIGHT) {
            c->rx_pending = true;       /* come back when replies have gone */
            return;
        }
        size_t len = 0;
        void *d = ucp_stream_recv_data_nb(c->ep, &len);
        if (d == NULL) {
            c->rx_pending = false;
            return;
        }
        if (UCS_PTR_IS_ERR(d)) {
            g_warning("rdma: %s: receiving: %s", c->peer, ucs_status_string(UCS_PTR_STATUS(d)));
            c->want_close = true;
            return;
        }
        if (c->rx_len + len > RX_MAX) {
            ucp_stream_data_release(c->ep, d);
            g_warning("rdma: %s: more than %u bytes of unparsed frames; closing", c->peer,
                      RX_MAX);
            c->want_close = true;
            return;
        }
        if (c->rx_len + len > c->rx_cap) {
            c->rx_cap = MAX(c->rx_len + len, c->rx_cap * 2);
            c->rx = g_realloc(c->rx, c->rx_cap);
        }
        memcpy(c->rx + c->rx_len, d, len);
        c->rx_len += len;
        c->rx_time_ns = svm_rdma_now_ns();
        ucp_stream_data_release(c->ep, d);
    }
}

/* ---- domains and their workers ---- */

static ucs_status_t on_lookup(void *arg, const void *header, size_t hlen, void *data,
                              size_t len, const ucp_am_recv_param_t *param);

/* epoll tags: workers' event fds carry their PgWorker with this bit set. */
#define EV_WORKER   1ull

static RdmaDomain *domain_get(SvmServerTransport *t, const RdmaConn *c, GError **errp)
{
    bool own = t->mode == SVM_RDMA_MODE_EXTENT && c->role == SVM_ROLE_VM;
    RdmaDomain *d = &t->shared;

    pthread_mutex_lock(&t->domain_lock);
    if (own) {
        d = g_hash_table_lookup(t->domains, c->vm_id);
        if (!d) {
            SvmRdmaContext *ctx = svm_rdma_context_new(SVM_RDMA_SERVER, errp);
            if (!ctx) {
                pthread_mutex_unlock(&t->domain_lock);
                return NULL;
            }
            d = g_new0(RdmaDomain, 1);
            g_strlcpy(d->vm_id, c->vm_id, sizeof(d->vm_id));
            d->ctx = ctx;
            d->own = true;
            g_hash_table_insert(t->domains, d->vm_id, d);
            g_message("rdma: VM '%s' gets a UCX context (protection domain) of its own",
                      d->vm_id);
        }
    }
    d->refs++;
    pthread_mutex_unlock(&t->domain_lock);
    return d;
}

static void domain_put(SvmServerTransport *t, RdmaDomain *d)
{
    pthread_mutex_lock(&t->domain_lock);
    if (--d->refs == 0 && d->own) {
        g_hash_table_remove(t->domains, d->vm_id);
        svm_rdma_context_free(d->ctx);
        g_free(d);
    }
    pthread_mutex_unlock(&t->domain_lock);
}

/* The poll group's worker for c's domain, created on first use. */
static PgWorker *pg_worker_get(SvmPollGroup *pg, const RdmaConn *c, GError **errp)
{
    SvmServerTransport *t = pg->t;
    bool own = t->mode == SVM_RDMA_MODE_EXTENT && c->role == SVM_ROLE_VM;

    for (PgWorker *w = pg->workers; w; w = w->next) {
        if (own ? w->dom->own && !strcmp(w->dom->vm_id, c->vm_id) : !w->dom->own) {
            w->conns++;
            return w;
        }
    }
    RdmaDomain *dom = domain_get(t, c, errp);
    if (!dom) {
        return NULL;
    }
    PgWorker *w = g_new0(PgWorker, 1);
    w->dom = dom;
    w->worker = svm_rdma_worker_create(dom->ctx, UCS_THREAD_MODE_SERIALIZED, &w->efd, errp);
    if (!w->worker) {
        domain_put(t, dom);
        g_free(w);
        return NULL;
    }
    ucp_am_handler_param_t ah = {
        .field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                      UCP_AM_HANDLER_PARAM_FIELD_ARG,
        .id = SVM_RDMA_AM_LOOKUP,
        .cb = on_lookup,
        .arg = pg,
    };
    ucs_status_t st = ucp_worker_set_am_recv_handler(w->worker, &ah);
    if (st == UCS_OK) {
        st = ucp_worker_get_address(w->worker, &w->addr, &w->addr_len);
    }
    if (st != UCS_OK) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_FAILED, "rdma: worker setup: %s",
                    ucs_status_string(st));
        ucp_worker_destroy(w->worker);
        domain_put(t, dom);
        g_free(w);
        return NULL;
    }
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = (uintptr_t)w | EV_WORKER };
    epoll_ctl(pg->epfd, EPOLL_CTL_ADD, w->efd, &ev);
    w->conns = 1;
    w->next = pg->workers;
    pg->workers = w;
    return w;
}

static void pg_worker_put(SvmPollGroup *pg, PgWorker *w)
{
    if (--w->conns) {
        return;
    }
    PgWorker **pp = &pg->workers;
    while (*pp != w) {
        pp = &(*pp)->next;
    }
    *pp = w->next;
    epoll_ctl(pg->epfd, EPOLL_CTL_DEL, w->efd, NULL);
    ucp_worker_release_address(w->worker, w->addr);
    ucp_worker_destroy(w->worker);
    domain_put(pg->t, w->dom);
    g_free(w);
}

/* ---- connections ---- */

static void conn_link_all(SvmServerTransport *t, RdmaConn *c)
{
    pthread_mutex_lock(&t->reg_lock);
    c->all_next = t->all_conns;
    if (t->all_conns) {
        t->all_conns->all_prev = c;
    }
    t->all_conns = c;
    pthread_mutex_unlock(&t->reg_lock);
}

static void conn_close(RdmaConn *c)
{
    SvmPollGroup *pg = c->pg;
    SvmServerTransport *t = pg->t;

    if (c->prev) {
        c->prev->next = c->next;
    } else {
        pg->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    if (c->state == CONN_ACTIVE) {
        pthread_mutex_lock(&t->reg_lock);
        if (c->all_prev) {
            c->all_prev->all_next = c->all_next;
        } else {
            t->all_conns = c->all_next;
        }
        if (c->all_next) {
            c->all_next->all_prev = c->all_prev;
        }
        c->attached = false;
        revoke_conn(t, c);
        pthread_mutex_unlock(&t->reg_lock);
    }
    if (c->ep) {
        g_hash_table_remove(pg->by_ep, c->ep);
        /* Flushed if the client still listens (replies before a requested
         * close), forced otherwise where the transport allows it. */
        svm_rdma_ep_close(c->w->worker, c->w->efd, c->ep, c->peer_mode, !c->close_after_flush);
        c->ep = NULL;
    }
    if (c->w) {
        pg_worker_put(pg, c->w);
        c->w = NULL;
    }
    if (c->session) {
        t->hooks.session_close(c->session);
        c->session = NULL;
    }
    epoll_ctl(pg->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    PendingLookup *pl;
    while ((pl = g_queue_pop_head(&c->lookups))) {
        g_free(pl);
    }
    g_free(c->rx);
    c->zombie = true;
    if (c->tx_inflight) {
        g_warning("rdma: %s: %u replies still queued at close", c->peer, c->tx_inflight);
    }
    conn_maybe_free(c);
}

/* UCX found the client dead (peer error mode only); runs inside progress. */
static void on_ep_error(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    RdmaConn *c = arg;
    c->want_close = true;
}

static void boot_refuse(RdmaConn *c, const char *why)
{
    uint8_t hdr[SVM_RDMA_BOOT_HDR];
    g_warning("rdma: %s: refusing the connection: %s", c->peer, why);
    svm_rdma_boot_hdr_put(hdr, SVM_RDMA_BOOT_REFUSED, (uint32_t)strlen(why));
    if (boot_send_all(c, hdr, sizeof(hdr))) {
        boot_send_all(c, why, strlen(why));
    }
}

/* The authenticated client's rdma hello is complete: endpoint, our hello. */
static bool conn_activate(RdmaConn *c, const void *peer_addr)
{
    SvmPollGroup *pg = c->pg;
    SvmServerTransport *t = pg->t;
    uint8_t hdr[SVM_RDMA_BOOT_HDR];
    g_autoptr(GError) err = NULL;

    c->w = pg_worker_get(pg, c, &err);
    if (!c->w) {
        boot_refuse(c, err->message);
        return false;
    }
    ucs_status_t st = svm_rdma_ep_create(c->w->dom->ctx, c->w->worker, peer_addr, c,
                                         on_ep_error, &c->ep, &c->peer_mode);
    if (st != UCS_OK) {
        c->ep = NULL;
        g_autofree char *why = g_strdup_printf(
            "the memory server cannot reach this client over UCX (%s); server transports: %s",
            ucs_status_string(st), t->ctx->resources);
        boot_refuse(c, why);
        return false;
    }
    g_hash_table_insert(pg->by_ep, c->ep, c);
    svm_rdma_boot_hdr_put(hdr, SVM_RDMA_BOOT_OK, (uint32_t)c->w->addr_len);
    if (!boot_send_all(c, hdr, sizeof(hdr)) ||
        !boot_send_all(c, c->w->addr, c->w->addr_len)) {
        return false;
    }
    c->state = CONN_ACTIVE;
    c->rx_len = 0;
    conn_link_all(t, c);
    return true;
}

/* Bytes on the bootstrap socket before ACTIVE: frames, then the rdma hello. */
static void conn_boot_read(RdmaConn *c)
{
    for (;;) {
        if (c->rx_len == c->rx_cap) {
            if (c->rx_cap >= RX_MAX) {
                c->want_close = true;       /* conn_process sent BAD_FRAME or will */
                return;
            }
            c->rx_cap = MIN(c->rx_cap * 2, (size_t)RX_MAX);
            c->rx = g_realloc(c->rx, c->rx_cap);
        }
        ssize_t r = recv(c->fd, c->rx + c->rx_len, c->rx_cap - c->rx_len, MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
            c->want_close = true;           /* gone (or reset) before ACTIVE */
            return;
        }
        if (r < 0) {
            return;
        }
        c->rx_len += (size_t)r;
        c->rx_time_ns = svm_rdma_now_ns();
        if (c->state == CONN_PRE) {
            conn_process(c);
        }
        if (c->state != CONN_HELLO || c->rx_len < SVM_RDMA_BOOT_HDR) {
            continue;
        }
        uint16_t status;
        uint32_t len;
        if (!svm_rdma_boot_hdr_parse(c->rx, &status, &len) || status != SVM_RDMA_BOOT_OK ||
            len == 0) {
            SvmWireHdr h;
            g_warning("rdma: %s: expected the rdma hello after AUTH; closing", c->peer);
            if (svm_wire_peek(c->rx, c->rx_len, &h) != SVM_PEEK_BAD) {
                /* A tcp-transport client: tell it what it talks to. */
                uint8_t rep[SVM_WIRE_HDR_SIZE + 2 + SVM_WIRE_ERRMSG_MAX];
                size_t n = svm_wire_enc_error(rep, sizeof(rep), h.req_id, h.op,
                                              SVM_ST_UNSUPPORTED,
                                              "this memory server uses the rdma transport: "
                                              "connect to rdma:HOST:PORT");
                boot_send_all(c, rep, n);
            }
            c->want_close = true;
            return;
        }
        if (c->rx_len < SVM_RDMA_BOOT_HDR + len) {
            continue;
        }
        if (c->rx_len > SVM_RDMA_BOOT_HDR + len) {
            g_warning("rdma: %s: bytes after the rdma hello; closing", c->peer);
            c->want_close = true;
            return;
        }
        if (!conn_activate(c, c->rx + SVM_RDMA_BOOT_HDR)) {
            c->want_close = true;
        }
        return;
    }
}

static void on_accept(SvmPollGroup *pg)
{
    SvmServerTransport *t = pg->t;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int fd = accept4(t->listen_fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
            g_warning("rdma: accept: %s", g_strerror(errno));
        }
        return;
    }
    RdmaConn *c = g_new0(RdmaConn, 1);
    c->pg = pg;
    c->fd = fd;
    c->state = CONN_PRE;
    c->boot_deadline = svm_rdma_now_ns() + SVM_RDMA_BOOT_TIMEOUT_MS * 1000000ull;
    c->rx_cap = 64 * 1024;
    c->rx = g_malloc(c->rx_cap);
    g_queue_init(&c->lookups);
    svm_sock_peer_name(&ss, c->peer, sizeof(c->peer));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->session = t->hooks.session_open(t->hooks.opaque, c->peer);
    if (!c->session) {
        close(fd);
        g_queue_clear(&c->lookups);
        g_free(c->rx);
        g_free(c);
        return;
    }
    c->next = pg->conns;
    if (pg->conns) {
        pg->conns->prev = c;
    }
    pg->conns = c;
    struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.ptr = c };
    epoll_ctl(pg->epfd, EPOLL_CTL_ADD, fd, &ev);
    conn_boot_read(c);
}

/* Bootstrap socket readable while active: the client went away. */
static void conn_boot_event(RdmaConn *c)
{
    char b[64];
    ssize_t r = recv(c->fd, b, sizeof(b), MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }
    if (r > 0) {
        g_warning("rdma: %s: unexpected bytes on the bootstrap socket; closing", c->peer);
    }
    c->want_close = true;
}

/* ---- transport ---- */

static struct {
    pthread_mutex_t lock;
    SvmRdmaContext *ctx;
    ucp_mem_h memh;
    void *base;
    size_t len;
} shm_pool = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void *rdma_pool_alloc(size_t len, GError **errp)
{
    SvmRdmaContext *ctx = svm_rdma_context_get(SVM_RDMA_SERVER, errp);
    if (!ctx) {
        return NULL;
    }
    if (ctx->has_hw_rma || !ctx->has_shm_rma) {
        /* NICs register any memory; without shared memory nothing to do. */
        svm_rdma_context_put(ctx);
        return NULL;
    }
    ucp_mem_map_params_t mp = {
        .field_mask = UCP_MEM_MAP_PARAM_FIELD_LENGTH | UCP_MEM_MAP_PARAM_FIELD_FLAGS,
        .length = len,
        .flags = UCP_MEM_MAP_ALLOCATE,
    };
    ucp_mem_h memh;
    ucs_status_t st = ucp_mem_map(ctx->ucp, &mp, &memh);
    ucp_mem_attr_t ma = { .field_mask = UCP_MEM_ATTR_FIELD_ADDRESS };
    if (st == UCS_OK) {
        st = ucp_mem_query(memh, &ma);
    }
    if (st != UCS_OK) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                    "rdma: cannot allocate a %zu-byte pool in UCX shared memory (sysv or "
                    "posix): %s; lower the capacity or raise kernel.shmmax / the size of "
                    "/dev/shm", len, ucs_status_string(st));
        svm_rdma_context_put(ctx);
        return NULL;
    }
    pthread_mutex_lock(&shm_pool.lock);
    shm_pool.ctx = ctx;
    shm_pool.memh = memh;
    shm_pool.base = ma.address;
    shm_pool.len = len;
    pthread_mutex_unlock(&shm_pool.lock);
    return ma.address;
}

static void rdma_pool_free(void *base, size_t len)
{
    pthread_mutex_lock(&shm_pool.lock);
    if (shm_pool.memh && shm_pool.base == base) {
        ucp_mem_unmap(shm_pool.ctx->ucp, shm_pool.memh);
        svm_rdma_context_put(shm_pool.ctx);
        shm_pool.memh = NULL;
        shm_pool.ctx = NULL;
        shm_pool.base = NULL;
    }
    pthread_mutex_unlock(&shm_pool.lock);
}

static void rdma_destroy(SvmServerTransport *t);

static bool pack_key(SvmServerTransport *t, ucp_mem_h memh, GError **errp)
{
    void *blob;
    size_t len;
    ucs_status_t st = ucp_rkey_pack(t->ctx->ucp, memh, &blob, &len);
    if (st != UCS_OK || len > SVM_RDMA_RKEY_MAX) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_FAILED, "rdma: cannot pack the pool key: %s",
                    st != UCS_OK ? ucs_status_string(st) : "too large");
        if (st == UCS_OK) {
            ucp_rkey_buffer_release(blob);
        }
        return false;
    }
    t->pool_rkey = g_memdup2(blob, len);
    t->pool_rkey_len = len;
    ucp_rkey_buffer_release(blob);
    return true;
}

static SvmServerTransport *rdma_create(const SvmServerHooks *hooks, const SvmServerPool *pool,
                                       GError **errp)
{
    SvmServerTransport *t = g_new0(SvmServerTransport, 1);
    t->hooks = *hooks;
    t->listen_fd = -1;
    pthread_mutex_init(&t->reg_lock, NULL);
    pthread_mutex_init(&t->domain_lock, NULL);
    t->regs_by_extent = g_hash_table_new(g_direct_hash, g_direct_equal);
    t->domains = g_hash_table_new(g_str_hash, g_str_equal);
    t->ctx = svm_rdma_context_get(SVM_RDMA_SERVER, errp);
    if (!t->ctx) {
        rdma_destroy(t);
        return NULL;
    }
    t->shared.ctx = t->ctx;
    if (pool && pool->base && pool->len && pool->extent_len) {
        t->pool = *pool;
        t->have_pool = true;
    }

    const char *why_none = NULL;
    /* Tests run the NIC mode's key bookkeeping without a NIC (UCX's software
     * RMA ignores the keys, so only together with the insecure opt-in). */
    const char *force = getenv("SPLITVM_RDMA_FORCE_EXTENT");
    bool force_extent = t->ctx->insecure && force && !strcmp(force, "1");
    if (!t->have_pool || !hooks->locate) {
        why_none = "the server gave the transport no pool";
    } else if (t->ctx->has_hw_rma || force_extent) {
        t->mode = pool->watch_extents ? SVM_RDMA_MODE_EXTENT : SVM_RDMA_MODE_NONE;
        why_none = "the store cannot report released extents";
    } else if (shm_pool.memh && shm_pool.base == pool->base) {
        t->mode = SVM_RDMA_MODE_POOL;
        if (!pack_key(t, shm_pool.memh, errp)) {
            rdma_destroy(t);
            return NULL;
        }
    } else if (t->ctx->insecure) {
        ucp_mem_map_params_t mp = {
            .field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH,
            .address = pool->base,
            .length = pool->len,
        };
        ucs_status_t st = ucp_mem_map(t->ctx->ucp, &mp, &t->pool_memh);
        if (st != UCS_OK) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_FAILED,
                        "rdma: cannot register the pool: %s", ucs_status_string(st));
            rdma_destroy(t);
            return NULL;
        }
        t->mode = SVM_RDMA_MODE_EMULATED;
        if (!pack_key(t, t->pool_memh, errp)) {
            rdma_destroy(t);
            return NULL;
        }
    } else if (t->ctx->has_shm_rma) {
        why_none = "the pool is not in UCX shared memory (file or hugetlbfs backing)";
    } else {
        why_none = "no UCX transport here does one-sided access";
    }
    if ((t->mode == SVM_RDMA_MODE_EXTENT || t->mode == SVM_RDMA_MODE_POOL) &&
        pool->watch_extents) {
        pool->watch_extents(pool->opaque, on_extent_released, t);
        t->watching = true;
    }

    if (t->mode == SVM_RDMA_MODE_NONE) {
        g_message("rdma: pages are served two-sided only: %s (UCX transports: %s)", why_none,
                  t->ctx->resources);
    } else {
        g_message("rdma: %s over UCX transports %s", svm_rdma_mode_name(t->mode),
                  t->ctx->resources);
    }
    if (t->mode == SVM_RDMA_MODE_POOL) {
        g_message("rdma: shared-memory mode is for one host: any local process allowed to "
                  "map the pool segment (same user) can read all of it");
    } else if (t->mode == SVM_RDMA_MODE_EMULATED || t->ctx->insecure) {
        g_warning("rdma: %s=1: UCX tcp and software RMA are enabled; any peer that "
                  "reaches this server can read and write all of its memory",
                  SVM_RDMA_INSECURE_ENV);
    }
    return t;
}

static bool rdma_listen(SvmServerTransport *t, const char *address, GError **errp)
{
    t->listen_fd = svm_sock_listen(address, &t->port, errp);
    return t->listen_fd >= 0;
}

static int rdma_bound_port(SvmServerTransport *t)
{
    return t->port;
}

static void rdma_destroy(SvmServerTransport *t)
{
    if (!t) {
        return;
    }
    if (t->ctx) {
        g_message("rdma: %" G_GUINT64_FORMAT " MAPs, %" G_GUINT64_FORMAT " LOOKUPs for %"
                  G_GUINT64_FORMAT " pages, %" G_GUINT64_FORMAT " extent keys issued, %"
                  G_GUINT64_FORMAT " revoked", t->n_maps, t->n_lookups, t->n_located,
                  t->n_regs, t->n_revoked);
    }
    if (t->watching) {
        t->pool.watch_extents(t->pool.opaque, NULL, NULL);
    }
    if (t->listen_fd >= 0) {
        close(t->listen_fd);
    }
    if (t->pool_memh) {
        ucp_mem_unmap(t->ctx->ucp, t->pool_memh);
    }
    g_free(t->pool_rkey);
    g_hash_table_destroy(t->regs_by_extent);
    g_hash_table_destroy(t->domains);
    pthread_mutex_destroy(&t->reg_lock);
    pthread_mutex_destroy(&t->domain_lock);
    svm_rdma_context_put(t->ctx);
    g_free(t);
}

/* ---- poll groups ---- */

static SvmPollGroup *rdma_pg_create(SvmServerTransport *t, GError **errp)
{
    SvmPollGroup *pg = g_new0(SvmPollGroup, 1);
    pg->t = t;
    pg->by_ep = g_hash_table_new(g_direct_hash, g_direct_equal);
    pg->epfd = epoll_create1(EPOLL_CLOEXEC);
    pg->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (pg->epfd < 0 || pg->wake_fd < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(errno),
                    "rdma: poll group setup: %s", g_strerror(errno));
        if (pg->epfd >= 0) {
            close(pg->epfd);
        }
        if (pg->wake_fd >= 0) {
            close(pg->wake_fd);
        }
        g_hash_table_destroy(pg->by_ep);
        g_free(pg);
        return NULL;
    }
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &pg->wake_fd };
    epoll_ctl(pg->epfd, EPOLL_CTL_ADD, pg->wake_fd, &ev);
    ev.events = EPOLLIN | EPOLLEXCLUSIVE;
    ev.data.ptr = &t->listen_fd;
    epoll_ctl(pg->epfd, EPOLL_CTL_ADD, t->listen_fd, &ev);
    return pg;
}

/* Everything that needs doing without waiting; true if something happened. */
static bool pg_work(SvmPollGroup *pg)
{
    SvmServerTransport *t = pg->t;
    bool busy = false;

    for (PgWorker *w = pg->workers; w; w = w->next) {
        while (ucp_worker_progress(w->worker)) {
            busy = true;
        }
        ucp_stream_poll_ep_t ready[16];
        ssize_t n = ucp_stream_worker_poll(w->worker, ready, G_N_ELEMENTS(ready), 0);
        for (ssize_t i = 0; i < n; i++) {
            RdmaConn *c = ready[i].user_data;
            if (c && c->ep == ready[i].ep && c->state == CONN_ACTIVE) {
                conn_pull(c);
                busy = true;
            }
        }
    }
    uint64_t now = svm_rdma_now_ns();
    for (RdmaConn *c = pg->conns, *next; c; c = next) {
        next = c->next;
        if (c->state != CONN_ACTIVE) {
            if (c->want_close || (c->close_after_flush && c->tx_inflight == 0)) {
                conn_close(c);
            } else if (now > c->boot_deadline) {
                g_warning("rdma: %s: not authenticated and connected over UCX within %u ms; "
                          "closing", c->peer, SVM_RDMA_BOOT_TIMEOUT_MS);
                conn_close(c);
            }
            continue;
        }
        PendingLookup *pl;
        while (!c->want_close && c->tx_inflight < TX_MAX_INFLIGHT &&
               (pl = g_queue_pop_head(&c->lookups))) {
            answer_lookup(t, c, pl);
            g_free(pl);
            busy = true;
        }
        if (c->rx_pending && c->tx_inflight < TX_MAX_INFLIGHT && !c->want_close) {
            conn_pull(c);
            busy = true;
        }
        if (c->want_close || (c->close_after_flush && c->tx_inflight == 0)) {
            conn_close(c);
            busy = true;
        }
    }
    return busy;
}

/* Arm every worker for sleeping; false if one has events pending. */
static bool pg_arm(SvmPollGroup *pg, int *err)
{
    for (PgWorker *w = pg->workers; w; w = w->next) {
        ucs_status_t st = ucp_worker_arm(w->worker);
        if (st == UCS_ERR_BUSY) {
            return false;
        }
        if (st != UCS_OK) {
            g_warning("rdma: ucp_worker_arm: %s", ucs_status_string(st));
            *err = -EIO;
            return false;
        }
    }
    return true;
}

static int rdma_pg_run(SvmPollGroup *pg)
{
    struct epoll_event ev[EPOLL_BATCH];

    while (!__atomic_load_n(&pg->stop, __ATOMIC_ACQUIRE)) {
        /*
         * Look at the sockets on every round, without blocking while UCX
         * has work: a worker that keeps reporting progress (retrying sends
         * to a peer that died) must not starve the bootstrap socket whose
         * hang-up tells us that peer is gone.
         */
        int timeout = 0;
        if (!pg_work(pg)) {
            int err = 0;
            if (pg_arm(pg, &err)) {
                timeout = pg->conns ? 100 : 1000;
            } else if (err) {
                return err;
            }
        }
        int n = epoll_wait(pg->epfd, ev, EPOLL_BATCH, timeout);
        if (n < 0 && errno != EINTR) {
            g_warning("rdma: epoll_wait: %s", g_strerror(errno));
            return -errno;
        }
        for (int i = 0; i < n; i++) {
            void *p = ev[i].data.ptr;
            if (ev[i].data.u64 & EV_WORKER) {
                continue;               /* pg_work progresses it */
            }
            if (p == &pg->wake_fd) {
                uint64_t v;
                if (read(pg->wake_fd, &v, sizeof(v)) < 0) {
                    /* already drained */
                }
                continue;
            }
            if (p == &pg->t->listen_fd) {
                on_accept(pg);
                continue;
            }
            RdmaConn *c = p;
            /* c may have been closed by an earlier event of this batch. */
            bool live = false;
            for (RdmaConn *q = pg->conns; q && !live; q = q->next) {
                live = q == c;
            }
            if (!live) {
                continue;
            }
            if (c->state != CONN_ACTIVE) {
                conn_boot_read(c);
            } else {
                conn_boot_event(c);
            }
        }
    }
    while (pg->conns) {
        conn_close(pg->conns);
    }
    return 0;
}

static void rdma_pg_stop(SvmPollGroup *pg)
{
    uint64_t one = 1;

    __atomic_store_n(&pg->stop, 1, __ATOMIC_RELEASE);
    if (write(pg->wake_fd, &one, sizeof(one)) < 0) {
        g_warning("rdma: cannot wake worker: %s", g_strerror(errno));
    }
}

static void rdma_pg_destroy(SvmPollGroup *pg)
{
    if (!pg) {
        return;
    }
    while (pg->conns) {
        conn_close(pg->conns);
    }
    close(pg->epfd);
    close(pg->wake_fd);
    g_hash_table_destroy(pg->by_ep);
    g_free(pg);
}

const SvmServerTransportOps svm_rdma_server_ops = {
    .name = "rdma",
    .create = rdma_create,
    .listen = rdma_listen,
    .bound_port = rdma_bound_port,
    .poll_group_create = rdma_pg_create,
    .poll_group_run = rdma_pg_run,
    .poll_group_stop = rdma_pg_stop,
    .poll_group_destroy = rdma_pg_destroy,
    .destroy = rdma_destroy,
    .pool_alloc = rdma_pool_alloc,
    .pool_free = rdma_pool_free,
};
