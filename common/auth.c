/*
 * HMAC-SHA256 challenge/response (see splitvm/auth.h and docs/protocol.md).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <glib.h>
#include "splitvm/auth.h"

bool svm_auth_random(void *buf, size_t len)
{
    uint8_t *p = buf;

    while (len > 0) {
        ssize_t r = getrandom(p, len, 0);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return false;
        }
        p += r;
        len -= (size_t)r;
    }
    return true;
}

void svm_auth_mac(SvmAuthSide side, const void *secret, size_t secret_len,
                  const uint8_t server_nonce[SVM_WIRE_NONCE_SIZE],
                  const uint8_t client_nonce[SVM_WIRE_NONCE_SIZE],
                  uint8_t role, const char *id, uint8_t out[SVM_WIRE_MAC_SIZE])
{
    static const char client_label[] = "splitvm-auth-client-v1";
    static const char server_label[] = "splitvm-auth-server-v1";
    const char *label = side == SVM_AUTH_CLIENT_PROOF ? client_label : server_label;
    uint8_t idlen = (uint8_t)strnlen(id, SVM_WIRE_ID_MAX);
    gsize outlen = SVM_WIRE_MAC_SIZE;

    GHmac *h = g_hmac_new(G_CHECKSUM_SHA256, secret, secret_len);
    /* The label includes its NUL so the fields cannot run into each other. */
    g_hmac_update(h, (const guchar *)label, strlen(label) + 1);
    g_hmac_update(h, server_nonce, SVM_WIRE_NONCE_SIZE);
    g_hmac_update(h, client_nonce, SVM_WIRE_NONCE_SIZE);
    g_hmac_update(h, &role, 1);
    g_hmac_update(h, &idlen, 1);
    g_hmac_update(h, (const guchar *)id, idlen);
    g_hmac_get_digest(h, out, &outlen);
    g_hmac_unref(h);
}

bool svm_auth_mac_equal(const uint8_t a[SVM_WIRE_MAC_SIZE],
                        const uint8_t b[SVM_WIRE_MAC_SIZE])
{
    uint8_t diff = 0;

    for (unsigned i = 0; i < SVM_WIRE_MAC_SIZE; i++) {
        diff |= a[i] ^ b[i];
    }
    return diff == 0;
}
