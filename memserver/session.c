/*
 * Request dispatcher: see session.h and docs/protocol.md.
 *
 * Every request gets exactly one reply with the same request id; the only
 * frames that also close the connection are failed HELLO/AUTH (the nonce is
 * single-use) and frames whose length cannot be trusted (handled by the
 * transport).  Nothing here allocates on the page path.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "splitvm/auth.h"
#include "session.h"

typedef enum SessionState {
    SESS_NEW,
    SESS_HELLO,             /* nonce sent, waiting for AUTH */
    SESS_AUTHED,
    SESS_DEAD,              /* AUTH failed: reply and close */
} SessionState;

struct SvmSession {
    SvmServerCtx *ctx;
    SessionState state;
    uint8_t role;
    char id[SVM_WIRE_ID_MAX + 1];
    char peer[64];
    uint8_t nonce[SVM_WIRE_NONCE_SIZE];
    SvmNs *ns;
    uint64_t epoch;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

SvmSession *svm_session_new(SvmServerCtx *ctx, const char *peer)
{
    SvmSession *s = g_new0(SvmSession, 1);
    s->ctx = ctx;
    g_strlcpy(s->peer, peer ? peer : "?", sizeof(s->peer));
    __atomic_fetch_add(&ctx->counters.connections, 1, __ATOMIC_RELAXED);
    return s;
}

void svm_session_free(SvmSession *s)
{
    if (!s) {
        return;
    }
    if (s->ns) {
        svm_store_detach(s->ctx->store, s->ns);
    }
    __atomic_fetch_sub(&s->ctx->counters.connections, 1, __ATOMIC_RELAXED);
    g_free(s);
}

bool svm_session_test_attach(SvmSession *s, const char *vm_id, uint64_t npages)
{
    char msg[SVM_WIRE_ERRMSG_MAX];
    s->state = SESS_AUTHED;
    s->role = SVM_ROLE_VM;
    g_strlcpy(s->id, vm_id, sizeof(s->id));
    return svm_store_attach(s->ctx->store, vm_id, npages, 0, 0, &s->ns, msg,
                            sizeof(msg)) == SVM_ST_OK;
}

void svm_session_account(SvmSession *s, uint64_t ns, size_t in, size_t out)
{
    SvmServerCounters *c = &s->ctx->counters;

    __atomic_fetch_add(&c->bytes_in, in, __ATOMIC_RELAXED);
    __atomic_fetch_add(&c->bytes_out, out, __ATOMIC_RELAXED);
    if (ns == UINT64_MAX) {
        __atomic_fetch_add(&c->errors, 1, __ATOMIC_RELAXED);
        return;
    }
    unsigned b = ns ? 63u - (unsigned)__builtin_clzll(ns) : 0;
    if (b >= SVM_WIRE_HIST_BUCKETS) {
        b = SVM_WIRE_HIST_BUCKETS - 1;
    }
    __atomic_fetch_add(&c->hist[b], 1, __ATOMIC_RELAXED);
}

/* ---- handlers: each returns the reply length ---- */

static size_t reply_error(SvmSession *s, const SvmWireHdr *h, uint8_t *out, size_t cap,
                          SvmWireStatus st, const char *msg)
{
    __atomic_fetch_add(&s->ctx->counters.errors, 1, __ATOMIC_RELAXED);
    return svm_wire_enc_error(out, cap, h->req_id, h->op, (uint16_t)st,
                              msg ? msg : svm_wire_status_name(st));
}

static size_t on_hello(SvmSession *s, const SvmWireHdr *h, const uint8_t *body,
                       size_t blen, uint8_t *out, size_t cap, bool *close_after)
{
    SvmWireHello req, rep = { 0 };

    if (s->state != SESS_NEW) {
        return reply_error(s, h, out, cap, SVM_ST_BAD_STATE, "HELLO was already done");
    }
    if (!svm_wire_dec_hello_req(body, blen, &req)) {
        *close_after = true;
        return reply_error(s, h, out, cap, SVM_ST_BAD_FRAME, "malformed HELLO");
    }
    if (req.magic != SVM_WIRE_MAGIC || req.version_min > SVM_WIRE_VERSION_MAX ||
        req.version_max < SVM_WIRE_VERSION_MIN || req.version_min > req.version_max) {
        char msg[96];
        snprintf(msg, sizeof(msg), "server speaks protocol versions %u..%u",
                 SVM_WIRE_VERSION_MIN, SVM_WIRE_VERSION_MAX);
        *close_after = true;
        return reply_error(s, h, out, cap, SVM_ST_BAD_VERSION, msg);
    }
    if (!svm_auth_random(s->nonce, sizeof(s->nonce))) {
        *close_after = true;
        return reply_error(s, h, out, cap, SVM_ST_INTERNAL, "no randomness");
    }
    rep.version = MIN(req.version_max, SVM_WIRE_VERSION_MAX);
    rep.max_batch = SVM_WIRE_MAX_BATCH;
    rep.max_frame = SVM_WIRE_MAX_FRAME;
    memcpy(rep.nonce, s->nonce, sizeof(rep.nonce));
    s->state = SESS_HELLO;
    return svm_wire_enc_hello_rep(out, cap, h->req_id, &rep);
}

static size_t on_auth(SvmSession *s, const SvmWireHdr *h, const uint8_t *body,
                      size_t blen, uint8_t *out, size_t cap, bool *close_after)
{
    SvmWireAuth a;
    const uint8_t *secret = NULL;
    size_t secret_len = 0;

    if (s->state == SESS_AUTHED) {
        return reply_error(s, h, out, cap, SVM_ST_BAD_STATE, "already authenticated");
    }
    if (s->state != SESS_HELLO) {
        return reply_error(s, h, out, cap, SVM_ST_NEED_AUTH, "HELLO must come first");
    }
    /* The nonce is single-use: any failure below closes the connection. */
    *close_after = true;
    s->state = SESS_DEAD;
    if (!svm_wire_dec_auth_req(body, blen, &a)) {
        return reply_error(s, h, out, cap, SVM_ST_BAD_FRAME, "malformed AUTH");
    }
    /* Both MACs are computed under the read lock: a SIGHUP may free the secret. */
    pthread_rwlock_rdlock(&s->ctx->secrets_lock);
    if (a.role == SVM_ROLE_VM) {
        const SvmVmSecret *v = svm_secrets_lookup(s->ctx->secrets, a.id);
        if (v) {
            secret = v->secret;
            secret_len = v->secret_len;
        }
    } else if (a.role == SVM_ROLE_ADMIN) {
        secret = s->ctx->secrets->admin_secret;
        secret_len = s->ctx->secrets->admin_secret_len;
    }
    uint8_t expect[SVM_WIRE_MAC_SIZE];
    uint8_t server_mac[SVM_WIRE_MAC_SIZE];
    bool have_secret = secret != NULL;
    if (have_secret) {
        svm_auth_mac(SVM_AUTH_CLIENT_PROOF, secret, secret_len, s->nonce, a.client_nonce,
                     a.role, a.id, expect);
        svm_auth_mac(SVM_AUTH_SERVER_PROOF, secret, secret_len, s->nonce, a.client_nonce,
                     a.role, a.id, server_mac);
    }
    pthread_rwlock_unlock(&s->ctx->secrets_lock);
    if (!have_secret || !svm_auth_mac_equal(expect, a.mac)) {
        /* Same answer for unknown ids and wrong secrets. */
        g_warning("%s: authentication failed for %s '%s'", s->peer,
                  a.role == SVM_ROLE_ADMIN ? "admin" : "VM", a.id);
        return reply_error(s, h, out, cap, SVM_ST_AUTH_FAILED,
                           "unknown identity or wrong secret");
    }
    *close_after = false;
    s->state = SESS_AUTHED;
    s->role = a.role;
    memcpy(s->id, a.id, sizeof(s->id));
    if (!s->ctx->quiet) {
        g_message("%s: authenticated %s '%s'", s->peer,
                  a.role == SVM_ROLE_ADMIN ? "admin" : "VM", a.id);
    }
    return svm_wire_enc_auth_rep(out, cap, h->req_id, server_mac);
}

static size_t on_attach(SvmSession *s, const SvmWireHdr *h, const uint8_t *body,
                        size_t blen, uint8_t *out, size_t cap)
{
    SvmWireAttach a;
    char msg[SVM_WIRE_ERRMSG_MAX];

    if (s->role != SVM_ROLE_VM) {
        return reply_error(s, h, out, cap, SVM_ST_PERMISSION, "admin sessions cannot attach");
    }
    if (s->ns) {
        return reply_error(s, h, out, cap, SVM_ST_BAD_STATE, "a namespace is already attached");
    }
    if (!svm_wire_dec_attach_req(body, blen, &a)) {
        return reply_error(s, h, out, cap, SVM_ST_BAD_FRAME, "malformed ATTACH");
    }
    pthread_rwlock_rdlock(&s->ctx->secrets_lock);
    const SvmVmSecret *v = svm_secrets_lookup(s->ctx->secrets, s->id);
    uint64_t quota_pages = v ? v->quota_pages : 0;
    pthread_rwlock_unlock(&s->ctx->secrets_lock);
    SvmWireStatus st = svm_store_attach(s->ctx->store, s->id, a.npages,
                                        quota_pages, a.owner_epoch, &s->ns,
                                        msg, sizeof(msg));
    if (st != SVM_ST_OK) {
        s->ns = NULL;
        return reply_error(s, h, out, cap, st, msg);
    }
    s->epoch = a.owner_epoch;
    SvmNsInfo info;
    svm_store_ns_info(s->ctx->store, s->ns, &info);
    SvmWireAttach rep = {
        .npages = info.npages, .pages_stored = info.pages_stored,
        .quota_pages = info.quota_pages, .owner_epoch = info.owner_epoch,
    };
    return svm_wire_enc_attach_rep(out, cap, h->req_id, &rep);
}

static size_t on_pages(SvmSession *s, const SvmWireHdr *h, const uint8_t *body,
                       size_t blen, uint8_t *out, size_t cap)
{
    SvmWirePageVec v;
    uint64_t pages[SVM_WIRE_MAX_BATCH];
    char msg[SVM_WIRE_ERRMSG_MAX];
    SvmWireStatus st;

    if (!s->ns) {
        return reply_error(s, h, out, cap, SVM_ST_NOT_ATTACHED,
                           s->role == SVM_ROLE_ADMIN ? "admin sessions have no namespace"
                                                     : "ATTACH first");
    }
    st = svm_wire_check_pagevec_req(h->op, body, blen, &v);
    if (st == SVM_ST_BAD_BATCH) {
        snprintf(msg, sizeof(msg), "batch of %u pages is not in 1..%u", v.n,
                 SVM_WIRE_MAX_BATCH);
        return reply_error(s, h, out, cap, SVM_ST_BAD_BATCH, msg);
    }
    if (st != SVM_ST_OK) {
        snprintf(msg, sizeof(msg), "malformed %s (body of %zu bytes)",
                 svm_wire_op_name(h->op), blen);
        return reply_error(s, h, out, cap, SVM_ST_BAD_FRAME, msg);
    }
    for (uint32_t i = 0; i < v.n; i++) {
        pages[i] = svm_wire_page_at(&v, i);
    }
    switch (h->op) {
    case SVM_OP_READ: {
        size_t len = SVM_WIRE_HDR_SIZE + (size_t)v.n * SVM_WIRE_PAGE_SIZE;
        if (len > cap) {
            return reply_error(s, h, out, cap, SVM_ST_INTERNAL, "reply buffer too small");
        }
        st = svm_store_read(s->ctx->store, s->ns, pages, v.n, out + SVM_WIRE_HDR_SIZE,
                            msg, sizeof(msg));
        if (st != SVM_ST_OK) {
            return reply_error(s, h, out, cap, st, msg);
        }
        svm_wire_hdr_put(out, (uint32_t)len, SVM_OP_READ, SVM_WIRE_F_REPLY, 0, h->req_id);
        return len;
    }
    case SVM_OP_WRITE:
        st = svm_store_write(s->ctx->store, s->ns, s->epoch, pages, v.n, v.data, msg,
                             sizeof(msg));
        break;
    default:
        st = svm_store_discard(s->ctx->store, s->ns, s->epoch, pages, v.n, msg, sizeof(msg));
        break;
    }
    if (st != SVM_ST_OK) {
        return reply_error(s, h, out, cap, st, msg);
    }
    return svm_wire_enc_empty(out, cap, h->req_id, h->op, SVM_WIRE_F_REPLY, 0);
}

typedef struct NsListCtx {
    uint8_t *out;
    size_t cap, len;
    bool truncated;
} NsListCtx;

static void add_ns(void *opaque, const SvmNsInfo *info)
{
    NsListCtx *l = opaque;
    SvmWireStatsNs e = {
        .npages = info->npages, .pages_stored = info->pages_stored,
        .quota_pages = info->quota_pages, .requests = info->requests,
    };
    g_strlcpy(e.id, info->id, sizeof(e.id));
    size_t n = l->truncated ? 0 : svm_wire_stats_add_ns(l->out, l->cap, l->len, &e);
    if (n) {
        l->len = n;
    } else {
        l->truncated = true;
    }
}

static size_t on_stats(SvmSession *s, const SvmWireHdr *h, const uint8_t *body,
                       size_t blen, uint8_t *out, size_t cap)
{
    uint32_t flags;
    SvmWireStats st = { 0 };
    SvmStoreInfo si;
    SvmServerCounters *c = &s->ctx->counters;

    if (!svm_wire_dec_stats_req(body, blen, &flags)) {
        return reply_error(s, h, out, cap, SVM_ST_BAD_FRAME, "malformed STATS");
    }
    if ((flags & SVM_STATS_F_NAMESPACES) && s->role != SVM_ROLE_ADMIN) {
        return reply_error(s, h, out, cap, SVM_ST_PERMISSION,
                           "only the admin may list namespaces");
    }
    SvmNsInfo ni;
    bool have_ns = false;
    if (s->ns) {
        svm_store_ns_info(s->ctx->store, s->ns, &ni);
        have_ns = true;
    } else if (s->role == SVM_ROLE_VM) {
        have_ns = svm_store_find_ns_info(s->ctx->store, s->id, &ni);
    }
    if (have_ns) {
        st.field[SVM_SF_NS_PAGES_STORED] = ni.pages_stored;
        st.field[SVM_SF_NS_QUOTA_PAGES] = ni.quota_pages;
        st.field[SVM_SF_NS_NPAGES] = ni.npages;
    }
    svm_store_info(s->ctx->store, &si);
    st.field[SVM_SF_SERVER_PAGES_STORED] = si.pages_stored;
    st.field[SVM_SF_SERVER_CAPACITY_PAGES] = si.capacity_pages;
    st.field[SVM_SF_REQUESTS] = __atomic_load_n(&c->requests, __ATOMIC_RELAXED);
    st.field[SVM_SF_ERRORS] = __atomic_load_n(&c->errors, __ATOMIC_RELAXED);
    st.field[SVM_SF_BYTES_IN] = __atomic_load_n(&c->bytes_in, __ATOMIC_RELAXED);
    st.field[SVM_SF_BYTES_OUT] = __atomic_load_n(&c->bytes_out, __ATOMIC_RELAXED);
    st.field[SVM_SF_CONNECTIONS] = __atomic_load_n(&c->connections, __ATOMIC_RELAXED);
    st.field[SVM_SF_NAMESPACES] = si.namespaces;
    st.field[SVM_SF_METADATA_BYTES] = si.metadata_bytes;
    st.field[SVM_SF_UPTIME_MS] = mono_ms() - s->ctx->start_ms;
    for (unsigned i = 0; i < SVM_WIRE_HIST_BUCKETS; i++) {
        st.hist[i] = __atomic_load_n(&c->hist[i], __ATOMIC_RELAXED);
    }
    size_t len = svm_wire_enc_stats_rep(out, cap, h->req_id, &st);
    if (len && (flags & SVM_STATS_F_NAMESPACES)) {
        NsListCtx l = { .out = out, .cap = cap, .len = len };
        svm_store_foreach_ns(s->ctx->store, add_ns, &l);
        len = l.len;
    }
    return len ? len : reply_error(s, h, out, cap, SVM_ST_INTERNAL, "stats do not fit");
}

size_t svm_session_handle(SvmSession *s, const uint8_t *frame, size_t len,
                          uint8_t *out, size_t cap, bool *close_after)
{
    SvmWireHdr h;
    char msg[SVM_WIRE_ERRMSG_MAX];

    *close_after = false;
    if (len < SVM_WIRE_HDR_SIZE) {
        /* The transport never does this; be safe anyway. */
        *close_after = true;
        return 0;
    }
    svm_wire_hdr_get(frame, &h);
    const uint8_t *body = frame + SVM_WIRE_HDR_SIZE;
    size_t blen = len - SVM_WIRE_HDR_SIZE;
    __atomic_fetch_add(&s->ctx->counters.requests, 1, __ATOMIC_RELAXED);

    if (h.len != len || (h.flags & SVM_WIRE_F_REPLY)) {
        return reply_error(s, &h, out, cap, SVM_ST_BAD_FRAME,
                           "request frame with the reply flag or a wrong length");
    }
    if (h.op == SVM_OP_HELLO) {
        return on_hello(s, &h, body, blen, out, cap, close_after);
    }
    if (h.op == SVM_OP_AUTH) {
        return on_auth(s, &h, body, blen, out, cap, close_after);
    }
    if (h.op == 0 || h.op >= SVM_OP__MAX) {
        snprintf(msg, sizeof(msg), "operation %u is unknown", h.op);
        return reply_error(s, &h, out, cap, SVM_ST_UNKNOWN_OP, msg);
    }
    if (s->state != SESS_AUTHED) {
        snprintf(msg, sizeof(msg), "%s before HELLO and AUTH", svm_wire_op_name(h.op));
        return reply_error(s, &h, out, cap, SVM_ST_NEED_AUTH, msg);
    }
    switch (h.op) {
    case SVM_OP_ATTACH:
        return on_attach(s, &h, body, blen, out, cap);
    case SVM_OP_READ:
    case SVM_OP_WRITE:
    case SVM_OP_DISCARD:
        return on_pages(s, &h, body, blen, out, cap);
    case SVM_OP_STATS:
        return on_stats(s, &h, body, blen, out, cap);
    case SVM_OP_DETACH:
    case SVM_OP_FREE_NS:
        if (blen != 0) {
            return reply_error(s, &h, out, cap, SVM_ST_BAD_FRAME, "body must be empty");
        }
        if (!s->ns) {
            return reply_error(s, &h, out, cap, SVM_ST_NOT_ATTACHED, "nothing attached");
        }
        if (h.op == SVM_OP_FREE_NS) {
            SvmWireStatus st = svm_store_free_ns(s->ctx->store, s->ns, s->epoch, msg,
                                                 sizeof(msg));
            if (st != SVM_ST_OK) {
                return reply_error(s, &h, out, cap, st, msg);
            }
            if (!s->ctx->quiet) {
                g_message("%s: VM '%s' freed its namespace", s->peer, s->id);
            }
        } else {
            svm_store_detach(s->ctx->store, s->ns);
            s->ns = NULL;
        }
        return svm_wire_enc_empty(out, cap, h.req_id, h.op, SVM_WIRE_F_REPLY, 0);
    case SVM_OP_MAP:
    default:
        return reply_error(s, &h, out, cap, SVM_ST_UNSUPPORTED,
                           "MAP is only offered by one-sided transports");
    }
}

/* ---- hooks ---- */

static void *hook_open(void *opaque, const char *peer)
{
    return svm_session_new(opaque, peer);
}

static size_t hook_handle(void *session, const uint8_t *frame, size_t len, uint8_t *out,
                          size_t cap, bool *close_after)
{
    return svm_session_handle(session, frame, len, out, cap, close_after);
}

static void hook_close(void *session)
{
    svm_session_free(session);
}

static void hook_account(void *session, uint64_t ns, size_t in, size_t out)
{
    svm_session_account(session, ns, in, out);
}

/* One-sided transports: where this session's pages live (its namespace only). */
static int hook_locate(void *session, const uint64_t *pages, unsigned n, uint64_t *pool_pages,
                       void (*extent_cb)(void *cb_opaque, uint64_t extent), void *cb_opaque,
                       char *msg, size_t msg_cap)
{
    SvmSession *s = session;

    if (!s->ns) {
        snprintf(msg, msg_cap, "ATTACH first");
        return SVM_ST_NOT_ATTACHED;
    }
    return svm_store_locate(s->ctx->store, s->ns, s->epoch, pages, n, pool_pages, extent_cb,
                            cb_opaque, msg, msg_cap);
}

void svm_session_hooks(SvmServerCtx *ctx, SvmServerHooks *hooks)
{
    *hooks = (SvmServerHooks) {
        .opaque = ctx,
        .session_open = hook_open,
        .handle = hook_handle,
        .session_close = hook_close,
        .account = hook_account,
        .locate = hook_locate,
    };
}

SvmSecrets *svm_server_ctx_swap_secrets(SvmServerCtx *ctx, SvmSecrets *fresh)
{
    pthread_rwlock_wrlock(&ctx->secrets_lock);
    SvmSecrets *old = ctx->secrets;
    ctx->secrets = fresh;
    pthread_rwlock_unlock(&ctx->secrets_lock);
    return old;
}
