/*
 * Unit tests of the wire codec (common/wire.c).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <glib.h>
#include "splitvm/wire.h"

static uint8_t buf[SVM_WIRE_MAX_FRAME];

static void test_header_roundtrip(void)
{
    SvmWireHdr h;
    svm_wire_hdr_put(buf, 1234, SVM_OP_READ, SVM_WIRE_F_REPLY, 7, 0x1122334455667788ull);
    /* Little-endian on the wire whatever the host. */
    g_assert_cmpuint(buf[0], ==, 1234 & 0xff);
    g_assert_cmpuint(buf[1], ==, 1234 >> 8);
    g_assert_cmpuint(buf[8], ==, 0x88);
    g_assert_cmpuint(buf[15], ==, 0x11);
    svm_wire_hdr_get(buf, &h);
    g_assert_cmpuint(h.len, ==, 1234);
    g_assert_cmpuint(h.op, ==, SVM_OP_READ);
    g_assert_cmpuint(h.flags, ==, SVM_WIRE_F_REPLY);
    g_assert_cmpuint(h.status, ==, 7);
    g_assert_cmpuint(h.req_id, ==, 0x1122334455667788ull);
}

static void test_peek(void)
{
    SvmWireHdr h;
    size_t len = svm_wire_enc_empty(buf, sizeof(buf), 5, SVM_OP_DETACH, 0, 0);
    g_assert_cmpuint(len, ==, SVM_WIRE_HDR_SIZE);
    for (size_t i = 0; i < len; i++) {
        g_assert_cmpint(svm_wire_peek(buf, i, &h), ==, SVM_PEEK_NEED_MORE);
    }
    g_assert_cmpint(svm_wire_peek(buf, len, &h), ==, SVM_PEEK_FRAME);
    /* Absurd lengths: below the header, above the maximum. */
    svm_wire_hdr_put(buf, 3, SVM_OP_READ, 0, 0, 1);
    g_assert_cmpint(svm_wire_peek(buf, 16, &h), ==, SVM_PEEK_BAD);
    svm_wire_hdr_put(buf, SVM_WIRE_MAX_FRAME + 1, SVM_OP_READ, 0, 0, 1);
    g_assert_cmpint(svm_wire_peek(buf, 16, &h), ==, SVM_PEEK_BAD);
    svm_wire_hdr_put(buf, 0xffffffffu, SVM_OP_READ, 0, 0, 1);
    g_assert_cmpint(svm_wire_peek(buf, 16, &h), ==, SVM_PEEK_BAD);
    svm_wire_hdr_put(buf, SVM_WIRE_MAX_FRAME, SVM_OP_WRITE, 0, 0, 1);
    g_assert_cmpint(svm_wire_peek(buf, 16, &h), ==, SVM_PEEK_NEED_MORE);
}

