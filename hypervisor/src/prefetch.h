/*
 * Stride detection for prefetch: the majority trend of the last few fault
 * deltas (as in Leap, ATC'20), so one stray access does not break a stream.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SVM_PREFETCH_H
#define SVM_PREFETCH_H

#include <stdbool.h>
#include <stdint.h>

#define SVM_PF_HISTORY 8

typedef struct SvmPrefetchDetector {
    uint64_t last_page;
    bool have_last;
    int64_t deltas[SVM_PF_HISTORY];
    unsigned ndeltas, head;
    int64_t stride;                 /* trend found on the previous feed, 0 if none */
    unsigned depth;                 /* pages to fetch ahead for that trend */
    unsigned min_depth, max_depth;
} SvmPrefetchDetector;

void svm_prefetch_init(SvmPrefetchDetector *d, unsigned min_depth,
                       unsigned max_depth);

/*
 * Record an access to `page`.  When the majority of the recent deltas
 * agree, returns how many pages to fetch ahead and their stride in
 * *stride; the depth doubles while the same trend persists.  Otherwise 0.
 */
unsigned svm_prefetch_feed(SvmPrefetchDetector *d, uint64_t page,
                           int64_t *stride);

/* Majority element of v[0..n) (more than n/2 occurrences); false if none. */
bool svm_prefetch_majority(const int64_t *v, unsigned n, int64_t *out);

#endif
