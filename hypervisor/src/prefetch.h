/*
 * Stride detection for prefetch: the majority trend of the last few fault
 * deltas (as in Leap, ATC'20), so one stray access does not break a stream.
 * Before that, a dense run: every recent delta small and in one direction
 * but not all equal (+1, +2, +1, +2, ...: a sequential pass over memory
 * whose guest-physical pages the guest's allocator interleaved with other
 * users' pages) is a stream of stride 1; the majority would pick +2 or
 * nothing, and each page left out would be a demand fault.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SVM_PREFETCH_H
#define SVM_PREFETCH_H

#include <stdbool.h>
#include <stdint.h>

#define SVM_PF_HISTORY 8
#define SVM_PF_DENSE_GAP 4          /* largest delta of a dense run */

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

/*
 * v[0..n) (at least SVM_PF_HISTORY / 2) is a dense run: all within
 * 1..SVM_PF_DENSE_GAP or all within -SVM_PF_DENSE_GAP..-1, not all equal.
 * *out gets its direction (1 or -1).
 */
bool svm_prefetch_dense(const int64_t *v, unsigned n, int64_t *out);

/* Majority element of v[0..n) (more than n/2 occurrences); false if none. */
bool svm_prefetch_majority(const int64_t *v, unsigned n, int64_t *out);

#endif
