/*
 * libFuzzer target over the frame parser and the request dispatcher.
 *
 * Input: one mode byte, then a byte stream cut into frames exactly as the
 * tcp transport does (svm_wire_peek).  Mode bit 0 starts the session
 * already attached (so the fuzzer reaches READ/WRITE/DISCARD without
 * forging HMACs); bit 1 also feeds every frame to the client-side reply
 * decoders.  Checked on every reply: it is one well-formed frame with the
 * request's id and op, and no READ ever returns the pages of another VM
 * (namespace "other" holds random pages the fuzzer cannot guess).
 *
 * Built with clang -fsanitize=fuzzer,address,undefined by fuzz.sh; the gcc
 * build links fuzz_replay.c instead to replay seeds and mutations.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <glib/gstdio.h>
#include "splitvm/auth.h"
#include "session.h"

static const char fuzz_secrets[] =
    "[admin]\nsecret = fuzz-admin-secret-0000\n"
    "[vm fz]\nsecret = fuzz-secret-fz-00000\nquota = 256K\n"
    "[vm other]\nsecret = fuzz-secret-other-000\n";

#define OTHER_PAGES 8

static SvmSecrets *secrets;
static uint8_t *reply;
static uint8_t other_pages[OTHER_PAGES][SVM_WIRE_PAGE_SIZE];

static void check(bool cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "fuzz invariant violated: %s\n", what);
        abort();
    }
}

static void decode_as_reply(const uint8_t *frame, size_t len)
{
    SvmWireHello hello;
    SvmWireAttach at;
    SvmWireStats st;
    uint8_t mac[SVM_WIRE_MAC_SIZE];
    char msg[64];
    const uint8_t *b = frame + SVM_WIRE_HDR_SIZE;
    size_t blen = len - SVM_WIRE_HDR_SIZE;

    svm_wire_dec_hello_rep(b, blen, &hello);
    svm_wire_dec_auth_rep(b, blen, mac);
    svm_wire_dec_attach_rep(b, blen, &at);
    svm_wire_dec_error(b, blen, msg, sizeof(msg));
    if (svm_wire_dec_stats_rep(b, blen, &st)) {
        for (uint32_t i = 0; i < st.nns; i++) {
            SvmWireStatsNs ns;
            svm_wire_stats_ns_at(&st, i, &ns);
        }
    }
}

static void check_reply(const SvmWireHdr *req, size_t n)
{
    SvmWireHdr h;
    check(n >= SVM_WIRE_HDR_SIZE && n <= SVM_WIRE_MAX_FRAME, "reply length in range");
    check(n <= svm_wire_reply_bound(req), "reply within svm_wire_reply_bound");
    check(svm_wire_peek(reply, n, &h) == SVM_PEEK_FRAME && h.len == n, "reply is one frame");
    check(h.req_id == req->req_id && h.op == req->op, "reply matches its request");
    check(h.flags & SVM_WIRE_F_REPLY, "reply flag set");
    if (h.op == SVM_OP_READ && h.status == SVM_ST_OK) {
        for (size_t off = SVM_WIRE_HDR_SIZE; off + SVM_WIRE_PAGE_SIZE <= n;
             off += SVM_WIRE_PAGE_SIZE) {
            for (unsigned i = 0; i < OTHER_PAGES; i++) {
                check(memcmp(reply + off, other_pages[i], SVM_WIRE_PAGE_SIZE) != 0,
                      "a READ returned another VM's page");
            }
        }
    }
}

static void quiet_log(const gchar *domain, GLogLevelFlags level, const gchar *msg, gpointer u)
{
}

void fuzz_make_seeds(GPtrArray *out);

/* Also writes the seed corpus into $SVM_FUZZ_SEED_DIR when that is set. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    g_autoptr(GError) err = NULL;
    secrets = svm_secrets_parse(fuzz_secrets, strlen(fuzz_secrets), "fuzz", &err);
    if (!secrets) {
        fprintf(stderr, "%s\n", err->message);
        abort();
    }
    reply = g_malloc(SVM_WIRE_MAX_FRAME);
    svm_auth_random(other_pages, sizeof(other_pages));
    /* Failed logins are expected here by the million. */
    g_log_set_handler(NULL, G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE, quiet_log, NULL);
    g_log_set_default_handler(quiet_log, NULL);

    const char *dir = getenv("SVM_FUZZ_SEED_DIR");
    if (dir) {
        g_autoptr(GPtrArray) seeds =
            g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
        fuzz_make_seeds(seeds);
        g_mkdir_with_parents(dir, 0755);
        for (guint i = 0; i < seeds->len; i++) {
            gsize len;
            const char *d = g_bytes_get_data(seeds->pdata[i], &len);
            g_autofree char *p = g_strdup_printf("%s/seed-%02u", dir, i);
            g_file_set_contents(p, d, (gssize)len, NULL);
        }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autoptr(GError) err = NULL;

    if (!secrets) {
        LLVMFuzzerInitialize(NULL, NULL);
    }
    if (size < 1) {
        return 0;
    }
    uint8_t mode = data[0];
    data++;
    size--;

    SvmStore *store = svm_store_open(1 << 20, SVM_BACKING_ANON, NULL, &err);
    check(store != NULL, "store opens");
    SvmServerCtx ctx = { .store = store, .secrets = secrets, .quiet = true };

    /* Another VM's pages, which must never leak. */
    SvmSession *other = svm_session_new(&ctx, "other");
    check(svm_session_test_attach(other, "other", OTHER_PAGES), "other attaches");
    SvmSession *s = svm_session_new(&ctx, "fuzz");
    if (mode & 1) {
        check(svm_session_test_attach(s, "fz", 1 + (mode >> 2) * 13u), "fz attaches");
    }
    {
        /* Write the other VM's pages through the dispatcher too. */
        static uint8_t req[SVM_WIRE_MAX_FRAME];
        uint64_t pages[OTHER_PAGES];
        bool close_after;
        for (unsigned i = 0; i < OTHER_PAGES; i++) {
            pages[i] = i;
        }
        size_t len = svm_wire_enc_pagevec_req(req, sizeof(req), 1, SVM_OP_WRITE, pages,
                                              OTHER_PAGES);
        memcpy(req + len, other_pages, sizeof(other_pages));
        len += sizeof(other_pages);
        size_t n = svm_session_handle(other, req, len, reply, SVM_WIRE_MAX_FRAME, &close_after);
        check(n == SVM_WIRE_HDR_SIZE && reply[6] == 0, "other VM's pages written");
    }

    size_t pos = 0;
    while (pos < size) {
        SvmWireHdr h;
        SvmWirePeek pk = svm_wire_peek(data + pos, size - pos, &h);
        if (pk != SVM_PEEK_FRAME) {
            break;      /* NEED_MORE: the client vanished; BAD: connection closed */
        }
        if (mode & 2) {
            decode_as_reply(data + pos, h.len);
        }
        bool close_after = false;
        size_t n = svm_session_handle(s, data + pos, h.len, reply, SVM_WIRE_MAX_FRAME,
                                      &close_after);
        check_reply(&h, n);
        pos += h.len;
        if (close_after) {
            break;
        }
    }

    svm_session_free(s);
    svm_session_free(other);
    svm_store_close(store);
    return 0;
}
