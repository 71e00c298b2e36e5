/*
 * Budget enforcement and eviction.
 *
 * A page leaves in an order that cannot lose a write:
 *   own it (BUSY) -> write-protect (if mapped) -> copy it out of the memfd
 *   -> write it to its server -> (the ack) punch the hole -> release and
 *   wake.  Several batches are on the wire at once (writeback.c).
 * A write that races with this blocks in a WP (or MINOR) fault on a BUSY
 * page; it is woken only after the punch, refaults MISSING and is filled
 * from the server copy that already holds everything written before the
 * write-protect.  Clean pages (server copy or zero still valid) are only
 * punched.  If the write-back fails the page stays dirty and mapped.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pager-internal.h"
#include "uffd.h"

/* write-back batches of dirty victims on the wire at once */
#define EVICT_DEPTH 8
/*
 * Victims per drop-behind pick: four stripe units (so four write-back
 * batches, alternating servers).  Each punch and write-protect of a run
 * costs a TLB-shootdown IPI to the vCPU's CPU whatever the run's length;
 * a clean pick of four units is one punch instead of four.
 */
#define DROPBEHIND_ALIGN (4 * SVM_STRIPE_UNIT_PAGES)
#define DROPBEHIND_BATCH DROPBEHIND_ALIGN
G_STATIC_ASSERT(DROPBEHIND_BATCH >= SVM_WRITEBACK_MAX);
/* (the victims array holds a pick of either kind) */
G_STATIC_ASSERT(SVM_EVICT_BATCH <= DROPBEHIND_BATCH);
/* walked pages looked at per drop-behind pick (most are resident) */
#define DROPBEHIND_SCAN 1024
/* a stream that issued a window this recently is still going */
#define DROPBEHIND_ACTIVE_NS (50 * 1000 * 1000)

/*
 * Free room the evictor keeps: fills rarely wait for it, and read-ahead
 * (which only uses free room, never evicts) can run a window ahead.
 */
static uint64_t headroom(uint64_t budget)
{
    uint64_t h = budget / 8;

    if (h > 2 * SVM_PREFETCH_MAX) {
        h = 2 * SVM_PREFETCH_MAX;
    }
    return h ? h : 1;
}

/* The evictor starts above this... */
static uint64_t high_mark(uint64_t budget)
{
    return budget - headroom(budget) / 2;
}

/* ...and evicts down to this, so fills rarely wait. */
static uint64_t low_mark(uint64_t budget)
{
    return budget - headroom(budget);
}

/*
 * Pages a stream walked past leave from this mark on, earlier than CLOCK
 * victims: the stream's read-ahead windows then find room without
 * reaching the high mark, so CLOCK does not eat into the part of a loop
 * kept resident while the newest windows are still being walked.
 */
static uint64_t dropbehind_mark(uint64_t budget)
{
    uint64_t low = low_mark(budget), h = headroom(budget);

    return low > h ? low - h : 0;
}

/*
 * The newest pages a stream filled that are not offered yet: the guest is
 * in the newest read-ahead window but one, and as guest-physical order is
 * only piecewise sequential it can lag a little more (keeping two windows
 * refetched pages not used yet, four does not).  A small budget keeps
 * less, or nothing would ever be walked.
 */
static uint64_t dropbehind_keep(uint64_t budget)
{
    return MIN(4 * SVM_PREFETCH_MAX, budget / 8);
}

uint64_t svm_budget_room(SvmPager *p)
{
    uint64_t low = low_mark(atomic_load(&p->budget_pages));
    uint64_t r = atomic_load(&p->resident);

    return r < low ? low - r : 0;
}

void svm_evict_kick(SvmPager *p)
{
    pthread_mutex_lock(&p->room_lock);
    p->evict_kicked = true;
    pthread_cond_signal(&p->evict_cond);
    pthread_mutex_unlock(&p->room_lock);
}

void svm_evict_dropbehind_kick(SvmPager *p)
{
    uint64_t b = atomic_load(&p->budget_pages);

    if (b < p->npages && atomic_load(&p->resident) > dropbehind_mark(b)) {
        svm_evict_kick(p);
    }
}

static void timed_wait(pthread_cond_t *c, pthread_mutex_t *m, unsigned ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)(ms % 1000) * 1000000;
    ts.tv_sec += ms / 1000 + ts.tv_nsec / 1000000000;
    ts.tv_nsec %= 1000000000;
    pthread_cond_timedwait(c, m, &ts);
}

bool svm_budget_reserve(SvmPager *p, uint64_t n, bool wait)
{
    for (;;) {
        uint64_t r = atomic_load(&p->resident);
        uint64_t b = atomic_load(&p->budget_pages);

        if (r + n <= b) {
            if (atomic_compare_exchange_weak(&p->resident, &r, r + n)) {
                /*
                 * Kick only when crossing the mark: above it the evictor
                 * does not sleep until it is back at the low mark, so
                 * further kicks would only take room_lock on every fill.
                 */
                if (r <= high_mark(b) && r + n > high_mark(b)) {
                    svm_evict_kick(p);
                }
                return true;
            }
            continue;
        }
        if (!wait || atomic_load(&p->stopping)) {
            return false;
        }
        svm_evict_kick(p);
        pthread_mutex_lock(&p->room_lock);
        while (atomic_load(&p->resident) + n > atomic_load(&p->budget_pages) &&
               !atomic_load(&p->stopping)) {
            timed_wait(&p->room_cond, &p->room_lock, 100);
        }
        pthread_mutex_unlock(&p->room_lock);
    }
}

