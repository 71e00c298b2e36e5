/*
 * Integration tests of the pager on a real userfaultfd without memory
 * servers (budget = RAM size): zero fills, write tracking, concurrent
 * faults, kernel-mode faults from syscalls, configuration errors.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <stddef.h>
#include <pthread.h>
#include <string.h>
#include <sys/uio.h>

#include "pager-test-util.h"

static void test_zero_and_dirty(void)
{
    TestRam r;
    SvmPagerConfig cfg;
    g_autoptr(GError) err = NULL;
    SvmPager *p;
    SvmPagerStats st;
    volatile uint8_t *m;

    test_ram_init(&r, 64 * PG);
    cfg = test_config(&r, 0);
    p = svm_pager_start(&cfg, &err);
    g_assert_no_error(err);
    m = r.host;

    /* a read of a never-written page gives zero without a network trip */
    g_assert_cmpuint(m[0], ==, 0);
    g_assert_cmpuint(m[PG - 1], ==, 0);
    st = test_stats(p);
    g_assert_cmpuint(st.faults_missing, ==, 1);
    g_assert_cmpuint(st.fills_zero, ==, 1);
    g_assert_cmpuint(st.fills_remote, ==, 0);
    g_assert_cmpuint(st.resident_pages, ==, 1);
    g_assert_cmpuint(st.dirty_pages, ==, 0);

    /* the first write is seen through write-protect */
    m[10] = 0xab;
    st = test_stats(p);
    g_assert_cmpuint(st.faults_wp, ==, 1);
    g_assert_cmpuint(st.dirty_pages, ==, 1);
    m[11] = 0xcd;                   /* no further fault once dirty */
    st = test_stats(p);
    g_assert_cmpuint(st.faults_wp, ==, 1);

    /* a write to a missing page: one fault, filled writable and dirty */
    m[5 * PG + 7] = 1;
    st = test_stats(p);
    g_assert_cmpuint(st.faults_missing, ==, 2);
    g_assert_cmpuint(st.faults_wp, ==, 1);
    g_assert_cmpuint(st.fills_zero, ==, 2);
    g_assert_cmpuint(st.dirty_pages, ==, 2);
    g_assert_cmpuint(st.resident_pages, ==, 2);
    g_assert_cmpuint(m[10], ==, 0xab);
    g_assert_cmpuint(m[5 * PG + 7], ==, 1);
    g_assert_cmpuint(st.fault_lat_p50_ns, >, 0);
    g_assert_cmpuint(st.fault_lat_p99_ns, >=, st.fault_lat_p50_ns);
    test_print_stats(p);
    svm_pager_stop(p);
    test_ram_destroy(&r);
}

#define CONC_THREADS 4
#define CONC_PAGES 2048
typedef struct ConcArg {
    uint8_t *host;
    unsigned id;
} ConcArg;

static void *conc_worker(void *opaque)
{
    ConcArg *a = opaque;

    /* all threads hit the same pages at the same time, in different orders */
    for (unsigned k = 0; k < CONC_PAGES; k++) {
        unsigned pg = (a->id & 1) ? CONC_PAGES - 1 - k : k;
        volatile uint64_t *w = (uint64_t *)(a->host + (size_t)pg * PG);

        if (w[a->id] != 0) {
            return GINT_TO_POINTER(1);
        }
        w[a->id] = ((uint64_t)a->id << 32) | pg;
    }
    for (unsigned pg = 0; pg < CONC_PAGES; pg++) {
        volatile uint64_t *w = (uint64_t *)(a->host + (size_t)pg * PG);
        for (unsigned t = 0; t < CONC_THREADS; t++) {
            if (w[t] != 0 && w[t] != (((uint64_t)t << 32) | pg)) {
                return GINT_TO_POINTER(2);
            }
        }
    }
    return NULL;
}

