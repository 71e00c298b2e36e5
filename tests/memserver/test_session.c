/*
 * Unit tests of the request dispatcher (memserver/session.c): the state
 * machine, authentication, error replies and namespace isolation, driven
 * with frames built by the codec.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <glib.h>
#include <string.h>
#include "splitvm/auth.h"
#include "session.h"

static const char secrets_text[] =
    "[admin]\nsecret = admin-secret-0123456789\n"
    "[vm a]\nsecret = secret-of-vm-a-0123\nquota = 40K\n"
    "[vm b]\nsecret = secret-of-vm-b-0123\n";

typedef struct Fixture {
    SvmStore *store;
    SvmSecrets *secrets;
    SvmServerCtx ctx;
    uint8_t *out;
    SvmWireHdr rh;          /* header of the last reply */
    bool close_after;
} Fixture;

static void fx_setup(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    f->store = svm_store_open(1 << 20, SVM_BACKING_ANON, NULL, &err);
    f->secrets = svm_secrets_parse(secrets_text, strlen(secrets_text), "t", &err);
    g_assert_no_error(err);
    f->ctx = (SvmServerCtx) { .store = f->store, .secrets = f->secrets, .quiet = true };
    f->out = g_malloc(SVM_WIRE_MAX_FRAME);
}

static void fx_teardown(Fixture *f, gconstpointer data)
{
    svm_store_close(f->store);
    svm_secrets_free(f->secrets);
    g_free(f->out);
}

static size_t call(Fixture *f, SvmSession *s, const uint8_t *req, size_t len)
{
    size_t n = svm_session_handle(s, req, len, f->out, SVM_WIRE_MAX_FRAME, &f->close_after);
    g_assert_cmpuint(n, >=, SVM_WIRE_HDR_SIZE);
    svm_wire_hdr_get(f->out, &f->rh);
    g_assert_cmpuint(f->rh.len, ==, n);
    g_assert_true(f->rh.flags & SVM_WIRE_F_REPLY);
    return n;
}

static SvmSession *login(Fixture *f, uint8_t role, const char *id, const char *secret,
                         bool attach)
{
    uint8_t req[512];
    SvmWireHello hello;
    SvmSession *s = svm_session_new(&f->ctx, "test");

    size_t len = svm_wire_enc_hello_req(req, sizeof(req), 1, 1, 1);
    size_t n = call(f, s, req, len);
    g_assert_cmpuint(f->rh.status, ==, 0);
    g_assert_true(svm_wire_dec_hello_rep(f->out + 16, n - 16, &hello));
    SvmWireAuth a = { .role = role, .id_len = (uint8_t)strlen(id) };
    memcpy(a.id, id, a.id_len);
    svm_auth_mac(SVM_AUTH_CLIENT_PROOF, secret, strlen(secret), hello.nonce, a.client_nonce,
                 role, id, a.mac);
    len = svm_wire_enc_auth_req(req, sizeof(req), 2, &a);
    n = call(f, s, req, len);
    if (f->rh.status != 0) {
        return s;
    }
    uint8_t smac[32], expect[32];
    g_assert_true(svm_wire_dec_auth_rep(f->out + 16, n - 16, smac));
    svm_auth_mac(SVM_AUTH_SERVER_PROOF, secret, strlen(secret), hello.nonce, a.client_nonce,
                 role, id, expect);
    g_assert_true(svm_auth_mac_equal(smac, expect));
    if (attach) {
        SvmWireAttach at = { .npages = 100 };
        len = svm_wire_enc_attach_req(req, sizeof(req), 3, &at);
        call(f, s, req, len);
        g_assert_cmpuint(f->rh.status, ==, 0);
    }
    return s;
}

