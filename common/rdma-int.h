/*
 * "rdma" transport internals shared by rdma_client.c and rdma_server.c
 * (private to common/).  The transport runs on UCX's ucp API; docs/rdma.md
 * describes the design, the two small protocols below and the security
 * model.
 *
 * Connection: a TCP "bootstrap" socket to the memory server's HOST:PORT
 * carries HELLO and AUTH frames, then (authenticated peers only: UCX's
 * address parser trusts its input) one hello each way with the UCX worker
 * addresses; each side then creates its ucp endpoint to the other's
 * worker.  The socket stays open as the liveness signal (UCX 1.13 offers
 * no peer-failure detection over its shared-memory transports).  Frames
 * of the wire protocol then travel on the endpoint's ucp stream; one-sided
 * page access uses ucp_get_nbx / ucp_put_nbx, and page locations are
 * looked up with a small active message exchange (LOOKUP) private to this
 * transport.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SPLITVM_RDMA_INT_H
#define SPLITVM_RDMA_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <gio/gio.h>
#include <ucp/api/ucp.h>
#include "splitvm/transport.h"

/* ---- bootstrap (TCP) ---- */
#define SVM_RDMA_BOOT_MAGIC         "SVMRDMA1"
#define SVM_RDMA_BOOT_VERSION       1u
#define SVM_RDMA_BOOT_HDR           16u     /* magic[8], le16 version, le16 status, le32 len */
#define SVM_RDMA_BOOT_MAX_ADDR      (64u * 1024u)
#define SVM_RDMA_BOOT_TIMEOUT_MS    10000u
enum {
    SVM_RDMA_BOOT_OK = 0,
    SVM_RDMA_BOOT_REFUSED = 1,      /* body: a message instead of an address */
};

/* ---- one-sided modes, chosen by the server and told in the MAP reply ---- */
typedef enum SvmRdmaMode {
    SVM_RDMA_MODE_NONE = 0,         /* two-sided frames only */
    SVM_RDMA_MODE_EXTENT = 1,       /* one registration per extent (RDMA NICs) */
    SVM_RDMA_MODE_POOL = 2,         /* pool in UCX shared memory (same host) */
    SVM_RDMA_MODE_EMULATED = 3,     /* UCX software RMA: not confined, opt-in */
} SvmRdmaMode;

const char *svm_rdma_mode_name(SvmRdmaMode mode);

/*
 * MAP reply body (after the wire header), little-endian:
 *   le32 magic "SVMM", le16 version, u8 mode, u8 reserved,
 *   le64 pool_base, le64 pool_len, le64 ns_pages, le32 page_size,
 *   le32 extent_pages, le32 pool_rkey_len, pool_rkey[pool_rkey_len]
 * The pool rkey is only present in POOL and EMULATED modes.
 */
#define SVM_RDMA_MAP_MAGIC          0x4d4d5653u     /* "SVMM" */
#define SVM_RDMA_MAP_VERSION        1u
#define SVM_RDMA_MAP_FIXED          48u

/*
 * LOOKUP (client -> server active message SVM_RDMA_AM_LOOKUP):
 *   header: le64 seq, le32 n, le32 reserved;  data: n x le64 page.
 * LOOKUP reply (SVM_RDMA_AM_LOOKUP_REP):
 *   header: le64 seq, le16 status (SvmWireStatus), le16 reserved, le32 n,
 *           le32 nkeys, le32 reserved
 *   data (status OK): n x le32 location (0: not stored, else pool page + 1),
 *                     then nkeys x { le32 extent, le32 len, rkey[len] }
 *   data (error): the server's message.
 */
#define SVM_RDMA_AM_LOOKUP          1u
#define SVM_RDMA_AM_LOOKUP_REP      2u
#define SVM_RDMA_LOOKUP_HDR         16u
#define SVM_RDMA_LOOKUP_REP_HDR     24u
#define SVM_RDMA_RKEY_MAX           1024u
/* Largest LOOKUP reply: locations plus a key for each page's extent. */
#define SVM_RDMA_LOOKUP_REP_MAX     (64u * 4u + 64u * (8u + SVM_RDMA_RKEY_MAX) + 256u)

/* ---- UCX context, shared by all connections of one role in a process ---- */
typedef enum SvmRdmaRole {
    SVM_RDMA_CLIENT,
    SVM_RDMA_SERVER,
} SvmRdmaRole;

/*
 * SPLITVM_RDMA_INSECURE=1 allows UCX's tcp transport and its software RMA
 * emulation.  Both let any peer that reaches the process write (and read)
 * arbitrary memory of it, so they are off unless asked for: for tests and
 * trusted single-tenant networks only (see docs/rdma.md).
 */
