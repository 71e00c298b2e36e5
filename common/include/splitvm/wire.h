/*
 * splitvm wire protocol: the byte layout of every frame exchanged between a
 * memory-server client and splitvm-memserver.  wire.c is the only code that
 * knows offsets; everybody else goes through these encoders/decoders, which
 * check every length against the buffer they are given.
 *
 * The protocol itself is described in docs/protocol.md.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SPLITVM_WIRE_H
#define SPLITVM_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <endian.h>

#define SVM_WIRE_MAGIC          0x314d5653u     /* "SVM1" little-endian */
#define SVM_WIRE_VERSION_MIN    1u
#define SVM_WIRE_VERSION_MAX    1u
#define SVM_WIRE_PAGE_SIZE      4096u
#define SVM_WIRE_MAX_BATCH      64u
#define SVM_WIRE_HDR_SIZE       16u
#define SVM_WIRE_NONCE_SIZE     32u
#define SVM_WIRE_MAC_SIZE       32u             /* HMAC-SHA256 */
#define SVM_WIRE_ID_MAX         64u             /* VM id / identity length */
#define SVM_WIRE_ERRMSG_MAX     200u
/* Largest frame either side may send: a full WRITE batch, rounded up. */
#define SVM_WIRE_MAX_FRAME      (260u * 1024u)
/* Namespaces are at most 2^32 pages (16 TiB). */
#define SVM_WIRE_MAX_NS_PAGES   (UINT64_C(1) << 32)

/* Header flags. */
#define SVM_WIRE_F_REPLY        0x01u

typedef enum SvmWireOp {
    SVM_OP_HELLO    = 1,
    SVM_OP_AUTH     = 2,
    SVM_OP_ATTACH   = 3,
    SVM_OP_READ     = 4,
    SVM_OP_WRITE    = 5,
    SVM_OP_DISCARD  = 6,
    SVM_OP_STATS    = 7,
    SVM_OP_DETACH   = 8,
    SVM_OP_FREE_NS  = 9,
    SVM_OP_MAP      = 10,   /* reserved: one-sided transports (rdma) */
    SVM_OP__MAX,
} SvmWireOp;

typedef enum SvmWireStatus {
    SVM_ST_OK           = 0,
    SVM_ST_BAD_FRAME    = 1,    /* malformed body / length */
    SVM_ST_UNKNOWN_OP   = 2,
    SVM_ST_BAD_VERSION  = 3,    /* no common version / bad magic */
    SVM_ST_NEED_AUTH    = 4,    /* op not allowed before HELLO+AUTH */
    SVM_ST_AUTH_FAILED  = 5,    /* unknown identity or wrong MAC */
    SVM_ST_NOT_ATTACHED = 6,
    SVM_ST_OUT_OF_RANGE = 7,    /* page number past the namespace */
    SVM_ST_QUOTA        = 8,    /* VM quota exhausted */
    SVM_ST_CAPACITY     = 9,    /* server capacity exhausted */
    SVM_ST_BAD_BATCH    = 10,   /* 0 or too many pages */
    SVM_ST_FENCED       = 11,   /* owner epoch older than the namespace's */
    SVM_ST_BAD_STATE    = 12,   /* op repeated or out of order */
    SVM_ST_PERMISSION   = 13,   /* op not allowed for this role */
    SVM_ST_TOO_LARGE    = 14,   /* namespace size invalid / shrink refused */
    SVM_ST_INTERNAL     = 15,
    SVM_ST_UNSUPPORTED  = 16,   /* op known but not offered by this transport */
    SVM_ST__MAX,
} SvmWireStatus;

typedef enum SvmWireRole {
    SVM_ROLE_VM     = 0,
    SVM_ROLE_ADMIN  = 1,
} SvmWireRole;


/* STATS request flags. */
#define SVM_STATS_F_NAMESPACES  0x01u   /* list namespaces (admin only) */

typedef struct SvmWireHdr {
    uint32_t len;           /* whole frame, header included */
    uint8_t op;
    uint8_t flags;
    uint16_t status;
    uint64_t req_id;
} SvmWireHdr;

typedef struct SvmWireHello {
    uint32_t magic;
    uint16_t version_min, version_max;  /* request */
    uint16_t version;                   /* reply: chosen */
    uint16_t max_batch;                 /* reply */
    uint32_t max_frame;                 /* reply */
    uint32_t features;
    uint8_t nonce[SVM_WIRE_NONCE_SIZE]; /* reply: server challenge */
} SvmWireHello;