static uint16_t page_op(Fixture *f, SvmSession *s, uint8_t op, uint64_t page, uint8_t fillb)
{
    static uint8_t req[SVM_WIRE_MAX_FRAME];
    size_t len = svm_wire_enc_pagevec_req(req, sizeof(req), 10, op, &page, 1);
    if (op == SVM_OP_WRITE) {
        memset(req + len, fillb, SVM_WIRE_PAGE_SIZE);
        len += SVM_WIRE_PAGE_SIZE;
    }
    call(f, s, req, len);
    g_assert_cmpuint(f->rh.req_id, ==, 10);
    return f->rh.status;
}

static void test_happy_path(Fixture *f, gconstpointer data)
{
    SvmSession *s = login(f, SVM_ROLE_VM, "a", "secret-of-vm-a-0123", true);
    g_assert_cmpuint(page_op(f, s, SVM_OP_READ, 5, 0), ==, 0);
    g_assert_cmpuint(f->rh.len, ==, 16 + 4096);
    g_assert_cmpuint(f->out[16], ==, 0);
    g_assert_cmpuint(page_op(f, s, SVM_OP_WRITE, 5, 0x77), ==, 0);
    g_assert_cmpuint(f->rh.len, ==, 16);
    g_assert_cmpuint(page_op(f, s, SVM_OP_READ, 5, 0), ==, 0);
    g_assert_cmpuint(f->out[16], ==, 0x77);
    g_assert_cmpuint(f->out[16 + 4095], ==, 0x77);
    g_assert_cmpuint(page_op(f, s, SVM_OP_DISCARD, 5, 0), ==, 0);
    g_assert_cmpuint(page_op(f, s, SVM_OP_READ, 5, 0), ==, 0);
    g_assert_cmpuint(f->out[16], ==, 0);
    g_assert_cmpuint(page_op(f, s, SVM_OP_READ, 100, 0), ==, SVM_ST_OUT_OF_RANGE);
    svm_session_free(s);
}

static void test_before_auth(Fixture *f, gconstpointer data)
{
    SvmSession *s = svm_session_new(&f->ctx, "test");
    uint8_t req[256];
    g_assert_cmpuint(page_op(f, s, SVM_OP_READ, 1, 0), ==, SVM_ST_NEED_AUTH);
    g_assert_false(f->close_after);
    size_t len = svm_wire_enc_empty(req, sizeof(req), 4, SVM_OP_DETACH, 0, 0);
    call(f, s, req, len);
    g_assert_cmpuint(f->rh.status, ==, SVM_ST_NEED_AUTH);
    /* AUTH before HELLO */
    SvmWireAuth a = { .role = 0, .id_len = 1, .id = "a" };
    len = svm_wire_enc_auth_req(req, sizeof(req), 5, &a);
    call(f, s, req, len);
    g_assert_cmpuint(f->rh.status, ==, SVM_ST_NEED_AUTH);
    /* Bad version */
    len = svm_wire_enc_hello_req(req, sizeof(req), 6, 7, 9);
    call(f, s, req, len);
    g_assert_cmpuint(f->rh.status, ==, SVM_ST_BAD_VERSION);
    g_assert_true(f->close_after);
    svm_session_free(s);
}

static void test_wrong_secret(Fixture *f, gconstpointer data)
{
    SvmSession *s = login(f, SVM_ROLE_VM, "a", "secret-of-vm-b-0123", false);
    g_assert_cmpuint(f->rh.status, ==, SVM_ST_AUTH_FAILED);
    g_assert_true(f->close_after);
    /* The connection is dead even if the client goes on. */
    g_assert_cmpuint(page_op(f, s, SVM_OP_READ, 1, 0), ==, SVM_ST_NEED_AUTH);
    svm_session_free(s);
    s = login(f, SVM_ROLE_VM, "nobody", "secret-of-vm-b-0123", false);
    g_assert_cmpuint(f->rh.status, ==, SVM_ST_AUTH_FAILED);
    svm_session_free(s);
    s = login(f, SVM_ROLE_ADMIN, "admin", "secret-of-vm-a-0123", false);
    g_assert_cmpuint(f->rh.status, ==, SVM_ST_AUTH_FAILED);
    svm_session_free(s);
}

