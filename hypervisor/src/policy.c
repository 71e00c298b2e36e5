/*
 * CLOCK victim choice (see policy.h).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "policy.h"

/* Pages that had their second chance and wait, owned, for second_chance_run. */
#define CLOCK_RUN_MAX 64u
typedef struct ClockRun {
    uint64_t first;
    unsigned n;
    uint8_t old[CLOCK_RUN_MAX], states[CLOCK_RUN_MAX];
} ClockRun;

static void run_flush(ClockRun *r, SvmPageTable *pt, const SvmClockOps *ops)
{
    if (r->n == 0) {
        return;
    }
    ops->second_chance_run(ops->opaque, r->first, r->n, r->old, r->states);
    for (unsigned k = 0; k < r->n; k++) {
        if (svm_pt_release(pt, r->first + k, r->states[k] & ~PT_REF)) {
            ops->wake(ops->opaque, r->first + k);
        }
    }
    r->n = 0;
}

unsigned svm_clock_pick(SvmClock *c, SvmPageTable *pt, const SvmClockOps *ops,
                        unsigned want, uint64_t *victims, uint8_t *states,
                        uint64_t max_scan)
{
    ClockRun run = { .n = 0 };
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

            if (!ops->second_chance_run) {
                if (svm_pt_release(pt, i, ns & ~PT_REF)) {
                    ops->wake(ops->opaque, i);
                }
                continue;
            }
            if (run.n && (i != run.first + run.n || run.n == CLOCK_RUN_MAX)) {
                run_flush(&run, pt, ops);
            }
            if (run.n == 0) {
                run.first = i;
            }
            run.old[run.n] = s;
            run.states[run.n++] = ns;
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
    run_flush(&run, pt, ops);
    return n;
}