void svm_budget_unreserve(SvmPager *p, uint64_t n)
{
    svm_stat_sub(&p->resident, n);
    pthread_mutex_lock(&p->room_lock);
    pthread_cond_broadcast(&p->room_cond);
    pthread_mutex_unlock(&p->room_lock);
}

bool svm_evict_wait_below(SvmPager *p, uint64_t pages, unsigned timeout_ms)
{
    uint64_t deadline = svm_now_ns() + (uint64_t)timeout_ms * 1000000;
    bool ok;

    pthread_mutex_lock(&p->room_lock);
    while (!(ok = atomic_load(&p->resident) <= pages) &&
           !atomic_load(&p->stopping) && svm_now_ns() < deadline) {
        p->evict_kicked = true;
        pthread_cond_signal(&p->evict_cond);
        timed_wait(&p->room_cond, &p->room_lock, 50);
    }
    pthread_mutex_unlock(&p->room_lock);
    return ok;
}

/* CLOCK callbacks */

static uint8_t second_chance(void *opaque, uint64_t page, uint8_t s)
{
    SvmPager *p = opaque;

    /*
     * Unmap it (it stays in the page cache) so the next access raises a
     * MINOR fault that sets REF again: that is how reads are seen.  The
     * unmapping itself is done for a whole run in second_chance_run().
     */
    (void)page;
    if (p->minor && svm_pt_where(s) == PT_MAPPED) {
        return (s & ~(PT_WHERE_MASK | PT_REF)) | PT_CACHED;
    }
    return s & ~PT_REF;
}

static void second_chance_run(void *opaque, uint64_t first, unsigned n,
                              const uint8_t *old, uint8_t *states)
{
    SvmPager *p = opaque;

    if (!p->minor) {
        return;
    }
    /* (pages of the run that were CACHED already are not mapped: no-op) */
    if (madvise(svm_page_addr(p, first), (size_t)n * SVM_PAGE,
                MADV_DONTNEED) < 0) {
        /* still mapped: a page that says CACHED would skip the write-protect */
        for (unsigned k = 0; k < n; k++) {
            states[k] = (states[k] & ~PT_WHERE_MASK) | (old[k] & PT_WHERE_MASK);
        }
    }
}

static bool evictable(void *opaque, uint64_t page, uint8_t s)
{
    SvmPager *p = opaque;

    /*
     * Dirty pages of an unreachable server cannot be written back now, nor
     * any while this pager does not own the VM's pages (migration).
     */
    return !(s & PT_DIRTY) || (atomic_load(&p->owner) &&
                               !atomic_load(&svm_remote_server(p, page)->down));
}

static void clock_wake(void *opaque, uint64_t page)
{
    SvmPager *p = opaque;

    svm_uffd_wake(p->uffd, svm_page_addr(p, page), SVM_PAGE);
}

void svm_punch(SvmPager *p, uint64_t first, uint64_t n)
{
    if (fallocate(p->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  (off_t)(first * SVM_PAGE), (off_t)(n * SVM_PAGE)) < 0) {
        /* cannot happen on a memfd; the page then simply stays in memory */
        svm_pager_log(p, "punching pages %" PRIu64 "+%" PRIu64 ": %s", first,
                      n, strerror(errno));
    }
}

/*
 * Clean victims (server copy or zero still valid) are punched and released
 * at once; dirty ones go to the write-back pipe, which drops them once
 * their server acknowledged them.
 */
static void evict_batch(SvmPager *p, const uint64_t *pages,
                        const uint8_t *states, unsigned n)
{
    uint64_t freed = 0;

    for (unsigned i = 0, j; i < n; i = j) {
        bool dirty = states[i] & PT_DIRTY;

        for (j = i + 1; j < n && pages[j] == pages[j - 1] + 1 &&
             (bool)(states[j] & PT_DIRTY) == dirty; j++) {
        }
        if (dirty) {
            for (unsigned k = i; k < j; k++) {
                svm_wbpipe_add(p->evict_pipe, pages[k], states[k]);
            }
            continue;
        }
        svm_punch(p, pages[i], j - i);
        for (unsigned k = i; k < j; k++) {
            if (states[k] & PT_ONSERVER) {
                svm_stat_add(&p->remote, 1);
            }
            svm_stat_add(&p->evictions, 1);
            /*
             * Faults that saw the page BUSY wait for this wake; one read
             * only later finds the page ABSENT and fills it.
             */
            svm_pager_release(p, pages[k], PT_ABSENT | (states[k] & PT_ONSERVER));
        }
        freed += j - i;
    }
    /* the batches of this round leave now, not when the next one is full */
    svm_wbpipe_send(p->evict_pipe, false);
    if (freed) {
        svm_budget_unreserve(p, freed);
    }
}

