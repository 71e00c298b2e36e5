/*
 * Issuing prefetch: after a demand fault has been served (demand first),
 * the detector's trend decides which remote pages to fetch ahead.  They go
 * out as asynchronous batches per server, only into free budget (prefetch
 * never evicts).
 *
 * A detected stream is read ahead in windows that double up to
 * SVM_PREFETCH_MAX pages.  The pages of a window are mapped as they arrive
 * (UFFDIO_COPY), so using them costs no fault at all; for a stream found
 * by write faults they go in writable and dirty (the writer would take a
 * WP fault on each otherwise).  With MINOR mode the page in the middle of
 * the window is only put into the page cache: its first use raises a
 * MINOR fault, which issues the next window while the rest of this one is
 * still being used (Linux read-ahead's PG_readahead marker).  Without
 * MINOR the demand fault on the first page past the window does that.
 * Pages the stream walked past count as prefetch hits.  Never-written
 * pages ahead of a writing stream are mapped zero and writable at once
 * (no network trip; the writer takes no fault on them either), except the
 * middle one: it stays a hole, and its zero fill is the marker.  The pages
 * a stream filled are what drop-behind evicts first (policy.h).
 *
 * svm_prefetch_pages() (migration warm-up) keeps the lazy form with MINOR:
 * pages go into the page cache and their first use counts the hit.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pager-internal.h"

/* How a batch's pages are installed when they arrive. */
typedef struct PrefetchHow {
    bool lazy;              /* MINOR: all into the page cache (warm-up) */
    bool dirty;             /* map writable and dirty (a writing stream) */
    uint64_t marker;        /* MINOR: this page only into the page cache */
} PrefetchHow;

typedef struct PrefetchReq {
    SvmPager *pager;
    PrefetchHow how;
    unsigned n;
    uint64_t pages[SVM_PREFETCH_BATCH];
    uint8_t states[SVM_PREFETCH_BATCH];
    void *bufs[SVM_PREFETCH_BATCH];
    uint8_t *mem;
} PrefetchReq;

/* MINOR: this page of the batch only goes into the page cache. */
static bool goes_to_cache(SvmPager *p, const PrefetchReq *r, uint64_t page)
{
    return p->minor && (r->how.lazy || page == r->how.marker);
}

static void prefetch_done(void *opaque, int status)
{
    PrefetchReq *r = opaque;
    SvmPager *p = r->pager;

    if (status < 0) {
        svm_budget_unreserve(p, r->n);
        for (unsigned i = 0; i < r->n; i++) {
            svm_pager_release(p, r->pages[i], r->states[i]);
        }
    } else {
        svm_stat_add(&p->bytes_in, (uint64_t)r->n * SVM_PAGE);
    }
    for (unsigned i = 0, j; status >= 0 && i < r->n; i = j) {
        uint64_t page = r->pages[i];
        uint8_t s = r->states[i];

        j = i + 1;
        if (goes_to_cache(p, r, page)) {
            /*
             * Safe although the page is registered MISSING: an access
             * during the write finds the page in the cache and raises a
             * MINOR fault on this BUSY page, resolved once we release it.
             */
            if (pwrite(p->memfd, r->bufs[i], SVM_PAGE,
                       (off_t)(page * SVM_PAGE)) != SVM_PAGE) {
                /* drop whatever part landed: the page must stay a hole */
                svm_punch(p, page, 1);
                svm_budget_unreserve(p, 1);
                svm_pager_release(p, page, s);
                continue;
            }
            svm_stat_sub(&p->remote, 1);
            /* REF: it survives one pass of the hand while it waits to be used */
            svm_pager_release(p, page, PT_CACHED | PT_ONSERVER | PT_PREFETCHED |
                              PT_REF);
            continue;
        }
        /* a run of consecutive pages that are mapped: one COPY */
        while (j < r->n && r->pages[j] == r->pages[j - 1] + 1 &&
               !goes_to_cache(p, r, r->pages[j])) {
            j++;
        }
        /*
         * Without MINOR a warm-up page is mapped and only a write (WP
         * fault) can count it as a hit; a stream page is used without a
         * fault and counted by the stream.
         */
        svm_install_run(p, &r->pages[i], &r->states[i], j - i,
                        r->mem + (size_t)i * SVM_PAGE, true,
                        r->how.lazy ? PT_PREFETCHED :
                        r->how.dirty ? PT_DIRTY : 0);
    }
    atomic_fetch_sub(&p->pf_inflight, r->n);
    svm_warm_wake(p);
    free(r->mem);
    g_free(r);
}

