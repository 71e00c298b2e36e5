/*
 * Per-page state of the pager: one byte per 4 KiB guest page.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Bits 0-1 say where the page is:
 *   ABSENT  hole in the memfd; the next access faults MISSING.  Its content
 *           is zero unless ONSERVER is set, then it is the server's copy.
 *   CACHED  in the memfd's page cache but not mapped (prefetched, or probed
 *           with MADV_DONTNEED); the next access faults MINOR.
 *   MAPPED  in the page cache and mapped.  Write-protected unless DIRTY.
 * Flags:
 *   DIRTY       written since it was filled: the server copy (or zero) is stale.
 *   ONSERVER    a server holds a copy (ever written back).
 *   REF         accessed since the CLOCK hand last passed (victim policy).
 *   PREFETCHED  filled by prefetch and not yet accessed.
 *   BUSY        one thread owns the page (fill, eviction, state change);
 *               everyone else leaves it alone.
 *   WAITERS     a fault arrived while BUSY; the owner wakes the page when
 *               it lets go, so the faulting thread retries.
 * Ownership is taken and released with atomic operations only, so the
 * fault path needs no lock.
 */
#ifndef SVM_PAGETABLE_H
#define SVM_PAGETABLE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum {
    PT_ABSENT = 0,
    PT_CACHED = 1,
    PT_MAPPED = 2,
    PT_WHERE_MASK = 0x03,
    PT_DIRTY = 0x04,
    PT_ONSERVER = 0x08,
    PT_REF = 0x10,
    PT_PREFETCHED = 0x20,
    PT_BUSY = 0x40,
    PT_WAITERS = 0x80,
};

typedef struct SvmPageTable {
    uint64_t npages;
    _Atomic uint8_t *state;
} SvmPageTable;

bool svm_pt_init(SvmPageTable *pt, uint64_t npages);
void svm_pt_destroy(SvmPageTable *pt);

static inline uint8_t svm_pt_get(const SvmPageTable *pt, uint64_t i)
{
    return atomic_load_explicit(&pt->state[i], memory_order_acquire);
}

static inline unsigned svm_pt_where(uint8_t s)
{
    return s & PT_WHERE_MASK;
}

static inline bool svm_pt_resident(uint8_t s)
{
    return (s & PT_WHERE_MASK) != PT_ABSENT;
}

/*
 * Take ownership of page i.  On success returns true with the state before
 * (without BUSY) in *old.  If another thread owns it, records that someone
 * waits (so the owner wakes the page when done) and returns false.
 */
static inline bool svm_pt_try_own(SvmPageTable *pt, uint64_t i, uint8_t *old,
                                  bool mark_waiter)
{
    uint8_t s = atomic_load_explicit(&pt->state[i], memory_order_relaxed);

    for (;;) {
        if (s & PT_BUSY) {
            if (!mark_waiter || (s & PT_WAITERS)) {
                return false;
            }
            if (atomic_compare_exchange_weak_explicit(&pt->state[i], &s,
                                                      s | PT_WAITERS,
                                                      memory_order_acq_rel,
                                                      memory_order_relaxed)) {
                return false;
            }
            continue;
        }
        if (atomic_compare_exchange_weak_explicit(&pt->state[i], &s,
                                                  s | PT_BUSY,
                                                  memory_order_acq_rel,
                                                  memory_order_relaxed)) {
            *old = s;
            return true;
        }
    }
}

/*
 * Give up ownership, installing `state` (BUSY/WAITERS are ignored in it).
 * Returns true if a fault arrived meanwhile: the caller must then wake
 * the page (after this call, so the woken thread sees the new state).
 */
static inline bool svm_pt_release(SvmPageTable *pt, uint64_t i, uint8_t state)
{
    uint8_t old = atomic_exchange_explicit(&pt->state[i],
                                           state & ~(PT_BUSY | PT_WAITERS),
                                           memory_order_acq_rel);
    return (old & PT_WAITERS) != 0;
}

/* Counts pages whose state matches (s & mask) == value; for tests and stats. */
uint64_t svm_pt_count(const SvmPageTable *pt, uint8_t mask, uint8_t value);

#endif
