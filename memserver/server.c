/*
 * Worker threads: each runs one poll group of the transport (for tcp: one
 * io_uring serving the connections that worker accepted).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <pthread.h>
#include "server.h"

struct SvmServer {
    const SvmServerTransportOps *ops;
    SvmServerTransport *t;
    SvmServerHooks hooks;
    unsigned nworkers, ngroups;
    SvmPollGroup **groups;
    pthread_t *threads;
};

typedef struct WorkerArg {
    SvmServer *srv;
    unsigned index;
} WorkerArg;

static void *worker_run(void *opaque)
{
    WorkerArg *a = opaque;
    SvmServer *srv = a->srv;
    unsigned i = a->index;
    g_free(a);
    int rc = srv->ops->poll_group_run(srv->groups[i]);
    if (rc < 0) {
        g_critical("worker %u stopped: %s", i, g_strerror(-rc));
    }
    return NULL;
}

/* One-sided transports revoke their keys to an extent when it is released. */
static void watch_extents(void *opaque, void (*released)(void *t, uint64_t extent), void *t)
{
    svm_store_set_extent_hook(opaque, released, t);
}

SvmServer *svm_server_start(SvmServerCtx *ctx, const char *transport, const char *listen,
                            unsigned workers, GError **errp)
{
    const SvmServerTransportOps *ops = svm_server_transport_find(transport);
    if (!ops) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "unknown transport '%s'", transport);
        return NULL;
    }
    SvmServer *srv = g_new0(SvmServer, 1);
    srv->ops = ops;
    svm_session_hooks(ctx, &srv->hooks);
    SvmServerPool pool = {
        .extent_len = (size_t)SVM_EXTENT_PAGES * SVM_WIRE_PAGE_SIZE,
        .watch_extents = watch_extents,
        .opaque = ctx->store,
    };
    svm_store_pool(ctx->store, &pool.base, &pool.len);
    srv->t = ops->create(&srv->hooks, &pool, errp);
    if (!srv->t || !ops->listen(srv->t, listen, errp)) {
        goto fail;
    }
    srv->groups = g_new0(SvmPollGroup *, workers);
    srv->threads = g_new0(pthread_t, workers);
    for (unsigned i = 0; i < workers; i++) {
        srv->groups[i] = ops->poll_group_create(srv->t, errp);
        if (!srv->groups[i]) {
            goto fail;
        }
        srv->ngroups++;
    }
    for (unsigned i = 0; i < workers; i++) {
        WorkerArg *a = g_new0(WorkerArg, 1);
        a->srv = srv;
        a->index = i;
        pthread_create(&srv->threads[i], NULL, worker_run, a);
        srv->nworkers++;
    }
    return srv;

fail:
    svm_server_stop(srv);
    return NULL;
}

int svm_server_port(SvmServer *srv)
{
    return srv->ops->bound_port(srv->t);
}

void svm_server_stop(SvmServer *srv)
{
    if (!srv) {
        return;
    }
    for (unsigned i = 0; i < srv->nworkers; i++) {
        srv->ops->poll_group_stop(srv->groups[i]);
    }
    for (unsigned i = 0; i < srv->nworkers; i++) {
        pthread_join(srv->threads[i], NULL);
    }
    for (unsigned i = 0; i < srv->ngroups; i++) {
        srv->ops->poll_group_destroy(srv->groups[i]);
    }
    if (srv->t) {
        srv->ops->destroy(srv->t);
    }
    g_free(srv->groups);
    g_free(srv->threads);
    g_free(srv);
}
