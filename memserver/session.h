/*
 * Request dispatcher of splitvm-memserver: one SvmSession per connection,
 * a state machine NEW -> HELLO -> AUTHENTICATED (-> ATTACHED), and the
 * handler that turns one request frame into one reply frame.  Transport
 * independent: the transports call it through SvmServerHooks.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SPLITVM_MEMSERVER_SESSION_H
#define SPLITVM_MEMSERVER_SESSION_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include "splitvm/transport.h"
#include "splitvm/wire.h"
#include "config.h"
#include "store.h"

/* Server-wide counters (relaxed atomics: read by STATS while serving). */
typedef struct SvmServerCounters {
    uint64_t requests, errors, bytes_in, bytes_out;
    uint64_t connections;           /* open now */
    uint64_t hist[SVM_WIRE_HIST_BUCKETS];
} SvmServerCounters;

typedef struct SvmServerCtx {
    SvmStore *store;
    /*
     * Replaced as a whole on SIGHUP (svm_server_ctx_swap_secrets); sessions
     * read it only at AUTH and ATTACH, under the read lock.
     */
    SvmSecrets *secrets;
    pthread_rwlock_t secrets_lock;
    SvmServerCounters counters;
    uint64_t start_ms;
    bool quiet;                     /* no per-connection log lines */
} SvmServerCtx;

/* Install a freshly loaded secrets file; returns the old one for the caller to free. */
SvmSecrets *svm_server_ctx_swap_secrets(SvmServerCtx *ctx, SvmSecrets *fresh);

typedef struct SvmSession SvmSession;

SvmSession *svm_session_new(SvmServerCtx *ctx, const char *peer);
void svm_session_free(SvmSession *s);
size_t svm_session_handle(SvmSession *s, const uint8_t *frame, size_t len,
                          uint8_t *out, size_t cap, bool *close_after);
void svm_session_account(SvmSession *s, uint64_t ns, size_t in, size_t out);

/* SvmServerHooks wired to the functions above (opaque = SvmServerCtx). */
void svm_session_hooks(SvmServerCtx *ctx, SvmServerHooks *hooks);

/* For tests and the fuzzer: skip HELLO/AUTH and attach vm_id directly. */
bool svm_session_test_attach(SvmSession *s, const char *vm_id, uint64_t npages);

#endif /* SPLITVM_MEMSERVER_SESSION_H */