static void test_isolation(Fixture *f, gconstpointer data)
{
    SvmSession *a = login(f, SVM_ROLE_VM, "a", "secret-of-vm-a-0123", true);
    SvmSession *b = login(f, SVM_ROLE_VM, "b", "secret-of-vm-b-0123", true);
    g_assert_cmpuint(page_op(f, a, SVM_OP_WRITE, 3, 0xaa), ==, 0);
    g_assert_cmpuint(page_op(f, b, SVM_OP_READ, 3, 0), ==, 0);
    g_assert_cmpuint(f->out[16], ==, 0);
    g_assert_cmpuint(page_op(f, b, SVM_OP_WRITE, 3, 0xbb), ==, 0);
    g_assert_cmpuint(page_op(f, a, SVM_OP_READ, 3, 0), ==, 0);
    g_assert_cmpuint(f->out[16], ==, 0xaa);
    /* Quota of a is 10 pages. */
    for (uint64_t p = 10; p < 19; p++) {
        g_assert_cmpuint(page_op(f, a, SVM_OP_WRITE, p, 1), ==, 0);
    }
    g_assert_cmpuint(page_op(f, a, SVM_OP_WRITE, 19, 1), ==, SVM_ST_QUOTA);
    svm_session_free(a);
    svm_session_free(b);
}

static void test_malformed(Fixture *f, gconstpointer data)
{
    SvmSession *s = login(f, SVM_ROLE_VM, "a", "secret-of-vm-a-0123", true);
    uint8_t req[256];
    uint64_t page = 1;

    /* Unknown ops */
    size_t len = svm_wire_enc_empty(req, sizeof(req), 9, 0, 0, 0);
    call(f, s, req, len);
    g_assert_cmpuint(f->rh.status, ==, SVM_ST_UNKNOWN_OP);
    len = svm_wire_enc_empty(req, sizeof(req), 9, 250, 0, 0);
    call(f, s, req, len);
    g_assert_cmpuint(f->rh.status, ==, SVM_ST_UNKNOWN_OP);
    g_assert_false(f->close_after);
    /* Batch of 0 and of 65 */
    len = svm_wire_enc_pagevec_req(req, sizeof(req), 9, SVM_OP_READ, &page, 1);
    svm_put_le32(req + 16, 0);
    call(f, s, req, len);
    g_assert_cmpuint(f->rh.status, ==, SVM_ST_BAD_BATCH);
    svm_put_le32(req + 16, 65);
    call(f, s, req, len);
    g_assert_cmpuint(f->rh.status, ==, SVM_ST_BAD_BATCH);
    /* WRITE without its data */
    len = svm_wire_enc_pagevec_req(req, sizeof(req), 9, SVM_OP_WRITE, &page, 1);
    svm_wire_hdr_put(req, (uint32_t)len, SVM_OP_WRITE, 0, 0, 9);
    call(f, s, req, len);
    g_assert_cmpuint(f->rh.status, ==, SVM_ST_BAD_FRAME);
    /* Header length disagreeing with the frame */
    len = svm_wire_enc_empty(req, sizeof(req), 9, SVM_OP_DETACH, 0, 0);
    call(f, s, req, len + 4);
    g_assert_cmpuint(f->rh.status, ==, SVM_ST_BAD_FRAME);
    /* Request with the reply flag */
    len = svm_wire_enc_empty(req, sizeof(req), 9, SVM_OP_DETACH, SVM_WIRE_F_REPLY, 0);
    call(f, s, req, len);
    g_assert_cmpuint(f->rh.status, ==, SVM_ST_BAD_FRAME);
    /* Second HELLO, second ATTACH, MAP */
    len = svm_wire_enc_hello_req(req, sizeof(req), 9, 1, 1);
    call(f, s, req, len);
    g_assert_cmpuint(f->rh.status, ==, SVM_ST_BAD_STATE);
    SvmWireAttach at = { .npages = 100 };
    len = svm_wire_enc_attach_req(req, sizeof(req), 9, &at);
    call(f, s, req, len);
    g_assert_cmpuint(f->rh.status, ==, SVM_ST_BAD_STATE);
    len = svm_wire_enc_empty(req, sizeof(req), 9, SVM_OP_MAP, 0, 0);
    call(f, s, req, len);
    g_assert_cmpuint(f->rh.status, ==, SVM_ST_UNSUPPORTED);
    /* Still serving. */
    g_assert_cmpuint(page_op(f, s, SVM_OP_WRITE, 2, 9), ==, 0);
    /* DETACH, then page ops are refused */
    len = svm_wire_enc_empty(req, sizeof(req), 9, SVM_OP_DETACH, 0, 0);
    call(f, s, req, len);
    g_assert_cmpuint(f->rh.status, ==, 0);
    g_assert_cmpuint(page_op(f, s, SVM_OP_READ, 2, 0), ==, SVM_ST_NOT_ATTACHED);
    svm_session_free(s);
}

