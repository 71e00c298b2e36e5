/*
 * splitvm wire protocol codec: the only place that knows the byte layout.
 * See docs/protocol.md.  Every decoder checks lengths before touching bytes.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <stdio.h>
#include "splitvm/wire.h"

_Static_assert(SVM_WIRE_MAX_FRAME >= SVM_WIRE_HDR_SIZE + 8u +
               SVM_WIRE_MAX_BATCH * (8u + SVM_WIRE_PAGE_SIZE),
               "a full WRITE batch must fit in one frame");

#define HELLO_REQ_SIZE      16u
#define HELLO_REP_SIZE      (16u + SVM_WIRE_NONCE_SIZE)
#define AUTH_REQ_FIXED      (8u + SVM_WIRE_NONCE_SIZE + SVM_WIRE_MAC_SIZE)
#define ATTACH_REQ_SIZE     24u
#define ATTACH_REP_SIZE     32u
#define PAGEVEC_FIXED       8u
#define STATS_REQ_SIZE      8u
#define STATS_REP_FIXED     16u

void svm_wire_hdr_put(uint8_t *buf, uint32_t len, uint8_t op, uint8_t flags,
                      uint16_t status, uint64_t req_id)
{
    svm_put_le32(buf, len);
    buf[4] = op;
    buf[5] = flags;
    svm_put_le16(buf + 6, status);
    svm_put_le64(buf + 8, req_id);
}

void svm_wire_hdr_get(const uint8_t *buf, SvmWireHdr *h)
{
    h->len = svm_get_le32(buf);
    h->op = buf[4];
    h->flags = buf[5];
    h->status = svm_get_le16(buf + 6);
    h->req_id = svm_get_le64(buf + 8);
}

SvmWirePeek svm_wire_peek(const uint8_t *buf, size_t avail, SvmWireHdr *h)
{
    if (avail < SVM_WIRE_HDR_SIZE) {
        return SVM_PEEK_NEED_MORE;
    }
    svm_wire_hdr_get(buf, h);
    if (h->len < SVM_WIRE_HDR_SIZE || h->len > SVM_WIRE_MAX_FRAME) {
        return SVM_PEEK_BAD;
    }
    return avail >= h->len ? SVM_PEEK_FRAME : SVM_PEEK_NEED_MORE;
}

const char *svm_wire_op_name(unsigned op)
{
    static const char *const names[] = {
        [SVM_OP_HELLO] = "HELLO", [SVM_OP_AUTH] = "AUTH",
        [SVM_OP_ATTACH] = "ATTACH", [SVM_OP_READ] = "READ",
        [SVM_OP_WRITE] = "WRITE", [SVM_OP_DISCARD] = "DISCARD",
        [SVM_OP_STATS] = "STATS", [SVM_OP_DETACH] = "DETACH",
        [SVM_OP_FREE_NS] = "FREE_NS", [SVM_OP_MAP] = "MAP",
    };
    return op < SVM_OP__MAX && names[op] ? names[op] : "UNKNOWN";
}

const char *svm_wire_status_name(unsigned status)
{
    static const char *const names[] = {
        [SVM_ST_OK] = "ok",
        [SVM_ST_BAD_FRAME] = "malformed frame",
        [SVM_ST_UNKNOWN_OP] = "unknown operation",
        [SVM_ST_BAD_VERSION] = "no common protocol version",
        [SVM_ST_NEED_AUTH] = "not authenticated",
        [SVM_ST_AUTH_FAILED] = "authentication failed",
        [SVM_ST_NOT_ATTACHED] = "no namespace attached",
        [SVM_ST_OUT_OF_RANGE] = "page past the end of the namespace",
        [SVM_ST_QUOTA] = "VM quota exhausted",
        [SVM_ST_CAPACITY] = "server capacity exhausted",
        [SVM_ST_BAD_BATCH] = "bad page batch size",
        [SVM_ST_FENCED] = "stale owner epoch (fenced)",
        [SVM_ST_BAD_STATE] = "operation not valid in this state",
        [SVM_ST_PERMISSION] = "operation not permitted for this role",
        [SVM_ST_TOO_LARGE] = "invalid namespace size",
        [SVM_ST_INTERNAL] = "internal server error",
        [SVM_ST_UNSUPPORTED] = "operation not supported",
    };
    return status < SVM_ST__MAX ? names[status] : "unknown status";
}

int svm_wire_status_errno(unsigned status)
{
    switch (status) {
    case SVM_ST_OK:             return 0;
    case SVM_ST_OUT_OF_RANGE:   return -ERANGE;
    case SVM_ST_QUOTA:
    case SVM_ST_CAPACITY:       return -ENOSPC;
    case SVM_ST_FENCED:         return -ESTALE;
    case SVM_ST_AUTH_FAILED:
    case SVM_ST_NEED_AUTH:
    case SVM_ST_PERMISSION:     return -EACCES;
    case SVM_ST_NOT_ATTACHED:   return -ENOTCONN;
    case SVM_ST_BAD_BATCH:
    case SVM_ST_TOO_LARGE:      return -EINVAL;
    case SVM_ST_UNSUPPORTED:    return -EOPNOTSUPP;
    default:                    return -EPROTO;
    }
}

size_t svm_wire_reply_bound(const SvmWireHdr *req)
{
    size_t err = SVM_WIRE_HDR_SIZE + 2 + SVM_WIRE_ERRMSG_MAX;

    switch (req->op) {
    case SVM_OP_READ:
        if (req->len >= SVM_WIRE_HDR_SIZE + PAGEVEC_FIXED) {
            size_t n = (req->len - SVM_WIRE_HDR_SIZE - PAGEVEC_FIXED) / 8;
            size_t bound = SVM_WIRE_HDR_SIZE + n * SVM_WIRE_PAGE_SIZE;
            if (bound > SVM_WIRE_MAX_FRAME) {
                bound = SVM_WIRE_MAX_FRAME;
            }
            return bound > err ? bound : err;
        }
        return err;
    case SVM_OP_STATS:
        return SVM_WIRE_MAX_FRAME;
    default:
        return err + 64;
    }
}

static size_t put_hdr_checked(uint8_t *buf, size_t cap, size_t len, uint8_t op,
                              uint8_t flags, uint16_t status, uint64_t id)
{
    if (len > cap || len > SVM_WIRE_MAX_FRAME) {
        return 0;
    }
    svm_wire_hdr_put(buf, (uint32_t)len, op, flags, status, id);
    return len;
}

/* ---- HELLO ---- */
size_t svm_wire_enc_hello_req(uint8_t *buf, size_t cap, uint64_t id,
                              uint16_t vmin, uint16_t vmax)
{
    size_t len = put_hdr_checked(buf, cap, SVM_WIRE_HDR_SIZE + HELLO_REQ_SIZE,
                                 SVM_OP_HELLO, 0, 0, id);
    if (!len) {
        return 0;
    }
    uint8_t *b = buf + SVM_WIRE_HDR_SIZE;
    svm_put_le32(b, SVM_WIRE_MAGIC);
    svm_put_le16(b + 4, vmin);
    svm_put_le16(b + 6, vmax);
    svm_put_le32(b + 8, 0);
    svm_put_le32(b + 12, 0);
    return len;
}

