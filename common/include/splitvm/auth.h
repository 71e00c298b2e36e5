/*
 * splitvm challenge/response authentication (HMAC-SHA256 over nonces).
 *
 * The server sends a random nonce in its HELLO reply; the client answers
 * with its own nonce and HMAC(secret, "splitvm-auth-client-v1" || server
 * nonce || client nonce || role || identity).  The server answers with
 * HMAC(secret, "splitvm-auth-server-v1" || ...same...) so the client knows
 * it talks to a server that holds the secret too.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SPLITVM_AUTH_H
#define SPLITVM_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "splitvm/wire.h"

typedef enum SvmAuthSide {
    SVM_AUTH_CLIENT_PROOF,
    SVM_AUTH_SERVER_PROOF,
} SvmAuthSide;

/* Fill buf with cryptographically random bytes; false if the kernel refuses. */
bool svm_auth_random(void *buf, size_t len);

void svm_auth_mac(SvmAuthSide side, const void *secret, size_t secret_len,
                  const uint8_t server_nonce[SVM_WIRE_NONCE_SIZE],
                  const uint8_t client_nonce[SVM_WIRE_NONCE_SIZE],
                  uint8_t role, const char *id, uint8_t out[SVM_WIRE_MAC_SIZE]);

/* Constant-time comparison of two MACs. */
bool svm_auth_mac_equal(const uint8_t a[SVM_WIRE_MAC_SIZE],
                        const uint8_t b[SVM_WIRE_MAC_SIZE]);

#endif /* SPLITVM_AUTH_H */