static void test_stats(Fixture *f, gconstpointer data)
{
    SvmSession *a = login(f, SVM_ROLE_VM, "a", "secret-of-vm-a-0123", true);
    uint8_t req[64];
    SvmWireStats st;
    g_assert_cmpuint(page_op(f, a, SVM_OP_WRITE, 1, 1), ==, 0);

    size_t len = svm_wire_enc_stats_req(req, sizeof(req), 11, 0);
    size_t n = call(f, a, req, len);
    g_assert_cmpuint(f->rh.status, ==, 0);
    g_assert_true(svm_wire_dec_stats_rep(f->out + 16, n - 16, &st));
    g_assert_cmpuint(st.field[SVM_SF_NS_PAGES_STORED], ==, 1);
    g_assert_cmpuint(st.field[SVM_SF_NS_QUOTA_PAGES], ==, 10);
    g_assert_cmpuint(st.nns, ==, 0);
    /* Only the admin lists namespaces. */
    len = svm_wire_enc_stats_req(req, sizeof(req), 11, SVM_STATS_F_NAMESPACES);
    call(f, a, req, len);
    g_assert_cmpuint(f->rh.status, ==, SVM_ST_PERMISSION);

    SvmSession *adm = login(f, SVM_ROLE_ADMIN, "admin", "admin-secret-0123456789", false);
    n = call(f, adm, req, len);
    g_assert_cmpuint(f->rh.status, ==, 0);
    g_assert_true(svm_wire_dec_stats_rep(f->out + 16, n - 16, &st));
    g_assert_cmpuint(st.nns, ==, 1);
    g_assert_cmpuint(st.field[SVM_SF_SERVER_PAGES_STORED], ==, 1);
    g_assert_cmpuint(st.field[SVM_SF_CONNECTIONS], ==, 2);
    SvmWireStatsNs e;
    svm_wire_stats_ns_at(&st, 0, &e);
    g_assert_cmpstr(e.id, ==, "a");
    /* The admin has no namespace. */
    g_assert_cmpuint(page_op(f, adm, SVM_OP_READ, 1, 0), ==, SVM_ST_NOT_ATTACHED);
    SvmWireAttach at = { .npages = 100 };
    len = svm_wire_enc_attach_req(req, sizeof(req), 9, &at);
    call(f, adm, req, len);
    g_assert_cmpuint(f->rh.status, ==, SVM_ST_PERMISSION);
    svm_session_free(a);
    svm_session_free(adm);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    /* Failed logins log a warning on purpose. */
    g_log_set_always_fatal(G_LOG_LEVEL_CRITICAL);
#define ADD(name, fn) g_test_add(name, Fixture, NULL, fx_setup, fn, fx_teardown)
    ADD("/session/happy-path", test_happy_path);
    ADD("/session/before-auth", test_before_auth);
    ADD("/session/wrong-secret", test_wrong_secret);
    ADD("/session/isolation", test_isolation);
    ADD("/session/malformed", test_malformed);
    ADD("/session/stats", test_stats);
    return g_test_run();
}
