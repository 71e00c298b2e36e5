/*
 * "rdma" transport, client side (UCX ucp API).
 *
 * A TCP socket to HOST:PORT carries the login's HELLO and AUTH frames (the
 * server lets nobody unauthenticated near UCX); after AUTH the first frame
 * sent triggers the exchange of worker addresses on it, and from then on
 * frames go over the ucp stream while the socket stays open as the sign of
 * life of the server.
 *
 * One UCX worker per connection, used by whichever thread calls in under
 * conn->lock (UCS_THREAD_MODE_SERIALIZED): the faulting thread issues its
 * one-sided gets and waits on the worker itself (spinning briefly, then
 * sleeping on its event fd), like the tcp client's caller-reads design.  A
 * recv() that has to sleep arms the worker and polls its event fd, the
 * bootstrap socket (server gone) and an eventfd that shutdown() and other
 * threads' progress use to wake it.
 *
 * One-sided access: the server names a mode in its MAP reply.  Page
 * locations (pool page of each namespace page) are looked up with the
 * LOOKUP active message and cached; rkeys come with the lookups (per
 * extent) or with MAP (shared-memory pool).  Anything the transport
 * cannot do one-sided -- a page never stored, a write that must allocate,
 * a broken endpoint -- returns -EAGAIN and the client core sends frames.
 * The cache is kept right by watching the frames that change locations
 * (WRITE may allocate, DISCARD frees, FREE_NS drops all) as they are sent.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include "splitvm/wire.h"
#include "rdma-int.h"
#include "transport-int.h"

#define LEAF_SHIFT      10u
#define LEAF_ENTRIES    (1u << LEAF_SHIFT)
#define LOC_UNKNOWN     0u
#define LOC_NONE        1u              /* not stored on the server */
#define SLEEP_TICK_MS   100

struct SvmClientConn {
    SvmRdmaContext *ctx;
    char *address;
    unsigned timeout_ms;
    int boot_fd, wake_fd, efd;
    int dead;                           /* atomic: shut down or failed */
    bool warned;

    /*
     * Until AUTH has succeeded, frames go over the bootstrap socket (the
     * server hands nothing to UCX for unauthenticated peers); the first
     * frame after it switches to the ucp stream.  pre_* follow frame
     * boundaries in what recv() returns, to see the AUTH reply.
     */
    bool authed, active;
    uint8_t pre_hdr[SVM_WIRE_HDR_SIZE];
    size_t pre_hdr_len, pre_left;

    pthread_mutex_t lock;               /* the worker and everything below */
    ucp_worker_h worker;
    ucp_ep_h ep;
    bool peer_mode;                     /* ep has UCP_ERR_HANDLING_MODE_PEER */
    bool rx_waiting;                    /* a recv() sleeps: wake it after progress */
    void *rx_chunk;                     /* stream data not yet handed out */
    size_t rx_chunk_len, rx_chunk_off;

    SvmRdmaMode mode;
    uint64_t pool_base, pool_len, ns_pages;
    uint32_t extent_pages;
    ucp_rkey_h pool_rkey;
    GHashTable *rkeys;                  /* extent -> ucp_rkey_h (EXTENT mode) */
    uint32_t **loc;                     /* page -> LOC_* or pool page + 2 */
    size_t nleaves;
    uint64_t inval_gen;

    /* The LOOKUP in flight (one at a time: the lock is held throughout). */
    uint64_t lookup_seq;
    bool lookup_done;
    uint16_t lookup_status;
    uint32_t lookup_n, lookup_nkeys;
    size_t lookup_len;
    uint8_t *lookup_rep;

    uint64_t n_gets, n_puts, n_lookups, n_fallbacks;
};

/* ---- helpers (lock held) ---- */

static void kick_receiver(SvmClientConn *c)
{
    if (c->rx_waiting) {
        uint64_t one = 1;
        if (write(c->wake_fd, &one, sizeof(one)) < 0) {
            /* the counter cannot overflow in practice */
        }
    }
}

static bool is_dead(SvmClientConn *c)
{
    return __atomic_load_n(&c->dead, __ATOMIC_ACQUIRE);
}

/* The endpoint is unusable: close it now so no late one-sided transfer can
 * land in a buffer the caller has already reused. */
static void conn_fail(SvmClientConn *c, const char *why, ucs_status_t st)
{
    __atomic_store_n(&c->dead, 1, __ATOMIC_RELEASE);
    if (!c->warned) {
        c->warned = true;
        g_warning("rdma: connection to %s failed: %s%s%s", c->address, why,
                  st != UCS_OK ? ": " : "", st != UCS_OK ? ucs_status_string(st) : "");
    }
    if (c->ep) {
        if (c->rx_chunk) {
            ucp_stream_data_release(c->ep, c->rx_chunk);
            c->rx_chunk = NULL;
        }
        g_hash_table_remove_all(c->rkeys);
        if (c->pool_rkey) {
            ucp_rkey_destroy(c->pool_rkey);
            c->pool_rkey = NULL;
        }
        svm_rdma_ep_close(c->worker, c->efd, c->ep, c->peer_mode, true);
        c->ep = NULL;
    }
    kick_receiver(c);
}

