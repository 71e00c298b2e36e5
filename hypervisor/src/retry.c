/*
 * Remote fills whose server did not answer wait here, owned (BUSY), with
 * their faulting threads still blocked: the page is never filled with
 * zero or stale data.  One thread keeps probing each lost server with one
 * of its pages and completes them all once it answers.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <stdlib.h>

#include "pager-internal.h"

#define RETRY_INTERVAL_MS 100

void svm_retry_add(SvmPager *p, uint64_t page)
{
    SvmRetryList *l = &p->retry;

    pthread_mutex_lock(&l->lock);
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->pages = g_renew(uint64_t, l->pages, l->cap);
    }
    l->pages[l->n++] = page;
    pthread_cond_signal(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

void svm_retry_kick(SvmPager *p)
{
    pthread_mutex_lock(&p->retry.lock);
    pthread_cond_signal(&p->retry.cond);
    pthread_mutex_unlock(&p->retry.lock);
}

static void *retry_thread(void *opaque)
{
    SvmPager *p = opaque;
    SvmRetryList *l = &p->retry;
    static __thread uint8_t buf[SVM_PAGE] __attribute__((aligned(SVM_PAGE)));
    bool *probed = g_new0(bool, p->nservers ? p->nservers : 1);
    uint64_t *work = NULL;
    size_t nwork = 0;

    svm_thread_lower_priority(p->service_nice, "pager retry thread");
    pthread_mutex_lock(&l->lock);
    while (!atomic_load(&p->stopping)) {
        size_t keep = 0;

        if (l->n == 0) {
            pthread_cond_wait(&l->cond, &l->lock);
            continue;
        }
        /* take the list; new entries may arrive while we work */
        work = l->pages;
        nwork = l->n;
        l->pages = NULL;
        l->n = l->cap = 0;
        pthread_mutex_unlock(&l->lock);

        for (unsigned i = 0; i < p->nservers; i++) {
            probed[i] = false;
        }
        for (size_t i = 0; i < nwork; i++) {
            uint64_t page = work[i];
            SvmServer *s = svm_remote_server(p, page);
            uint8_t st = svm_pt_get(&p->pt, page) & ~(PT_BUSY | PT_WAITERS);

            /* a lost server gets one probe per round, not one per page */
            if (atomic_load(&p->stopping) ||
                (atomic_load(&s->down) && probed[s->idx]) ||
                (probed[s->idx] = true, svm_remote_read(p, page, buf) < 0)) {
                work[keep++] = page;
                continue;
            }
            svm_install(p, page, st, buf, true, 0);
        }

        pthread_mutex_lock(&l->lock);
        for (size_t i = 0; i < keep; i++) {
            if (l->n == l->cap) {
                l->cap = l->cap ? l->cap * 2 : 64;
                l->pages = g_renew(uint64_t, l->pages, l->cap);
            }
            l->pages[l->n++] = work[i];
        }
        g_free(work);
        work = NULL;
        if (keep && !atomic_load(&p->stopping)) {
            struct timespec ts;

            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += RETRY_INTERVAL_MS * 1000000L;
            ts.tv_sec += ts.tv_nsec / 1000000000;
            ts.tv_nsec %= 1000000000;
            pthread_cond_timedwait(&l->cond, &l->lock, &ts);
        }
    }
    pthread_mutex_unlock(&l->lock);
    g_free(probed);
    return NULL;
}

int svm_retry_start(SvmPager *p)
{
    pthread_mutex_init(&p->retry.lock, NULL);
    pthread_cond_init(&p->retry.cond, NULL);
    if (pthread_create(&p->retry_thread, NULL, retry_thread, p) != 0) {
        return -EAGAIN;
    }
    pthread_setname_np(p->retry_thread, "svm-retry");
    p->retry_started = true;
    return 0;
}

void svm_retry_stop(SvmPager *p)
{
    if (!p->retry_started) {
        return;
    }
    svm_retry_kick(p);
    pthread_join(p->retry_thread, NULL);
    g_free(p->retry.pages);
    p->retry.pages = NULL;
    pthread_mutex_destroy(&p->retry.lock);
    pthread_cond_destroy(&p->retry.cond);
    p->retry_started = false;
}