static void test_hello_auth_attach(void)
{
    SvmWireHello hr = { .version = 1, .max_batch = 64, .max_frame = SVM_WIRE_MAX_FRAME }, d;
    SvmWireHdr h;
    for (unsigned i = 0; i < SVM_WIRE_NONCE_SIZE; i++) {
        hr.nonce[i] = (uint8_t)i;
    }
    size_t len = svm_wire_enc_hello_req(buf, sizeof(buf), 9, 1, 3);
    svm_wire_hdr_get(buf, &h);
    g_assert_cmpuint(h.len, ==, len);
    g_assert_true(svm_wire_dec_hello_req(buf + 16, len - 16, &d));
    g_assert_cmpuint(d.magic, ==, SVM_WIRE_MAGIC);
    g_assert_cmpuint(d.version_min, ==, 1);
    g_assert_cmpuint(d.version_max, ==, 3);
    g_assert_false(svm_wire_dec_hello_req(buf + 16, len - 17, &d));

    len = svm_wire_enc_hello_rep(buf, sizeof(buf), 9, &hr);
    g_assert_true(svm_wire_dec_hello_rep(buf + 16, len - 16, &d));
    g_assert_cmpmem(d.nonce, 32, hr.nonce, 32);
    g_assert_cmpuint(d.max_frame, ==, SVM_WIRE_MAX_FRAME);
    buf[16] ^= 1;   /* bad magic */
    g_assert_false(svm_wire_dec_hello_rep(buf + 16, len - 16, &d));

    SvmWireAuth a = { .role = SVM_ROLE_VM, .id_len = 3 }, ad;
    memcpy(a.id, "vm1", 3);
    memset(a.mac, 0xab, sizeof(a.mac));
    len = svm_wire_enc_auth_req(buf, sizeof(buf), 2, &a);
    g_assert_cmpuint(len, >, 0);
    g_assert_true(svm_wire_dec_auth_req(buf + 16, len - 16, &ad));
    g_assert_cmpstr(ad.id, ==, "vm1");
    g_assert_cmpmem(ad.mac, 32, a.mac, 32);
    /* id_len that disagrees with the body length */
    buf[16 + 1] = 4;
    g_assert_false(svm_wire_dec_auth_req(buf + 16, len - 16, &ad));
    buf[16 + 1] = 3;
    /* non-printable identity */
    buf[len - 1] = '\n';
    g_assert_false(svm_wire_dec_auth_req(buf + 16, len - 16, &ad));
    a.id_len = 0;
    g_assert_cmpuint(svm_wire_enc_auth_req(buf, sizeof(buf), 2, &a), ==, 0);
    a.id_len = SVM_WIRE_ID_MAX + 1;
    g_assert_cmpuint(svm_wire_enc_auth_req(buf, sizeof(buf), 2, &a), ==, 0);

    SvmWireAttach at = { .npages = 1ull << 32, .owner_epoch = 42 }, atd;
    len = svm_wire_enc_attach_req(buf, sizeof(buf), 3, &at);
    g_assert_true(svm_wire_dec_attach_req(buf + 16, len - 16, &atd));
    g_assert_cmpuint(atd.npages, ==, 1ull << 32);
    g_assert_cmpuint(atd.owner_epoch, ==, 42);
    at.pages_stored = 5;
    at.quota_pages = 6;
    len = svm_wire_enc_attach_rep(buf, sizeof(buf), 3, &at);
    g_assert_true(svm_wire_dec_attach_rep(buf + 16, len - 16, &atd));
    g_assert_cmpuint(atd.pages_stored, ==, 5);
    g_assert_cmpuint(atd.quota_pages, ==, 6);
    g_assert_false(svm_wire_dec_attach_rep(buf + 16, len - 15, &atd));
}