/* UCX found the peer dead (peer error mode only); runs inside progress. */
static void on_ep_error(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    SvmClientConn *c = arg;
    __atomic_store_n(&c->dead, 1, __ATOMIC_RELEASE);
    kick_receiver(c);
}

static uint64_t deadline_after(unsigned ms)
{
    return svm_rdma_now_ns() + (uint64_t)ms * 1000000ull;
}

static uint32_t *loc_slot(SvmClientConn *c, uint64_t page, bool create)
{
    size_t leaf = page >> LEAF_SHIFT;
    if (leaf >= c->nleaves) {
        if (!create) {
            return NULL;
        }
        size_t n = leaf + 1;
        c->loc = g_renew(uint32_t *, c->loc, n);
        memset(c->loc + c->nleaves, 0, (n - c->nleaves) * sizeof(*c->loc));
        c->nleaves = n;
    }
    if (!c->loc[leaf]) {
        if (!create) {
            return NULL;
        }
        c->loc[leaf] = g_new0(uint32_t, LEAF_ENTRIES);
    }
    return &c->loc[leaf][page & (LEAF_ENTRIES - 1)];
}

static uint32_t loc_get(SvmClientConn *c, uint64_t page)
{
    uint32_t *e = loc_slot(c, page, false);
    return e ? *e : LOC_UNKNOWN;
}

static void loc_forget_all(SvmClientConn *c)
{
    for (size_t i = 0; i < c->nleaves; i++) {
        g_free(c->loc[i]);
    }
    g_free(c->loc);
    c->loc = NULL;
    c->nleaves = 0;
    c->inval_gen++;
}

/* Frames that change where pages live make their cached locations stale. */
static void snoop_frame(SvmClientConn *c, const struct iovec *iov, int iovcnt)
{
    if (iovcnt < 1 || iov[0].iov_len < SVM_WIRE_HDR_SIZE) {
        return;
    }
    const uint8_t *f = iov[0].iov_base;
    uint8_t op = f[4];
    if (op == SVM_OP_FREE_NS) {
        loc_forget_all(c);
        return;
    }
    if ((op != SVM_OP_WRITE && op != SVM_OP_DISCARD) ||
        iov[0].iov_len < SVM_WIRE_HDR_SIZE + 8) {
        return;
    }
    uint32_t n = svm_get_le32(f + SVM_WIRE_HDR_SIZE);
    if (n > SVM_WIRE_MAX_BATCH || iov[0].iov_len < SVM_WIRE_HDR_SIZE + 8 + 8 * (size_t)n) {
        return;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t *e = loc_slot(c, svm_get_le64(f + SVM_WIRE_HDR_SIZE + 8 + 8 * i), false);
        if (e) {
            *e = LOC_UNKNOWN;
        }
    }
    c->inval_gen++;
}

/* ---- LOOKUP ---- */

static void lookup_rndv_done(void *request, ucs_status_t status, size_t length,
                             void *user_data)
{
    SvmClientConn *c = user_data;
    if (status != UCS_OK) {
        c->lookup_status = SVM_ST_INTERNAL;
        c->lookup_len = 0;
    }
    c->lookup_done = true;
}

static ucs_status_t on_lookup_rep(void *arg, const void *header, size_t hlen, void *data,
                                  size_t len, const ucp_am_recv_param_t *param)
{
    SvmClientConn *c = arg;

    if (hlen < SVM_RDMA_LOOKUP_REP_HDR || len > SVM_RDMA_LOOKUP_REP_MAX ||
        svm_get_le64(header) != c->lookup_seq || c->lookup_done) {
        return UCS_OK;                  /* stale or malformed: ignore */
    }
    c->lookup_status = svm_get_le16((const uint8_t *)header + 8);
    c->lookup_n = svm_get_le32((const uint8_t *)header + 12);
    c->lookup_nkeys = svm_get_le32((const uint8_t *)header + 16);
    c->lookup_len = len;
    if (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) {
        ucp_request_param_t p = {
            .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA,
            .cb.recv_am = lookup_rndv_done,
            .user_data = c,
        };
        void *r = ucp_am_recv_data_nbx(c->worker, data, c->lookup_rep, len, &p);
        if (UCS_PTR_IS_ERR(r)) {
            c->lookup_status = SVM_ST_INTERNAL;
            c->lookup_len = 0;
            c->lookup_done = true;
        } else if (r == NULL) {
            c->lookup_done = true;
        } else {
            ucp_request_free(r);        /* the callback still runs */
        }
        return UCS_OK;
    }
    memcpy(c->lookup_rep, data, len);
    c->lookup_done = true;
    return UCS_OK;
}

/*
 * Ask the server where pages live; fills loc[] (LOC_NONE or pool page + 2)
 * and caches the answer unless a frame changed locations meanwhile.
 * Returns 0, a -errno from the server's refusal, or -EPIPE if the endpoint
 * failed.
 */