bool svm_wire_dec_hello_req(const uint8_t *b, size_t len, SvmWireHello *out)
{
    if (len != HELLO_REQ_SIZE) {
        return false;
    }
    memset(out, 0, sizeof(*out));
    out->magic = svm_get_le32(b);
    out->version_min = svm_get_le16(b + 4);
    out->version_max = svm_get_le16(b + 6);
    out->features = svm_get_le32(b + 8);
    return true;
}

size_t svm_wire_enc_hello_rep(uint8_t *buf, size_t cap, uint64_t id, const SvmWireHello *h)
{
    size_t len = put_hdr_checked(buf, cap, SVM_WIRE_HDR_SIZE + HELLO_REP_SIZE,
                                 SVM_OP_HELLO, SVM_WIRE_F_REPLY, 0, id);
    if (!len) {
        return 0;
    }
    uint8_t *b = buf + SVM_WIRE_HDR_SIZE;
    svm_put_le32(b, SVM_WIRE_MAGIC);
    svm_put_le16(b + 4, h->version);
    svm_put_le16(b + 6, h->max_batch);
    svm_put_le32(b + 8, h->max_frame);
    svm_put_le32(b + 12, h->features);
    memcpy(b + 16, h->nonce, SVM_WIRE_NONCE_SIZE);
    return len;
}

