/*
 * Stride detector: dense runs, then the majority trend (see prefetch.h).  Issuing the reads is in
 * pager-prefetch.c.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "prefetch.h"

void svm_prefetch_init(SvmPrefetchDetector *d, unsigned min_depth,
                       unsigned max_depth)
{
    *d = (SvmPrefetchDetector) {
        .min_depth = min_depth ? min_depth : 1,
        .max_depth = max_depth >= min_depth ? max_depth : min_depth,
    };
    d->depth = d->min_depth;
}

bool svm_prefetch_majority(const int64_t *v, unsigned n, int64_t *out)
{
    int64_t cand = 0;
    unsigned votes = 0, count = 0;

    /* Boyer-Moore vote, then a second pass to confirm. */
    for (unsigned i = 0; i < n; i++) {
        if (votes == 0) {
            cand = v[i];
            votes = 1;
        } else if (v[i] == cand) {
            votes++;
        } else {
            votes--;
        }
    }
    for (unsigned i = 0; i < n; i++) {
        count += v[i] == cand;
    }
    if (n == 0 || count * 2 <= n) {
        return false;
    }
    *out = cand;
    return true;
}

bool svm_prefetch_dense(const int64_t *v, unsigned n, int64_t *out)
{
    int64_t sign;
    bool all_same = true;

    if (n < SVM_PF_HISTORY / 2) {
        return false;
    }
    sign = v[0] > 0 ? 1 : -1;
    for (unsigned i = 0; i < n; i++) {
        if (v[i] * sign < 1 || v[i] * sign > SVM_PF_DENSE_GAP) {
            return false;
        }
        all_same &= v[i] == v[0];
    }
    if (all_same) {
        return false;           /* a true stride: the majority says which */
    }
    *out = sign;
    return true;
}

unsigned svm_prefetch_feed(SvmPrefetchDetector *d, uint64_t page,
                           int64_t *stride)
{
    int64_t trend;

    if (!d->have_last) {
        d->have_last = true;
        d->last_page = page;
        return 0;
    }
    if (page == d->last_page) {
        /* a re-fault of the same page says nothing about the stream */
        return 0;
    }
    d->deltas[d->head] = (int64_t)(page - d->last_page);
    d->head = (d->head + 1) % SVM_PF_HISTORY;
    if (d->ndeltas < SVM_PF_HISTORY) {
        d->ndeltas++;
    }
    d->last_page = page;

    if (d->ndeltas < 2 ||
        (!svm_prefetch_dense(d->deltas, d->ndeltas, &trend) &&
         !svm_prefetch_majority(d->deltas, d->ndeltas, &trend))) {
        d->stride = 0;
        d->depth = d->min_depth;
        return 0;
    }
    if (trend == d->stride) {
        d->depth = d->depth * 2 > d->max_depth ? d->max_depth : d->depth * 2;
    } else {
        d->stride = trend;
        d->depth = d->min_depth;
    }
    *stride = trend;
    return d->depth;
}