static int lookup(SvmClientConn *c, const uint64_t *pages, unsigned n, uint32_t *loc)
{
    uint8_t hdr[SVM_RDMA_LOOKUP_HDR];
    uint8_t body[8 * SVM_WIRE_MAX_BATCH];
    uint64_t gen = c->inval_gen;
    uint64_t deadline = deadline_after(c->timeout_ms);

    c->lookup_seq++;
    c->lookup_done = false;
    svm_put_le64(hdr, c->lookup_seq);
    svm_put_le32(hdr + 8, n);
    svm_put_le32(hdr + 12, 0);
    for (unsigned i = 0; i < n; i++) {
        svm_put_le64(body + 8 * i, pages[i]);
    }
    ucp_request_param_t p = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
        .flags = UCP_AM_SEND_FLAG_REPLY,
    };
    ucs_status_t st = svm_rdma_wait(c->worker, c->efd,
                                    ucp_am_send_nbx(c->ep, SVM_RDMA_AM_LOOKUP, hdr,
                                                    sizeof(hdr), body, 8 * (size_t)n, &p),
                                    deadline);
    uint64_t spin_end = svm_rdma_now_ns() + SVM_RDMA_SPIN_NS;
    while (st == UCS_OK && !c->lookup_done) {
        if (is_dead(c)) {
            return -EPIPE;
        }
        if (!svm_rdma_idle(c->worker, c->efd, spin_end, deadline)) {
            st = UCS_ERR_TIMED_OUT;
        }
    }
    if (st != UCS_OK) {
        conn_fail(c, "LOOKUP", st);
        return -EPIPE;
    }
    c->n_lookups++;
    if (c->lookup_status != SVM_ST_OK) {
        g_autofree char *msg = g_strndup((char *)c->lookup_rep, c->lookup_len);
        g_warning("rdma: %s refused a page lookup: %s: %s", c->address,
                  svm_wire_status_name(c->lookup_status), msg);
        return svm_wire_status_errno(c->lookup_status);
    }
    const uint8_t *r = c->lookup_rep, *end = c->lookup_rep + c->lookup_len;
    if (c->lookup_n != n || (size_t)(end - r) < 4u * n) {
        conn_fail(c, "malformed LOOKUP reply", UCS_OK);
        return -EPIPE;
    }
    bool cache = gen == c->inval_gen;
    for (unsigned i = 0; i < n; i++, r += 4) {
        uint32_t v = svm_get_le32(r);
        uint64_t pp = (uint64_t)v - 1;
        if (v && (pp + 1) * SVM_WIRE_PAGE_SIZE > c->pool_len) {
            conn_fail(c, "LOOKUP reply names a page outside the pool", UCS_OK);
            return -EPIPE;
        }
        loc[i] = v ? (uint32_t)(pp + 2) : LOC_NONE;
        if (cache) {
            *loc_slot(c, pages[i], true) = loc[i];
        }
    }
    for (uint32_t k = 0; k < c->lookup_nkeys; k++) {
        if (end - r < 8) {
            conn_fail(c, "malformed LOOKUP reply keys", UCS_OK);
            return -EPIPE;
        }
        uint32_t extent = svm_get_le32(r), klen = svm_get_le32(r + 4);
        r += 8;
        if (klen > SVM_RDMA_RKEY_MAX || (size_t)(end - r) < klen) {
            conn_fail(c, "malformed LOOKUP reply key", UCS_OK);
            return -EPIPE;
        }
        ucp_rkey_h rk;
        st = ucp_ep_rkey_unpack(c->ep, r, &rk);
        r += klen;
        if (st != UCS_OK) {
            conn_fail(c, "cannot unpack an extent key", st);
            return -EPIPE;
        }
        /* Replaces (and destroys) the key of an earlier registration. */
        g_hash_table_insert(c->rkeys, GUINT_TO_POINTER(extent), rk);
    }
    return 0;
}

/* ---- one-sided page access ---- */

static ucp_rkey_h rkey_for(SvmClientConn *c, uint64_t pp)
{
    if (c->mode != SVM_RDMA_MODE_EXTENT) {
        return c->pool_rkey;
    }
    return g_hash_table_lookup(c->rkeys, GUINT_TO_POINTER((guint)(pp / c->extent_pages)));
}

/* Locations of n pages (looking up the unknown ones); -EAGAIN if one is not stored. */
static int locate(SvmClientConn *c, const uint64_t *pages, unsigned n, uint32_t *loc)
{
    uint64_t ask[SVM_WIRE_MAX_BATCH];
    uint32_t got[SVM_WIRE_MAX_BATCH];
    unsigned idx[SVM_WIRE_MAX_BATCH], nask = 0;

    for (unsigned i = 0; i < n; i++) {
        if (pages[i] >= c->ns_pages) {
            return -EAGAIN;             /* the frame path reports ERANGE */
        }
        loc[i] = loc_get(c, pages[i]);
        if (loc[i] == LOC_UNKNOWN) {
            idx[nask] = i;
            ask[nask++] = pages[i];
        }
    }
    if (nask) {
        int rc = lookup(c, ask, nask, got);
        if (rc < 0) {
            return -EAGAIN;
        }
        for (unsigned j = 0; j < nask; j++) {
            loc[idx[j]] = got[j];
        }
    }
    for (unsigned i = 0; i < n; i++) {
        if (loc[i] == LOC_NONE) {
            return -EAGAIN;
        }
    }
    return 0;
}

