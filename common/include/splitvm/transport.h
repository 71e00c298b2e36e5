/*
 * splitvm transports: one ops table per side, modelled on SPDK's
 * lib/nvmf/transport.h.  The protocol core (memclient.c on the client side,
 * memserver's session dispatcher on the server side) only ever talks to a
 * transport through these tables, so a new transport is one more table in
 * transport.c and nothing else changes.
 *
 * Implementations: "tcp" (client: blocking sockets on the caller's thread,
 * which is the lowest-latency path for synchronous page faults; server:
 * io_uring, one ring per worker thread serving many connections).
 *
 * How "rdma" (UCX, a later issue) fits: control ops (HELLO, AUTH, ATTACH,
 * STATS, ...) stay two-sided frames through sendv/recv on the client and
 * through SvmServerHooks.handle on the server.  After ATTACH the client core
 * sends SVM_OP_MAP if the client ops table has map(); the server transport
 * answers MAP itself (mode, pool geometry).  Page locations and the keys of
 * the namespace's extents (registered per extent, revoked when the extent
 * leaves the namespace or the session detaches) come from the transport's
 * own LOOKUP message, served through SvmServerHooks.locate; see
 * docs/rdma.md.  READ/WRITE then go through read_pages/write_pages
 * (one-sided), falling back to frames when they return -EAGAIN (page not
 * yet allocated on the server, so a WRITE frame must allocate it).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SPLITVM_TRANSPORT_H
#define SPLITVM_TRANSPORT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <glib.h>
#include <gio/gio.h>     /* G_IO_ERROR codes */

/* ------------------------------------------------------------------ */
/* Client side                                                          */
/* ------------------------------------------------------------------ */

typedef struct SvmClientConn SvmClientConn;   /* transport-private */

#define SVM_RECV_WAIT_FOREVER   UINT_MAX

typedef struct SvmClientTransportOps {
    const char *name;
    /* Open a connection to "HOST:PORT", giving up after timeout_ms. */
    SvmClientConn *(*connect)(const char *address, unsigned timeout_ms, GError **errp);
    /*
     * Send one whole frame gathered from iov (blocking).  Callers serialise
     * sendv calls; recv may run concurrently on another thread.
     * Returns 0 or -errno (the connection is then unusable).
     */
    int (*sendv)(SvmClientConn *c, const struct iovec *iov, int iovcnt);
    /*
     * Receive up to len bytes, waiting at most about timeout_ms
     * (SVM_RECV_WAIT_FOREVER: until data, end of stream or shutdown).
     * Returns bytes received (> 0), 0 at end of stream, -EAGAIN if nothing
     * arrived in time, or -errno.
     */
    ssize_t (*recv)(SvmClientConn *c, void *buf, size_t len, unsigned timeout_ms);
    /* Make sendv/recv in other threads return promptly; close() follows. */
    void (*shutdown)(SvmClientConn *c);
    void (*close)(SvmClientConn *c);

    /* One-sided page access (rdma).  NULL in transports without it. */
    int (*map)(SvmClientConn *c, const void *map_reply, size_t len);
    int (*read_pages)(SvmClientConn *c, const uint64_t *pages, unsigned n,
                      void *const *bufs);
    int (*write_pages)(SvmClientConn *c, const uint64_t *pages, unsigned n,
                       const void *const *bufs);
    /*
     * Optional: recv scattered over iov (same returns as recv), so a reply's
     * pages can land in the caller's buffers without a copy.  NULL: memclient
     * receives into its own buffer and copies.
     */
    ssize_t (*recvv)(SvmClientConn *c, const struct iovec *iov, int iovcnt,
                     unsigned timeout_ms);
} SvmClientTransportOps;

/* NULL if no transport of that name is built in. */
const SvmClientTransportOps *svm_client_transport_find(const char *name);

/* ------------------------------------------------------------------ */
/* Server side                                                          */
/* ------------------------------------------------------------------ */

