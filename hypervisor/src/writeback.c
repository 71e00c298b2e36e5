/*
 * Writing dirty resident pages back to their memory servers.
 *
 * An SvmWbPipe keeps several batches on the wire at once, so that neither
 * the servers nor the writing thread wait for each other's round trips.
 * The evictor's pipe drops a page once its server acknowledged it (punch,
 * then release: ABSENT); the migration flush's leaves it resident and
 * clean.  A page that could not be written is released unchanged: dirty,
 * with its data.
 *
 * A page is frozen first: it is owned (BUSY), write-protected if mapped (a
 * racing write then blocks in a WP fault until the release, and refaults
 * on the clean or absent page), and copied out of the memfd; only what the
 * copy holds is written.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pager-internal.h"
#include "uffd.h"

/*
 * Freeze pages[0..n) and copy them into buf.  wp[i]: write-protected here;
 * copied[i]: buf holds it.  Runs of consecutive pages (the usual case: the
 * CLOCK hand and the flush scan go in page order) take one write-protect
 * and one read each.
 */
static int freeze_and_copy(SvmPager *p, const uint64_t *pages,
                           const uint8_t *states, unsigned n, uint8_t *buf,
                           bool *wp, bool *copied)
{
    int err = 0;

    for (unsigned i = 0, j; i < n; i = j) {
        bool mapped = svm_pt_where(states[i]) == PT_MAPPED;
        ssize_t got;

        for (j = i + 1; j < n && pages[j] == pages[j - 1] + 1 &&
             (svm_pt_where(states[j]) == PT_MAPPED) == mapped; j++) {
        }
        for (unsigned k = i; k < j; k++) {
            wp[k] = false;
            copied[k] = false;
        }
        if (mapped) {
            /* (the kernel refuses DONTWAKE together with WP) */
            int ret = svm_uffd_writeprotect(p->uffd, svm_page_addr(p, pages[i]),
                                            (uint64_t)(j - i) * SVM_PAGE,
                                            true, false);
            if (ret < 0) {
                svm_pager_log(p, "write-protect of pages %" PRIu64 "+%u: %s",
                              pages[i], j - i, strerror(-ret));
                err = ret;
                continue;
            }
            for (unsigned k = i; k < j; k++) {
                wp[k] = true;
            }
        }
        got = pread(p->memfd, buf + (size_t)i * SVM_PAGE,
                    (size_t)(j - i) * SVM_PAGE, (off_t)(pages[i] * SVM_PAGE));
        if (got != (ssize_t)(j - i) * SVM_PAGE) {
            err = got < 0 ? -errno : -EIO;
            svm_pager_log(p, "reading pages %" PRIu64 "+%u from the memfd: %s",
                          pages[i], j - i, got < 0 ? strerror(errno) : "short read");
            continue;
        }
        for (unsigned k = i; k < j; k++) {
            copied[k] = true;
        }
    }
    return err;
}

/* -ESTALE (fenced) says more than any other error: it wins. */
static int first_error(int err, int ret)
{
    return ret < 0 && (!err || ret == -ESTALE) ? ret : err;
}

/* The pipeline: batches of pages of one server each, in flight at once. */

typedef struct WbBatch {
    SvmWbPipe *pipe;
    SvmServer *server;
    unsigned n;
    uint64_t pages[SVM_WRITEBACK_MAX];
    uint8_t states[SVM_WRITEBACK_MAX];
    bool wp[SVM_WRITEBACK_MAX], copied[SVM_WRITEBACK_MAX];
    const void *bufs[SVM_WRITEBACK_MAX];    /* read by the client until done */
    uint8_t *buf;
    int status;
    uint64_t ticket;            /* of its server when sent */
    bool in_flight, sent, done;
} WbBatch;

struct SvmWbPipe {
    SvmPager *pager;
    bool evict;                 /* drop acked pages (else: keep them clean) */
    pthread_mutex_t lock;
    pthread_cond_t cond;        /* a batch completed */
    unsigned depth;
    WbBatch *batches;
    WbBatch *open;              /* collecting pages, not sent yet */
    int err;
    uint64_t written;
    uint64_t in_flight;         /* pages added and not yet released */
};

SvmWbPipe *svm_wbpipe_new(SvmPager *p, unsigned depth, bool evict)
{
    SvmWbPipe *w = g_new0(SvmWbPipe, 1);

    w->pager = p;
    w->evict = evict;
    w->depth = depth ? depth : 1;
    w->batches = g_new0(WbBatch, w->depth);
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    for (unsigned i = 0; i < w->depth; i++) {
        w->batches[i].pipe = w;
        w->batches[i].buf = aligned_alloc(SVM_PAGE,
                                          (size_t)SVM_WRITEBACK_MAX * SVM_PAGE);
        if (!w->batches[i].buf) {
            svm_wbpipe_free(w);
            return NULL;
        }
    }
    return w;
}

void svm_wbpipe_free(SvmWbPipe *w)
{
    if (!w) {
        return;
    }
    g_assert(!w->open);
    for (unsigned i = 0; i < w->depth; i++) {
        g_assert(!w->batches[i].in_flight);
        free(w->batches[i].buf);
    }
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    g_free(w->batches);
    g_free(w);
}