static int rma_batch(SvmClientConn *c, bool write, const uint64_t *pages, unsigned n,
                     void *const *rbufs, const void *const *wbufs)
{
    uint32_t loc[SVM_WIRE_MAX_BATCH];
    void *reqs[SVM_WIRE_MAX_BATCH];
    ucs_status_t st = UCS_OK;
    int rc;

    if (n == 0 || n > SVM_WIRE_MAX_BATCH) {
        return -EINVAL;
    }
    if (c->mode == SVM_RDMA_MODE_NONE || is_dead(c)) {
        return -EAGAIN;
    }
    pthread_mutex_lock(&c->lock);
    if (is_dead(c) || !c->ep) {
        rc = -EAGAIN;
        goto out;
    }
    rc = locate(c, pages, n, loc);
    if (rc < 0) {
        goto out;
    }
    ucp_rkey_h rkeys[SVM_WIRE_MAX_BATCH];
    for (unsigned i = 0; i < n; i++) {
        rkeys[i] = rkey_for(c, loc[i] - 2);
        if (!rkeys[i]) {
            /* No key for that extent (revoked and not re-sent): ask again. */
            *loc_slot(c, pages[i], true) = LOC_UNKNOWN;
            rc = -EAGAIN;
            goto out;
        }
    }
    ucp_request_param_t p = { 0 };
    unsigned issued = 0;
    for (unsigned i = 0; i < n; i++) {
        uint64_t raddr = c->pool_base + (uint64_t)(loc[i] - 2) * SVM_WIRE_PAGE_SIZE;
        reqs[i] = write ? ucp_put_nbx(c->ep, wbufs[i], SVM_WIRE_PAGE_SIZE, raddr, rkeys[i], &p)
                        : ucp_get_nbx(c->ep, rbufs[i], SVM_WIRE_PAGE_SIZE, raddr, rkeys[i], &p);
        issued++;
        if (UCS_PTR_IS_ERR(reqs[i])) {
            st = UCS_PTR_STATUS(reqs[i]);
            break;
        }
    }
    uint64_t deadline = deadline_after(c->timeout_ms);
    for (unsigned i = 0; i < issued; i++) {
        if (UCS_PTR_IS_ERR(reqs[i])) {
            continue;
        }
        ucs_status_t s = svm_rdma_wait(c->worker, c->efd, reqs[i], deadline);
        if (st == UCS_OK) {
            st = s;
        }
    }
    if (st == UCS_OK && write) {
        /* Remote completion: the pages are in the server's memory. */
        st = svm_rdma_wait(c->worker, c->efd, ucp_ep_flush_nbx(c->ep, &p), deadline);
    }
    if (st != UCS_OK) {
        conn_fail(c, write ? "one-sided write" : "one-sided read", st);
        rc = -EAGAIN;
        goto out;
    }
    if (write) {
        c->n_puts += n;
    } else {
        c->n_gets += n;
    }
out:
    if (rc == -EAGAIN) {
        c->n_fallbacks++;
    }
    kick_receiver(c);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

static int rdma_read_pages(SvmClientConn *c, const uint64_t *pages, unsigned n,
                           void *const *bufs)
{
    return rma_batch(c, false, pages, n, bufs, NULL);
}

static int rdma_write_pages(SvmClientConn *c, const uint64_t *pages, unsigned n,
                            const void *const *bufs)
{
    return rma_batch(c, true, pages, n, NULL, bufs);
}

static int rdma_map(SvmClientConn *c, const void *reply, size_t len)
{
    const uint8_t *r = reply;

    if (len < SVM_RDMA_MAP_FIXED || svm_get_le32(r) != SVM_RDMA_MAP_MAGIC ||
        svm_get_le16(r + 4) != SVM_RDMA_MAP_VERSION) {
        return -EPROTO;
    }
    SvmRdmaMode mode = r[6];
    uint64_t base = svm_get_le64(r + 8), plen = svm_get_le64(r + 16);
    uint64_t ns_pages = svm_get_le64(r + 24);
    uint32_t page_size = svm_get_le32(r + 32), extent_pages = svm_get_le32(r + 36);
    uint32_t klen = svm_get_le32(r + 40);
    if (mode > SVM_RDMA_MODE_EMULATED || page_size != SVM_WIRE_PAGE_SIZE ||
        klen > SVM_RDMA_RKEY_MAX || len < SVM_RDMA_MAP_FIXED + (size_t)klen ||
        plen / SVM_WIRE_PAGE_SIZE > UINT32_MAX - 2 ||
        (mode == SVM_RDMA_MODE_EXTENT && extent_pages == 0) ||
        ((mode == SVM_RDMA_MODE_POOL || mode == SVM_RDMA_MODE_EMULATED) && klen == 0)) {
        return -EPROTO;
    }

    pthread_mutex_lock(&c->lock);
    const char *why = NULL;
    if (!c->ep) {
        pthread_mutex_unlock(&c->lock);
        return -EPIPE;
    }
    if (mode == SVM_RDMA_MODE_POOL || mode == SVM_RDMA_MODE_EMULATED) {
        ucs_status_t st = ucp_ep_rkey_unpack(c->ep, r + SVM_RDMA_MAP_FIXED, &c->pool_rkey);
        if (st != UCS_OK) {
            why = "cannot unpack the pool key";
            mode = SVM_RDMA_MODE_NONE;
        } else if (mode == SVM_RDMA_MODE_POOL) {
            /* Shared memory only works if this process could map the
             * server's segment (same host, and allowed to). */
            void *ptr = NULL;
            if (ucp_rkey_ptr(c->pool_rkey, base, &ptr) != UCS_OK) {
                why = "the server's shared-memory pool cannot be mapped from here";
                mode = SVM_RDMA_MODE_NONE;
            }
        } else if (!c->ctx->insecure) {
            why = "the server offers only UCX's software RMA emulation and "
                  SVM_RDMA_INSECURE_ENV " is not set here";
            mode = SVM_RDMA_MODE_NONE;
        }
        if (mode == SVM_RDMA_MODE_NONE && c->pool_rkey) {
            ucp_rkey_destroy(c->pool_rkey);
            c->pool_rkey = NULL;
        }
    } else if (mode == SVM_RDMA_MODE_EXTENT && !c->ctx->has_hw_rma && !c->ctx->insecure) {
        why = "no RDMA-capable UCX transport on this side";
        mode = SVM_RDMA_MODE_NONE;
    }
    c->mode = mode;
    c->pool_base = base;
    c->pool_len = plen;
    c->ns_pages = ns_pages;
    c->extent_pages = extent_pages;
    loc_forget_all(c);
    pthread_mutex_unlock(&c->lock);
    if (why) {
        g_message("rdma: %s: pages go two-sided: %s (UCX transports here: %s)",
                  c->address, why, c->ctx->resources);
    }
    return 0;
}

/* ---- connection, frames ---- */

static void rdma_close(SvmClientConn *c);

static SvmClientConn *rdma_connect(const char *address, unsigned timeout_ms, GError **errp)
{
    g_autoptr(GError) err = NULL;
    SvmClientConn *c = g_new0(SvmClientConn, 1);

    c->address = g_strdup(address);
    c->timeout_ms = timeout_ms ? timeout_ms : 5000;
    c->boot_fd = c->wake_fd = c->efd = -1;
    pthread_mutex_init(&c->lock, NULL);
    c->rkeys = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL,
                                     (GDestroyNotify)ucp_rkey_destroy);
    c->lookup_rep = g_malloc(SVM_RDMA_LOOKUP_REP_MAX);

    c->ctx = svm_rdma_context_get(SVM_RDMA_CLIENT, &err);
    if (!c->ctx) {
        goto fail;
    }
    c->boot_fd = svm_sock_connect(address, c->timeout_ms, &err);
    if (c->boot_fd < 0) {
        goto fail;
    }
    c->worker = svm_rdma_worker_create(c->ctx, UCS_THREAD_MODE_SERIALIZED, &c->efd, &err);
    if (!c->worker) {
        goto fail;
    }
    ucp_am_handler_param_t ah = {
        .field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                      UCP_AM_HANDLER_PARAM_FIELD_ARG,
        .id = SVM_RDMA_AM_LOOKUP_REP,
        .cb = on_lookup_rep,
        .arg = c,
    };
    ucp_worker_set_am_recv_handler(c->worker, &ah);
    c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return c;

fail:
    g_set_error(errp, err->domain, err->code, "%s: %s", address, err->message);
    rdma_close(c);
    return NULL;
}

