/*
 * Victim choice: CLOCK (second chance) over resident pages.  Reference bits
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
     * is seen).
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

#endif
