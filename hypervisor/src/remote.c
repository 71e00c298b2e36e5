/*
 * Connections to the memory servers, striping, and the lost/back state of
 * each server as reported to the caller.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "pager-internal.h"

#define SVM_REQUEST_TIMEOUT_MS 5000
#define SVM_RECONNECT_MS 2000

SvmServer *svm_remote_server(SvmPager *p, uint64_t page)
{
    return &p->servers[svm_stripe_server(&p->stripe, page)];
}

void svm_server_report(SvmServer *s, bool up, const char *reason)
{
    SvmPager *p = s->pager;

    pthread_mutex_lock(&p->event_lock);
    /*
     * A fenced pager's reads may still succeed; that must not resume a
     * guest whose writes are refused (it would pause again at the next
     * write-back, and flap).
     */
    if (atomic_load(&s->down) == !up || (up && atomic_load(&p->fenced))) {
        pthread_mutex_unlock(&p->event_lock);
        return;
    }
    if (!up) {
        /* before `down`: a ticket of this outage is never taken while up */
        atomic_fetch_add(&s->outages, 1);
    }
    atomic_store(&s->down, !up);
    svm_pager_log(p, "memory server %s %s: %s", s->name,
                  up ? "is back" : "lost", reason);
    if (p->event_cb) {
        SvmPagerEvent ev = {
            .kind = up ? SVM_PAGER_EVENT_SERVER_BACK : SVM_PAGER_EVENT_SERVER_LOST,
            .server = s->name,
            .reason = reason,
        };
        p->event_cb(p->event_opaque, &ev);
    }
    pthread_mutex_unlock(&p->event_lock);
    if (up) {
        svm_retry_kick(p);
        svm_evict_kick(p);
    }
}

static void client_state_cb(void *opaque, SvmMemClient *c, bool connected)
{
    SvmServer *s = opaque;

    if (atomic_load(&s->pager->stopping)) {
        return;     /* our own close, not an outage */
    }
    svm_server_report(s, connected, connected ? "reconnected" : "connection lost");
}

/* Classify a failed request: anything but a bug in the request means "lost". */
static void request_failed(SvmServer *s, const char *what, int ret)
{
    char reason[160];

    if (ret == -ERANGE || ret == -EINVAL) {
        svm_pager_log(s->pager, "memory server %s rejected %s: %s", s->name,
                      what, strerror(-ret));
    }
    if (ret == -ESTALE) {
        /*
         * Not an outage: another pager owns the VM's pages now.  This one
         * must not run on with them, so it is reported like a lost server
         * (QEMU keeps the guest paused), with the reason.
         */
        atomic_store(&s->pager->fenced, true);
        snprintf(reason, sizeof(reason), "%s refused: fenced, another pager "
                 "owns the VM's pages now", what);
    } else {
        snprintf(reason, sizeof(reason), "%s failed: %s", what, strerror(-ret));
    }
    svm_server_report(s, false, reason);
}

/*
 * A request succeeded: the server answers again if it was lost, but only
 * if the request was sent during this outage.  One answered before the
 * server went away, whose completion is handled after the loss was
 * reported (write-backs are released later, on the evictor's thread),
 * proves nothing: it would resume a guest whose server is still gone.
 */
void svm_remote_answered(SvmServer *s, uint64_t ticket)
{
    if (atomic_load(&s->down) && ticket == atomic_load(&s->outages)) {
        svm_server_report(s, true, "answers again");
    }
}

int svm_remote_read(SvmPager *p, uint64_t page, void *buf)
{
    SvmServer *s = svm_remote_server(p, page);
    uint64_t spage = svm_stripe_server_page(&p->stripe, page);
    void *bufs[1] = { buf };
    uint64_t ticket = svm_remote_ticket(s);
    int ret = svm_memclient_read(s->client, &spage, 1, bufs);

    if (ret < 0) {
        request_failed(s, "read", ret);
        return ret;
    }
    svm_remote_answered(s, ticket);
    svm_stat_add(&p->bytes_in, SVM_PAGE);
    return 0;
}

void svm_remote_write_failed(SvmServer *s, int ret)
{
    request_failed(s, "write-back", ret);
}

