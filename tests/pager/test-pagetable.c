/*
 * Unit tests: per-page state table ownership protocol.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <glib.h>
#include <pthread.h>

#include "pagetable.h"

static void test_own_release(void)
{
    SvmPageTable pt;
    uint8_t s = 0;

    g_assert_true(svm_pt_init(&pt, 1000));
    g_assert_cmpuint(svm_pt_get(&pt, 999), ==, PT_ABSENT);
    g_assert_true(svm_pt_try_own(&pt, 5, &s, true));
    g_assert_cmpuint(s, ==, PT_ABSENT);
    /* second owner fails and leaves a waiter mark */
    g_assert_false(svm_pt_try_own(&pt, 5, &s, false));
    g_assert_cmpuint(svm_pt_get(&pt, 5) & PT_WAITERS, ==, 0);
    g_assert_false(svm_pt_try_own(&pt, 5, &s, true));
    g_assert_cmpuint(svm_pt_get(&pt, 5) & PT_WAITERS, ==, PT_WAITERS);
    /* release reports the waiter exactly once and strips BUSY/WAITERS */
    g_assert_true(svm_pt_release(&pt, 5, PT_MAPPED | PT_REF | PT_BUSY));
    g_assert_cmpuint(svm_pt_get(&pt, 5), ==, PT_MAPPED | PT_REF);
    g_assert_true(svm_pt_try_own(&pt, 5, &s, true));
    g_assert_cmpuint(s, ==, PT_MAPPED | PT_REF);
    g_assert_false(svm_pt_release(&pt, 5, PT_MAPPED | PT_DIRTY));
    g_assert_true(svm_pt_resident(svm_pt_get(&pt, 5)));
    g_assert_cmpuint(svm_pt_count(&pt, PT_DIRTY, PT_DIRTY), ==, 1);
    g_assert_cmpuint(svm_pt_count(&pt, PT_WHERE_MASK, PT_ABSENT), ==, 999);
    svm_pt_destroy(&pt);
}

/* Threads increment a counter only while owning its page: no lost update. */
#define NPAGES 64
#define ITERS 200000
static SvmPageTable shared_pt;
static uint64_t counters[NPAGES];
static _Atomic uint64_t owned_total;

static void *own_worker(void *arg)
{
    unsigned seed = GPOINTER_TO_UINT(arg);

    for (unsigned i = 0; i < ITERS; i++) {
        uint64_t pg = (seed = seed * 1103515245 + 12345) % NPAGES;
        uint8_t s;

        if (svm_pt_try_own(&shared_pt, pg, &s, true)) {
            counters[pg]++;     /* plain increment: protected by ownership */
            atomic_fetch_add(&owned_total, 1);
            svm_pt_release(&shared_pt, pg, s);
        }
    }
    return NULL;
}

static void test_own_concurrent(void)
{
    pthread_t t[4];
    uint64_t sum = 0;

    g_assert_true(svm_pt_init(&shared_pt, NPAGES));
    for (unsigned i = 0; i < 4; i++) {
        pthread_create(&t[i], NULL, own_worker, GUINT_TO_POINTER(i + 1));
    }
    for (unsigned i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
    }
    for (unsigned i = 0; i < NPAGES; i++) {
        sum += counters[i];
        g_assert_cmpuint(svm_pt_get(&shared_pt, i) & PT_BUSY, ==, 0);
    }
    g_assert_cmpuint(sum, ==, owned_total);
    g_assert_cmpuint(sum, >, 0);
    svm_pt_destroy(&shared_pt);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/pager/pagetable/own-release", test_own_release);
    g_test_add_func("/pager/pagetable/own-concurrent", test_own_concurrent);
    return g_test_run();
}