static void test_concurrent_faults(void)
{
    TestRam r;
    SvmPagerConfig cfg;
    g_autoptr(GError) err = NULL;
    SvmPager *p;
    SvmPagerStats st;
    pthread_t t[CONC_THREADS];
    ConcArg a[CONC_THREADS];

    test_ram_init(&r, CONC_PAGES * PG);
    cfg = test_config(&r, 0);
    p = svm_pager_start(&cfg, &err);
    g_assert_no_error(err);
    for (unsigned i = 0; i < CONC_THREADS; i++) {
        a[i] = (ConcArg) { r.host, i };
        pthread_create(&t[i], NULL, conc_worker, &a[i]);
    }
    for (unsigned i = 0; i < CONC_THREADS; i++) {
        void *ret;
        pthread_join(t[i], &ret);
        g_assert_cmpint(GPOINTER_TO_INT(ret), ==, 0);
    }
    for (unsigned pg = 0; pg < CONC_PAGES; pg++) {
        uint64_t *w = (uint64_t *)(r.host + (size_t)pg * PG);
        for (unsigned i = 0; i < CONC_THREADS; i++) {
            g_assert_cmphex(w[i], ==, ((uint64_t)i << 32) | pg);
        }
    }
    st = test_stats(p);
    /* every page filled exactly once although up to 4 threads faulted on it */
    g_assert_cmpuint(st.fills_zero, ==, CONC_PAGES);
    g_assert_cmpuint(st.resident_pages, ==, CONC_PAGES);
    g_assert_cmpuint(st.dirty_pages, ==, CONC_PAGES);
    test_print_stats(p);
    svm_pager_stop(p);
    test_ram_destroy(&r);
}

/* A syscall writing into guest RAM faults in kernel mode (like KVM's GUP). */
static void test_kernel_mode_fault(void)
{
    TestRam r;
    SvmPagerConfig cfg;
    g_autoptr(GError) err = NULL;
    SvmPager *p;
    int fds[2];
    char msg[] = "written by the kernel";

    test_ram_init(&r, 16 * PG);
    cfg = test_config(&r, 0);
    p = svm_pager_start(&cfg, &err);
    g_assert_no_error(err);
    g_assert_cmpint(pipe(fds), ==, 0);
    g_assert_cmpint(write(fds[1], msg, sizeof(msg)), ==, sizeof(msg));
    /* straddles pages 2 and 3, both missing */
    g_assert_cmpint(read(fds[0], r.host + 3 * PG - 5, sizeof(msg)), ==, sizeof(msg));
    g_assert_cmpmem(r.host + 3 * PG - 5, sizeof(msg), msg, sizeof(msg));
    g_assert_cmpuint(test_stats(p).dirty_pages, ==, 2);
    close(fds[0]);
    close(fds[1]);
    svm_pager_stop(p);
    test_ram_destroy(&r);
}