bool svm_wire_dec_hello_rep(const uint8_t *b, size_t len, SvmWireHello *out)
{
    if (len != HELLO_REP_SIZE) {
        return false;
    }
    memset(out, 0, sizeof(*out));
    out->magic = svm_get_le32(b);
    out->version = svm_get_le16(b + 4);
    out->max_batch = svm_get_le16(b + 6);
    out->max_frame = svm_get_le32(b + 8);
    out->features = svm_get_le32(b + 12);
    memcpy(out->nonce, b + 16, SVM_WIRE_NONCE_SIZE);
    return out->magic == SVM_WIRE_MAGIC;
}

/* ---- AUTH ---- */
size_t svm_wire_enc_auth_req(uint8_t *buf, size_t cap, uint64_t id, const SvmWireAuth *a)
{
    if (a->id_len == 0 || a->id_len > SVM_WIRE_ID_MAX) {
        return 0;
    }
    size_t len = put_hdr_checked(buf, cap, SVM_WIRE_HDR_SIZE + AUTH_REQ_FIXED + a->id_len,
                                 SVM_OP_AUTH, 0, 0, id);
    if (!len) {
        return 0;
    }
    uint8_t *b = buf + SVM_WIRE_HDR_SIZE;
    b[0] = a->role;
    b[1] = a->id_len;
    svm_put_le16(b + 2, 0);
    svm_put_le32(b + 4, 0);
    memcpy(b + 8, a->client_nonce, SVM_WIRE_NONCE_SIZE);
    memcpy(b + 8 + SVM_WIRE_NONCE_SIZE, a->mac, SVM_WIRE_MAC_SIZE);
    memcpy(b + AUTH_REQ_FIXED, a->id, a->id_len);
    return len;
}

bool svm_wire_dec_auth_req(const uint8_t *b, size_t len, SvmWireAuth *out)
{
    if (len < AUTH_REQ_FIXED + 1) {
        return false;
    }
    memset(out, 0, sizeof(*out));
    out->role = b[0];
    out->id_len = b[1];
    if (out->id_len == 0 || out->id_len > SVM_WIRE_ID_MAX ||
        len != AUTH_REQ_FIXED + out->id_len) {
        return false;
    }
    memcpy(out->client_nonce, b + 8, SVM_WIRE_NONCE_SIZE);
    memcpy(out->mac, b + 8 + SVM_WIRE_NONCE_SIZE, SVM_WIRE_MAC_SIZE);
    memcpy(out->id, b + AUTH_REQ_FIXED, out->id_len);
    out->id[out->id_len] = '\0';
    /* An identity is printable ASCII without NUL so it can be logged and
     * used as a key safely. */
    for (unsigned i = 0; i < out->id_len; i++) {
        if (out->id[i] <= ' ' || out->id[i] > '~') {
            return false;
        }
    }
    return true;
}

size_t svm_wire_enc_auth_rep(uint8_t *buf, size_t cap, uint64_t id,
                             const uint8_t server_mac[SVM_WIRE_MAC_SIZE])
{
    size_t len = put_hdr_checked(buf, cap, SVM_WIRE_HDR_SIZE + SVM_WIRE_MAC_SIZE,
                                 SVM_OP_AUTH, SVM_WIRE_F_REPLY, 0, id);
    if (len) {
        memcpy(buf + SVM_WIRE_HDR_SIZE, server_mac, SVM_WIRE_MAC_SIZE);
    }
    return len;
}

bool svm_wire_dec_auth_rep(const uint8_t *b, size_t len,
                           uint8_t server_mac[SVM_WIRE_MAC_SIZE])
{
    if (len != SVM_WIRE_MAC_SIZE) {
        return false;
    }
    memcpy(server_mac, b, SVM_WIRE_MAC_SIZE);
    return true;
}

/* ---- ATTACH ---- */
size_t svm_wire_enc_attach_req(uint8_t *buf, size_t cap, uint64_t id, const SvmWireAttach *a)
{
    size_t len = put_hdr_checked(buf, cap, SVM_WIRE_HDR_SIZE + ATTACH_REQ_SIZE,
                                 SVM_OP_ATTACH, 0, 0, id);
    if (!len) {
        return 0;
    }
    uint8_t *b = buf + SVM_WIRE_HDR_SIZE;
    svm_put_le64(b, a->npages);
    svm_put_le64(b + 8, a->owner_epoch);
    svm_put_le32(b + 16, a->flags);
    svm_put_le32(b + 20, 0);
    return len;
}