/*
 * Authenticated: exchange worker addresses on the bootstrap socket and
 * connect the endpoint (lock held).  Errors are logged here in full (they
 * name the UCX transports) and returned as -errno.
 */
static int go_active(SvmClientConn *c)
{
    g_autoptr(GError) err = NULL;
    g_autofree void *peer = NULL;
    ucp_address_t *my_addr;
    size_t my_len;
    uint16_t status;
    uint32_t plen;

    ucs_status_t st = ucp_worker_get_address(c->worker, &my_addr, &my_len);
    if (st != UCS_OK) {
        g_warning("rdma: %s: worker address: %s", c->address, ucs_status_string(st));
        return -ENOMEM;
    }
    bool sent = svm_rdma_boot_send(c->boot_fd, SVM_RDMA_BOOT_OK, my_addr, (uint32_t)my_len,
                                   c->timeout_ms, &err);
    ucp_worker_release_address(c->worker, my_addr);
    if (sent) {
        peer = svm_rdma_boot_recv(c->boot_fd, &status, &plen, c->timeout_ms, &err);
    }
    if (!peer) {
        g_warning("rdma: %s: %s", c->address, err->message);
        return -ECONNRESET;
    }
    if (status != SVM_RDMA_BOOT_OK) {
        g_warning("rdma: %s: the server refused the connection: %s", c->address, (char *)peer);
        return -ECONNREFUSED;
    }
    /* Without peer error handling (shared memory) a dead server is
     * noticed on the bootstrap socket. */
    st = svm_rdma_ep_create(c->ctx, c->worker, peer, c, on_ep_error, &c->ep, &c->peer_mode);
    if (st != UCS_OK) {
        g_autofree char *devs = svm_rdma_list_devices();
        c->ep = NULL;
        g_warning("rdma: %s: UCX cannot reach the memory server from here: %s (transports "
                  "here: %s; UCX devices on this host: %s)", c->address,
                  ucs_status_string(st), c->ctx->resources, devs);
        return -EHOSTUNREACH;
    }
    c->active = true;
    return 0;
}