int svm_remote_write_async(SvmPager *p, SvmServer *s, const uint64_t *pages,
                           unsigned n, const void *const *bufs,
                           SvmMemClientDone done, void *opaque)
{
    uint64_t spages[SVM_MAX_BATCH];

    g_assert(n <= SVM_MAX_BATCH);
    for (unsigned i = 0; i < n; i++) {
        spages[i] = svm_stripe_server_page(&p->stripe, pages[i]);
    }
    return svm_memclient_write_async(s->client, spages, n, bufs, done, opaque);
}

int svm_remote_read_async(SvmPager *p, SvmServer *s, const uint64_t *pages,
                          unsigned n, void *const *bufs, SvmMemClientDone done,
                          void *opaque)
{
    uint64_t spages[SVM_MAX_BATCH];

    for (unsigned i = 0; i < n; i++) {
        spages[i] = svm_stripe_server_page(&p->stripe, pages[i]);
    }
    return svm_memclient_read_async(s->client, spages, n, bufs, done, opaque);
}

/* "[tcp:|rdma:]HOST:PORT" -> transport + "HOST:PORT" */
static const char *split_transport(const char *spec, char **transport)
{
    if (g_str_has_prefix(spec, "tcp:")) {
        *transport = g_strdup("tcp");
        return spec + 4;
    }
    if (g_str_has_prefix(spec, "rdma:")) {
        *transport = g_strdup("rdma");
        return spec + 5;
    }
    *transport = g_strdup("tcp");
    return spec;
}

SvmMemClient *svm_remote_client_new(SvmPager *p, unsigned i, uint64_t epoch,
                                    GError **errp)
{
    SvmServer *s = &p->servers[i];
    g_autofree char *transport = NULL;
    const char *addr = split_transport(s->name, &transport);
    g_autoptr(GError) err = NULL;
    SvmMemClientConfig mc = {
        .address = addr,
        .transport = transport,
        .vm_id = p->vm_id,
        .secret = p->secret,
        .secret_len = p->secret_len,
        .npages = svm_stripe_server_npages(&p->stripe, i),
        .timeout_ms = SVM_REQUEST_TIMEOUT_MS,
        .reconnect_ms = SVM_RECONNECT_MS,
        .state_cb = client_state_cb,
        .state_opaque = s,
        .owner_epoch = epoch,
        .thread_nice = p->service_nice,
    };
    SvmMemClient *c = svm_memclient_connect(&mc, &err);

    if (!c) {
        g_set_error(errp, SVM_PAGER_ERROR, err ? err->code : ECONNREFUSED,
                    "memory server %s (%u of %u): %s", s->name, i + 1,
                    p->nservers, err ? err->message : "connect failed");
    }
    return c;
}

bool svm_remote_connect(SvmPager *p, const SvmPagerConfig *cfg, GError **errp)
{
    p->vm_id = g_strdup(cfg->vm_id);
    p->secret = g_memdup2(cfg->secret, cfg->secret_len);
    p->secret_len = cfg->secret_len;
    p->servers = g_new0(SvmServer, cfg->nservers ? cfg->nservers : 1);
    for (unsigned i = 0; i < cfg->nservers; i++) {
        SvmServer *s = &p->servers[i];

        s->pager = p;
        s->idx = i;
        s->name = g_strdup(cfg->servers[i]);
        /* an incoming pager attaches without an epoch until it takes over */
        s->client = svm_remote_client_new(p, i,
                                          cfg->incoming ? 0 : cfg->owner_epoch,
                                          errp);
        if (!s->client) {
            return false;
        }
    }
    return true;
}

void svm_remote_close(SvmPager *p)
{
    if (!p->servers) {
        return;
    }
    for (unsigned i = 0; i < p->nservers; i++) {
        if (p->servers[i].client) {
            svm_memclient_close(p->servers[i].client);
        }
        if (p->servers[i].old_client) {
            svm_memclient_close(p->servers[i].old_client);
        }
        g_free(p->servers[i].name);
    }
    g_free(p->servers);
    p->servers = NULL;
    g_free(p->vm_id);
    g_free(p->secret);
    p->vm_id = NULL;
    p->secret = NULL;
}
