/*
 * Victim choice: pages a read-ahead stream walked past first (drop-behind,
 * below), then CLOCK (second chance) over resident pages.  Reference bits
 * come from uffd: fills, write-protect faults (writes) and MINOR faults after
 * the hand probed a page with MADV_DONTNEED (reads).  Not FIFO: a page used
 * since the hand last passed survives one more round.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SVM_POLICY_H
#define SVM_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include "pagetable.h"

typedef struct SvmClockOps {
    /*
     * Page is owned and had REF set: give it its second chance and return
     * its new state (REF cleared; the pager also unmaps it so the next read
     * is seen).  NULL: REF saves no page (plain FIFO in hand order).
     */
    uint8_t (*second_chance)(void *opaque, uint64_t page, uint8_t s);
    /* May this owned, unreferenced page be evicted now? */
    bool (*evictable)(void *opaque, uint64_t page, uint8_t s);
    /* A fault waited on a page the hand owned briefly: wake it. */
    void (*wake)(void *opaque, uint64_t page);
    void *opaque;
    /*
     * Optional: pages first..first+n-1, still owned, just had their second
     * chance (old[]: states before, states[]: what second_chance returned,
     * may be changed here).  Called before they are released, so that the
     * pager can unmap a run of pages with one call instead of one per page.
     */
    void (*second_chance_run)(void *opaque, uint64_t first, unsigned n,
                              const uint8_t *old, uint8_t *states);
} SvmClockOps;

typedef struct SvmClock {
    uint64_t hand;
} SvmClock;

/*
 * Pick up to `want` victims, scanning at most max_scan pages.  Victims are
 * returned owned (BUSY) with their previous state in states[].
 */
unsigned svm_clock_pick(SvmClock *c, SvmPageTable *pt, const SvmClockOps *ops,
                        unsigned want, uint64_t *victims, uint8_t *states,
                        uint64_t max_scan);

/*
 * Drop-behind: the pages a read-ahead stream has walked past are offered
 * before anything CLOCK would pick, the most recently walked first.  A
 * loop over more memory than the budget is CLOCK's (and LRU's) worst
 * case: each page leaves just before its next use and every access
 * misses.  Evicting what the stream walked last instead keeps the loop's
 * first part resident from round to round (what the optimal policy does
 * for a loop), and one long pass does not push out the rest of the
 * working set.
 *
 * Only pages the stream itself filled are offered (its read-ahead windows
 * and the demand fill that found it), never pages around them: guest-
 * physical order is only piecewise sequential, so "below the stream's
 * position" is not "walked past".  They are remembered as runs, in fill
 * order.
 */
typedef struct SvmDropBehindRun {
    uint64_t first;
    int64_t stride;
    uint32_t n;             /* pages in the run */
    uint32_t lo, hi;        /* pages lo..hi-1 were offered (none: NONE) */
} SvmDropBehindRun;

#define SVM_DROPBEHIND_NONE UINT32_MAX
/* runs remembered; the oldest are forgotten (left to CLOCK) */
#define SVM_DROPBEHIND_RUNS 512u

typedef struct SvmDropBehind {
    SvmDropBehindRun r[SVM_DROPBEHIND_RUNS];
    unsigned head, count;   /* ring: the oldest is r[head] */
    uint64_t pages;         /* not offered yet, in all runs */
    uint64_t keep;          /* the newest this many are not offered (may change) */
    uint64_t last_add_ns;   /* when the stream last filled pages */
} SvmDropBehind;

/*
 * keep: pages filled last that are not offered because the guest may not
 * have walked past them yet (a read-ahead window is issued when the guest
 * reaches the middle of the one before: at least two windows).
 */
void svm_dropbehind_init(SvmDropBehind *d, uint64_t keep);

/*
 * The stream filled n pages from first by stride at now_ns.  They extend
 * the newest run if they continue it.
 */
void svm_dropbehind_add(SvmDropBehind *d, uint64_t first, int64_t stride,
                        uint32_t n, uint64_t now_ns);

/* Pages the stream walked past that were not offered yet. */
uint64_t svm_dropbehind_walked(const SvmDropBehind *d);

/*
 * Pick up to `want` victims among the walked pages, newest run first,
 * looking at most at max_scan pages (each is offered once).  With align,
 * all victims lie in one aligned block of that many pages (a few
 * stripe units: few write-protects and punches per pick).  The REF bit is ignored: the stream's own fill set it.
 * Victims are returned owned (BUSY) with their previous state in
 * states[], in page order.
 */
unsigned svm_dropbehind_pick(SvmDropBehind *d, SvmPageTable *pt,
                             const SvmClockOps *ops, unsigned want,
                             uint64_t align, uint64_t *victims,
                             uint8_t *states, uint64_t max_scan);

#endif
