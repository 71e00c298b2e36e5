/*
 * Issuing prefetch: after a demand fault has been served (demand first),
 * the detector's trend decides which remote pages to fetch ahead.  They go
 * out as one asynchronous batch per server, only into free budget (prefetch
 * never evicts).  With MINOR mode a prefetched page is written into the
 * page cache but not mapped, so its first use raises a MINOR fault: that
 * counts the hit and sets the reference bit.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pager-internal.h"

typedef struct PrefetchReq {
    SvmPager *pager;
    unsigned n;
    uint64_t pages[SVM_PREFETCH_MAX];
    uint8_t states[SVM_PREFETCH_MAX];
    void *bufs[SVM_PREFETCH_MAX];
    uint8_t *mem;
} PrefetchReq;

static void prefetch_done(void *opaque, int status)
{
    PrefetchReq *r = opaque;
    SvmPager *p = r->pager;

    if (status < 0) {
        svm_budget_unreserve(p, r->n);
    }
    for (unsigned i = 0; i < r->n; i++) {
        uint64_t page = r->pages[i];
        uint8_t s = r->states[i];

        if (status < 0) {
            svm_pager_release(p, page, s);
            continue;
        }
        svm_stat_add(&p->bytes_in, SVM_PAGE);
        if (p->minor) {
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
        } else {
            /* without MINOR only a write (WP fault) can count as a hit */
            svm_install(p, page, s, r->bufs[i], true, PT_PREFETCHED);
        }
    }
    atomic_fetch_sub(&p->pf_inflight, r->n);
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

void svm_prefetch_after_fault(SvmPager *p, uint64_t page)
{
    uint64_t pages[SVM_PREFETCH_MAX];
    int64_t stride = 0;
    unsigned depth, n = 0;

    if (!p->prefetch || p->nservers == 0) {
        return;
    }
    pthread_mutex_lock(&p->pf_lock);
    depth = svm_prefetch_feed(&p->pf_det, page, &stride);
    pthread_mutex_unlock(&p->pf_lock);
    if (depth == 0 || atomic_load(&p->pf_inflight) >= SVM_PREFETCH_INFLIGHT) {
        return;
    }
    for (unsigned k = 1; k <= depth && k <= SVM_PREFETCH_MAX; k++) {
        int64_t q = (int64_t)page + stride * (int64_t)k;

        if (q < 0 || (uint64_t)q >= p->npages) {
            break;
        }
        pages[n++] = q;
    }
    svm_prefetch_pages(p, pages, n);
}

unsigned svm_prefetch_pages(SvmPager *p, const uint64_t *pages, unsigned n)
{
    PrefetchReq *r = NULL;
    SvmServer *rs = NULL;
    unsigned queued = 0;

    for (unsigned k = 0; k < n; k++) {
        uint64_t q = pages[k];
        SvmServer *srv = svm_remote_server(p, q);
        uint8_t s = svm_pt_get(&p->pt, q);

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
        if (r && (rs != srv || r->n == SVM_PREFETCH_MAX)) {
            issue(p, r, rs);
            r = NULL;
        }
        if (!r) {
            r = g_new0(PrefetchReq, 1);
            r->pager = p;
            rs = srv;
        }
        r->pages[r->n] = q;
        r->states[r->n] = s;
        r->n++;
        queued++;
    }
    if (r) {
        issue(p, r, rs);
    }
    return queued;
}

void svm_prefetch_drain(SvmPager *p)
{
    /* completions arrive on the memory clients' threads */
    while (atomic_load(&p->pf_inflight) > 0) {
        usleep(1000);
    }
}
