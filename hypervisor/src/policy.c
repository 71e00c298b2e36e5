/*
 * CLOCK victim choice (see policy.h).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "policy.h"

unsigned svm_clock_pick(SvmClock *c, SvmPageTable *pt, const SvmClockOps *ops,
                        unsigned want, uint64_t *victims, uint8_t *states,
                        uint64_t max_scan)
{
    unsigned n = 0;

    if (pt->npages == 0) {
        return 0;
    }
    for (uint64_t scanned = 0; scanned < max_scan && n < want; scanned++) {
        uint64_t i = c->hand;
        uint8_t s;

        c->hand = (c->hand + 1) % pt->npages;
        s = svm_pt_get(pt, i);
        if (!svm_pt_resident(s) || (s & PT_BUSY)) {
            continue;
        }
        if (!svm_pt_try_own(pt, i, &s, false)) {
            continue;
        }
        if (!svm_pt_resident(s)) {
            /* changed under us */
            if (svm_pt_release(pt, i, s)) {
                ops->wake(ops->opaque, i);
            }
            continue;
        }
        if (s & PT_REF) {
            uint8_t ns = ops->second_chance(ops->opaque, i, s);
            if (svm_pt_release(pt, i, ns & ~PT_REF)) {
                ops->wake(ops->opaque, i);
            }
            continue;
        }
        if (!ops->evictable(ops->opaque, i, s)) {
            if (svm_pt_release(pt, i, s)) {
                ops->wake(ops->opaque, i);
            }
            continue;
        }
        victims[n] = i;
        states[n] = s;
        n++;
    }
    return n;
}