bool svm_wire_dec_attach_req(const uint8_t *b, size_t len, SvmWireAttach *out)
{
    if (len != ATTACH_REQ_SIZE) {
        return false;
    }
    memset(out, 0, sizeof(*out));
    out->npages = svm_get_le64(b);
    out->owner_epoch = svm_get_le64(b + 8);
    out->flags = svm_get_le32(b + 16);
    return true;
}

size_t svm_wire_enc_attach_rep(uint8_t *buf, size_t cap, uint64_t id, const SvmWireAttach *a)
{
    size_t len = put_hdr_checked(buf, cap, SVM_WIRE_HDR_SIZE + ATTACH_REP_SIZE,
                                 SVM_OP_ATTACH, SVM_WIRE_F_REPLY, 0, id);
    if (!len) {
        return 0;
    }
    uint8_t *b = buf + SVM_WIRE_HDR_SIZE;
    svm_put_le64(b, a->npages);
    svm_put_le64(b + 8, a->pages_stored);
    svm_put_le64(b + 16, a->quota_pages);
    svm_put_le64(b + 24, a->owner_epoch);
    return len;
}

bool svm_wire_dec_attach_rep(const uint8_t *b, size_t len, SvmWireAttach *out)
{
    if (len != ATTACH_REP_SIZE) {
        return false;
    }
    memset(out, 0, sizeof(*out));
    out->npages = svm_get_le64(b);
    out->pages_stored = svm_get_le64(b + 8);
    out->quota_pages = svm_get_le64(b + 16);
    out->owner_epoch = svm_get_le64(b + 24);
    return true;
}

/* ---- page vectors ---- */
size_t svm_wire_pagevec_prefix(unsigned n)
{
    return SVM_WIRE_HDR_SIZE + PAGEVEC_FIXED + 8u * (size_t)n;
}

size_t svm_wire_enc_pagevec_req(uint8_t *buf, size_t cap, uint64_t id, uint8_t op,
                                const uint64_t *pages, unsigned n)
{
    if (n == 0 || n > SVM_WIRE_MAX_BATCH ||
        (op != SVM_OP_READ && op != SVM_OP_WRITE && op != SVM_OP_DISCARD)) {
        return 0;
    }
    size_t prefix = svm_wire_pagevec_prefix(n);
    size_t total = prefix + (op == SVM_OP_WRITE ? (size_t)n * SVM_WIRE_PAGE_SIZE : 0);
    if (prefix > cap || total > SVM_WIRE_MAX_FRAME) {
        return 0;
    }
    svm_wire_hdr_put(buf, (uint32_t)total, op, 0, 0, id);
    uint8_t *b = buf + SVM_WIRE_HDR_SIZE;
    svm_put_le32(b, n);
    svm_put_le32(b + 4, 0);
    for (unsigned i = 0; i < n; i++) {
        svm_put_le64(b + PAGEVEC_FIXED + 8u * i, pages[i]);
    }
    return prefix;
}

SvmWireStatus svm_wire_check_pagevec_req(uint8_t op, const uint8_t *b, size_t len,
                                         SvmWirePageVec *out)
{
    if (len < PAGEVEC_FIXED) {
        return SVM_ST_BAD_FRAME;
    }
    uint32_t n = svm_get_le32(b);
    out->n = n;
    if (n == 0 || n > SVM_WIRE_MAX_BATCH) {
        return SVM_ST_BAD_BATCH;
    }
    size_t need = PAGEVEC_FIXED + 8u * (size_t)n;
    if (op == SVM_OP_WRITE) {
        need += (size_t)n * SVM_WIRE_PAGE_SIZE;
    }
    if (len != need) {
        return SVM_ST_BAD_FRAME;
    }
    out->pages = b + PAGEVEC_FIXED;
    out->data = op == SVM_OP_WRITE ? b + PAGEVEC_FIXED + 8u * (size_t)n : NULL;
    return SVM_ST_OK;
}

