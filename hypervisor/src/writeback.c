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
 * Batches hold one server's pages each and leave in rounds: the pages
 * added since the last send, whatever their servers.  Every write-protect
 * and every punch costs a TLB-shootdown interrupt to the CPUs running
 * vCPUs, however many pages it covers, so a round is write-protected in
 * runs that cross its batches (a block striped over two servers is one
 * write-protect, not one per stripe unit), and a round's pages are punched
 * together once all of its batches are answered.
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

/* -ESTALE (fenced) says more than any other error: it wins. */
static int first_error(int err, int ret)
{
    return ret < 0 && (!err || ret == -ESTALE) ? ret : err;
}

typedef struct WbBatch {
    SvmWbPipe *pipe;
    SvmServer *server;
    unsigned n;
    uint64_t pages[SVM_WRITEBACK_MAX];
    uint8_t states[SVM_WRITEBACK_MAX];
    bool frozen[SVM_WRITEBACK_MAX];     /* may be copied: protected or unmapped */
    bool copied[SVM_WRITEBACK_MAX];     /* buf holds it; after the answer: written */
    const void *bufs[SVM_WRITEBACK_MAX];    /* read by the client until done */
    uint8_t *buf;
    int status;
    uint64_t ticket;            /* of its server when sent */
    uint64_t round;
    bool busy;                  /* open or on the wire: not free */
    bool sent, done;
} WbBatch;

/* A page of the open round, in the order it was added. */
typedef struct WbSlot {
    WbBatch *batch;
    unsigned idx;
} WbSlot;

struct SvmWbPipe {
    SvmPager *pager;
    bool evict;                 /* drop acked pages (else: keep them clean) */
    pthread_mutex_t lock;
    pthread_cond_t cond;        /* a batch completed */
    unsigned depth;
    unsigned round_max;         /* batches per round: two rounds fit in depth */
    WbBatch *batches;
    WbBatch **open;             /* the open round's batches, not sent yet */
    unsigned nopen;
    WbSlot *slots;              /* the open round's pages */
    unsigned nslots;
    uint64_t round;             /* number of the open round */
    WbBatch **reaped;           /* scratch: the batches of the rounds reaped */
    uint64_t *punch;            /* scratch: their pages */
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
    w->round_max = MAX(w->depth / 2, 1);
    w->batches = g_new0(WbBatch, w->depth);
    w->open = g_new0(WbBatch *, w->round_max);
    w->slots = g_new0(WbSlot, (size_t)w->round_max * SVM_WRITEBACK_MAX);
    w->reaped = g_new0(WbBatch *, w->depth);
    w->punch = g_new0(uint64_t, (size_t)w->depth * SVM_WRITEBACK_MAX);
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
    g_assert(w->nopen == 0);
    for (unsigned i = 0; i < w->depth; i++) {
        g_assert(!w->batches[i].busy);
        free(w->batches[i].buf);
    }
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    g_free(w->punch);
    g_free(w->reaped);
    g_free(w->slots);
    g_free(w->open);
    g_free(w->batches);
    g_free(w);
}

static uint64_t slot_page(const WbSlot *s)
{
    return s->batch->pages[s->idx];
}

/* Mapped pages are write-protected by the freeze; the others need not be. */
static bool batch_page_mapped(const WbBatch *b, unsigned idx)
{
    return svm_pt_where(b->states[idx]) == PT_MAPPED;
}

static bool slot_mapped(const WbSlot *s)
{
    return batch_page_mapped(s->batch, s->idx);
}

/*
 * Write-protect the open round's mapped pages: one ioctl per run of
 * consecutive pages in the order they were added, across batches.
 */
