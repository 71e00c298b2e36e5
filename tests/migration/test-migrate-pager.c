/*
 * Migration with the RAM on the memory servers, at the libsplitvm level:
 * a source pager flushes while a writer runs, hands the VM's pages over
 * to an incoming pager (and back), a failed migration leaves the source in
 * charge, and a stale owner is fenced by the servers.  Real
 * splitvm-memserver processes on loopback, real userfaultfd.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "../pager/memserver-util.h"
#include "../pager/pager-test-util.h"
#include "splitvm/memclient.h"

#define NPAGES 4096u                    /* 16 MiB of "guest RAM" */
#define BUDGET (NPAGES * PG / 4)        /* 4 MiB resident: evictions happen */
#define WRITTEN_PAGES (NPAGES * 3 / 4)  /* the last quarter is never written */

typedef struct Host {
    TestRam ram;
    SvmPager *p;
} Host;

typedef struct Rack {
    SvmTestServer *srv[2];
    const char *servers[2];
} Rack;

static bool rack_start(Rack *r)
{
    memset(r, 0, sizeof(*r));
    for (unsigned i = 0; i < 2; i++) {
        r->srv[i] = svm_test_server_start(NULL);
        if (!r->srv[i]) {
            return false;
        }
        r->servers[i] = r->srv[i]->address;
    }
    return true;
}

static void rack_stop(Rack *r)
{
    for (unsigned i = 0; i < 2; i++) {
        if (r->srv[i]) {
            svm_test_server_free(r->srv[i]);
        }
    }
}

static SvmPager *host_start(Host *h, Rack *r, bool incoming, GError **errp)
{
    SvmPagerConfig cfg;

    test_ram_init(&h->ram, (uint64_t)NPAGES * PG);
    cfg = test_config(&h->ram, BUDGET);
    svm_test_server_config(r->srv[0], &cfg, r->servers, 2);
    cfg.incoming = incoming;
    h->p = svm_pager_start(&cfg, errp);
    return h->p;
}

static void host_stop(Host *h)
{
    if (h->p) {
        test_print_stats(h->p);
        svm_pager_stop(h->p);
        h->p = NULL;
    }
    test_ram_destroy(&h->ram);
}

/*
 * Two memory servers and a source pager that owns the VM's pages; false
 * (test skipped) when splitvm-memserver is not built.
 */
static bool source_start(Rack *r, Host *src)
{
    g_autoptr(GError) err = NULL;

    if (!rack_start(r)) {
        rack_stop(r);
        g_test_skip("splitvm-memserver not built (SPLITVM_MEMSERVER unset)");
        return false;
    }
    g_assert_nonnull(host_start(src, r, false, &err));
    g_assert_no_error(err);
    g_assert_true(svm_pager_is_owner(src->p));
    return true;
}

/* Word 0 of each written page holds (generation << 32 | page). */
static uint64_t pattern(uint64_t gen, uint64_t page)
{
    return gen << 32 | page;
}

typedef struct Writer {
    uint8_t *host;
    atomic_bool stop;
    atomic_uint_fast64_t gen;   /* last generation fully written */
    pthread_t thread;
} Writer;

static void write_gen(uint8_t *host, uint64_t gen)
{
    for (uint64_t i = 0; i < WRITTEN_PAGES; i++) {
        uint64_t *w = (uint64_t *)(host + i * PG);

        w[0] = pattern(gen, i);
        w[PG / 8 - 1] = ~pattern(gen, i);
    }
}

static void *writer_fn(void *opaque)
{
    Writer *w = opaque;

    for (uint64_t gen = atomic_load(&w->gen) + 1; !atomic_load(&w->stop); gen++) {
        write_gen(w->host, gen);
        atomic_store(&w->gen, gen);
    }
    return NULL;
}

/* Every written page holds generation `gen`, the rest is zero. */
static void verify(uint8_t *host, uint64_t gen)
{
    for (uint64_t i = 0; i < NPAGES; i++) {
        uint64_t *w = (uint64_t *)(host + i * PG);

        if (i < WRITTEN_PAGES) {
            if (w[0] != pattern(gen, i) || w[PG / 8 - 1] != ~pattern(gen, i)) {
                g_error("page %" G_GUINT64_FORMAT ": 0x%" G_GINT64_MODIFIER "x"
                        " expected 0x%" G_GINT64_MODIFIER "x", i, w[0],
                        pattern(gen, i));
            }
        } else if (w[0] != 0 || w[PG / 8 - 1] != 0) {
            g_error("page %" G_GUINT64_FORMAT " was never written but is not zero", i);
        }
    }
}

/*
 * The migration itself: live flush rounds while `w` writes, stop the
 * writer, final flush, bitmap, hand-over.  Returns the generation the
 * guest RAM holds.
 */