static void issue(SvmPager *p, PrefetchReq *r, SvmServer *s)
{
    int ret;

    r->mem = aligned_alloc(SVM_PAGE, (size_t)r->n * SVM_PAGE);
    if (r->mem) {
        for (unsigned i = 0; i < r->n; i++) {
            r->bufs[i] = r->mem + (size_t)i * SVM_PAGE;
        }
        atomic_fetch_add(&p->pf_inflight, r->n);
        svm_stat_add(&p->prefetch_issued, r->n);
        ret = svm_remote_read_async(p, s, r->pages, r->n, r->bufs,
                                    prefetch_done, r);
        if (ret == 0) {
            return;
        }
        svm_stat_sub(&p->prefetch_issued, r->n);
        atomic_fetch_sub(&p->pf_inflight, r->n);
    }
    svm_budget_unreserve(p, r->n);
    for (unsigned i = 0; i < r->n; i++) {
        svm_pager_release(p, r->pages[i], r->states[i]);
    }
    free(r->mem);
    g_free(r);
}

/* Never-written pages ahead of a writing stream, mapped zero together. */
typedef struct ZeroRun {
    unsigned n;
    uint64_t pages[SVM_ZERO_PAGES];
    uint8_t states[SVM_ZERO_PAGES];
} ZeroRun;

static void zero_run_install(SvmPager *p, ZeroRun *z)
{
    if (z->n) {
        svm_install_run(p, z->pages, z->states, z->n, p->zero_page, false,
                        PT_DIRTY);
        z->n = 0;
    }
}

static void zero_run_add(SvmPager *p, ZeroRun *z, uint64_t page, uint8_t s)
{
    if (z->n && (z->n == SVM_ZERO_PAGES || page != z->pages[z->n - 1] + 1)) {
        zero_run_install(p, z);
    }
    z->pages[z->n] = page;
    z->states[z->n++] = s;
}

/*
 * Queue fills of the remote pages among pages[0..n) (free budget only).
 * Returns how many were queued; *used (may be NULL) gets how many entries
 * were looked at before the budget ran out.  filled (may be NULL, room for
 * n) gets the pages queued or mapped zero, in order, and *nfilled their
 * number.
 */
static unsigned prefetch_list(SvmPager *p, const uint64_t *pages, unsigned n,
                              const PrefetchHow *how, unsigned *used,
                              uint64_t *filled, unsigned *nfilled)
{
    PrefetchReq *r = NULL;
    SvmServer *rs = NULL;
    unsigned queued = 0, nf = 0, k;
    ZeroRun zeroes = { .n = 0 };

    for (k = 0; k < n; k++) {
        uint64_t q = pages[k];
        SvmServer *srv = svm_remote_server(p, q);
        uint8_t s = svm_pt_get(&p->pt, q);

        if (how->dirty && (s & (PT_BUSY | PT_WHERE_MASK | PT_ONSERVER)) == 0) {
            /*
             * Never written, ahead of a writing stream: map it zero and
             * writable now, so the writer does not fault on it.  The
             * marker is left a hole: its (cheap, zero) fault issues the
             * next window while half of this one is still ahead, as a
             * MINOR marker does; otherwise the writer would catch up with
             * that window's mapping at every window's end.
             */
            if (q == how->marker) {
                continue;
            }
            if (!svm_pt_try_own(&p->pt, q, &s, false)) {
                continue;
            }
            if (svm_pt_where(s) != PT_ABSENT || (s & PT_ONSERVER)) {
                svm_pager_release(p, q, s);
                continue;
            }
            if (!svm_budget_reserve(p, 1, false)) {
                svm_pager_release(p, q, s);
                break;
            }
            zero_run_add(p, &zeroes, q, s);
            if (filled) {
                filled[nf++] = q;
            }
            continue;
        }
        if ((s & (PT_BUSY | PT_WHERE_MASK | PT_ONSERVER)) != PT_ONSERVER) {
            continue;       /* resident, in flight, or zero (no trip needed) */
        }
        if (atomic_load(&srv->down) || !svm_pt_try_own(&p->pt, q, &s, false)) {
            continue;
        }
        if ((s & (PT_WHERE_MASK | PT_ONSERVER)) != PT_ONSERVER) {
            svm_pager_release(p, q, s);
            continue;
        }
        if (!svm_budget_reserve(p, 1, false)) {
            svm_pager_release(p, q, s);
            break;
        }
        if (r && (rs != srv || r->n == SVM_PREFETCH_BATCH)) {
            issue(p, r, rs);
            r = NULL;
        }
        if (!r) {
            r = g_new0(PrefetchReq, 1);
            r->pager = p;
            r->how = *how;
            rs = srv;
        }
        r->pages[r->n] = q;
        r->states[r->n] = s;
        r->n++;
        queued++;
        if (filled) {
            filled[nf++] = q;
        }
    }
    if (r) {
        issue(p, r, rs);
    }
    zero_run_install(p, &zeroes);
    if (used) {
        *used = k;
    }
    if (nfilled) {
        *nfilled = nf;
    }
    return queued;
}