#define SVM_RDMA_INSECURE_ENV       "SPLITVM_RDMA_INSECURE"
bool svm_rdma_insecure_allowed(void);

typedef struct SvmRdmaContext {
    SvmRdmaRole role;
    ucp_context_h ucp;
    unsigned refs;
    bool insecure;                  /* SPLITVM_RDMA_INSECURE=1 */
    bool has_hw_rma;                /* a transport that registers any memory */
    bool has_shm_rma;               /* posix/sysv: only memory UCX allocated */
    char *resources;                /* "tcp/lo, posix/memory, ..." for messages */
} SvmRdmaContext;

/* Take / drop a reference to the process's context of that role. */
SvmRdmaContext *svm_rdma_context_get(SvmRdmaRole role, GError **errp);
void svm_rdma_context_put(SvmRdmaContext *ctx);
/* A context of its own (a protection domain of its own on an RDMA NIC). */
SvmRdmaContext *svm_rdma_context_new(SvmRdmaRole role, GError **errp);
void svm_rdma_context_free(SvmRdmaContext *ctx);

/* Every UCX device/transport pair this host has, whatever UCX_TLS says. */
char *svm_rdma_list_devices(void);

ucp_worker_h svm_rdma_worker_create(SvmRdmaContext *ctx, ucs_thread_mode_t mode,
                                    int *efd, GError **errp);

/* Bootstrap frames over a blocking-with-deadline socket. */
bool svm_rdma_boot_send(int fd, uint16_t status, const void *body, uint32_t len,
                        unsigned timeout_ms, GError **errp);
void *svm_rdma_boot_recv(int fd, uint16_t *status, uint32_t *len, unsigned timeout_ms,
                         GError **errp);
/* Parse a bootstrap header; false if it is not ours or too large. */
bool svm_rdma_boot_hdr_parse(const uint8_t *hdr, uint16_t *status, uint32_t *len);
void svm_rdma_boot_hdr_put(uint8_t *hdr, uint16_t status, uint32_t len);

/*
 * Endpoint to a peer's worker address.  With an RDMA NIC (or tcp) the
 * endpoint gets UCP_ERR_HANDLING_MODE_PEER: a dead peer fails requests
 * instead of hanging them, and force-closing is allowed.  UCX 1.13's
 * shared-memory transports support only MODE_NONE (with PEER they are not
 * selected at all), so without a NIC that is what is used; a dead peer is
 * then noticed on the bootstrap socket.
 */
ucs_status_t svm_rdma_ep_create(SvmRdmaContext *ctx, ucp_worker_h w, const void *peer_addr,
                                void *user_data, ucp_err_handler_cb_t on_error, ucp_ep_h *ep,
                                bool *peer_mode);
/* Close: forced if asked and allowed (peer mode), else flushed; bounded. */
void svm_rdma_ep_close(ucp_worker_h w, int efd, ucp_ep_h ep, bool peer_mode, bool force);

/*
 * Waiting on a worker: spin (progress) for SVM_RDMA_SPIN_NS -- a one-sided
 * read over shared memory or a NIC completes well within that -- then arm
 * the worker and sleep on its event fd, so software transports and
 * oversubscribed CPUs do not starve the peer.
 */
#define SVM_RDMA_SPIN_NS    50000ull
/* One step; false once the deadline has passed. */
bool svm_rdma_idle(ucp_worker_h w, int efd, uint64_t spin_end_ns, uint64_t deadline_ns);
/* Wait for a ucp request until done or deadline (the request is released). */
ucs_status_t svm_rdma_wait(ucp_worker_h w, int efd, void *req, uint64_t deadline_ns);

uint64_t svm_rdma_now_ns(void);

/* ---- for tests (tests/rdma/rdmatool.c) ---- */
SvmRdmaMode svm_rdma_client_mode(SvmClientConn *c);
/* LOOKUP pages as the transport would; locs[i] = pool page + 1, 0 = not stored.
 * Returns 0 or the server's refusal as -errno (-EPIPE: endpoint failed). */
int svm_rdma_client_lookup(SvmClientConn *c, const uint64_t *pages, unsigned n,
                           uint64_t *locs);
/* One-sided read with a key this process made up itself (an attacker's
 * forged key) at a server address; returns 0 if data came back, -ETIMEDOUT
 * if nothing did within timeout_ms. */
int svm_rdma_client_forged_get(SvmClientConn *c, uint64_t raddr, void *buf, size_t len,
                               unsigned timeout_ms);
/* pool_base and pool_len from MAP. */
void svm_rdma_client_pool(SvmClientConn *c, uint64_t *base, uint64_t *len);

#endif /* SPLITVM_RDMA_INT_H */