/* What the protocol core gives a server transport. */
typedef struct SvmServerHooks {
    void *opaque;
    /* A connection was accepted; returns its session (NULL refuses it). */
    void *(*session_open)(void *opaque, const char *peer);
    /*
     * Handle one whole request frame (header included, length already
     * checked against SVM_WIRE_MAX_FRAME).  Writes at most cap bytes of
     * reply into out (the transport guarantees cap >= svm_wire_reply_bound)
     * and returns the reply length.  *close_after asks the transport to
     * close the connection once the reply is sent.
     */
    size_t (*handle)(void *session, const uint8_t *frame, size_t len,
                     uint8_t *out, size_t cap, bool *close_after);
    /* Called once per session when its connection is gone. */
    void (*session_close)(void *session);
    /*
     * Service time of one request frame (arrival to reply queued), for the
     * latency histogram; may be NULL.
     */
    void (*account)(void *session, uint64_t ns, size_t bytes_in, size_t bytes_out);
    /*
     * One-sided transports (rdma); may be NULL.  Where pages of the
     * session's namespace live: pool_pages[i] receives the pool page index
     * of pages[i], or UINT64_MAX if it is not stored.  extent_cb runs for
     * the pool extent of each stored page while the namespace cannot change,
     * so a registration made there cannot outlive the extent's ownership.
     * Returns an SvmWireStatus (0 = OK), with a message in msg otherwise.
     */
    int (*locate)(void *session, const uint64_t *pages, unsigned n, uint64_t *pool_pages,
                  void (*extent_cb)(void *cb_opaque, uint64_t extent), void *cb_opaque,
                  char *msg, size_t msg_cap);
} SvmServerHooks;

/* The page pool, for transports that register memory (rdma). */
typedef struct SvmServerPool {
    void *base;
    size_t len;
    /* Namespaces own the pool in extents of this many bytes. */
    size_t extent_len;
    /*
     * Asks to have released(t, extent) called whenever an extent leaves its
     * namespace, before it can be reused (so keys to it can be revoked);
     * released == NULL stops it.
     */
    void (*watch_extents)(void *opaque, void (*released)(void *t, uint64_t extent),
                          void *t);
    void *opaque;
} SvmServerPool;

typedef struct SvmServerTransport SvmServerTransport;
typedef struct SvmPollGroup SvmPollGroup;

typedef struct SvmServerTransportOps {
    const char *name;
    SvmServerTransport *(*create)(const SvmServerHooks *hooks, const SvmServerPool *pool,
                                  GError **errp);
    /* Start listening on "HOST:PORT" (port 0 picks one: see bound_port). */
    bool (*listen)(SvmServerTransport *t, const char *address, GError **errp);
    int (*bound_port)(SvmServerTransport *t);
    /* One poll group per worker thread; it serves the connections it accepts. */
    SvmPollGroup *(*poll_group_create)(SvmServerTransport *t, GError **errp);
    /* Serve until poll_group_stop(); returns 0 or -errno on a fatal error. */
    int (*poll_group_run)(SvmPollGroup *pg);
    /* Thread-safe; makes poll_group_run close its connections and return. */
    void (*poll_group_stop)(SvmPollGroup *pg);
    void (*poll_group_destroy)(SvmPollGroup *pg);
    void (*destroy)(SvmServerTransport *t);
    /*
     * Optional (rdma): memory for an anonymous pool of len bytes, for a
     * transport that can give one-sided access only to memory it allocated
     * itself (UCX's shared-memory transports).  Returns NULL without an
     * error when the caller should allocate the pool as usual.  pool_free
     * runs after destroy() and after the pool is no longer used.
     */
    void *(*pool_alloc)(size_t len, GError **errp);
    void (*pool_free)(void *base, size_t len);
} SvmServerTransportOps;

const SvmServerTransportOps *svm_server_transport_find(const char *name);

/* ------------------------------------------------------------------ */
/* Helpers shared by transports                                         */
/* ------------------------------------------------------------------ */

/*
 * "tcp:HOST:PORT" / "rdma:HOST:PORT" / "HOST:PORT" -> the transport name
 * (NULL when there is no prefix) and the address without the prefix.
 */
const char *svm_transport_split(const char *spec, char **transport);

/* Split "HOST:PORT" / "[V6]:PORT" and resolve it (numeric port required). */
bool svm_addr_resolve(const char *address, bool passive,
                      struct sockaddr_storage *ss, socklen_t *sslen, GError **errp);

/*
 * A TCP connection to "HOST:PORT" within timeout_ms: non-blocking,
 * TCP_NODELAY.  A loopback self-connect counts as refused.  -1 + errp.
 */
int svm_sock_connect(const char *address, unsigned timeout_ms, GError **errp);

/* A non-blocking listening TCP socket on "HOST:PORT"; *port gets the bound port. */
int svm_sock_listen(const char *address, int *port, GError **errp);

/* An accepted peer's address as "HOST:PORT" / "[V6]:PORT" ("?" if neither), for logs. */
#define SVM_SOCK_PEER_NAME_MAX  64u
void svm_sock_peer_name(const struct sockaddr_storage *ss, char *buf, size_t cap);

#endif /* SPLITVM_TRANSPORT_H */
