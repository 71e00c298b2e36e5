/*
 * Live migration with the RAM staying on the memory servers: flushing
 * dirty resident pages, the written-pages bitmap, and the hand-over of the
 * VM's pages from one pager to another through the servers' owner epoch.
 *
 * A flushed page stays resident: own it (BUSY) -> write-protect (if mapped)
 * -> copy it out of the memfd -> write it to its server, wait for the ack
 * -> release it clean.  A write racing with this blocks in a WP fault on the
 * BUSY page, is woken at the release and faults again on the now clean,
 * write-protected page, which makes it dirty again: no write is lost.
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

/* batches on the wire at once: the servers and this thread overlap */
#define FLUSH_DEPTH 16
#define FLUSH_ALL_TIMEOUT_NS (60ull * 1000000000ull)

void svm_migrate_init_incoming(SvmPager *p)
{
    /* Remote until proven otherwise: the server reads never-written pages as zero. */
    for (uint64_t i = 0; i < p->npages; i++) {
        atomic_store(&p->pt.state[i], PT_ABSENT | PT_ONSERVER);
    }
    atomic_store(&p->remote, p->npages);
}

uint64_t svm_pager_dirty_bytes(SvmPager *p)
{
    return atomic_load(&p->dirty) * SVM_PAGE;
}

uint64_t svm_pager_owner_epoch(SvmPager *p)
{
    return atomic_load(&p->owner) ? atomic_load(&p->epoch) : 0;
}

bool svm_pager_is_owner(SvmPager *p)
{
    return atomic_load(&p->owner);
}

void svm_pager_release_ownership(SvmPager *p)
{
    if (atomic_exchange(&p->owner, false)) {
        svm_pager_log(p, "released ownership (epoch %" PRIu64 "); no more "
                      "writes to the memory servers", (uint64_t)p->epoch);
    }
}

static void flush_error(int err, GError **errp)
{
    g_set_error(errp, SVM_PAGER_ERROR, -err,
                "flushing dirty pages to the memory servers: %s%s",
                g_strerror(-err), err == -ESTALE ?
                " (this pager was fenced: another one owns the VM now)" : "");
}

/* flush_lock held */
static bool flush(SvmPager *p, uint64_t max_bytes, uint64_t *remaining,
                  GError **errp)
{
    uint64_t budget = max_bytes ? (max_bytes + SVM_PAGE - 1) / SVM_PAGE : UINT64_MAX;
    uint64_t done = 0, last = p->flush_cursor;
    SvmWbPipe *w;
    int err = 0;

    if (!atomic_load(&p->owner)) {
        g_set_error(errp, SVM_PAGER_ERROR, EPERM,
                    "this pager does not own the VM's pages; it cannot write them");
        return false;
    }
    if (p->nservers == 0) {
        g_set_error(errp, SVM_PAGER_ERROR, EINVAL,
                    "no memory server is configured: there is nowhere to flush to");
        return false;
    }
    if (atomic_load(&p->fenced)) {
        g_set_error(errp, SVM_PAGER_ERROR, ESTALE, "this pager was fenced: "
                    "another one owns the VM's pages now");
        return false;
    }
    if (!p->flush_pipe) {
        p->flush_pipe = svm_wbpipe_new(p, FLUSH_DEPTH, false);
        if (!p->flush_pipe) {
            g_set_error(errp, SVM_PAGER_ERROR, ENOMEM, "out of memory");
            return false;
        }
    }
    w = p->flush_pipe;
    /* one pass over all pages from where the last call stopped */
    for (uint64_t k = 0; k < p->npages && done < budget && !err; k++) {
        uint64_t i = (p->flush_cursor + k) % p->npages;
        uint8_t s = svm_pt_get(&p->pt, i);

        if (!(s & PT_DIRTY) || (s & PT_BUSY) || !svm_pt_resident(s)) {
            continue;
        }
        if (!svm_pt_try_own(&p->pt, i, &s, false)) {
            continue;       /* the evictor has it: it writes it back itself */
        }
        if (!(s & PT_DIRTY) || !svm_pt_resident(s)) {
            svm_pager_release(p, i, s);
            continue;
        }
        err = svm_wbpipe_add(w, i, s);
        last = i;
        done++;
    }
    err = svm_wbpipe_finish(w, NULL);
    if (done) {
        p->flush_cursor = (last + 1) % p->npages;
    }
    if (err < 0) {
        flush_error(err, errp);
    }
    if (remaining) {
        *remaining = svm_pager_dirty_bytes(p);
    }
    return err == 0;
}