static int pre_sendv(SvmClientConn *c, const struct iovec *iov, int iovcnt)
{
    uint64_t deadline = deadline_after(c->timeout_ms);

    for (int i = 0; i < iovcnt; i++) {
        size_t done = 0;
        while (done < iov[i].iov_len) {
            ssize_t r = send(c->boot_fd, (const uint8_t *)iov[i].iov_base + done,
                             iov[i].iov_len - done, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (r > 0) {
                done += (size_t)r;
                continue;
            }
            if (r < 0 && errno != EAGAIN && errno != EINTR) {
                return -errno;
            }
            uint64_t now = svm_rdma_now_ns();
            if (now >= deadline || is_dead(c)) {
                return is_dead(c) ? -ECONNRESET : -ETIMEDOUT;
            }
            struct pollfd pfd = { .fd = c->boot_fd, .events = POLLOUT };
            poll(&pfd, 1, 10);
        }
    }
    return 0;
}

/* Follow frame boundaries of bytes received before ACTIVE. */
static void pre_track(SvmClientConn *c, const uint8_t *p, size_t n)
{
    while (n) {
        if (c->pre_left) {
            size_t k = MIN(n, c->pre_left);
            c->pre_left -= k;
            p += k;
            n -= k;
            continue;
        }
        size_t k = MIN(n, SVM_WIRE_HDR_SIZE - c->pre_hdr_len);
        memcpy(c->pre_hdr + c->pre_hdr_len, p, k);
        c->pre_hdr_len += k;
        p += k;
        n -= k;
        if (c->pre_hdr_len == SVM_WIRE_HDR_SIZE) {
            SvmWireHdr h;
            svm_wire_hdr_get(c->pre_hdr, &h);
            if (h.op == SVM_OP_AUTH && (h.flags & SVM_WIRE_F_REPLY) && h.status == SVM_ST_OK) {
                c->authed = true;
            }
            c->pre_left = h.len > SVM_WIRE_HDR_SIZE ? h.len - SVM_WIRE_HDR_SIZE : 0;
            c->pre_hdr_len = 0;
        }
    }
}

static ssize_t pre_recv(SvmClientConn *c, void *buf, size_t len, unsigned timeout_ms)
{
    uint64_t deadline = deadline_after(timeout_ms);

    for (;;) {
        ssize_t r = recv(c->boot_fd, buf, len, MSG_DONTWAIT);
        if (r > 0) {
            pre_track(c, buf, (size_t)r);
            return r;
        }
        if (r == 0) {
            return 0;
        }
        if (errno != EAGAIN && errno != EINTR) {
            return -errno;
        }
        if (is_dead(c)) {
            return 0;
        }
        uint64_t now = svm_rdma_now_ns();
        if (now >= deadline) {
            return -EAGAIN;
        }
        struct pollfd pfd[2] = {
            { .fd = c->boot_fd, .events = POLLIN },
            { .fd = c->wake_fd, .events = POLLIN },
        };
        poll(pfd, 2, (int)MIN((deadline - now + 999999) / 1000000, (uint64_t)SLEEP_TICK_MS));
    }
}

static int rdma_sendv(SvmClientConn *c, const struct iovec *iov, int iovcnt)
{
    ucp_dt_iov_t v[iovcnt];

    for (int i = 0; i < iovcnt; i++) {
        v[i].buffer = iov[i].iov_base;
        v[i].length = iov[i].iov_len;
    }
    pthread_mutex_lock(&c->lock);
    if (!c->active && !is_dead(c)) {
        int rc = c->authed ? go_active(c) : pre_sendv(c, iov, iovcnt);
        if (rc < 0 || !c->active) {
            pthread_mutex_unlock(&c->lock);
            return rc;
        }
    }
    if (is_dead(c) || !c->ep) {
        pthread_mutex_unlock(&c->lock);
        return -ECONNRESET;
    }
    snoop_frame(c, iov, iovcnt);
    ucp_request_param_t p = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_DATATYPE,
        .datatype = ucp_dt_make_iov(),
    };
    void *req = ucp_stream_send_nbx(c->ep, v, iovcnt, &p);
    uint64_t deadline = deadline_after(c->timeout_ms);
    ucs_status_t st = UCS_OK;
    if (UCS_PTR_IS_ERR(req)) {
        st = UCS_PTR_STATUS(req);
    } else if (req) {
        uint64_t spin_end = svm_rdma_now_ns() + SVM_RDMA_SPIN_NS;
        while ((st = ucp_request_check_status(req)) == UCS_INPROGRESS) {
            if (is_dead(c) || !svm_rdma_idle(c->worker, c->efd, spin_end, deadline)) {
                st = is_dead(c) ? UCS_ERR_CANCELED : UCS_ERR_TIMED_OUT;
                break;
            }
        }
        ucp_request_free(req);
    }
    if (st != UCS_OK) {
        conn_fail(c, "sending a frame", st);
    }
    kick_receiver(c);
    pthread_mutex_unlock(&c->lock);
    return st == UCS_OK ? 0 : st == UCS_ERR_TIMED_OUT ? -ETIMEDOUT : -ECONNRESET;
}

