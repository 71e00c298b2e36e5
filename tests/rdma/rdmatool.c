/*
 * rdmatool: drives a real splitvm-memserver over the "rdma" transport for
 * tests/rdma/test_rdma.py, below the client library (raw connections,
 * frames and the transport's LOOKUP), to check what the server refuses.
 *
 *   rdmatool mode --addr A --vm ID --secret S
 *       connect, attach, MAP; print "mode N NAME"
 *   rdmatool security --addr A --vm ID --secret S --vm2 ID --secret2 S
 *       the isolation checks listed in run_security(); one "ok ..." line
 *       per check, "FAIL: ..." and exit 1 at the first that fails
 *   rdmatool swrma --addr A --vm ID --secret S
 *       a one-sided read with a key this process made up (what an attacker
 *       could send); prints "refused" if no data came back, "LEAKED" and
 *       exit 1 if it did
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "splitvm/clientproto.h"
#include "splitvm/transport.h"
#include "splitvm/wire.h"
#include "rdma-int.h"

#define NPAGES      4096u
#define TIMEOUT_MS  5000u

static char *opt_addr, *opt_vm, *opt_secret, *opt_vm2, *opt_secret2;
static const SvmClientTransportOps *ops;
static uint64_t next_id = 100;

static void failf(const char *fmt, ...) G_GNUC_PRINTF(1, 2) G_GNUC_NORETURN;
static void failf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    exit(1);
}

static SvmClientConn *login(const char *vm, const char *secret, bool attach, uint64_t epoch)
{
    g_autoptr(GError) err = NULL;
    SvmWireAttach a = { .npages = NPAGES, .owner_epoch = epoch };
    SvmProtoLogin l = {
        .address = opt_addr, .role = SVM_ROLE_VM, .id = vm, .secret = secret,
        .secret_len = strlen(secret), .timeout_ms = TIMEOUT_MS,
        .attach = attach ? &a : NULL,
    };
    SvmClientConn *c = svm_proto_login(ops, &l, NULL, &err);
    if (!c) {
        failf("login as %s: %s", vm, err->message);
    }
    return c;
}

/* One frame, its reply status (SvmWireStatus); the reply body into rep. */
static int call(SvmClientConn *c, uint8_t *frame, size_t len, uint8_t *rep, size_t cap)
{
    g_autoptr(GError) err = NULL;
    SvmWireHdr h;

    svm_put_le64(frame + 8, next_id++);
    size_t n = svm_proto_call(ops, c, frame, len, rep, cap, TIMEOUT_MS, &err);
    if (n) {
        return SVM_ST_OK;
    }
    if (!g_error_matches(err, G_IO_ERROR, G_IO_ERROR_FAILED) &&
        !g_error_matches(err, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED)) {
        failf("call: %s", err->message);
    }
    svm_wire_hdr_get(rep, &h);
    return h.status;
}

/* WRITE pages [first, first + n) with a pattern naming the VM (two-sided). */
static void write_pages(SvmClientConn *c, uint64_t first, unsigned n, uint8_t tag)
{
    uint64_t pages[SVM_WIRE_MAX_BATCH];
    g_autofree uint8_t *frame = g_malloc(SVM_WIRE_MAX_FRAME);
    g_autofree uint8_t *rep = g_malloc(SVM_WIRE_MAX_FRAME);

    for (unsigned i = 0; i < n; i++) {
        pages[i] = first + i;
    }
    size_t prefix = svm_wire_enc_pagevec_req(frame, SVM_WIRE_MAX_FRAME, 0, SVM_OP_WRITE,
                                             pages, n);
    for (unsigned i = 0; i < n; i++) {
        memset(frame + prefix + (size_t)i * SVM_WIRE_PAGE_SIZE, tag, SVM_WIRE_PAGE_SIZE);
    }
    int st = call(c, frame, prefix + (size_t)n * SVM_WIRE_PAGE_SIZE, rep, SVM_WIRE_MAX_FRAME);
    if (st != SVM_ST_OK) {
        failf("WRITE: %s", svm_wire_status_name(st));
    }
}

static int simple(SvmClientConn *c, uint8_t op)
{
    uint8_t frame[SVM_WIRE_HDR_SIZE];
    g_autofree uint8_t *rep = g_malloc(SVM_WIRE_MAX_FRAME);
    svm_wire_enc_empty(frame, sizeof(frame), 0, op, 0, 0);
    return call(c, frame, sizeof(frame), rep, SVM_WIRE_MAX_FRAME);
}