bool svm_pager_flush(SvmPager *p, uint64_t max_bytes, uint64_t *remaining,
                     GError **errp)
{
    bool ok;

    if (!svm_api_enter(p, errp)) {
        return false;
    }
    pthread_mutex_lock(&p->flush_lock);
    ok = flush(p, max_bytes, remaining, errp);
    pthread_mutex_unlock(&p->flush_lock);
    svm_api_exit(p);
    return ok;
}

/* A server marked down cannot take the final flush: say so at once. */
static bool servers_up(SvmPager *p, GError **errp)
{
    for (unsigned i = 0; i < p->nservers; i++) {
        if (atomic_load(&p->servers[i].down)) {
            g_set_error(errp, SVM_PAGER_ERROR, EHOSTUNREACH,
                        "memory server %s is unreachable: %" PRIu64 " dirty "
                        "bytes cannot be flushed", p->servers[i].name,
                        svm_pager_dirty_bytes(p));
            return false;
        }
    }
    return true;
}

static bool flush_all(SvmPager *p, GError **errp)
{
    uint64_t deadline = svm_now_ns() + FLUSH_ALL_TIMEOUT_NS;
    uint64_t left = 0;

    do {
        g_autoptr(GError) err = NULL;

        if (!servers_up(p, errp)) {
            return false;
        }
        if (!flush(p, 0, &left, &err)) {
            /* a server that stopped answering is the reason to give */
            if (err->code == ESTALE || servers_up(p, errp)) {
                g_propagate_error(errp, g_steal_pointer(&err));
            }
            return false;
        }
        if (left == 0) {
            return true;
        }
        /* pages the evictor holds are written back by it; look again */
        g_usleep(1000);
    } while (svm_now_ns() < deadline);
    g_set_error(errp, SVM_PAGER_ERROR, ETIMEDOUT,
                "%" PRIu64 " dirty bytes still not flushed after 60 s (is the "
                "guest really stopped?)", left);
    return false;
}

bool svm_pager_flush_all(SvmPager *p, GError **errp)
{
    bool ok;

    if (!svm_api_enter(p, errp)) {
        return false;
    }
    pthread_mutex_lock(&p->flush_lock);
    ok = flush_all(p, errp);
    pthread_mutex_unlock(&p->flush_lock);
    svm_api_exit(p);
    return ok;
}

static uint8_t *bitmap_of(SvmPager *p, size_t *len, uint8_t mask)
{
    uint8_t *bits;

    *len = (p->npages + 7) / 8;
    bits = g_malloc0(*len);
    for (uint64_t i = 0; i < p->npages; i++) {
        uint8_t s = svm_pt_get(&p->pt, i);

        if ((s & mask) || (mask == PT_WHERE_MASK && svm_pt_resident(s))) {
            bits[i / 8] |= 1u << (i % 8);
        }
    }
    return bits;
}

uint8_t *svm_pager_written_bitmap(SvmPager *p, size_t *len)
{
    return bitmap_of(p, len, PT_ONSERVER | PT_DIRTY);
}

uint8_t *svm_pager_resident_bitmap(SvmPager *p, size_t *len)
{
    return bitmap_of(p, len, PT_WHERE_MASK);
}

/* Own page i, waiting for whoever has it (the guest is stopped: short). */
static uint8_t own_page(SvmPager *p, uint64_t i)
{
    uint8_t s;

    while (!svm_pt_try_own(&p->pt, i, &s, false)) {
        g_usleep(100);
    }
    return s;
}

bool svm_pager_set_written(SvmPager *p, const uint8_t *bits, size_t len,
                           GError **errp)
{
    uint64_t zero = 0;

    if (len != (p->npages + 7) / 8) {
        g_set_error(errp, SVM_PAGER_ERROR, EINVAL,
                    "written-pages bitmap is %zu bytes, expected %" PRIu64
                    " for %" PRIu64 " pages (RAM sizes differ?)", len,
                    (p->npages + 7) / 8, p->npages);
        return false;
    }
    if (atomic_load(&p->owner)) {
        g_set_error(errp, SVM_PAGER_ERROR, EBUSY,
                    "the written-pages bitmap applies to an incoming pager "
                    "before it owns the pages");
        return false;
    }
    for (uint64_t i = 0; i < p->npages; i++) {
        uint8_t s;

        if (bits[i / 8] & (1u << (i % 8))) {
            continue;
        }
        s = own_page(p, i);
        if (svm_pt_where(s) == PT_ABSENT && (s & PT_ONSERVER)) {
            s &= ~PT_ONSERVER;
            svm_stat_sub(&p->remote, 1);
            zero++;
        }
        svm_pager_release(p, i, s);
    }
    svm_pager_log(p, "%" PRIu64 " of %" PRIu64 " pages were never written by "
                  "the source: filled locally with zeroes", zero, p->npages);
    return true;
}