/* Hand out buffered stream data (lock held). */
static size_t take_chunk(SvmClientConn *c, void *buf, size_t len)
{
    size_t n = MIN(len, c->rx_chunk_len - c->rx_chunk_off);
    memcpy(buf, (uint8_t *)c->rx_chunk + c->rx_chunk_off, n);
    c->rx_chunk_off += n;
    if (c->rx_chunk_off == c->rx_chunk_len) {
        ucp_stream_data_release(c->ep, c->rx_chunk);
        c->rx_chunk = NULL;
    }
    return n;
}

/* Has the server closed the bootstrap socket? */
static bool server_gone(SvmClientConn *c)
{
    char b;
    ssize_t r = recv(c->boot_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR);
}

static ssize_t rdma_recv(SvmClientConn *c, void *buf, size_t len, unsigned timeout_ms)
{
    uint64_t deadline = deadline_after(timeout_ms);

    pthread_mutex_lock(&c->lock);
    bool active = c->active;
    pthread_mutex_unlock(&c->lock);
    if (!active) {
        /* Only the login's synchronous calls run before ACTIVE. */
        return pre_recv(c, buf, len, timeout_ms);
    }

    for (;;) {
        pthread_mutex_lock(&c->lock);
        if (c->rx_chunk && c->ep) {
            size_t n = take_chunk(c, buf, len);
            pthread_mutex_unlock(&c->lock);
            return (ssize_t)n;
        }
        if (is_dead(c) || !c->ep) {
            pthread_mutex_unlock(&c->lock);
            return 0;
        }
        while (ucp_worker_progress(c->worker)) {
        }
        size_t dlen = 0;
        void *d = ucp_stream_recv_data_nb(c->ep, &dlen);
        if (UCS_PTR_IS_ERR(d)) {
            conn_fail(c, "receiving", UCS_PTR_STATUS(d));
            pthread_mutex_unlock(&c->lock);
            return -ECONNRESET;
        }
        if (d) {
            c->rx_chunk = d;
            c->rx_chunk_len = dlen;
            c->rx_chunk_off = 0;
            size_t n = take_chunk(c, buf, len);
            pthread_mutex_unlock(&c->lock);
            return (ssize_t)n;
        }
        ucs_status_t st = ucp_worker_arm(c->worker);
        if (st == UCS_ERR_BUSY) {
            pthread_mutex_unlock(&c->lock);
            continue;
        }
        c->rx_waiting = true;
        pthread_mutex_unlock(&c->lock);

        uint64_t now = svm_rdma_now_ns();
        if (now >= deadline) {
            pthread_mutex_lock(&c->lock);
            c->rx_waiting = false;
            pthread_mutex_unlock(&c->lock);
            return -EAGAIN;
        }
        int ms = (int)MIN((deadline - now + 999999) / 1000000, (uint64_t)SLEEP_TICK_MS);
        struct pollfd pfd[3] = {
            { .fd = c->efd, .events = POLLIN },
            { .fd = c->boot_fd, .events = POLLIN },
            { .fd = c->wake_fd, .events = POLLIN },
        };
        int rc = poll(pfd, 3, ms);
        pthread_mutex_lock(&c->lock);
        c->rx_waiting = false;
        pthread_mutex_unlock(&c->lock);
        if (rc > 0 && (pfd[2].revents & POLLIN)) {
            uint64_t v;
            if (read(c->wake_fd, &v, sizeof(v)) < 0) {
                /* nothing to drain */
            }
        }
        if (rc > 0 && pfd[1].revents && server_gone(c)) {
            pthread_mutex_lock(&c->lock);
            /* Whatever the server sent before closing is still delivered. */
            while (ucp_worker_progress(c->worker)) {
            }
            bool more = c->ep && (c->rx_chunk || ucp_stream_worker_poll(c->worker,
                                  &(ucp_stream_poll_ep_t){ 0 }, 1, 0) > 0);
            if (!more) {
                __atomic_store_n(&c->dead, 1, __ATOMIC_RELEASE);
            }
            pthread_mutex_unlock(&c->lock);
            if (!more) {
                return 0;
            }
        }
    }
}

