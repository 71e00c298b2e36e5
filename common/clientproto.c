/*
 * Synchronous login (HELLO, AUTH, ATTACH) and single calls; see clientproto.h.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include "splitvm/auth.h"
#include "splitvm/clientproto.h"

size_t svm_proto_call(const SvmClientTransportOps *ops, SvmClientConn *conn,
                      const uint8_t *req, size_t req_len, uint8_t *rep, size_t cap,
                      unsigned timeout_ms, GError **errp)
{
    SvmWireHdr rh, h;
    struct iovec iov = { .iov_base = (void *)req, .iov_len = req_len };

    svm_wire_hdr_get(req, &rh);
    int rc = ops->sendv(conn, &iov, 1);
    if (rc < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-rc),
                    "sending %s: %s", svm_wire_op_name(rh.op), g_strerror(-rc));
        return 0;
    }
    size_t have = 0;
    for (;;) {
        SvmWirePeek pk = svm_wire_peek(rep, have, &h);
        if (pk == SVM_PEEK_FRAME) {
            break;
        }
        if (pk == SVM_PEEK_BAD || have == cap) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                        "%s: malformed reply from server", svm_wire_op_name(rh.op));
            return 0;
        }
        ssize_t r = ops->recv(conn, rep + have, cap - have, timeout_ms);
        if (r == -EAGAIN) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                        "%s: no reply within %u ms", svm_wire_op_name(rh.op), timeout_ms);
            return 0;
        }
        if (r <= 0) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                        "%s: connection closed by server%s%s", svm_wire_op_name(rh.op),
                        r < 0 ? ": " : "", r < 0 ? g_strerror((int)-r) : "");
            return 0;
        }
        have += (size_t)r;
    }
    if (h.req_id != rh.req_id || h.op != rh.op || !(h.flags & SVM_WIRE_F_REPLY) ||
        have != h.len) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "%s: unexpected reply (op %u, id %" G_GUINT64_FORMAT ")",
                    svm_wire_op_name(rh.op), h.op, h.req_id);
        return 0;
    }
    if (h.status != SVM_ST_OK) {
        char msg[SVM_WIRE_ERRMSG_MAX + 1];
        svm_wire_dec_error(rep + SVM_WIRE_HDR_SIZE, h.len - SVM_WIRE_HDR_SIZE, msg, sizeof(msg));
        g_set_error(errp, G_IO_ERROR,
                    h.status == SVM_ST_AUTH_FAILED ? G_IO_ERROR_PERMISSION_DENIED
                                                   : G_IO_ERROR_FAILED,
                    "%s refused: %s%s%s", svm_wire_op_name(rh.op),
                    svm_wire_status_name(h.status), *msg ? ": " : "", msg);
        return 0;
    }
    return h.len;
}

SvmClientConn *svm_proto_login(const SvmClientTransportOps *ops, const SvmProtoLogin *l,
                               SvmWireAttach *attach_reply, GError **errp)
{
    g_autoptr(GError) err = NULL;
    uint8_t req[256], rep[256];
    SvmWireHello hello;
    size_t len;

    SvmClientConn *conn = ops->connect(l->address, l->timeout_ms, errp);
    if (!conn) {
        return NULL;
    }

    len = svm_wire_enc_hello_req(req, sizeof(req), 1, SVM_WIRE_VERSION_MIN,
                                 SVM_WIRE_VERSION_MAX);
    len = svm_proto_call(ops, conn, req, len, rep, sizeof(rep), l->timeout_ms, &err);
    if (!len) {
        goto fail;
    }
    if (!svm_wire_dec_hello_rep(rep + SVM_WIRE_HDR_SIZE, len - SVM_WIRE_HDR_SIZE, &hello) ||
        hello.version < SVM_WIRE_VERSION_MIN || hello.version > SVM_WIRE_VERSION_MAX) {
        g_set_error(&err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "HELLO: server speaks no protocol version in [%u, %u]",
                    SVM_WIRE_VERSION_MIN, SVM_WIRE_VERSION_MAX);
        goto fail;
    }

    SvmWireAuth auth = { .role = l->role };
    size_t idlen = strlen(l->id);
    if (idlen == 0 || idlen > SVM_WIRE_ID_MAX) {
        g_set_error(&err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "identity '%s' must be 1..%u characters", l->id, SVM_WIRE_ID_MAX);
        goto fail;
    }
    auth.id_len = (uint8_t)idlen;
    memcpy(auth.id, l->id, idlen);
    if (!svm_auth_random(auth.client_nonce, sizeof(auth.client_nonce))) {
        g_set_error(&err, G_IO_ERROR, G_IO_ERROR_FAILED, "getrandom failed");
        goto fail;
    }
    svm_auth_mac(SVM_AUTH_CLIENT_PROOF, l->secret, l->secret_len, hello.nonce,
                 auth.client_nonce, auth.role, auth.id, auth.mac);
    len = svm_wire_enc_auth_req(req, sizeof(req), 2, &auth);
    if (!len) {
        g_set_error(&err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "bad identity '%s'", l->id);
        goto fail;
    }
    len = svm_proto_call(ops, conn, req, len, rep, sizeof(rep), l->timeout_ms, &err);
    if (!len) {
        goto fail;
    }
    uint8_t server_mac[SVM_WIRE_MAC_SIZE], expect[SVM_WIRE_MAC_SIZE];
    svm_auth_mac(SVM_AUTH_SERVER_PROOF, l->secret, l->secret_len, hello.nonce,
                 auth.client_nonce, auth.role, auth.id, expect);
    if (!svm_wire_dec_auth_rep(rep + SVM_WIRE_HDR_SIZE, len - SVM_WIRE_HDR_SIZE, server_mac) ||
        !svm_auth_mac_equal(server_mac, expect)) {
        g_set_error(&err, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                    "AUTH: the server did not prove it knows the secret of '%s'", l->id);
        goto fail;
    }

    if (l->attach) {
        len = svm_wire_enc_attach_req(req, sizeof(req), 3, l->attach);
        len = svm_proto_call(ops, conn, req, len, rep, sizeof(rep), l->timeout_ms, &err);
        if (!len) {
            goto fail;
        }
        SvmWireAttach a;
        if (!svm_wire_dec_attach_rep(rep + SVM_WIRE_HDR_SIZE, len - SVM_WIRE_HDR_SIZE, &a)) {
            g_set_error(&err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "ATTACH: malformed reply");
            goto fail;
        }
        if (attach_reply) {
            *attach_reply = a;
        }
        /* One-sided transports learn how to reach the pages (MAP). */
        if (ops->map) {
            g_autofree uint8_t *mrep = g_malloc(SVM_WIRE_MAX_FRAME);
            len = svm_wire_enc_empty(req, sizeof(req), 4, SVM_OP_MAP, 0, 0);
            len = svm_proto_call(ops, conn, req, len, mrep, SVM_WIRE_MAX_FRAME, l->timeout_ms,
                                 &err);
            if (!len && !g_error_matches(err, G_IO_ERROR, G_IO_ERROR_FAILED)) {
                goto fail;              /* the connection itself failed */
            }
            int rc = len ? ops->map(conn, mrep + SVM_WIRE_HDR_SIZE, len - SVM_WIRE_HDR_SIZE)
                         : -EOPNOTSUPP;
            if (rc < 0) {
                /* Frames still work: only the one-sided path is off. */
                g_message("memory server %s: one-sided access unavailable: %s", l->address,
                          err ? err->message : g_strerror(-rc));
                g_clear_error(&err);
            }
        }
    }
    return conn;

fail:
    g_set_error(errp, err->domain, err->code, "memory server %s, %s '%s': %s", l->address,
                l->role == SVM_ROLE_ADMIN ? "admin" : "VM", l->id, err->message);
    ops->close(conn);
    return NULL;
}
