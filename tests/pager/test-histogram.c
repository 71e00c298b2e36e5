/*
 * Unit tests: latency histogram buckets and quantiles.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <glib.h>
#include <math.h>

#include "histogram.h"

static void test_buckets(void)
{
    unsigned prev = 0;

    /* every value lies inside its bucket; buckets grow monotonically */
    for (uint64_t v = 0; v < 1000000; v += 1 + v / 97) {
        unsigned b = svm_hist_bucket(v);
        g_assert_cmpuint(b, >=, prev);
        g_assert_cmpuint(b, <, SVM_HIST_BUCKETS);
        g_assert_cmpuint(svm_hist_bucket_low(b), <=, v);
        g_assert_cmpuint(v, <, svm_hist_bucket_low(b) + svm_hist_bucket_width(b));
        prev = b;
    }
    g_assert_cmpuint(svm_hist_bucket(UINT64_MAX), ==, SVM_HIST_BUCKETS - 1);
    /* relative width stays at or below 1/16 */
    for (unsigned b = SVM_HIST_SUB; b < SVM_HIST_BUCKETS; b++) {
        g_assert_cmpuint(svm_hist_bucket_width(b) * 16, <=, svm_hist_bucket_low(b));
    }
}

static void test_quantiles(void)
{
    static SvmHistogram h;
    uint64_t p50, p99;

    g_assert_cmpuint(svm_hist_quantile(&h, 0.5), ==, 0);
    for (uint64_t v = 1; v <= 100000; v++) {
        svm_hist_add(&h, v * 10);   /* 10 ns .. 1 ms, uniform */
    }
    g_assert_cmpuint(svm_hist_total(&h), ==, 100000);
    p50 = svm_hist_quantile(&h, 0.50);
    p99 = svm_hist_quantile(&h, 0.99);
    g_assert_cmpfloat(fabs((double)p50 - 500000) / 500000, <, 0.035);
    g_assert_cmpfloat(fabs((double)p99 - 990000) / 990000, <, 0.035);
    g_assert_cmpuint(h.max, ==, 1000000);

    /* a heavy tail: 98 % fast, 2 % slow -> p50 fast, p99 slow */
    svm_hist_reset(&h);
    for (unsigned i = 0; i < 9800; i++) {
        svm_hist_add(&h, 20000);
    }
    for (unsigned i = 0; i < 200; i++) {
        svm_hist_add(&h, 5000000);
    }
    g_assert_cmpfloat(fabs((double)svm_hist_quantile(&h, 0.5) - 20000) / 20000, <, 0.035);
    g_assert_cmpfloat(fabs((double)svm_hist_quantile(&h, 0.99) - 5000000) / 5000000, <, 0.035);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/pager/histogram/buckets", test_buckets);
    g_test_add_func("/pager/histogram/quantiles", test_quantiles);
    return g_test_run();
}