static void rdma_shutdown(SvmClientConn *c)
{
    uint64_t one = 1;

    __atomic_store_n(&c->dead, 1, __ATOMIC_RELEASE);
    if (c->boot_fd >= 0) {
        shutdown(c->boot_fd, SHUT_RDWR);
    }
    if (c->wake_fd >= 0 && write(c->wake_fd, &one, sizeof(one)) < 0) {
        /* cannot fail with a fresh counter */
    }
}

static void rdma_close(SvmClientConn *c)
{
    if (!c) {
        return;
    }
    pthread_mutex_lock(&c->lock);
    if (c->rx_chunk) {
        ucp_stream_data_release(c->ep, c->rx_chunk);
        c->rx_chunk = NULL;
    }
    /* Keys first: they belong to the endpoint. */
    g_hash_table_destroy(c->rkeys);
    if (c->pool_rkey) {
        ucp_rkey_destroy(c->pool_rkey);
    }
    if (c->ep) {
        svm_rdma_ep_close(c->worker, c->efd, c->ep, c->peer_mode, is_dead(c));
    }
    if (c->worker) {
        ucp_worker_destroy(c->worker);
    }
    pthread_mutex_unlock(&c->lock);
    if (c->boot_fd >= 0) {
        close(c->boot_fd);
    }
    if (c->wake_fd >= 0) {
        close(c->wake_fd);
    }
    for (size_t i = 0; i < c->nleaves; i++) {
        g_free(c->loc[i]);
    }
    g_free(c->loc);
    if (c->n_gets || c->n_puts || c->n_fallbacks) {
        g_debug("rdma: %s: %" G_GUINT64_FORMAT " one-sided reads, %" G_GUINT64_FORMAT
                " writes, %" G_GUINT64_FORMAT " lookups, %" G_GUINT64_FORMAT
                " batches two-sided", c->address, c->n_gets, c->n_puts, c->n_lookups,
                c->n_fallbacks);
    }
    svm_rdma_context_put(c->ctx);
    pthread_mutex_destroy(&c->lock);
    g_free(c->lookup_rep);
    g_free(c->address);
    g_free(c);
}

/* ---- test hooks (rdma-int.h) ---- */

SvmRdmaMode svm_rdma_client_mode(SvmClientConn *c)
{
    return c->mode;
}

void svm_rdma_client_pool(SvmClientConn *c, uint64_t *base, uint64_t *len)
{
    *base = c->pool_base;
    *len = c->pool_len;
}

int svm_rdma_client_lookup(SvmClientConn *c, const uint64_t *pages, unsigned n,
                           uint64_t *locs)
{
    uint32_t loc[SVM_WIRE_MAX_BATCH];

    if (n == 0 || n > SVM_WIRE_MAX_BATCH) {
        return -EINVAL;
    }
    pthread_mutex_lock(&c->lock);
    int rc = c->ep && !is_dead(c) ? lookup(c, pages, n, loc) : -EPIPE;
    pthread_mutex_unlock(&c->lock);
    for (unsigned i = 0; rc == 0 && i < n; i++) {
        locs[i] = loc[i] == LOC_NONE ? 0 : loc[i] - 1;
    }
    return rc;
}

int svm_rdma_client_forged_get(SvmClientConn *c, uint64_t raddr, void *buf, size_t len,
                               unsigned timeout_ms)
{
    static uint8_t mine[4096];
    ucp_mem_map_params_t mp = {
        .field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH,
        .address = mine,
        .length = sizeof(mine),
    };
    ucp_mem_h memh;
    void *blob;
    size_t blen;
    ucp_rkey_h rkey;
    int rc = -EIO;

    pthread_mutex_lock(&c->lock);
    if (!c->ep || ucp_mem_map(c->ctx->ucp, &mp, &memh) != UCS_OK) {
        pthread_mutex_unlock(&c->lock);
        return -EIO;
    }
    if (ucp_rkey_pack(c->ctx->ucp, memh, &blob, &blen) == UCS_OK) {
        if (ucp_ep_rkey_unpack(c->ep, blob, &rkey) == UCS_OK) {
            ucp_request_param_t p = { 0 };
            ucs_status_t st = svm_rdma_wait(c->worker, c->efd,
                                            ucp_get_nbx(c->ep, buf, len, raddr, rkey, &p),
                                            deadline_after(timeout_ms));
            rc = st == UCS_OK ? 0 : st == UCS_ERR_TIMED_OUT ? -ETIMEDOUT : -EIO;
            if (st == UCS_ERR_TIMED_OUT) {
                /* The request stays queued: this endpoint is done for. */
                __atomic_store_n(&c->dead, 1, __ATOMIC_RELEASE);
            }
            ucp_rkey_destroy(rkey);
        }
        ucp_rkey_buffer_release(blob);
    }
    ucp_mem_unmap(c->ctx->ucp, memh);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

const SvmClientTransportOps svm_rdma_client_ops = {
    .name = "rdma",
    .connect = rdma_connect,
    .sendv = rdma_sendv,
    .recv = rdma_recv,
    .shutdown = rdma_shutdown,
    .close = rdma_close,
    .map = rdma_map,
    .read_pages = rdma_read_pages,
    .write_pages = rdma_write_pages,
};