/* Pages the caller wrote before start are kept (as dirty), not lost. */
static void test_adopt_existing(void)
{
    TestRam r;
    SvmPagerConfig cfg;
    g_autoptr(GError) err = NULL;
    SvmPager *p;
    const char data[] = "present before start";

    test_ram_init(&r, 16 * PG);
    g_assert_cmpint(pwrite(r.memfd, data, sizeof(data), 7 * PG), ==, sizeof(data));
    cfg = test_config(&r, 0);
    p = svm_pager_start(&cfg, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(test_stats(p).resident_pages, ==, 1);
    g_assert_cmpuint(test_stats(p).dirty_pages, ==, 1);
    g_assert_cmpmem(r.host + 7 * PG, sizeof(data), data, sizeof(data));
    g_assert_cmpuint(r.host[8 * PG], ==, 0);
    g_assert_cmpuint(test_stats(p).resident_pages, ==, 2);
    svm_pager_stop(p);
    test_ram_destroy(&r);
}

static void expect_start_error(SvmPagerConfig *cfg, const char *needle)
{
    g_autoptr(GError) err = NULL;
    SvmPager *p = svm_pager_start(cfg, &err);

    g_assert_null(p);
    g_assert_nonnull(err);
    g_test_message("expected error: %s", err->message);
    g_assert_nonnull(strstr(err->message, needle));
}

static void test_bad_config(void)
{
    TestRam r;
    SvmPagerConfig cfg;
    SvmPager *p;
    g_autoptr(GError) err = NULL;

    test_ram_init(&r, 64 * PG);
    cfg = test_config(&r, 16 * PG);
    expect_start_error(&cfg, "no memory server");
    cfg = test_config(&r, 0);
    cfg.size = 64 * PG + 1;
    expect_start_error(&cfg, "not a positive multiple of 4096");
    cfg = test_config(&r, 0);
    cfg.size = 128 * PG;
    expect_start_error(&cfg, "smaller than size");
    cfg = test_config(&r, 0);
    cfg.host = r.host + 1;
    expect_start_error(&cfg, "not page aligned");
    cfg = test_config(&r, 0);
    cfg.service_nice = 20;
    expect_start_error(&cfg, "service_nice 20 is not in 0..19");
    cfg.service_nice = -1;
    expect_start_error(&cfg, "service_nice -1 is not in 0..19");

    /* a second pager on the same range: the uffd registration is taken */
    cfg = test_config(&r, 0);
    p = svm_pager_start(&cfg, &err);
    g_assert_no_error(err);
    expect_start_error(&cfg, "already owns it");
    g_assert_false(svm_pager_set_budget(p, 8 * PG, &err));
    g_assert_nonnull(strstr(err->message, "no memory server"));
    svm_pager_stop(p);
    test_ram_destroy(&r);
}

/* The pager's threads run service_nice below the caller; the caller does not. */
static void test_service_nice(void)
{
    TestRam r;
    SvmPagerConfig cfg;
    SvmPager *p;
    g_autoptr(GError) err = NULL;
    int base = test_nice_with_room(7);

    if (base < 0) {
        return;
    }
    test_ram_init(&r, 16 * PG);
    cfg = test_config(&r, 0);
    cfg.service_nice = 7;
    p = svm_pager_start(&cfg, &err);
    g_assert_no_error(err);
    g_assert_true(test_threads_at_nice("svm-fault", base + 7));
    g_assert_true(test_threads_at_nice("svm-evict", base + 7));
    g_assert_true(test_threads_at_nice("svm-retry", base + 7));
    g_assert_cmpint(getpriority(PRIO_PROCESS, 0), ==, base);
    svm_pager_stop(p);

    /* 0: the threads keep the caller's priority */
    cfg.service_nice = 0;
    p = svm_pager_start(&cfg, &err);
    g_assert_no_error(err);
    g_assert_true(test_threads_at_nice("svm-", base));
    svm_pager_stop(p);
    test_ram_destroy(&r);
}

/* A caller built against another libsplitvm's header (ABI check). */
static void test_config_size(void)
{
    TestRam r;
    SvmPagerConfig cfg;
    SvmPager *p;
    g_autoptr(GError) err = NULL;
    size_t v0 = offsetof(SvmPagerConfig, event_opaque) + sizeof(void *);

    test_ram_init(&r, 16 * PG);
    cfg = test_config(&r, 0);
    g_assert_null(svm_pager_start_sized(&cfg, sizeof(cfg) + 8, &err));
    g_assert_nonnull(strstr(err->message, "another libsplitvm's header"));
    g_clear_error(&err);
    g_assert_null(svm_pager_start_sized(&cfg, 8, &err));
    g_assert_nonnull(strstr(err->message, "configuration of 8 bytes"));
    g_clear_error(&err);

    /* the first config's fields only: what follows them is not read */
    cfg.incoming = true;
    p = svm_pager_start_sized(&cfg, v0, &err);
    g_assert_no_error(err);
    g_assert_true(svm_pager_is_owner(p));
    svm_pager_stop(p);
    test_ram_destroy(&r);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/pager/local/zero-and-dirty", test_zero_and_dirty);
    g_test_add_func("/pager/local/concurrent-faults", test_concurrent_faults);
    g_test_add_func("/pager/local/kernel-mode-fault", test_kernel_mode_fault);
    g_test_add_func("/pager/local/adopt-existing", test_adopt_existing);
    g_test_add_func("/pager/local/bad-config", test_bad_config);
    g_test_add_func("/pager/local/config-size", test_config_size);
    g_test_add_func("/pager/local/service-nice", test_service_nice);
    return g_test_run();
}