bool svm_wire_dec_pagevec_req(uint8_t op, const uint8_t *b, size_t len,
                              SvmWirePageVec *out)
{
    return svm_wire_check_pagevec_req(op, b, len, out) == SVM_ST_OK;
}

size_t svm_wire_read_rep_len(unsigned n)
{
    return SVM_WIRE_READ_REP_DATA + (size_t)n * SVM_WIRE_PAGE_SIZE;
}

bool svm_wire_is_read_rep(const SvmWireHdr *h, uint64_t req_id, unsigned n)
{
    return n >= 1 && n <= SVM_WIRE_MAX_BATCH && h->req_id == req_id &&
           h->op == SVM_OP_READ && (h->flags & SVM_WIRE_F_REPLY) &&
           h->status == SVM_ST_OK && h->len == svm_wire_read_rep_len(n);
}

/* ---- empty / STATS / errors ---- */
size_t svm_wire_enc_empty(uint8_t *buf, size_t cap, uint64_t id, uint8_t op,
                          uint8_t flags, uint16_t status)
{
    return put_hdr_checked(buf, cap, SVM_WIRE_HDR_SIZE, op, flags, status, id);
}

size_t svm_wire_enc_stats_req(uint8_t *buf, size_t cap, uint64_t id, uint32_t flags)
{
    size_t len = put_hdr_checked(buf, cap, SVM_WIRE_HDR_SIZE + STATS_REQ_SIZE,
                                 SVM_OP_STATS, 0, 0, id);
    if (len) {
        svm_put_le32(buf + SVM_WIRE_HDR_SIZE, flags);
        svm_put_le32(buf + SVM_WIRE_HDR_SIZE + 4, 0);
    }
    return len;
}

bool svm_wire_dec_stats_req(const uint8_t *b, size_t len, uint32_t *flags)
{
    if (len != STATS_REQ_SIZE) {
        return false;
    }
    *flags = svm_get_le32(b);
    return true;
}

size_t svm_wire_enc_stats_rep(uint8_t *buf, size_t cap, uint64_t id, const SvmWireStats *s)
{
    size_t len = SVM_WIRE_HDR_SIZE + STATS_REP_FIXED +
                 8u * (SVM_SF__MAX + SVM_WIRE_HIST_BUCKETS);
    if (!put_hdr_checked(buf, cap, len, SVM_OP_STATS, SVM_WIRE_F_REPLY, 0, id)) {
        return 0;
    }
    uint8_t *b = buf + SVM_WIRE_HDR_SIZE;
    svm_put_le32(b, SVM_SF__MAX);
    svm_put_le32(b + 4, SVM_WIRE_HIST_BUCKETS);
    svm_put_le32(b + 8, 0);
    svm_put_le32(b + 12, 0);
    b += STATS_REP_FIXED;
    for (unsigned i = 0; i < SVM_SF__MAX; i++, b += 8) {
        svm_put_le64(b, s->field[i]);
    }
    for (unsigned i = 0; i < SVM_WIRE_HIST_BUCKETS; i++, b += 8) {
        svm_put_le64(b, s->hist[i]);
    }
    return len;
}

size_t svm_wire_stats_add_ns(uint8_t *buf, size_t cap, size_t len, const SvmWireStatsNs *ns)
{
    size_t nlen = len + SVM_WIRE_STATS_NS_SIZE;
    if (nlen > cap || nlen > SVM_WIRE_MAX_FRAME) {
        return 0;
    }
    uint8_t *e = buf + len;
    memset(e, 0, SVM_WIRE_ID_MAX);
    memcpy(e, ns->id, strnlen(ns->id, SVM_WIRE_ID_MAX));
    svm_put_le64(e + SVM_WIRE_ID_MAX, ns->npages);
    svm_put_le64(e + SVM_WIRE_ID_MAX + 8, ns->pages_stored);
    svm_put_le64(e + SVM_WIRE_ID_MAX + 16, ns->quota_pages);
    svm_put_le64(e + SVM_WIRE_ID_MAX + 24, ns->requests);
    uint8_t *b = buf + SVM_WIRE_HDR_SIZE;
    svm_put_le32(b + 8, svm_get_le32(b + 8) + 1);
    svm_put_le32(buf, (uint32_t)nlen);
    return nlen;
}

