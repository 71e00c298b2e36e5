/*
 * splitvm memory-server client: one authenticated connection to one memory
 * server, attached to one VM namespace.
 *
 * Thread-safe: any number of threads may have requests in flight on the same
 * client; requests are pipelined on the wire and matched by request id.
 * The transport (tcp, later rdma) is chosen by the config and is invisible
 * above this header.
 *
 * The page hot path returns 0 or a negative errno (no GError allocation);
 * setup and control calls report a GError naming what went wrong (domain
 * G_IO_ERROR; a refused secret is G_IO_ERROR_PERMISSION_DENIED).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SPLITVM_MEMCLIENT_H
#define SPLITVM_MEMCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>
#include <gio/gio.h>    /* errors are in the G_IO_ERROR domain */

#define SVM_PAGE_SIZE       4096u
#define SVM_MAX_BATCH       64u     /* pages per READ/WRITE/DISCARD request */

typedef struct SvmMemClient SvmMemClient;

typedef struct SvmMemClientConfig {
    const char *address;        /* "HOST:PORT" */
    const char *transport;      /* "tcp" (default when NULL) or "rdma" */
    const char *vm_id;          /* VM namespace name, 1..64 chars */
    const void *secret;         /* the VM's shared secret (HMAC key) */
    size_t secret_len;
    uint64_t npages;            /* namespace size in 4 KiB pages */
    unsigned timeout_ms;        /* per request; 0 means 5000 */
    /*
     * When the connection breaks, requests are retried on a new connection
     * (backoff 10 ms doubling to 1 s) for up to this long before they fail
     * with -ETIMEDOUT; 0 means 5000.  Writes are idempotent, so a retry after
     * an unacknowledged write is safe.
     */
    unsigned reconnect_ms;
    /* Called (on a client thread) when the connection goes down / comes back. */
    void (*state_cb)(void *opaque, SvmMemClient *c, bool connected);
    void *state_opaque;
    /*
     * Owner epoch sent with ATTACH (fencing, see docs/protocol.md); 0 means
     * no fencing.  Reconnects attach with the same epoch.
     */
    uint64_t owner_epoch;
    /*
     * Nice increment of the completion thread (splitvm/thread.h), 0..19;
     * 0 keeps the caller's priority.
     */
    int thread_nice;
} SvmMemClientConfig;

/* Server-side statistics of this VM namespace and of the server. */
typedef struct SvmMemServerStats {
    uint64_t ns_pages_stored;       /* pages of this VM held by the server */
    uint64_t ns_quota_pages;        /* 0 = no quota beyond capacity */
    uint64_t server_pages_stored;   /* all namespaces */
    uint64_t server_capacity_pages;
    uint64_t requests, errors, bytes_in, bytes_out;
    uint64_t server_metadata_bytes;  /* store tables in server memory */
} SvmMemServerStats;

/* Connect, negotiate the version, authenticate and attach.  NULL + errp on failure. */
SvmMemClient *svm_memclient_connect(const SvmMemClientConfig *cfg, GError **errp);
void svm_memclient_close(SvmMemClient *c);
const char *svm_memclient_address(const SvmMemClient *c);
bool svm_memclient_connected(const SvmMemClient *c);
/* Highest owner epoch of the namespace, as the last ATTACH reply said. */
uint64_t svm_memclient_namespace_epoch(const SvmMemClient *c);

/*
 * Synchronous page batches, 1..SVM_MAX_BATCH pages.  Page numbers are in the
 * VM namespace.  A page never written reads as zeroes.  Return 0 or -errno:
 * -ERANGE page past the namespace, -ENOSPC quota/capacity, -ETIMEDOUT server
 * unreachable for longer than reconnect_ms, -EPROTO bad reply.  After a
 * failed read the contents of bufs are undefined (a batch may be received
 * straight into them, also when the attempt is then retried).
 */
int svm_memclient_read(SvmMemClient *c, const uint64_t *pages, unsigned n,
                       void *const *bufs);
int svm_memclient_write(SvmMemClient *c, const uint64_t *pages, unsigned n,
                        const void *const *bufs);
int svm_memclient_discard(SvmMemClient *c, const uint64_t *pages, unsigned n);

/*
 * Asynchronous variants: return 0 once queued (or -errno), then call
 * done(opaque, status) exactly once on a client completion thread; status is
 * 0 or -errno as above.  Buffers must stay valid until done runs.
 */
typedef void (*SvmMemClientDone)(void *opaque, int status);
int svm_memclient_read_async(SvmMemClient *c, const uint64_t *pages, unsigned n,
                             void *const *bufs, SvmMemClientDone done, void *opaque);
int svm_memclient_write_async(SvmMemClient *c, const uint64_t *pages, unsigned n,
                              const void *const *bufs, SvmMemClientDone done,
                              void *opaque);

bool svm_memclient_stats(SvmMemClient *c, SvmMemServerStats *out, GError **errp);
/* Drop every page of this VM on the server (VM destroyed). */
bool svm_memclient_free_namespace(SvmMemClient *c, GError **errp);

#endif /* SPLITVM_MEMCLIENT_H */