/*
 * Forget what is cached here: before the hand-over the old owner may still
 * have changed these pages on the servers.
 */
static void drop_local_pages(SvmPager *p)
{
    uint64_t dropped = 0;

    for (uint64_t i = 0; i < p->npages; i++) {
        uint8_t s = svm_pt_get(&p->pt, i);

        if (!svm_pt_resident(s) && !(s & PT_BUSY)) {
            continue;
        }
        s = own_page(p, i);
        if (!svm_pt_resident(s)) {
            svm_pager_release(p, i, s);
            continue;
        }
        if (s & PT_DIRTY) {
            svm_pager_log(p, "page %" PRIu64 " was written here before the "
                          "hand-over; the source's copy wins", i);
            svm_stat_sub(&p->dirty, 1);
        }
        svm_punch(p, i, 1);
        svm_stat_sub(&p->resident, 1);
        if (s & PT_ONSERVER) {
            svm_stat_add(&p->remote, 1);
        }
        dropped++;
        svm_pager_release(p, i, PT_ABSENT | (s & PT_ONSERVER));
    }
    if (dropped) {
        svm_pager_log(p, "dropped %" PRIu64 " pages cached before the hand-over",
                      dropped);
    }
}

/* Attach every server with a new epoch; the old connections stay open until stop. */
static bool attach_new_epoch(SvmPager *p, uint64_t min_epoch, bool keep_old,
                             GError **errp)
{
    g_autofree SvmMemClient **fresh = g_new0(SvmMemClient *, p->nservers + 1);
    uint64_t epoch = min_epoch;

    for (unsigned i = 0; i < p->nservers; i++) {
        if (!svm_memclient_connected(p->servers[i].client)) {
            g_set_error(errp, SVM_PAGER_ERROR, EHOSTUNREACH,
                        "memory server %s is unreachable: not taking over "
                        "the VM's pages", p->servers[i].name);
            return false;
        }
        epoch = MAX(epoch, svm_memclient_namespace_epoch(p->servers[i].client));
    }
    epoch++;
    /* From the first ATTACH on, the old owner is fenced on that server. */
    for (unsigned i = 0; i < p->nservers; i++) {
        fresh[i] = svm_remote_client_new(p, i, epoch, errp);
        if (!fresh[i]) {
            g_prefix_error(errp, "taking over with owner epoch %" PRIu64
                           " (%u of %u servers switched): ", epoch, i,
                           p->nservers);
            for (unsigned j = 0; j < i; j++) {
                svm_memclient_close(fresh[j]);
            }
            return false;
        }
    }
    for (unsigned i = 0; i < p->nservers; i++) {
        SvmServer *s = &p->servers[i];
        SvmMemClient *old = s->client;

        /* readers racing with the swap use either; both may read */
        s->client = fresh[i];
        if (keep_old) {
            if (s->old_client) {
                svm_memclient_close(s->old_client);
            }
            s->old_client = old;
        } else {
            svm_memclient_close(old);
        }
    }
    atomic_store(&p->epoch, epoch);
    atomic_store(&p->owner, true);
    return true;
}

bool svm_pager_take_ownership(SvmPager *p, uint64_t min_epoch, GError **errp)
{
    if (atomic_load(&p->owner)) {
        g_set_error(errp, SVM_PAGER_ERROR, EALREADY,
                    "this pager already owns the VM's pages (epoch %" PRIu64 ")",
                    (uint64_t)p->epoch);
        return false;
    }
    drop_local_pages(p);
    /* fault threads may be reading through the old clients: keep them open */
    if (!attach_new_epoch(p, min_epoch, true, errp)) {
        return false;
    }
    atomic_store(&p->fenced, false);
    svm_pager_log(p, "took ownership with epoch %" PRIu64, (uint64_t)p->epoch);
    return true;
}