bool svm_wire_dec_stats_rep(const uint8_t *b, size_t len, SvmWireStats *out)
{
    memset(out, 0, sizeof(*out));
    if (len < STATS_REP_FIXED) {
        return false;
    }
    uint32_t nfields = svm_get_le32(b);
    uint32_t nhist = svm_get_le32(b + 4);
    uint32_t nns = svm_get_le32(b + 8);
    /* Bound each count before multiplying so nothing can overflow. */
    if (nfields > 1024 || nhist > 1024 || nns > SVM_WIRE_MAX_FRAME / SVM_WIRE_STATS_NS_SIZE) {
        return false;
    }
    size_t need = STATS_REP_FIXED + 8u * ((size_t)nfields + nhist) +
                  (size_t)nns * SVM_WIRE_STATS_NS_SIZE;
    if (len != need) {
        return false;
    }
    const uint8_t *p = b + STATS_REP_FIXED;
    for (uint32_t i = 0; i < nfields; i++, p += 8) {
        if (i < SVM_SF__MAX) {
            out->field[i] = svm_get_le64(p);
        }
    }
    for (uint32_t i = 0; i < nhist; i++, p += 8) {
        if (i < SVM_WIRE_HIST_BUCKETS) {
            out->hist[i] = svm_get_le64(p);
        }
    }
    out->nns = nns;
    out->ns_raw = p;
    return true;
}

void svm_wire_stats_ns_at(const SvmWireStats *s, uint32_t i, SvmWireStatsNs *out)
{
    const uint8_t *e = s->ns_raw + (size_t)i * SVM_WIRE_STATS_NS_SIZE;
    memcpy(out->id, e, SVM_WIRE_ID_MAX);
    out->id[SVM_WIRE_ID_MAX] = '\0';
    for (unsigned k = 0; k < SVM_WIRE_ID_MAX && out->id[k]; k++) {
        if (out->id[k] < ' ' || out->id[k] > '~') {
            out->id[k] = '?';
        }
    }
    out->npages = svm_get_le64(e + SVM_WIRE_ID_MAX);
    out->pages_stored = svm_get_le64(e + SVM_WIRE_ID_MAX + 8);
    out->quota_pages = svm_get_le64(e + SVM_WIRE_ID_MAX + 16);
    out->requests = svm_get_le64(e + SVM_WIRE_ID_MAX + 24);
}

size_t svm_wire_enc_error(uint8_t *buf, size_t cap, uint64_t id, uint8_t op,
                          uint16_t status, const char *msg)
{
    size_t mlen = msg ? strnlen(msg, SVM_WIRE_ERRMSG_MAX) : 0;
    size_t len = put_hdr_checked(buf, cap, SVM_WIRE_HDR_SIZE + 2 + mlen, op,
                                 SVM_WIRE_F_REPLY, status, id);
    if (len) {
        svm_put_le16(buf + SVM_WIRE_HDR_SIZE, (uint16_t)mlen);
        memcpy(buf + SVM_WIRE_HDR_SIZE + 2, msg, mlen);
    }
    return len;
}

size_t svm_wire_enc_bad_length(uint8_t *buf, size_t cap, const SvmWireHdr *bad)
{
    char msg[SVM_WIRE_BAD_LENGTH_REPLY_MAX - SVM_WIRE_HDR_SIZE - 2];

    snprintf(msg, sizeof(msg), "frame length %u outside [%u, %u]", bad->len,
             SVM_WIRE_HDR_SIZE, SVM_WIRE_MAX_FRAME);
    return svm_wire_enc_error(buf, cap, bad->req_id, bad->op, SVM_ST_BAD_FRAME, msg);
}

void svm_wire_dec_error(const uint8_t *b, size_t len, char *msg, size_t msg_cap)
{
    size_t mlen = 0;

    if (msg_cap == 0) {
        return;
    }
    if (len >= 2) {
        mlen = svm_get_le16(b);
        if (mlen > len - 2) {
            mlen = len - 2;
        }
    }
    if (mlen >= msg_cap) {
        mlen = msg_cap - 1;
    }
    for (size_t i = 0; i < mlen; i++) {
        char c = (char)b[2 + i];
        msg[i] = (c >= ' ' && c <= '~') ? c : '?';
    }
    msg[mlen] = '\0';
}