typedef struct SvmWireAuth {
    uint8_t role;
    uint8_t id_len;
    char id[SVM_WIRE_ID_MAX + 1];       /* NUL-terminated copy */
    uint8_t client_nonce[SVM_WIRE_NONCE_SIZE];
    uint8_t mac[SVM_WIRE_MAC_SIZE];
} SvmWireAuth;

typedef struct SvmWireAttach {
    uint64_t npages;
    uint64_t owner_epoch;               /* 0 = no fencing */
    uint32_t flags;
    /* reply only */
    uint64_t pages_stored;
    uint64_t quota_pages;
} SvmWireAttach;

/* A page vector inside a received frame (not copied). */
typedef struct SvmWirePageVec {
    uint32_t n;
    const uint8_t *pages;               /* n little-endian u64, unaligned */
    const uint8_t *data;                /* WRITE: n * 4096 bytes; else NULL */
} SvmWirePageVec;

/* Fixed STATS fields, in wire order; new fields are only ever appended. */
typedef enum SvmWireStatsField {
    SVM_SF_NS_PAGES_STORED,
    SVM_SF_NS_QUOTA_PAGES,
    SVM_SF_NS_NPAGES,
    SVM_SF_SERVER_PAGES_STORED,
    SVM_SF_SERVER_CAPACITY_PAGES,
    SVM_SF_REQUESTS,
    SVM_SF_ERRORS,
    SVM_SF_BYTES_IN,
    SVM_SF_BYTES_OUT,
    SVM_SF_CONNECTIONS,
    SVM_SF_NAMESPACES,
    SVM_SF_METADATA_BYTES,
    SVM_SF_UPTIME_MS,
    SVM_SF__MAX,
} SvmWireStatsField;

#define SVM_WIRE_HIST_BUCKETS   32u     /* bucket i: [2^i, 2^(i+1)) ns of service time */

typedef struct SvmWireStatsNs {
    char id[SVM_WIRE_ID_MAX + 1];
    uint64_t npages, pages_stored, quota_pages, requests;
} SvmWireStatsNs;

#define SVM_WIRE_STATS_NS_SIZE  (SVM_WIRE_ID_MAX + 32u)

typedef struct SvmWireStats {
    uint64_t field[SVM_SF__MAX];
    uint64_t hist[SVM_WIRE_HIST_BUCKETS];
    uint32_t nns;                       /* entries present in the frame */
    const uint8_t *ns_raw;              /* decode: raw entries, see _stats_ns_at */
} SvmWireStats;

/* ---- little-endian helpers ---- */
static inline void svm_put_le16(uint8_t *p, uint16_t v) { v = htole16(v); memcpy(p, &v, 2); }
static inline void svm_put_le32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static inline void svm_put_le64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }
static inline uint16_t svm_get_le16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return le16toh(v); }
static inline uint32_t svm_get_le32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return le32toh(v); }
static inline uint64_t svm_get_le64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return le64toh(v); }

static inline uint64_t svm_wire_page_at(const SvmWirePageVec *v, uint32_t i)
{
    return svm_get_le64(v->pages + 8u * i);
}

/* ---- header / framing ---- */
typedef enum SvmWirePeek {
    SVM_PEEK_NEED_MORE,     /* not a whole frame yet */
    SVM_PEEK_FRAME,         /* *hdr valid, hdr->len bytes available */
    SVM_PEEK_BAD,           /* absurd length: the stream cannot be resynchronised */
} SvmWirePeek;

void svm_wire_hdr_put(uint8_t *buf, uint32_t len, uint8_t op, uint8_t flags,
                      uint16_t status, uint64_t req_id);
void svm_wire_hdr_get(const uint8_t *buf, SvmWireHdr *h);
SvmWirePeek svm_wire_peek(const uint8_t *buf, size_t avail, SvmWireHdr *h);

const char *svm_wire_op_name(unsigned op);
const char *svm_wire_status_name(unsigned status);
/* Map a reply status to a negative errno for the client API. */
int svm_wire_status_errno(unsigned status);

/* Largest reply the server may send for a request with this header. */
size_t svm_wire_reply_bound(const SvmWireHdr *req);

/*
 * Encoders write one whole frame into buf (cap bytes) and return its length,
 * or 0 if it does not fit / the arguments are invalid.
 * Decoders take the body (after the header) and return false on any
 * inconsistency.
 */
size_t svm_wire_enc_hello_req(uint8_t *buf, size_t cap, uint64_t id,
                              uint16_t vmin, uint16_t vmax);
bool svm_wire_dec_hello_req(const uint8_t *body, size_t len, SvmWireHello *out);
size_t svm_wire_enc_hello_rep(uint8_t *buf, size_t cap, uint64_t id, const SvmWireHello *h);
bool svm_wire_dec_hello_rep(const uint8_t *body, size_t len, SvmWireHello *out);

