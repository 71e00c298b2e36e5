/*
 * Lock-free log-linear latency histogram (see histogram.h).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <string.h>

#include "histogram.h"

unsigned svm_hist_bucket(uint64_t v)
{
    unsigned e;

    if (v < SVM_HIST_SUB) {
        return (unsigned)v;
    }
    e = 63 - __builtin_clzll(v);            /* >= SUB_BITS */
    return (e - SVM_HIST_SUB_BITS + 1) * SVM_HIST_SUB +
           (unsigned)((v >> (e - SVM_HIST_SUB_BITS)) & (SVM_HIST_SUB - 1));
}

uint64_t svm_hist_bucket_low(unsigned b)
{
    unsigned e, sub;

    if (b < SVM_HIST_SUB) {
        return b;
    }
    e = b / SVM_HIST_SUB + SVM_HIST_SUB_BITS - 1;
    sub = b % SVM_HIST_SUB;
    return (uint64_t)(SVM_HIST_SUB + sub) << (e - SVM_HIST_SUB_BITS);
}

uint64_t svm_hist_bucket_width(unsigned b)
{
    if (b < SVM_HIST_SUB) {
        return 1;
    }
    return 1ull << (b / SVM_HIST_SUB - 1);
}

void svm_hist_add(SvmHistogram *h, uint64_t v)
{
    uint64_t m = atomic_load_explicit(&h->max, memory_order_relaxed);

    atomic_fetch_add_explicit(&h->count[svm_hist_bucket(v)], 1,
                              memory_order_relaxed);
    while (v > m &&
           !atomic_compare_exchange_weak_explicit(&h->max, &m, v,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
}

uint64_t svm_hist_total(SvmHistogram *h)
{
    uint64_t n = 0;

    for (unsigned b = 0; b < SVM_HIST_BUCKETS; b++) {
        n += atomic_load_explicit(&h->count[b], memory_order_relaxed);
    }
    return n;
}

uint64_t svm_hist_quantile(SvmHistogram *h, double q)
{
    uint64_t snap[SVM_HIST_BUCKETS];
    uint64_t total = 0, rank, seen = 0;

    for (unsigned b = 0; b < SVM_HIST_BUCKETS; b++) {
        snap[b] = atomic_load_explicit(&h->count[b], memory_order_relaxed);
        total += snap[b];
    }
    if (total == 0) {
        return 0;
    }
    if (q < 0) {
        q = 0;
    }
    if (q > 1) {
        q = 1;
    }
    /* rank of the q-quantile, 1-based: ceil(q * total), at least 1 */
    rank = (uint64_t)(q * (double)total);
    if ((double)rank < q * (double)total || rank == 0) {
        rank++;
    }
    for (unsigned b = 0; b < SVM_HIST_BUCKETS; b++) {
        seen += snap[b];
        if (seen >= rank) {
            return svm_hist_bucket_low(b) + svm_hist_bucket_width(b) / 2;
        }
    }
    return atomic_load_explicit(&h->max, memory_order_relaxed);
}

void svm_hist_reset(SvmHistogram *h)
{
    for (unsigned b = 0; b < SVM_HIST_BUCKETS; b++) {
        atomic_store_explicit(&h->count[b], 0, memory_order_relaxed);
    }
    atomic_store_explicit(&h->max, 0, memory_order_relaxed);
}
