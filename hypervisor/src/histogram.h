/*
 * Lock-free latency histogram: log-linear buckets (16 per power of two),
 * so quantiles are exact to about 3 % at any scale.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SVM_HISTOGRAM_H
#define SVM_HISTOGRAM_H

#include <stdatomic.h>
#include <stdint.h>

#define SVM_HIST_SUB_BITS 4
#define SVM_HIST_SUB (1u << SVM_HIST_SUB_BITS)
#define SVM_HIST_BUCKETS ((64 - SVM_HIST_SUB_BITS + 1) * SVM_HIST_SUB)

typedef struct SvmHistogram {
    _Atomic uint64_t count[SVM_HIST_BUCKETS];
    _Atomic uint64_t max;
} SvmHistogram;

unsigned svm_hist_bucket(uint64_t v);
/* Smallest value that falls in bucket b, and the bucket's width. */
uint64_t svm_hist_bucket_low(unsigned b);
uint64_t svm_hist_bucket_width(unsigned b);

void svm_hist_add(SvmHistogram *h, uint64_t v);
/* q in [0,1]; 0 when empty.  Returns the middle of the bucket holding rank q. */
uint64_t svm_hist_quantile(SvmHistogram *h, double q);
uint64_t svm_hist_total(SvmHistogram *h);
void svm_hist_reset(SvmHistogram *h);

#endif