size_t svm_wire_enc_auth_req(uint8_t *buf, size_t cap, uint64_t id, const SvmWireAuth *a);
bool svm_wire_dec_auth_req(const uint8_t *body, size_t len, SvmWireAuth *out);
size_t svm_wire_enc_auth_rep(uint8_t *buf, size_t cap, uint64_t id,
                             const uint8_t server_mac[SVM_WIRE_MAC_SIZE]);
bool svm_wire_dec_auth_rep(const uint8_t *body, size_t len,
                           uint8_t server_mac[SVM_WIRE_MAC_SIZE]);

size_t svm_wire_enc_attach_req(uint8_t *buf, size_t cap, uint64_t id, const SvmWireAttach *a);
bool svm_wire_dec_attach_req(const uint8_t *body, size_t len, SvmWireAttach *out);
size_t svm_wire_enc_attach_rep(uint8_t *buf, size_t cap, uint64_t id, const SvmWireAttach *a);
bool svm_wire_dec_attach_rep(const uint8_t *body, size_t len, SvmWireAttach *out);

/*
 * Page-vector requests.  The encoder writes header + count + page numbers
 * into buf (cap >= svm_wire_pagevec_prefix(n)); for WRITE the caller sends
 * the n pages of data right after it (so data needs no copy); the header's
 * length covers the data.
 */
size_t svm_wire_pagevec_prefix(unsigned n);
size_t svm_wire_enc_pagevec_req(uint8_t *buf, size_t cap, uint64_t id, uint8_t op,
                                const uint64_t *pages, unsigned n);
bool svm_wire_dec_pagevec_req(uint8_t op, const uint8_t *body, size_t len,
                              SvmWirePageVec *out);
/* The same, saying what is wrong: SVM_ST_BAD_BATCH (out->n is then the
 * count the body claims) or SVM_ST_BAD_FRAME. */
SvmWireStatus svm_wire_check_pagevec_req(uint8_t op, const uint8_t *body, size_t len,
                                         SvmWirePageVec *out);

/*
 * A successful READ reply is the header followed by the n pages, in request
 * order, starting SVM_WIRE_READ_REP_DATA bytes into the frame.  A client
 * that receives the pages straight into their destinations checks a header
 * with svm_wire_is_read_rep(): true only for the ok reply to request req_id
 * carrying exactly n pages.
 */
#define SVM_WIRE_READ_REP_DATA  SVM_WIRE_HDR_SIZE
size_t svm_wire_read_rep_len(unsigned n);
bool svm_wire_is_read_rep(const SvmWireHdr *h, uint64_t req_id, unsigned n);

/* Requests and replies with an empty body (DETACH, FREE_NS, ok replies). */
size_t svm_wire_enc_empty(uint8_t *buf, size_t cap, uint64_t id, uint8_t op,
                          uint8_t flags, uint16_t status);
size_t svm_wire_enc_stats_req(uint8_t *buf, size_t cap, uint64_t id, uint32_t flags);
bool svm_wire_dec_stats_req(const uint8_t *body, size_t len, uint32_t *flags);

/* STATS reply: call _begin, then _add_ns for each namespace that fits. */
size_t svm_wire_enc_stats_rep(uint8_t *buf, size_t cap, uint64_t id, const SvmWireStats *s);
size_t svm_wire_stats_add_ns(uint8_t *buf, size_t cap, size_t len, const SvmWireStatsNs *ns);
bool svm_wire_dec_stats_rep(const uint8_t *body, size_t len, SvmWireStats *out);
void svm_wire_stats_ns_at(const SvmWireStats *s, uint32_t i, SvmWireStatsNs *out);

/* Error reply: status != 0 and an optional human-readable message. */
size_t svm_wire_enc_error(uint8_t *buf, size_t cap, uint64_t id, uint8_t op,
                          uint16_t status, const char *msg);
/*
 * The error reply to a frame svm_wire_peek() found SVM_PEEK_BAD (it names
 * the bad length; the stream cannot be resynchronised, so the caller closes
 * after sending it).  0 if it does not fit in cap (at most
 * SVM_WIRE_BAD_LENGTH_REPLY_MAX bytes).
 */
#define SVM_WIRE_BAD_LENGTH_REPLY_MAX   (SVM_WIRE_HDR_SIZE + 2u + 96u)
size_t svm_wire_enc_bad_length(uint8_t *buf, size_t cap, const SvmWireHdr *bad);
/* Copies the message (possibly empty) of an error reply body, NUL-terminated. */
void svm_wire_dec_error(const uint8_t *body, size_t len, char *msg, size_t msg_cap);

#endif /* SPLITVM_WIRE_H */