bool svm_migrate_claim(SvmPager *p, const SvmPagerConfig *cfg, GError **errp)
{
    if (cfg->incoming) {
        atomic_store(&p->owner, false);
        atomic_store(&p->epoch, 0);
        return true;
    }
    if (cfg->owner_epoch || p->nservers == 0) {
        atomic_store(&p->epoch, cfg->owner_epoch);
        atomic_store(&p->owner, true);
        return true;
    }
    /* nothing ran yet: the probe connections can go right away */
    return attach_new_epoch(p, 0, false, errp);
}

/*
 * The warm-up runs in its own thread: the destination resumes the guest at
 * once and its demand faults go first.  Warm reads are issued a batch at a
 * time with at most SVM_WARM_INFLIGHT pages on the wire, so a demand read
 * never queues behind more than that; they only use free budget and stop
 * when it is full (the rest of the hot set comes on demand).
 */
/*
 * Queue one batch of hot pages once few enough warm reads are on the wire.
 * False: stop warming (stopping, or the budget's free room is used up).
 */
static bool warm_batch(SvmPager *p, const uint64_t *pages, unsigned n,
                       uint64_t *queued, bool *full)
{
    uint64_t room;

    pthread_mutex_lock(&p->room_lock);
    while (atomic_load(&p->pf_inflight) >= SVM_WARM_INFLIGHT &&
           !atomic_load(&p->stopping)) {
        pthread_cond_wait(&p->warm_cond, &p->room_lock);
    }
    pthread_mutex_unlock(&p->room_lock);
    if (atomic_load(&p->stopping)) {
        return false;
    }
    /* only into room the evictor leaves alone: warm pages must not evict warm pages */
    room = svm_budget_room(p);
    *full = n > room;
    *queued += svm_prefetch_pages(p, pages, MIN(n, room));
    return !*full;
}

static void *warm_thread(void *opaque)
{
    SvmPager *p = opaque;
    uint64_t pages[SVM_PREFETCH_BATCH], queued = 0, t0 = svm_now_ns();
    unsigned n = 0;
    bool full = false, go = true;

    svm_thread_lower_priority(p->service_nice, "pager warm-up thread");
    for (uint64_t i = 0; i < p->npages && go; i++) {
        if (p->warm_bits[i / 8] & (1u << (i % 8))) {
            pages[n++] = i;
        }
        if (n == SVM_PREFETCH_BATCH) {
            go = warm_batch(p, pages, n, &queued, &full);
            n = 0;
        }
    }
    if (go && n) {
        warm_batch(p, pages, n, &queued, &full);
    }
    svm_pager_log(p, "warm-up: %" PRIu64 " hot pages requested in %" PRIu64
                  " ms%s", queued, (svm_now_ns() - t0) / 1000000,
                  full ? "; budget full, the rest comes on demand" : "");
    return NULL;
}

void svm_warm_wake(SvmPager *p)
{
    if (atomic_load(&p->warm_started)) {
        pthread_mutex_lock(&p->room_lock);
        pthread_cond_broadcast(&p->warm_cond);
        pthread_mutex_unlock(&p->room_lock);
    }
}

void svm_warm_stop(SvmPager *p)
{
    if (atomic_load(&p->warm_started)) {
        svm_warm_wake(p);
        pthread_join(p->warm_thread, NULL);
        atomic_store(&p->warm_started, false);
    }
    g_clear_pointer(&p->warm_bits, g_free);
}

uint64_t svm_pager_warm(SvmPager *p, const uint8_t *bits, size_t len)
{
    uint64_t hot = 0, room;

    if (len != (p->npages + 7) / 8 || p->nservers == 0 ||
        atomic_load(&p->warm_started)) {
        return 0;
    }
    for (uint64_t i = 0; i < p->npages; i++) {
        hot += (bits[i / 8] >> (i % 8)) & 1;
    }
    room = svm_budget_room(p);
    if (hot == 0 || room == 0) {
        return 0;
    }
    p->warm_bits = g_memdup2(bits, len);
    /* set first: the thread's first completions must find it to wake it */
    atomic_store(&p->warm_started, true);
    if (pthread_create(&p->warm_thread, NULL, warm_thread, p) != 0) {
        atomic_store(&p->warm_started, false);
        svm_pager_log(p, "warm-up: cannot start its thread; pages come on demand");
        g_clear_pointer(&p->warm_bits, g_free);
        return 0;
    }
    pthread_setname_np(p->warm_thread, "svm-warm");
    return MIN(hot, room);
}