/* Extents (pool page / 64) holding pages [first, first + n). */
static GHashTable *extents_of(SvmClientConn *c, uint64_t first, unsigned n, const char *who)
{
    GHashTable *set = g_hash_table_new(g_direct_hash, g_direct_equal);
    for (unsigned done = 0; done < n; done += SVM_WIRE_MAX_BATCH) {
        uint64_t pages[SVM_WIRE_MAX_BATCH], locs[SVM_WIRE_MAX_BATCH];
        unsigned k = MIN(SVM_WIRE_MAX_BATCH, n - done);
        for (unsigned i = 0; i < k; i++) {
            pages[i] = first + done + i;
        }
        int rc = svm_rdma_client_lookup(c, pages, k, locs);
        if (rc < 0) {
            failf("LOOKUP by %s: %s", who, g_strerror(-rc));
        }
        for (unsigned i = 0; i < k; i++) {
            if (!locs[i]) {
                failf("LOOKUP by %s: page %" G_GUINT64_FORMAT " not stored", who, pages[i]);
            }
            g_hash_table_add(set, GUINT_TO_POINTER((guint)((locs[i] - 1) / 64)));
        }
    }
    return set;
}

static void expect_lookup_refused(SvmClientConn *c, uint64_t page, int err, const char *what)
{
    uint64_t loc;
    int rc = svm_rdma_client_lookup(c, &page, 1, &loc);
    if (rc != -err) {
        failf("%s: LOOKUP returned %s, expected %s", what, rc ? g_strerror(-rc) : "success",
              g_strerror(err));
    }
    printf("ok %s (%s)\n", what, g_strerror(err));
}

static int run_security(void)
{
    /* Interleave the two VMs' first writes so their extents alternate. */
    SvmClientConn *a = login(opt_vm, opt_secret, true, 1);
    SvmClientConn *b = login(opt_vm2, opt_secret2, true, 0);
    printf("ok both attached, mode %s\n", svm_rdma_mode_name(svm_rdma_client_mode(a)));
    for (uint64_t p = 0; p < 512; p += 64) {
        write_pages(a, p, 64, 0xaa);
        write_pages(b, p, 64, 0xbb);
    }
    g_autoptr(GHashTable) ea = extents_of(a, 0, 512, opt_vm);
    g_autoptr(GHashTable) eb = extents_of(b, 0, 512, opt_vm2);
    GHashTableIter it;
    gpointer key;
    g_hash_table_iter_init(&it, ea);
    while (g_hash_table_iter_next(&it, &key, NULL)) {
        if (g_hash_table_contains(eb, key)) {
            failf("extent %u is located for both VMs", GPOINTER_TO_UINT(key));
        }
    }
    printf("ok LOOKUPs of each VM name only its own extents (%u and %u extents)\n",
           g_hash_table_size(ea), g_hash_table_size(eb));

    /* The one-sided path returns each VM its own bytes. */
    if (svm_rdma_client_mode(a) != SVM_RDMA_MODE_NONE) {
        uint8_t buf[SVM_WIRE_PAGE_SIZE];
        void *bufs[1] = { buf };
        uint64_t page = 77;
        int rc = ops->read_pages(a, &page, 1, bufs);
        if (rc < 0 || buf[0] != 0xaa || buf[4095] != 0xaa) {
            failf("one-sided read of VM %s: rc %d, byte 0x%02x", opt_vm, rc, buf[0]);
        }
        rc = ops->read_pages(b, &page, 1, bufs);
        if (rc < 0 || buf[0] != 0xbb) {
            failf("one-sided read of VM %s: rc %d, byte 0x%02x", opt_vm2, rc, buf[0]);
        }
        printf("ok one-sided reads return each VM its own page\n");
    }

    expect_lookup_refused(b, NPAGES, ERANGE, "a LOOKUP past the namespace is refused");

    /* Not attached: neither MAP nor LOOKUP. */
    SvmClientConn *u = login(opt_vm2, opt_secret2, false, 0);
    int st = simple(u, SVM_OP_MAP);
    if (st != SVM_ST_NOT_ATTACHED) {
        failf("MAP before ATTACH: status %s", svm_wire_status_name(st));
    }
    printf("ok MAP before ATTACH is refused (NOT_ATTACHED)\n");
    expect_lookup_refused(u, 0, ENOTCONN, "a LOOKUP before ATTACH is refused");
    ops->close(u);

    /* A newer owner fences the older one. */
    SvmClientConn *a2 = login(opt_vm, opt_secret, true, 2);
    expect_lookup_refused(a, 0, ESTALE, "the fenced owner's LOOKUP is refused");
    ops->close(a);

    /* DETACH ends the right to locate pages. */
    st = simple(a2, SVM_OP_DETACH);
    if (st != SVM_ST_OK) {
        failf("DETACH: %s", svm_wire_status_name(st));
    }
    expect_lookup_refused(a2, 0, ENOTCONN, "a LOOKUP after DETACH is refused");
    ops->close(a2);

    /* FREE_NS releases b's extents (and, with per-extent keys, revokes them). */
    st = simple(b, SVM_OP_FREE_NS);
    if (st != SVM_ST_OK) {
        failf("FREE_NS: %s", svm_wire_status_name(st));
    }
    uint64_t page = 0, loc = 1;
    int rc = svm_rdma_client_lookup(b, &page, 1, &loc);
    if (rc < 0 || loc != 0) {
        failf("after FREE_NS page 0 is still located (rc %d, loc %" G_GUINT64_FORMAT ")",
              rc, loc);
    }
    printf("ok FREE_NS leaves nothing to locate\n");
    ops->close(b);
    printf("ok security checks passed\n");
    return 0;
}

