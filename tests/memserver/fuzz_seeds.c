/*
 * Seed inputs for fuzz_dispatch.c, built with the real encoders: a mode
 * byte followed by a stream of request frames.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <glib.h>
#include <string.h>
#include "splitvm/wire.h"

void fuzz_make_seeds(GPtrArray *out);

static GByteArray *stream(uint8_t mode)
{
    GByteArray *b = g_byte_array_new();
    g_byte_array_append(b, &mode, 1);
    return b;
}

static void add(GByteArray *b, const uint8_t *frame, size_t len)
{
    g_byte_array_append(b, frame, (guint)len);
}

static void add_pagevec(GByteArray *b, uint8_t op, uint64_t id, const uint64_t *pages,
                        unsigned n, uint8_t fill)
{
    static uint8_t buf[SVM_WIRE_MAX_FRAME];
    size_t len = svm_wire_enc_pagevec_req(buf, sizeof(buf), id, op, pages, n);
    if (op == SVM_OP_WRITE) {
        memset(buf + len, fill, (size_t)n * SVM_WIRE_PAGE_SIZE);
        len += (size_t)n * SVM_WIRE_PAGE_SIZE;
    }
    add(b, buf, len);
}

void fuzz_make_seeds(GPtrArray *out)
{
    uint8_t f[512];
    uint64_t pages[4] = { 0, 1, 7, 12 };
    size_t len;

    /* Unauthenticated: HELLO, AUTH with a wrong MAC, ops before auth. */
    GByteArray *b = stream(0);
    len = svm_wire_enc_hello_req(f, sizeof(f), 1, 1, 1);
    add(b, f, len);
    SvmWireAuth a = { .role = 0, .id_len = 2, .id = "fz" };
    len = svm_wire_enc_auth_req(f, sizeof(f), 2, &a);
    add(b, f, len);
    g_ptr_array_add(out, g_byte_array_free_to_bytes(b));

    b = stream(0);
    add_pagevec(b, SVM_OP_READ, 3, pages, 1, 0);
    len = svm_wire_enc_stats_req(f, sizeof(f), 4, 0);
    add(b, f, len);
    len = svm_wire_enc_hello_req(f, sizeof(f), 5, 2, 9);
    add(b, f, len);
    g_ptr_array_add(out, g_byte_array_free_to_bytes(b));

    /* Attached (mode bit 0), namespace of 1 + 3 * 13 = 40 pages. */
    for (uint8_t mode = 1 | (3 << 2); mode <= (3 | (3 << 2)); mode += 2) {
        b = stream(mode);
        add_pagevec(b, SVM_OP_WRITE, 10, pages, 4, 0x5a);
        add_pagevec(b, SVM_OP_READ, 11, pages, 4, 0);
        add_pagevec(b, SVM_OP_DISCARD, 12, pages, 2, 0);
        add_pagevec(b, SVM_OP_READ, 13, pages, 4, 0);
        uint64_t far[2] = { 39, 40 };
        add_pagevec(b, SVM_OP_READ, 14, far, 2, 0);
        len = svm_wire_enc_stats_req(f, sizeof(f), 15, SVM_STATS_F_NAMESPACES);
        add(b, f, len);
        len = svm_wire_enc_stats_req(f, sizeof(f), 16, 0);
        add(b, f, len);
        SvmWireAttach at = { .npages = 64, .owner_epoch = 3 };
        len = svm_wire_enc_attach_req(f, sizeof(f), 17, &at);
        add(b, f, len);
        len = svm_wire_enc_empty(f, sizeof(f), 18, SVM_OP_FREE_NS, 0, 0);
        add(b, f, len);
        len = svm_wire_enc_empty(f, sizeof(f), 19, SVM_OP_DETACH, 0, 0);
        add(b, f, len);
        len = svm_wire_enc_attach_req(f, sizeof(f), 20, &at);
        add(b, f, len);
        len = svm_wire_enc_empty(f, sizeof(f), 21, SVM_OP_MAP, 0, 0);
        add(b, f, len);
        g_ptr_array_add(out, g_byte_array_free_to_bytes(b));
    }

    /* A big batch and a reply-shaped stream for the client decoders. */
    b = stream(1 | 2 | (63 << 2));
    uint64_t many[SVM_WIRE_MAX_BATCH];
    for (unsigned i = 0; i < SVM_WIRE_MAX_BATCH; i++) {
        many[i] = i * 3;
    }
    add_pagevec(b, SVM_OP_WRITE, 30, many, SVM_WIRE_MAX_BATCH, 1);
    add_pagevec(b, SVM_OP_READ, 31, many, SVM_WIRE_MAX_BATCH, 0);
    SvmWireStats st = { 0 };
    static uint8_t big[8192];
    len = svm_wire_enc_stats_rep(big, sizeof(big), 32, &st);
    SvmWireStatsNs ns = { .id = "x", .npages = 1 };
    len = svm_wire_stats_add_ns(big, sizeof(big), len, &ns);
    add(b, big, len);
    SvmWireHello h = { .version = 1 };
    len = svm_wire_enc_hello_rep(f, sizeof(f), 33, &h);
    add(b, f, len);
    len = svm_wire_enc_error(f, sizeof(f), 34, SVM_OP_READ, SVM_ST_QUOTA, "quota");
    add(b, f, len);
    g_ptr_array_add(out, g_byte_array_free_to_bytes(b));
}