static void *evict_thread(void *opaque)
{
    SvmPager *p = opaque;
    const SvmClockOps ops = {
        .second_chance = second_chance,
        .second_chance_run = second_chance_run,
        .evictable = evictable,
        .wake = clock_wake,
        .opaque = p,
    };
    const SvmClockOps ops_fifo = {
        .evictable = evictable,
        .wake = clock_wake,
        .opaque = p,
    };
    uint64_t victims[DROPBEHIND_BATCH];
    uint8_t states[DROPBEHIND_BATCH];

    svm_thread_lower_priority(p->service_nice, "pager evict thread");
    while (!atomic_load(&p->stopping)) {
        pthread_mutex_lock(&p->room_lock);
        while (!atomic_load(&p->stopping) && !p->evict_kicked &&
               (atomic_load(&p->resident) <= high_mark(atomic_load(&p->budget_pages)) ||
                atomic_load(&p->budget_pages) >= p->npages)) {
            timed_wait(&p->evict_cond, &p->room_lock, 500);
        }
        p->evict_kicked = false;
        pthread_mutex_unlock(&p->room_lock);

        for (;;) {
            uint64_t r = atomic_load(&p->resident);
            uint64_t b = atomic_load(&p->budget_pages);
            uint64_t low = low_mark(b);
            /* pages on their way out count as gone */
            uint64_t leaving = svm_wbpipe_in_flight(p->evict_pipe);
            uint64_t clock_mark;
            unsigned want, n = 0;
            bool streaming;

            if (atomic_load(&p->stopping)) {
                break;
            }
            if (b < p->npages && r > dropbehind_mark(b) + leaving) {
                /*
                 * Always a whole pick of DROPBEHIND_ALIGN pages: these
                 * pages are done with, and each write-protect and punch
                 * of a run costs the vCPU's CPU a TLB-flush interrupt,
                 * whatever the run's length.
                 */
                want = DROPBEHIND_BATCH;
                pthread_mutex_lock(&p->pf_lock);
                p->pf_behind.keep = dropbehind_keep(b);
                n = svm_dropbehind_pick(&p->pf_behind, &p->pt, &ops, want,
                                        DROPBEHIND_ALIGN, victims, states,
                                        DROPBEHIND_SCAN);
                pthread_mutex_unlock(&p->pf_lock);
                if (n) {
                    evict_batch(p, victims, states, n);
                    continue;
                }
            }
            /*
             * While a stream is being read ahead, its walked pages come
             * soon: CLOCK only runs when fills would have to wait, or it
             * would take (and unmap) the part of a loop kept resident.
             */
            pthread_mutex_lock(&p->pf_lock);
            streaming = svm_now_ns() - p->pf_behind.last_add_ns <
                        DROPBEHIND_ACTIVE_NS;
            pthread_mutex_unlock(&p->pf_lock);
            clock_mark = streaming ? high_mark(b) : low;
            /* all of RAM fits: nothing ever needs to leave */
            if (r <= clock_mark + leaving || b >= p->npages) {
                if (leaving == 0) {
                    break;
                }
                svm_wbpipe_send(p->evict_pipe, true);
                continue;
            }
            want = r - low - leaving;
            want = want < SVM_EVICT_BATCH ? want : SVM_EVICT_BATCH;
            /*
             * Nor does it give second chances then: every page kept from
             * a loop has REF from its fill, and unmapping them all (to
             * see their next use) costs each a MINOR fault in the next
             * round.  The few victims needed are taken in hand order.
             */
            n = svm_clock_pick(&p->clock, &p->pt,
                               streaming ? &ops_fifo : &ops, want,
                               victims, states, 2 * p->npages);
            if (n == 0) {
                /* everything resident is busy or stuck on a lost server */
                if (leaving) {
                    svm_wbpipe_send(p->evict_pipe, true);
                    continue;
                }
                pthread_mutex_lock(&p->room_lock);
                timed_wait(&p->evict_cond, &p->room_lock, 20);
                pthread_mutex_unlock(&p->room_lock);
                continue;
            }
            evict_batch(p, victims, states, n);
        }
    }
    /* give back what is still on the wire: written, or dirty as it was */
    svm_wbpipe_finish(p->evict_pipe, NULL);
    return NULL;
}

int svm_evict_start(SvmPager *p)
{
    p->evict_pipe = svm_wbpipe_new(p, EVICT_DEPTH, true);
    if (!p->evict_pipe) {
        return -ENOMEM;
    }
    if (pthread_create(&p->evict_thread, NULL, evict_thread, p) != 0) {
        return -EAGAIN;
    }
    pthread_setname_np(p->evict_thread, "svm-evict");
    p->evict_started = true;
    return 0;
}

void svm_evict_stop(SvmPager *p)
{
    if (p->evict_started) {
        svm_evict_kick(p);
        pthread_join(p->evict_thread, NULL);
        p->evict_started = false;
    }
    svm_wbpipe_free(p->evict_pipe);
    p->evict_pipe = NULL;
}