static int run_swrma(void)
{
    SvmClientConn *c = login(opt_vm, opt_secret, true, 0);
    uint64_t base, len;
    uint8_t buf[64];

    write_pages(c, 0, 1, 0xcc);
    svm_rdma_client_pool(c, &base, &len);
    if (!base) {
        failf("the server told no pool address");
    }
    memset(buf, 0, sizeof(buf));
    /* A real server address; the key is this process's own: on a NIC the
     * key check fails, without one UCX would fall back to its software
     * emulation, which the server must not serve. */
    int rc = svm_rdma_client_forged_get(c, base, buf, sizeof(buf), 3000);
    if (rc == 0) {
        printf("LEAKED: a forged key read %zu bytes of server memory (first byte 0x%02x)\n",
               sizeof(buf), buf[0]);
        return 1;
    }
    printf("refused: %s\n", g_strerror(-rc));
    ops->close(c);
    return 0;
}

int main(int argc, char **argv)
{
    GOptionEntry entries[] = {
        { "addr", 0, 0, G_OPTION_ARG_STRING, &opt_addr, "server", "HOST:PORT" },
        { "vm", 0, 0, G_OPTION_ARG_STRING, &opt_vm, "VM id", "ID" },
        { "secret", 0, 0, G_OPTION_ARG_STRING, &opt_secret, "secret", "S" },
        { "vm2", 0, 0, G_OPTION_ARG_STRING, &opt_vm2, "second VM (security)", "ID" },
        { "secret2", 0, 0, G_OPTION_ARG_STRING, &opt_secret2, "its secret", "S" },
        { NULL },
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("mode|security|swrma");
    g_autoptr(GError) err = NULL;

    g_option_context_add_main_entries(ctx, entries, NULL);
    if (!g_option_context_parse(ctx, &argc, &argv, &err) || argc != 2 || !opt_addr ||
        !opt_vm || !opt_secret) {
        fprintf(stderr, "rdmatool: bad usage%s%s (see --help)\n", err ? ": " : "",
                err ? err->message : "");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    ops = svm_client_transport_find("rdma");
    if (!ops) {
        fprintf(stderr, "rdmatool: the rdma transport is not built in\n");
        return 2;
    }
    if (!strcmp(argv[1], "mode")) {
        SvmClientConn *c = login(opt_vm, opt_secret, true, 0);
        SvmRdmaMode m = svm_rdma_client_mode(c);
        printf("mode %d %s\n", m, svm_rdma_mode_name(m));
        ops->close(c);
        return 0;
    }
    if (!strcmp(argv[1], "security")) {
        if (!opt_vm2 || !opt_secret2) {
            fprintf(stderr, "rdmatool: security needs --vm2 and --secret2\n");
            return 2;
        }
        return run_security();
    }
    if (!strcmp(argv[1], "swrma")) {
        return run_swrma();
    }
    fprintf(stderr, "rdmatool: unknown command '%s'\n", argv[1]);
    return 2;
}