/* memory client completion thread */
static void batch_done(void *opaque, int status)
{
    WbBatch *b = opaque;
    SvmWbPipe *w = b->pipe;

    pthread_mutex_lock(&w->lock);
    b->status = status;
    b->done = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* An acked page leaves: runs of consecutive pages are punched at once. */
static void batch_evict(SvmPager *p, WbBatch *b)
{
    for (unsigned i = 0, j; i < b->n; i = j) {
        for (j = i + 1; j < b->n && b->copied[i] == b->copied[j] &&
             b->pages[j] == b->pages[j - 1] + 1; j++) {
        }
        if (b->copied[i]) {
            svm_punch(p, b->pages[i], j - i);
        }
    }
}

/* Give a sent (or unsendable) batch's pages back: written, or unchanged. */
static void batch_release(SvmWbPipe *w, WbBatch *b)
{
    SvmPager *p = w->pager;
    unsigned acked = 0;

    if (b->status < 0) {
        svm_remote_write_failed(b->server, b->status);
        w->err = first_error(w->err, b->status);
        for (unsigned i = 0; i < b->n; i++) {
            b->copied[i] = false;
        }
    } else {
        if (b->sent) {
            svm_remote_answered(b->server, b->ticket);
        }
        if (w->evict) {
            batch_evict(p, b);
        }
    }
    for (unsigned i = 0; i < b->n; i++) {
        uint64_t page = b->pages[i];
        uint8_t s = b->states[i];

        if (!b->copied[i]) {
            /* still dirty; undoing our write-protect also wakes writers */
            if (b->wp[i]) {
                svm_uffd_writeprotect(p->uffd, svm_page_addr(p, page),
                                      SVM_PAGE, false, false);
            }
            svm_pager_release(p, page, s);
            continue;
        }
        acked++;
        svm_stat_sub(&p->dirty, 1);
        if (w->evict) {
            /*
             * Writers blocked by our write-protect wait for this wake; they
             * refault MISSING and read back what the server acknowledged.
             */
            svm_stat_add(&p->remote, 1);
            svm_stat_add(&p->evictions, 1);
            svm_pager_release(p, page, PT_ABSENT | PT_ONSERVER);
        } else {
            svm_pager_release(p, page, (s & ~PT_DIRTY) | PT_ONSERVER);
        }
    }
    svm_stat_add(&p->writebacks, acked);
    svm_stat_add(&p->bytes_out, (uint64_t)acked * SVM_PAGE);
    w->written += acked;
    w->in_flight -= b->n;
    b->n = 0;
    b->in_flight = false;
    b->done = false;
    if (w->evict && acked) {
        svm_budget_unreserve(p, acked);     /* wakes fills waiting for room */
    }
}

/* Release every completed batch; with `wait`, first wait for one. */
static void reap(SvmWbPipe *w, bool wait)
{
    for (;;) {
        WbBatch *done = NULL;
        bool any = false;

        pthread_mutex_lock(&w->lock);
        for (;;) {
            for (unsigned i = 0; i < w->depth && !done; i++) {
                any |= w->batches[i].in_flight;
                if (w->batches[i].in_flight && w->batches[i].done) {
                    done = &w->batches[i];
                }
            }
            if (done || !wait || !any) {
                break;
            }
            pthread_cond_wait(&w->cond, &w->lock);
        }
        pthread_mutex_unlock(&w->lock);
        if (!done) {
            return;
        }
        batch_release(w, done);
        wait = false;
    }
}

static void send_open(SvmWbPipe *w)
{
    SvmPager *p = w->pager;
    WbBatch *b = w->open;
    uint64_t pages[SVM_WRITEBACK_MAX];
    unsigned k = 0;
    int ret;

    w->open = NULL;
    b->in_flight = true;
    ret = freeze_and_copy(p, b->pages, b->states, b->n, b->buf, b->wp,
                          b->copied);
    for (unsigned i = 0; i < b->n; i++) {
        if (b->copied[i]) {
            pages[k] = b->pages[i];
            b->bufs[k++] = b->buf + (size_t)i * SVM_PAGE;
        }
    }
    w->err = first_error(w->err, ret);
    b->sent = k > 0;
    if (k) {
        b->ticket = svm_remote_ticket(b->server);
        ret = svm_remote_write_async(p, b->server, pages, k, b->bufs,
                                     batch_done, b);
    }
    if (k == 0 || ret < 0) {
        b->status = k ? ret : 0;
        b->done = true;
    }
}

static WbBatch *free_batch(SvmWbPipe *w)
{
    for (;;) {
        reap(w, false);
        for (unsigned i = 0; i < w->depth; i++) {
            if (!w->batches[i].in_flight) {
                return &w->batches[i];
            }
        }
        reap(w, true);
    }
}

int svm_wbpipe_add(SvmWbPipe *w, uint64_t page, uint8_t state)
{
    SvmServer *s = svm_remote_server(w->pager, page);

    if (w->open && (w->open->n == SVM_WRITEBACK_MAX || w->open->server != s)) {
        send_open(w);
    }
    if (!w->open) {
        w->open = free_batch(w);
        w->open->server = s;
        w->open->status = 0;
    }
    w->open->pages[w->open->n] = page;
    w->open->states[w->open->n++] = state;
    w->in_flight++;
    return w->err;
}

uint64_t svm_wbpipe_in_flight(SvmWbPipe *w)
{
    return w->in_flight;
}

void svm_wbpipe_send(SvmWbPipe *w, bool wait)
{
    if (w->open) {
        send_open(w);
    }
    reap(w, wait);
}

int svm_wbpipe_finish(SvmWbPipe *w, uint64_t *written)
{
    int err;

    if (w->open) {
        send_open(w);
    }
    reap(w, false);
    for (unsigned i = 0; i < w->depth; i++) {
        while (w->batches[i].in_flight) {
            reap(w, true);
        }
    }
    if (written) {
        *written = w->written;
    }
    /* the next round starts afresh */
    err = w->err;
    w->err = 0;
    w->written = 0;
    return err;
}