static void test_pagevec(void)
{
    uint64_t pages[SVM_WIRE_MAX_BATCH];
    SvmWirePageVec v;
    SvmWireHdr h;

    for (unsigned i = 0; i < SVM_WIRE_MAX_BATCH; i++) {
        pages[i] = 0x100000000ull + i * 3;
    }
    size_t pre = svm_wire_enc_pagevec_req(buf, sizeof(buf), 77, SVM_OP_READ, pages, 64);
    g_assert_cmpuint(pre, ==, svm_wire_pagevec_prefix(64));
    svm_wire_hdr_get(buf, &h);
    g_assert_cmpuint(h.len, ==, pre);
    g_assert_true(svm_wire_dec_pagevec_req(SVM_OP_READ, buf + 16, pre - 16, &v));
    g_assert_cmpuint(v.n, ==, 64);
    for (unsigned i = 0; i < 64; i++) {
        g_assert_cmpuint(svm_wire_page_at(&v, i), ==, pages[i]);
    }
    g_assert_null(v.data);
    g_assert_false(svm_wire_dec_pagevec_req(SVM_OP_READ, buf + 16, pre - 17, &v));
    g_assert_false(svm_wire_dec_pagevec_req(SVM_OP_READ, buf + 16, pre - 15, &v));
    g_assert_cmpuint(svm_wire_reply_bound(&h), ==, 16 + 64 * 4096);

    /* WRITE: the header length covers the data the caller sends after it. */
    pre = svm_wire_enc_pagevec_req(buf, sizeof(buf), 78, SVM_OP_WRITE, pages, 2);
    svm_wire_hdr_get(buf, &h);
    g_assert_cmpuint(h.len, ==, pre + 2 * 4096);
    memset(buf + pre, 0x5a, 2 * 4096);
    g_assert_true(svm_wire_dec_pagevec_req(SVM_OP_WRITE, buf + 16, h.len - 16, &v));
    g_assert_true(v.data == buf + pre);
    g_assert_false(svm_wire_dec_pagevec_req(SVM_OP_WRITE, buf + 16, pre - 16, &v));

    /* Batch limits. */
    g_assert_cmpuint(svm_wire_enc_pagevec_req(buf, sizeof(buf), 1, SVM_OP_READ, pages, 0), ==, 0);
    g_assert_cmpuint(svm_wire_enc_pagevec_req(buf, sizeof(buf), 1, SVM_OP_READ, pages, 65), ==, 0);
    g_assert_cmpuint(svm_wire_enc_pagevec_req(buf, sizeof(buf), 1, SVM_OP_STATS, pages, 1), ==, 0);
    g_assert_cmpuint(svm_wire_enc_pagevec_req(buf, 20, 1, SVM_OP_READ, pages, 1), ==, 0);
    svm_put_le32(buf + 16, 65);
    g_assert_false(svm_wire_dec_pagevec_req(SVM_OP_READ, buf + 16, 8 + 65 * 8, &v));
    svm_put_le32(buf + 16, 0);
    g_assert_false(svm_wire_dec_pagevec_req(SVM_OP_READ, buf + 16, 8, &v));
    /* A count whose implied size would overflow 32 bits. */
    svm_put_le32(buf + 16, 0xffffffffu);
    g_assert_false(svm_wire_dec_pagevec_req(SVM_OP_WRITE, buf + 16, 100, &v));
}

/* The check a client makes before taking a READ reply's pages in place. */
static void test_read_reply(void)
{
    SvmWireHdr h = {
        .len = (uint32_t)svm_wire_read_rep_len(3), .op = SVM_OP_READ,
        .flags = SVM_WIRE_F_REPLY, .status = SVM_ST_OK, .req_id = 77,
    };

    g_assert_cmpuint(svm_wire_read_rep_len(3), ==, SVM_WIRE_HDR_SIZE + 3 * 4096);
    g_assert_cmpuint(SVM_WIRE_READ_REP_DATA, ==, SVM_WIRE_HDR_SIZE);
    g_assert_true(svm_wire_is_read_rep(&h, 77, 3));
    g_assert_false(svm_wire_is_read_rep(&h, 78, 3));        /* another request */
    g_assert_false(svm_wire_is_read_rep(&h, 77, 2));        /* other length */
    g_assert_false(svm_wire_is_read_rep(&h, 77, 0));
    g_assert_false(svm_wire_is_read_rep(&h, 77, SVM_WIRE_MAX_BATCH + 1));
    SvmWireHdr e = h;
    e.status = SVM_ST_OUT_OF_RANGE;
    g_assert_false(svm_wire_is_read_rep(&e, 77, 3));        /* error reply */
    e = h;
    e.flags = 0;
    g_assert_false(svm_wire_is_read_rep(&e, 77, 3));        /* not a reply */
    e = h;
    e.op = SVM_OP_WRITE;
    g_assert_false(svm_wire_is_read_rep(&e, 77, 3));
}

