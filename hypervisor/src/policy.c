/*
 * Victim choice: CLOCK and drop-behind (see policy.h).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "policy.h"

#include <stddef.h>

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
        if ((s & PT_REF) && ops->second_chance) {
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

/* Drop-behind (see policy.h). */

void svm_dropbehind_init(SvmDropBehind *d, uint64_t keep)
{
    *d = (SvmDropBehind) { .keep = keep };
}

static SvmDropBehindRun *dropbehind_run(SvmDropBehind *d, unsigned k)
{
    return &d->r[(d->head + k) % SVM_DROPBEHIND_RUNS];
}

static uint32_t dropbehind_unoffered(const SvmDropBehindRun *r)
{
    return r->lo == SVM_DROPBEHIND_NONE ? r->n : r->n - (r->hi - r->lo);
}

/* Drop the runs offered whole, keeping the order of the others. */
static void dropbehind_compact(SvmDropBehind *d)
{
    unsigned kept = 0;

    for (unsigned k = 0; k < d->count; k++) {
        SvmDropBehindRun *r = dropbehind_run(d, k);

        if (dropbehind_unoffered(r)) {
            *dropbehind_run(d, kept++) = *r;
        }
    }
    d->count = kept;
}

void svm_dropbehind_add(SvmDropBehind *d, uint64_t first, int64_t stride,
                        uint32_t n, uint64_t now_ns)
{
    SvmDropBehindRun *last;

    d->last_add_ns = now_ns;
    if (n == 0) {
        return;
    }
    if (d->count) {
        last = dropbehind_run(d, d->count - 1);
        if (last->stride == stride && last->n < SVM_DROPBEHIND_NONE - n &&
            first == last->first + (uint64_t)((int64_t)last->n * stride)) {
            last->n += n;
            d->pages += n;
            return;
        }
    }
    if (d->count == SVM_DROPBEHIND_RUNS) {
        dropbehind_compact(d);
    }
    if (d->count == SVM_DROPBEHIND_RUNS) {
        d->pages -= dropbehind_unoffered(dropbehind_run(d, 0));
        d->head = (d->head + 1) % SVM_DROPBEHIND_RUNS;
        d->count--;
    }
    *dropbehind_run(d, d->count++) = (SvmDropBehindRun) {
        .first = first, .stride = stride, .n = n,
        .lo = SVM_DROPBEHIND_NONE, .hi = SVM_DROPBEHIND_NONE,
    };
    d->pages += n;
}

uint64_t svm_dropbehind_walked(const SvmDropBehind *d)
{
    /* the kept pages were never offered: all of them are in d->pages */
    return d->pages > d->keep ? d->pages - d->keep : 0;
}

/*
 * Next page of run r to offer, of its pages 0..limit-1 that were walked:
 * those walked since the last offer first (upwards), then older ones
 * (downwards), so that what is offered stays one range [lo, hi).
 */
static bool dropbehind_peek(const SvmDropBehindRun *r, uint32_t limit,
                            uint64_t *page)
{
    uint32_t lo = r->lo, hi = r->hi, idx;

    if (limit == 0) {
        return false;
    }
    if (lo == SVM_DROPBEHIND_NONE) {
        lo = hi = limit;
    }
    /*
     * (limit can drop below lo when compacting the ring drops newer runs
     * offered whole; what lies below lo was walked all the same)
     */
    if (hi < limit) {
        idx = hi;
    } else if (lo > 0) {
        idx = lo - 1;
    } else {
        return false;
    }
    *page = r->first + (uint64_t)((int64_t)idx * r->stride);
    return true;
}

/* Mark the page dropbehind_peek() returned offered. */
static void dropbehind_take(SvmDropBehindRun *r, uint32_t limit)
{
    if (r->lo == SVM_DROPBEHIND_NONE) {
        r->lo = r->hi = limit;
    }
    if (r->hi < limit) {
        r->hi++;
    } else {
        r->lo--;
    }
}

unsigned svm_dropbehind_pick(SvmDropBehind *d, SvmPageTable *pt,
                             const SvmClockOps *ops, unsigned want,
                             uint64_t align, uint64_t *victims,
                             uint8_t *states, uint64_t max_scan)
{
    uint64_t newer = 0, scanned = 0;    /* pages filled after run k */
    unsigned n = 0;
    bool full = false;

    for (unsigned k = d->count; k-- > 0 && n < want && scanned < max_scan && !full;) {
        SvmDropBehindRun *r = dropbehind_run(d, k);
        uint32_t limit = r->n;
        uint64_t i;

        if (newer < d->keep) {
            limit = r->n > d->keep - newer ? r->n - (uint32_t)(d->keep - newer) : 0;
        }
        newer += r->n;
        while (n < want && scanned < max_scan && dropbehind_peek(r, limit, &i)) {
            uint8_t s;

            if (n && align && i / align != victims[0] / align) {
                full = true;    /* the next pick starts there */
                break;
            }
            dropbehind_take(r, limit);
            scanned++;
            d->pages--;
            if (i >= pt->npages) {
                continue;
            }
            s = svm_pt_get(pt, i);
            if (!svm_pt_resident(s) || (s & PT_BUSY) ||
                !svm_pt_try_own(pt, i, &s, false)) {
                continue;       /* a page busy now is left to CLOCK */
            }
            if (!svm_pt_resident(s) || !ops->evictable(ops->opaque, i, s)) {
                if (svm_pt_release(pt, i, s)) {
                    ops->wake(ops->opaque, i);
                }
                continue;
            }
            victims[n] = i;
            states[n] = s;
            n++;
        }
    }
    /* in page order: the evictor write-protects and punches runs at once */
    for (unsigned a = 1; a < n; a++) {
        uint64_t page = victims[a];
        uint8_t s = states[a];
        unsigned b = a;

        for (; b > 0 && victims[b - 1] > page; b--) {
            victims[b] = victims[b - 1];
            states[b] = states[b - 1];
        }
        victims[b] = page;
        states[b] = s;
    }
    /* runs offered whole at the old end go */
    while (d->count && dropbehind_unoffered(dropbehind_run(d, 0)) == 0) {
        d->head = (d->head + 1) % SVM_DROPBEHIND_RUNS;
        d->count--;
    }
    return n;
}