/*
 * How many strides page lies before the end of the stream's issued
 * windows (0: just past them), or -1 if it is not on the stream.
 */
static int64_t stream_ahead(SvmPager *p, uint64_t page)
{
    int64_t d = (int64_t)(p->pf_next - page);

    if (p->pf_stride == 0 || d % p->pf_stride != 0) {
        return -1;
    }
    d /= p->pf_stride;
    return d >= 0 && d <= 2 * (int64_t)p->pf_depth ? d : -1;
}

void svm_prefetch_after_fault(SvmPager *p, uint64_t page, bool write)
{
    uint64_t pages[SVM_PREFETCH_MAX], filled[SVM_PREFETCH_MAX];
    PrefetchHow how = { .dirty = write, .marker = UINT64_MAX };
    int64_t stride = 0, ahead, first;
    unsigned depth, n = 0, used = 0, queued, nfilled = 0;

    if (!p->prefetch || p->nservers == 0) {
        return;
    }
    pthread_mutex_lock(&p->pf_lock);
    ahead = stream_ahead(p, page);
    if (ahead >= 0) {
        /* on the stream: the next window once half of the last one is left */
        if (ahead > (int64_t)(p->pf_depth + 1) / 2) {
            pthread_mutex_unlock(&p->pf_lock);
            return;
        }
        /* what lies behind page was walked past: used */
        if (p->pf_pending > (uint64_t)ahead) {
            svm_stat_add(&p->prefetch_hits, p->pf_pending - ahead);
            p->pf_pending = ahead;
        }
        stride = p->pf_stride;
        depth = MIN(p->pf_depth * 2, SVM_PREFETCH_MAX);
        first = (int64_t)p->pf_next;
    } else {
        depth = svm_prefetch_feed(&p->pf_det, page, &stride);
        if (depth == 0) {
            pthread_mutex_unlock(&p->pf_lock);
            return;
        }
        p->pf_pending = 0;
        first = (int64_t)page + stride;
        /* the fill that found the stream is on it: the window continues it */
        svm_dropbehind_add(&p->pf_behind, page, stride, 1, svm_now_ns());
    }
    if (atomic_load(&p->pf_inflight) >= SVM_PREFETCH_INFLIGHT) {
        pthread_mutex_unlock(&p->pf_lock);
        return;
    }
    for (unsigned k = 0; k < depth; k++) {
        int64_t q = first + stride * (int64_t)k;

        if (q < 0 || (uint64_t)q >= p->npages) {
            break;
        }
        pages[n++] = q;
    }
    if (n > 1) {
        how.marker = pages[n / 2];
    }
    /*
     * Claim the window before issuing it, and issue it without pf_lock:
     * other fault threads only wait for the bookkeeping, not for the
     * reads, zero fills and sends of up to SVM_PREFETCH_MAX pages.
     */
    p->pf_stride = n ? stride : 0;
    p->pf_next = first + stride * (int64_t)n;
    p->pf_depth = n ? n : SVM_PREFETCH_MIN;
    pthread_mutex_unlock(&p->pf_lock);

    queued = prefetch_list(p, pages, n, &how, &used, filled, &nfilled);

    pthread_mutex_lock(&p->pf_lock);
    p->pf_pending += queued;
    if (used < n && p->pf_stride == stride &&
        p->pf_next == (uint64_t)(first + stride * (int64_t)n)) {
        /* the budget ran out: the stream goes on after the last page looked at */
        p->pf_stride = used ? stride : 0;
        p->pf_next = first + stride * (int64_t)used;
        p->pf_depth = used ? used : SVM_PREFETCH_MIN;
    }
    /* only what this window filled: pages resident before were not its */
    for (unsigned i = 0, j; i < nfilled; i = j) {
        for (j = i + 1; j < nfilled &&
             filled[j] == filled[j - 1] + (uint64_t)stride; j++) {
        }
        svm_dropbehind_add(&p->pf_behind, filled[i], stride, j - i,
                           svm_now_ns());
    }
    pthread_mutex_unlock(&p->pf_lock);
    if (nfilled) {
        svm_evict_dropbehind_kick(p);
    }
}

unsigned svm_prefetch_pages(SvmPager *p, const uint64_t *pages, unsigned n)
{
    PrefetchHow how = { .lazy = true, .marker = UINT64_MAX };

    return prefetch_list(p, pages, n, &how, NULL, NULL, NULL);
}

void svm_prefetch_drain(SvmPager *p)
{
    /* completions arrive on the memory clients' threads */
    while (atomic_load(&p->pf_inflight) > 0) {
        usleep(1000);
    }
}