static void test_stats(void)
{
    SvmWireStats s = { 0 }, d;
    for (unsigned i = 0; i < SVM_SF__MAX; i++) {
        s.field[i] = 1000 + i;
    }
    s.hist[3] = 99;
    size_t len = svm_wire_enc_stats_rep(buf, sizeof(buf), 4, &s);
    g_assert_cmpuint(len, >, 0);
    for (unsigned i = 0; i < 3; i++) {
        SvmWireStatsNs ns = { .npages = i, .pages_stored = 10 + i };
        g_snprintf(ns.id, sizeof(ns.id), "vm%u", i);
        len = svm_wire_stats_add_ns(buf, sizeof(buf), len, &ns);
        g_assert_cmpuint(len, >, 0);
    }
    SvmWireHdr h;
    svm_wire_hdr_get(buf, &h);
    g_assert_cmpuint(h.len, ==, len);
    g_assert_true(svm_wire_dec_stats_rep(buf + 16, len - 16, &d));
    g_assert_cmpuint(d.field[SVM_SF_METADATA_BYTES], ==, 1000 + SVM_SF_METADATA_BYTES);
    g_assert_cmpuint(d.hist[3], ==, 99);
    g_assert_cmpuint(d.nns, ==, 3);
    SvmWireStatsNs e;
    svm_wire_stats_ns_at(&d, 2, &e);
    g_assert_cmpstr(e.id, ==, "vm2");
    g_assert_cmpuint(e.pages_stored, ==, 12);
    g_assert_false(svm_wire_dec_stats_rep(buf + 16, len - 17, &d));
    /* Huge counts are refused before any arithmetic. */
    svm_put_le32(buf + 16 + 8, 0x7fffffffu);
    g_assert_false(svm_wire_dec_stats_rep(buf + 16, len - 16, &d));
    /* Not enough room for another entry. */
    g_assert_cmpuint(svm_wire_stats_add_ns(buf, len + 10, len, &e), ==, 0);
}

static void test_errors(void)
{
    char msg[32];
    size_t len = svm_wire_enc_error(buf, sizeof(buf), 8, SVM_OP_WRITE, SVM_ST_QUOTA,
                                    "quota\x01 gone");
    SvmWireHdr h;
    svm_wire_hdr_get(buf, &h);
    g_assert_cmpuint(h.status, ==, SVM_ST_QUOTA);
    g_assert_true(h.flags & SVM_WIRE_F_REPLY);
    svm_wire_dec_error(buf + 16, len - 16, msg, sizeof(msg));
    g_assert_cmpstr(msg, ==, "quota? gone");
    /* Message length larger than the body is clamped. */
    svm_put_le16(buf + 16, 1000);
    svm_wire_dec_error(buf + 16, len - 16, msg, sizeof(msg));
    g_assert_cmpstr(msg, ==, "quota? gone");
    svm_wire_dec_error(buf + 16, 1, msg, sizeof(msg));
    g_assert_cmpstr(msg, ==, "");
    g_assert_cmpint(svm_wire_status_errno(SVM_ST_OUT_OF_RANGE), ==, -ERANGE);
    g_assert_cmpint(svm_wire_status_errno(SVM_ST_QUOTA), ==, -ENOSPC);
    g_assert_cmpint(svm_wire_status_errno(SVM_ST_CAPACITY), ==, -ENOSPC);
    g_assert_cmpint(svm_wire_status_errno(SVM_ST_BAD_FRAME), ==, -EPROTO);
    g_assert_cmpint(svm_wire_status_errno(999), ==, -EPROTO);
    g_assert_cmpstr(svm_wire_status_name(999), ==, "unknown status");
    g_assert_cmpstr(svm_wire_op_name(200), ==, "UNKNOWN");
    g_assert_cmpstr(svm_wire_op_name(SVM_OP_FREE_NS), ==, "FREE_NS");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/wire/header", test_header_roundtrip);
    g_test_add_func("/wire/peek", test_peek);
    g_test_add_func("/wire/hello-auth-attach", test_hello_auth_attach);
    g_test_add_func("/wire/pagevec", test_pagevec);
    g_test_add_func("/wire/read-reply", test_read_reply);
    g_test_add_func("/wire/stats", test_stats);
    g_test_add_func("/wire/errors", test_errors);
    return g_test_run();
}
