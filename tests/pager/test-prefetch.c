/*
 * Unit tests: stride detector (dense runs, majority trend).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <glib.h>

#include "prefetch.h"

static void test_majority(void)
{
    int64_t v1[] = { 1, 1, 2, 1, 7 }, v2[] = { 1, 2, 3, 4 }, v3[] = { 5, 5 };
    int64_t out = 0;

    g_assert_true(svm_prefetch_majority(v1, 5, &out));
    g_assert_cmpint(out, ==, 1);
    g_assert_false(svm_prefetch_majority(v2, 4, &out));
    g_assert_true(svm_prefetch_majority(v3, 2, &out));
    g_assert_cmpint(out, ==, 5);
    g_assert_false(svm_prefetch_majority(v3, 0, &out));
}

static void test_sequential(void)
{
    SvmPrefetchDetector d;
    int64_t stride = 0;
    unsigned depth, last = 0;

    svm_prefetch_init(&d, 4, 32);
    g_assert_cmpuint(svm_prefetch_feed(&d, 100, &stride), ==, 0);
    g_assert_cmpuint(svm_prefetch_feed(&d, 101, &stride), ==, 0); /* 1 delta */
    for (uint64_t pg = 102; pg < 110; pg++) {
        depth = svm_prefetch_feed(&d, pg, &stride);
        g_assert_cmpint(stride, ==, 1);
        g_assert_cmpuint(depth, >=, last);  /* grows while the trend holds */
        last = depth;
    }
    g_assert_cmpuint(last, ==, 32);
    /* one stray access does not break the majority trend */
    depth = svm_prefetch_feed(&d, 5000, &stride);
    g_assert_cmpuint(depth, >, 0);
    g_assert_cmpint(stride, ==, 1);
}

static void test_stride_backwards(void)
{
    SvmPrefetchDetector d;
    int64_t stride = 0;
    unsigned depth = 0;

    svm_prefetch_init(&d, 4, 32);
    for (int64_t pg = 1000; pg > 900; pg -= 3) {
        depth = svm_prefetch_feed(&d, pg, &stride);
    }
    g_assert_cmpuint(depth, >, 0);
    g_assert_cmpint(stride, ==, -3);
}

/* +1,+2,+1,+2...: a pass over interleaved pages is a stride-1 stream */
static void test_dense(void)
{
    SvmPrefetchDetector d;
    int64_t stride = 0, v_eq[] = { 2, 2, 2, 2 }, v_far[] = { 1, 2, 9, 1 };
    int64_t v_mixed[] = { 1, 2, -1, 2 }, out = 0;
    unsigned depth = 0;
    uint64_t pg = 500;

    svm_prefetch_init(&d, 4, 32);
    for (unsigned k = 0; k < 12; k++) {
        pg -= k % 2 ? 2 : 1;
        depth = svm_prefetch_feed(&d, pg, &stride);
    }
    g_assert_cmpuint(depth, >, 0);
    g_assert_cmpint(stride, ==, -1);
    /* all equal is a true stride (the majority's), too far or mixed is not dense */
    g_assert_false(svm_prefetch_dense(v_eq, 4, &out));
    g_assert_false(svm_prefetch_dense(v_far, 4, &out));
    g_assert_false(svm_prefetch_dense(v_mixed, 4, &out));
    g_assert_false(svm_prefetch_dense(v_far, 2, &out));
}

static void test_random(void)
{
    SvmPrefetchDetector d;
    int64_t stride;
    unsigned trends = 0;
    GRand *r = g_rand_new_with_seed(42);

    svm_prefetch_init(&d, 4, 32);
    for (unsigned i = 0; i < 1000; i++) {
        trends += svm_prefetch_feed(&d, g_rand_int_range(r, 0, 1 << 20), &stride) > 0;
    }
    g_assert_cmpuint(trends, <, 10);
    g_rand_free(r);
}

static void test_repeat_ignored(void)
{
    SvmPrefetchDetector d;
    int64_t stride = 0;
    unsigned depth = 0;

    svm_prefetch_init(&d, 4, 32);
    for (uint64_t pg = 0; pg < 4; pg++) {
        depth = svm_prefetch_feed(&d, pg, &stride);
        /* the same page faulting again (read then write) is not a delta */
        g_assert_cmpuint(svm_prefetch_feed(&d, pg, &stride), ==, 0);
    }
    g_assert_cmpuint(depth, >, 0);
    g_assert_cmpint(stride, ==, 1);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/pager/prefetch/majority", test_majority);
    g_test_add_func("/pager/prefetch/sequential", test_sequential);
    g_test_add_func("/pager/prefetch/stride-backwards", test_stride_backwards);
    g_test_add_func("/pager/prefetch/dense", test_dense);
    g_test_add_func("/pager/prefetch/random", test_random);
    g_test_add_func("/pager/prefetch/repeat-ignored", test_repeat_ignored);
    return g_test_run();
}