static int freeze_round(SvmWbPipe *w)
{
    SvmPager *p = w->pager;
    int err = 0;

    for (unsigned i = 0, j; i < w->nslots; i = j) {
        bool mapped = slot_mapped(&w->slots[i]);
        bool ok = true;

        for (j = i + 1; j < w->nslots &&
             slot_page(&w->slots[j]) == slot_page(&w->slots[j - 1]) + 1 &&
             slot_mapped(&w->slots[j]) == mapped; j++) {
        }
        if (mapped) {
            uint64_t first = slot_page(&w->slots[i]);
            /* (the kernel refuses DONTWAKE together with WP) */
            int ret = svm_uffd_writeprotect(p->uffd, svm_page_addr(p, first),
                                            (uint64_t)(j - i) * SVM_PAGE,
                                            true, false);

            if (ret < 0) {
                svm_pager_log(p, "write-protect of pages %" PRIu64 "+%u: %s",
                              first, j - i, strerror(-ret));
                err = ret;
                ok = false;
            }
        }
        for (unsigned k = i; k < j; k++) {
            w->slots[k].batch->frozen[w->slots[k].idx] = ok;
        }
    }
    return err;
}

/* Copy a batch's frozen pages into its buffer: one read per run. */
static int copy_batch(SvmPager *p, WbBatch *b)
{
    int err = 0;

    for (unsigned i = 0, j; i < b->n; i = j) {
        ssize_t got;

        for (j = i + 1; j < b->n && b->pages[j] == b->pages[j - 1] + 1 &&
             b->frozen[j] == b->frozen[i]; j++) {
        }
        for (unsigned k = i; k < j; k++) {
            b->copied[k] = false;
        }
        if (!b->frozen[i]) {
            continue;
        }
        got = pread(p->memfd, b->buf + (size_t)i * SVM_PAGE,
                    (size_t)(j - i) * SVM_PAGE, (off_t)(b->pages[i] * SVM_PAGE));
        if (got != (ssize_t)(j - i) * SVM_PAGE) {
            err = got < 0 ? -errno : -EIO;
            svm_pager_log(p, "reading pages %" PRIu64 "+%u from the memfd: %s",
                          b->pages[i], j - i,
                          got < 0 ? strerror(errno) : "short read");
            continue;
        }
        for (unsigned k = i; k < j; k++) {
            b->copied[k] = true;
        }
    }
    return err;
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

static void send_batch(SvmWbPipe *w, WbBatch *b)
{
    SvmPager *p = w->pager;
    uint64_t pages[SVM_WRITEBACK_MAX];
    unsigned k = 0;
    int ret;

    w->err = first_error(w->err, copy_batch(p, b));
    for (unsigned i = 0; i < b->n; i++) {
        if (b->copied[i]) {
            pages[k] = b->pages[i];
            b->bufs[k++] = b->buf + (size_t)i * SVM_PAGE;
        }
    }
    b->sent = k > 0;
    if (k) {
        b->ticket = svm_remote_ticket(b->server);
        ret = svm_remote_write_async(p, b->server, pages, k, b->bufs,
                                     batch_done, b);
        if (ret < 0) {
            b->status = ret;
            b->done = true;
        }
    } else {
        b->status = 0;
        b->done = true;
    }
}

static void send_round(SvmWbPipe *w)
{
    w->err = first_error(w->err, freeze_round(w));
    for (unsigned i = 0; i < w->nopen; i++) {
        send_batch(w, w->open[i]);
    }
    w->nopen = 0;
    w->nslots = 0;
    w->round++;
}

static int cmp_page(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* Punch the written pages of batches[0..n): one hole per run. */
static void punch_written(SvmWbPipe *w, WbBatch **batches, unsigned n)
{
    uint64_t np = 0;

    for (unsigned i = 0; i < n; i++) {
        for (unsigned k = 0; k < batches[i]->n; k++) {
            if (batches[i]->copied[k]) {
                w->punch[np++] = batches[i]->pages[k];
            }
        }
    }
    qsort(w->punch, np, sizeof(w->punch[0]), cmp_page);
    for (uint64_t i = 0, j; i < np; i = j) {
        for (j = i + 1; j < np && w->punch[j] == w->punch[j - 1] + 1; j++) {
        }
        svm_punch(w->pager, w->punch[i], j - i);
    }
}

/* Give a sent (or unsendable) batch's pages back: written, or unchanged. */
static void batch_release(SvmWbPipe *w, WbBatch *b)
{
    SvmPager *p = w->pager;
    unsigned acked = 0;

    for (unsigned i = 0; i < b->n; i++) {
        uint64_t page = b->pages[i];
        uint8_t s = b->states[i];

        if (!b->copied[i]) {
            /* still dirty; undoing our write-protect also wakes writers */
            if (b->frozen[i] && batch_page_mapped(b, i)) {
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
    b->busy = false;
    b->done = false;
    if (w->evict && acked) {
        svm_budget_unreserve(p, acked);     /* wakes fills waiting for room */
    }
}

/* Whether every batch of b's round is answered (w->lock held). */
static bool round_done(SvmWbPipe *w, const WbBatch *b)
{
    for (unsigned i = 0; i < w->depth; i++) {
        const WbBatch *o = &w->batches[i];

        if (o->busy && o->round == b->round && !o->done) {
            return false;
        }
    }
    return true;
}

/*
 * Release every answered round; with `wait`, first wait for one.  The
 * open round's batches are not on the wire and never count.
 */
static void reap(SvmWbPipe *w, bool wait)
{
    WbBatch **done = w->reaped;
    unsigned n = 0;

    pthread_mutex_lock(&w->lock);
    for (;;) {
        bool any = false;

        for (unsigned i = 0; i < w->depth; i++) {
            WbBatch *b = &w->batches[i];

            if (!b->busy || b->round == w->round) {
                continue;
            }
            any = true;
            if (b->done && round_done(w, b)) {
                done[n++] = b;
            }
        }
        if (n || !wait || !any) {
            break;
        }
        pthread_cond_wait(&w->cond, &w->lock);
    }
    pthread_mutex_unlock(&w->lock);

    for (unsigned i = 0; i < n; i++) {
        WbBatch *b = done[i];

        if (b->status < 0) {
            svm_remote_write_failed(b->server, b->status);
            w->err = first_error(w->err, b->status);
            memset(b->copied, 0, sizeof(b->copied));
        } else if (b->sent) {
            svm_remote_answered(b->server, b->ticket);
        }
    }
    if (w->evict && n) {
        punch_written(w, done, n);
    }
    for (unsigned i = 0; i < n; i++) {
        batch_release(w, done[i]);
    }
}

static WbBatch *free_batch(SvmWbPipe *w)
{
    for (;;) {
        reap(w, false);
        for (unsigned i = 0; i < w->depth; i++) {
            if (!w->batches[i].busy) {
                return &w->batches[i];
            }
        }
        /* all taken: what is open has to leave before anything comes back */
        if (w->nopen) {
            send_round(w);
        }
        reap(w, true);
    }
}

int svm_wbpipe_add(SvmWbPipe *w, uint64_t page, uint8_t state)
{
    SvmServer *s = svm_remote_server(w->pager, page);
    WbBatch *b = NULL;

    for (unsigned i = 0; i < w->nopen && !b; i++) {
        if (w->open[i]->server == s && w->open[i]->n < SVM_WRITEBACK_MAX) {
            b = w->open[i];
        }
    }
    if (!b) {
        if (w->nopen == w->round_max) {
            send_round(w);
        }
        b = free_batch(w);
        b->server = s;
        b->status = 0;
        b->round = w->round;
        b->busy = true;
        w->open[w->nopen++] = b;
    }
    w->slots[w->nslots++] = (WbSlot){ .batch = b, .idx = b->n };
    b->pages[b->n] = page;
    b->states[b->n++] = state;
    w->in_flight++;
    return w->err;
}

uint64_t svm_wbpipe_in_flight(SvmWbPipe *w)
{
    return w->in_flight;
}

void svm_wbpipe_send(SvmWbPipe *w, bool wait)
{
    if (w->nopen) {
        send_round(w);
    }
    reap(w, wait);
}

int svm_wbpipe_finish(SvmWbPipe *w, uint64_t *written)
{
    int err;

    if (w->nopen) {
        send_round(w);
    }
    for (;;) {
        bool busy = false;

        reap(w, false);
        for (unsigned i = 0; i < w->depth; i++) {
            busy |= w->batches[i].busy;
        }
        if (!busy) {
            break;
        }
        reap(w, true);
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
