/*
 * Synchronous client-side protocol steps on a raw transport connection:
 * HELLO + AUTH (+ ATTACH) and simple one-request calls.  Used by memclient
 * for every (re)connection and by tools such as `splitvm-memserver --stats`.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SPLITVM_CLIENTPROTO_H
#define SPLITVM_CLIENTPROTO_H

#include "splitvm/transport.h"
#include "splitvm/wire.h"

typedef struct SvmProtoLogin {
    const char *address;
    uint8_t role;               /* SvmWireRole */
    const char *id;             /* VM id or "admin" */
    const void *secret;
    size_t secret_len;
    unsigned timeout_ms;
    const SvmWireAttach *attach;    /* NULL: do not attach */
} SvmProtoLogin;

/*
 * Connect, negotiate the version, authenticate both ways and optionally
 * attach.  On success returns the connection and fills *attach_reply (if
 * attaching).  Errors name the address and the step that failed; an
 * error reply from the server is G_IO_ERROR_PERMISSION_DENIED for
 * authentication, G_IO_ERROR_FAILED otherwise.
 */
SvmClientConn *svm_proto_login(const SvmClientTransportOps *ops, const SvmProtoLogin *l,
                               SvmWireAttach *attach_reply, GError **errp);

/*
 * Send one request frame and wait for its reply (nothing else may be in
 * flight on conn).  The reply (header included) lands in rep (cap bytes);
 * returns its length, or 0 with errp set.  An error status is reported in
 * errp with the server's message.
 */
size_t svm_proto_call(const SvmClientTransportOps *ops, SvmClientConn *conn,
                      const uint8_t *req, size_t req_len, uint8_t *rep, size_t cap,
                      unsigned timeout_ms, GError **errp);

#endif /* SPLITVM_CLIENTPROTO_H */