static uint64_t migrate(Host *src, Host *dst, Writer *w)
{
    g_autoptr(GError) err = NULL;
    g_autofree uint8_t *written = NULL;
    uint64_t remaining = UINT64_MAX, epoch, gen;
    size_t len;
    unsigned rounds = 0;

    /* live rounds: each one pushes what is dirty now */
    while (rounds < 20 && remaining > 64 * PG) {
        g_assert_true(svm_pager_flush(src->p, 0, &remaining, &err));
        g_assert_no_error(err);
        rounds++;
    }
    g_test_message("%u live flush rounds, %" G_GUINT64_FORMAT " dirty bytes left",
                   rounds, remaining);
    if (w) {
        atomic_store(&w->stop, true);
        pthread_join(w->thread, NULL);
    }
    gen = w ? atomic_load(&w->gen) : 0;
    /* a generation may have been half-written when the writer stopped */
    if (w) {
        gen++;
        write_gen(src->ram.host, gen);
    }
    /* "guest stopped" from here on */
    g_assert_true(svm_pager_flush_all(src->p, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(svm_pager_dirty_bytes(src->p), ==, 0);
    epoch = svm_pager_owner_epoch(src->p);
    g_assert_cmpuint(epoch, >, 0);
    written = svm_pager_written_bitmap(src->p, &len);

    g_assert_true(svm_pager_set_written(dst->p, written, len, &err));
    g_assert_no_error(err);
    g_assert_true(svm_pager_take_ownership(dst->p, epoch, &err));
    g_assert_no_error(err);
    g_assert_true(svm_pager_is_owner(dst->p));
    g_assert_cmpuint(svm_pager_owner_epoch(dst->p), >, epoch);
    svm_pager_release_ownership(src->p);
    g_assert_false(svm_pager_is_owner(src->p));
    return gen;
}

/* There and back, with a writer running during both live phases. */
static void test_there_and_back(void)
{
    Rack r;
    Host a = { 0 }, b = { 0 }, c = { 0 };
    g_autoptr(GError) err = NULL;
    Writer w = { 0 };
    SvmPagerStats st;
    uint64_t gen;

    if (!source_start(&r, &a)) {
        return;
    }

    w.host = a.ram.host;
    pthread_create(&w.thread, NULL, writer_fn, &w);
    while (atomic_load(&w.gen) < 2) {
        g_usleep(1000);     /* condition: two full generations written */
    }
    g_assert_nonnull(host_start(&b, &r, true, &err));
    g_assert_no_error(err);
    g_assert_false(svm_pager_is_owner(b.p));
    gen = migrate(&a, &b, &w);
    verify(b.ram.host, gen);
    svm_pager_get_stats(b.p, &st);
    /*
     * The never-written quarter came from the bitmap, not the network (a
     * few pages may be filled twice, or race into another path).
     */
    g_assert_cmpuint(st.fills_zero, >=, (NPAGES - WRITTEN_PAGES) * 9 / 10);
    g_assert_cmpuint(st.fills_remote, >=, WRITTEN_PAGES - BUDGET / PG);
    host_stop(&a);

    /* and back, to a third pager (a new QEMU on the first host) */
    memset(&w, 0, sizeof(w));
    w.host = b.ram.host;
    atomic_store(&w.gen, gen);
    pthread_create(&w.thread, NULL, writer_fn, &w);
    while (atomic_load(&w.gen) < gen + 2) {
        g_usleep(1000);
    }
    g_assert_nonnull(host_start(&c, &r, true, &err));
    g_assert_no_error(err);
    gen = migrate(&b, &c, &w);
    verify(c.ram.host, gen);
    host_stop(&b);
    host_stop(&c);
    rack_stop(&r);
}

/* Destination dies before the hand-over: the source keeps going, nothing lost. */
static void test_dest_dies(void)
{
    Rack r;
    Host a = { 0 }, b = { 0 };
    g_autoptr(GError) err = NULL;
    g_autofree uint8_t *written = NULL;
    uint64_t remaining;
    size_t len;

    if (!source_start(&r, &a)) {
        return;
    }
    write_gen(a.ram.host, 1);
    g_assert_nonnull(host_start(&b, &r, true, &err));
    g_assert_no_error(err);
    g_assert_true(svm_pager_flush(a.p, 0, &remaining, &err));
    g_assert_no_error(err);
    written = svm_pager_written_bitmap(a.p, &len);
    g_assert_true(svm_pager_set_written(b.p, written, len, &err));
    g_assert_no_error(err);
    /* the destination even read guest RAM before it died */
    g_assert_cmpuint(*(uint64_t *)b.ram.host, ==, pattern(1, 0));
    host_stop(&b);

    /* the source still owns the pages: it writes, evicts and flushes */
    g_assert_true(svm_pager_is_owner(a.p));
    write_gen(a.ram.host, 2);
    g_assert_true(svm_pager_flush_all(a.p, &err));
    g_assert_no_error(err);
    write_gen(a.ram.host, 3);
    verify(a.ram.host, 3);
    host_stop(&a);
    rack_stop(&r);
}

/* After the hand-over the old owner's writes are refused by the servers. */
static void test_stale_source_fenced(void)
{
    Rack r;
    Host a = { 0 }, b = { 0 };
    g_autoptr(GError) err = NULL;
    g_autoptr(GError) err2 = NULL;
    SvmMemClient *stale;
    SvmMemClientConfig mc = {
        .vm_id = TEST_VM_ID, .secret = TEST_SECRET,
        .secret_len = strlen(TEST_SECRET), .npages = NPAGES / 2, /* its stripe share */
        .timeout_ms = 2000, .reconnect_ms = 1000,
    };
    /*
     * Server 0's page 1984 is guest page 3968 (64-page stripes round robin):
     * never written by the "guest", so the stale zeroes change nothing.
     */
    uint64_t page = 1984, src_epoch;
    g_autofree uint8_t *buf = g_malloc0(PG);
    const void *bufs[1] = { buf };

    if (!source_start(&r, &a)) {
        return;
    }
    src_epoch = svm_pager_owner_epoch(a.p);
    write_gen(a.ram.host, 1);

    /* a connection of the old owner, attached with its epoch */
    mc.address = r.servers[0] + strlen("tcp:");
    mc.owner_epoch = src_epoch;
    stale = svm_memclient_connect(&mc, &err);
    g_assert_no_error(err);
    g_assert_cmpint(svm_memclient_write(stale, &page, 1, bufs), ==, 0);

    g_assert_nonnull(host_start(&b, &r, true, &err));
    g_assert_no_error(err);
    /* no release by the source: it is stale, the servers must refuse it */
    migrate(&a, &b, NULL);

    g_assert_cmpint(svm_memclient_write(stale, &page, 1, bufs), ==, -ESTALE);
    g_assert_cmpint(svm_memclient_discard(stale, &page, 1), ==, -ESTALE);
    svm_memclient_close(stale);
    /* a new ATTACH with the old epoch is refused too */
    stale = svm_memclient_connect(&mc, &err2);
    g_assert_null(stale);
    g_assert_nonnull(err2);
    g_test_message("stale attach: %s", err2->message);
    g_assert_nonnull(strstr(err2->message, "fenced"));

    /* the new owner's copy is intact */
    verify(b.ram.host, 1);
    host_stop(&a);
    host_stop(&b);
    rack_stop(&r);
}

/* The source pager's own write path is fenced too (no release called). */
static void test_stale_pager_flush_fenced(void)
{
    Rack r;
    Host a = { 0 }, b = { 0 };
    g_autoptr(GError) err = NULL;
    g_autoptr(GError) err2 = NULL;
    gint64 deadline;

    if (!source_start(&r, &a)) {
        return;
    }
    write_gen(a.ram.host, 1);
    g_assert_true(svm_pager_flush_all(a.p, &err));
    g_assert_no_error(err);
    g_assert_nonnull(host_start(&b, &r, true, &err));
    g_assert_no_error(err);
    g_assert_true(svm_pager_take_ownership(b.p, svm_pager_owner_epoch(a.p), &err));
    g_assert_no_error(err);

    /*
     * The stale source writes and tries to push its page.  Its evictor may
     * hold the page and be refused first: then flush has nothing to push
     * this time, and is refused from then on.
     */
    ((uint64_t *)a.ram.host)[0] = 0xbad;
    deadline = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;
    while (svm_pager_flush(a.p, 0, NULL, &err2) &&
           g_get_monotonic_time() < deadline) {
        g_usleep(1000);
    }
    g_assert_nonnull(err2);
    g_test_message("stale flush: %s", err2->message);
    g_assert_cmpint(err2->code, ==, ESTALE);
    /* reported like a lost server (QEMU keeps the guest paused), and it stays so */
    g_assert_cmpuint(test_stats(a.p).servers_down, >=, 1);
    g_assert_cmpuint(*(uint64_t *)b.ram.host, ==, pattern(1, 0));
    host_stop(&a);
    host_stop(&b);
    rack_stop(&r);
}

/*
 * The destination resumes at once: the warm-up of the source's hot pages
 * runs in the background (the call returns before the pages are there),
 * fetches them without a fault, and stopping the pager ends it.
 */
static void test_warm_in_background(void)
{
    Rack r;
    Host a = { 0 }, b = { 0 }, c = { 0 };
    g_autoptr(GError) err = NULL;
    g_autofree uint8_t *written = NULL, *hot = NULL;
    size_t len, hlen;
    uint64_t warming, epoch;
    gint64 deadline;
    SvmPagerStats st;

    if (!source_start(&r, &a)) {
        return;
    }
    write_gen(a.ram.host, 1);
    g_assert_true(svm_pager_flush_all(a.p, &err));
    g_assert_no_error(err);
    epoch = svm_pager_owner_epoch(a.p);
    written = svm_pager_written_bitmap(a.p, &len);
    hot = svm_pager_resident_bitmap(a.p, &hlen);

    g_assert_nonnull(host_start(&b, &r, true, &err));
    g_assert_no_error(err);
    g_assert_true(svm_pager_set_written(b.p, written, len, &err));
    g_assert_no_error(err);
    g_assert_true(svm_pager_take_ownership(b.p, epoch, &err));
    g_assert_no_error(err);
    svm_pager_release_ownership(a.p);
    warming = svm_pager_warm(b.p, hot, hlen);
    g_test_message("warming %" G_GUINT64_FORMAT " pages", warming);
    g_assert_cmpuint(warming, >, 0);
    g_assert_cmpuint(warming, <=, BUDGET / PG);
    /* one warm-up per pager */
    g_assert_cmpuint(svm_pager_warm(b.p, hot, hlen), ==, 0);
    /* a wrong length is refused */
    g_assert_cmpuint(svm_pager_warm(b.p, hot, hlen - 1), ==, 0);

    /* condition: the hot pages arrive with no fault taken */
    deadline = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
    do {
        svm_pager_get_stats(b.p, &st);
        if (st.prefetch_issued >= warming * 9 / 10) {
            break;
        }
        g_usleep(1000);
    } while (g_get_monotonic_time() < deadline);
    g_test_message("%" G_GUINT64_FORMAT " warm reads issued, %" G_GUINT64_FORMAT
                   " resident", st.prefetch_issued, st.resident_pages);
    g_assert_cmpuint(st.prefetch_issued, >=, warming * 9 / 10);
    g_assert_cmpuint(st.faults_missing + st.faults_minor, ==, 0);
    verify(b.ram.host, 1);

    /* stopping a pager whose warm-up is still running ends it */
    g_assert_nonnull(host_start(&c, &r, true, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(svm_pager_warm(c.p, hot, hlen), >, 0);
    host_stop(&c);

    host_stop(&a);
    host_stop(&b);
    rack_stop(&r);
}

/*
 * With a memory server gone the final flush cannot succeed: it says which
 * server, within the client's reconnect time rather than the 60 s it allows
 * for the evictor (QEMU calls it with the guest stopped and the BQL held),
 * and the source keeps its dirty pages.
 */
static void test_flush_all_server_down(void)
{
    Rack r;
    Host a = { 0 };
    g_autoptr(GError) err = NULL;
    uint64_t dirty;

    if (!source_start(&r, &a)) {
        return;
    }
    write_gen(a.ram.host, 1);
    dirty = svm_pager_dirty_bytes(a.p);
    g_assert_cmpuint(dirty, >, 0);
    /*
     * Whether the pager noticed already (a write-back failed) or notices in
     * the flush, the error names the server.  No guest access meanwhile:
     * one that needs that server would block until it is back.
     */
    svm_test_server_kill(r.srv[1]);
    g_assert_false(svm_pager_flush_all(a.p, &err));
    g_assert_nonnull(err);
    g_test_message("flush_all: %s", err->message);
    g_assert_cmpint(err->code, ==, EHOSTUNREACH);
    g_assert_nonnull(strstr(err->message, r.servers[1]));
    g_assert_cmpuint(test_stats(a.p).servers_down, ==, 1);
    /* nothing was dropped: the pages are still dirty and hold the data */
    g_assert_cmpuint(svm_pager_dirty_bytes(a.p), >, 0);
    host_stop(&a);
    rack_stop(&r);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    /* a killed server makes the memory clients warn: expected, not fatal */
    g_log_set_always_fatal(G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL);
    g_test_add_func("/migrate/there-and-back", test_there_and_back);
    g_test_add_func("/migrate/dest-dies-before-handover", test_dest_dies);
    g_test_add_func("/migrate/stale-source-fenced", test_stale_source_fenced);
    g_test_add_func("/migrate/stale-pager-flush-fenced", test_stale_pager_flush_fenced);
    g_test_add_func("/migrate/warm-in-background", test_warm_in_background);
    g_test_add_func("/migrate/flush-all-server-down", test_flush_all_server_down);
    return g_test_run();
}
