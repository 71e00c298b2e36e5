/*
 * splitvm-memserver: holds the pages of split VMs.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "config.h"
#include "server.h"
#include "session.h"
#include "statscli.h"

static const char summary[] =
    "Serves the remote pages of split VMs over the splitvm wire protocol.\n"
    "\n"
    "The secrets file (GKeyFile) names the VMs allowed to connect:\n"
    "  [vm NAME]       secret=TEXT or secret-hex=HEX, optional quota=SIZE\n"
    "  [admin]         secret=... (for --stats without --vm)\n"
    "A config file may hold the same settings as the options in a [server]\n"
    "group (listen, capacity, backing, secrets, workers, transport,\n"
    "prealloc = true|false); options win.\n"
    "\n"
    "SIZE is bytes with an optional K, M, G or T suffix (binary).\n"
    "With --backing FILE, pages survive restarts (FILE and FILE.meta).\n"
    "SIGTERM or SIGINT shuts down cleanly (flushing a file backing).\n"
    "SIGHUP re-reads the secrets file: new VMs can connect, removed ones can no\n"
    "longer authenticate (sessions already open stay), new quotas apply to the\n"
    "next ATTACH.  A file with errors is reported and the old secrets are kept.";

/* SIGHUP: a rack adds a VM's secret and signals us instead of restarting. */
static void reload_secrets(SvmServerCtx *sctx, const char *path)
{
    GError *err = NULL;
    SvmSecrets *fresh = svm_secrets_load(path, &err);
    if (!fresh) {
        g_warning("SIGHUP: keeping the old secrets: %s", err->message);
        g_error_free(err);
        return;
    }
    unsigned nvms = g_hash_table_size(fresh->vms);
    svm_secrets_free(svm_server_ctx_swap_secrets(sctx, fresh));
    g_message("SIGHUP: reloaded %s (%u VMs known)", path, nvms);
}

int main(int argc, char **argv)
{
    g_autofree char *listen = NULL, *capacity = NULL, *backing = NULL, *secrets = NULL;
    g_autofree char *config = NULL, *stats = NULL, *vm = NULL, *transport = NULL;
    gint workers = 0, timeout_ms = 5000;
    gboolean quiet = FALSE, prealloc = FALSE;
    GOptionEntry entries[] = {
        { "listen", 'l', 0, G_OPTION_ARG_STRING, &listen, "Address to listen on", "HOST:PORT" },
        { "capacity", 'c', 0, G_OPTION_ARG_STRING, &capacity, "Pool size", "SIZE" },
        { "backing", 'b', 0, G_OPTION_ARG_STRING, &backing,
          "Page pool: anon (default), hugetlbfs or a file path", "anon|hugetlbfs|FILE" },
        { "secrets", 's', 0, G_OPTION_ARG_FILENAME, &secrets, "VM secrets file", "FILE" },
        { "config", 'f', 0, G_OPTION_ARG_FILENAME, &config, "Config file ([server] group)",
          "FILE" },
        { "transport", 't', 0, G_OPTION_ARG_STRING, &transport,
          "tcp (default) or rdma (UCX; see docs/rdma.md)", "tcp|rdma" },
        { "workers", 'w', 0, G_OPTION_ARG_INT, &workers,
          "Worker threads, one io_uring each (default: number of CPUs, at most 4)", "N" },
        { "prealloc", 0, 0, G_OPTION_ARG_NONE, &prealloc,
          "Back the whole pool at start (memory populated, file blocks reserved) and "
          "keep it: refuse to start without it, never fault or run short while serving",
          NULL },
        { "quiet", 'q', 0, G_OPTION_ARG_NONE, &quiet, "Log no per-connection messages", NULL },
        { "stats", 0, 0, G_OPTION_ARG_STRING, &stats,
          "Print the statistics of the server at ADDR and exit (needs --secrets)", "ADDR" },
        { "vm", 0, 0, G_OPTION_ARG_STRING, &vm,
          "With --stats: authenticate as this VM instead of the admin", "ID" },
        { "timeout-ms", 0, 0, G_OPTION_ARG_INT, &timeout_ms, "With --stats: timeout", "MS" },
        { NULL },
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("- splitvm memory server");
    g_autoptr(GError) err = NULL;

    g_option_context_add_main_entries(ctx, entries, NULL);
    g_option_context_set_summary(ctx, summary);
    if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
        fprintf(stderr, "splitvm-memserver: %s (see --help)\n", err->message);
        return 2;
    }
    if (argc > 1) {
        fprintf(stderr, "splitvm-memserver: unexpected argument '%s' (see --help)\n", argv[1]);
        return 2;
    }

    SvmServerConfig cfg = { 0 };
    cfg.listen = g_strdup(listen);
    cfg.secrets_path = g_strdup(secrets);
    cfg.workers = workers > 0 ? (unsigned)workers : 0;
    cfg.transport = g_strdup(transport);
    cfg.prealloc = prealloc;
    if (workers < 0 || workers > 64) {
        fprintf(stderr, "splitvm-memserver: --workers %d is not in 1..64\n", workers);
        return 2;
    }
    if (capacity && !svm_parse_size(capacity, &cfg.capacity)) {
        fprintf(stderr, "splitvm-memserver: --capacity '%s' is not a size (like 512M, 4G)\n",
                capacity);
        return 2;
    }
    if (backing) {
        svm_parse_backing(backing, &cfg.backing, &cfg.backing_path);
    }
    if (config && !svm_server_config_load(config, &cfg, &err)) {
        fprintf(stderr, "splitvm-memserver: %s\n", err->message);
        return 2;
    }

    if (stats) {
        if (!cfg.secrets_path) {
            fprintf(stderr, "splitvm-memserver: --stats needs --secrets FILE\n");
            return 2;
        }
        bool ok = svm_statscli_run(stats, cfg.secrets_path, vm,
                                   timeout_ms > 0 ? (unsigned)timeout_ms : 5000, &err);
        svm_server_config_clear(&cfg);
        if (!ok) {
            fprintf(stderr, "splitvm-memserver: %s\n", err->message);
            return 1;
        }
        return 0;
    }

    if (!cfg.listen || !cfg.capacity || !cfg.secrets_path) {
        fprintf(stderr, "splitvm-memserver: --listen, --capacity and --secrets are required "
                "(as options or in --config); see --help\n");
        svm_server_config_clear(&cfg);
        return 2;
    }
    if (!cfg.workers) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg.workers = n < 1 ? 1 : n > 4 ? 4 : (unsigned)n;
    }

    g_autoptr(SvmSecrets) sec = svm_secrets_load(cfg.secrets_path, &err);
    if (!sec) {
        fprintf(stderr, "splitvm-memserver: %s\n", err->message);
        return 1;
    }
    const SvmServerTransportOps *tops =
        svm_server_transport_find(cfg.transport ? cfg.transport : "tcp");
    if (!tops) {
        fprintf(stderr, "splitvm-memserver: unknown transport '%s' (expected tcp or rdma)\n",
                cfg.transport);
        return 2;
    }
    /* A transport may have to provide the pool (rdma over shared memory). */
    void *tpool = NULL;
    size_t tpool_len = svm_store_pool_bytes(cfg.capacity);
    if (tops->pool_alloc && cfg.backing == SVM_BACKING_ANON && tpool_len) {
        tpool = tops->pool_alloc(tpool_len, &err);
        if (!tpool && err) {
            fprintf(stderr, "splitvm-memserver: %s\n", err->message);
            return 1;
        }
    }
    SvmStore *store = tpool ? svm_store_open_in(cfg.capacity, tpool, &err)
                            : svm_store_open(cfg.capacity, cfg.backing, cfg.backing_path, &err);
    if (!store) {
        fprintf(stderr, "splitvm-memserver: %s\n", err->message);
        if (tpool) {
            tops->pool_free(tpool, tpool_len);
        }
        return 1;
    }
    if (cfg.prealloc && !svm_store_prealloc(store, &err)) {
        fprintf(stderr, "splitvm-memserver: --prealloc: %s\n", err->message);
        svm_store_close(store);
        if (tpool) {
            tops->pool_free(tpool, tpool_len);
        }
        return 1;
    }

    /* Signals go to the main thread's sigwait only. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    SvmServerCtx sctx = {
        .store = store,
        .secrets = g_steal_pointer(&sec),
        .secrets_lock = PTHREAD_RWLOCK_INITIALIZER,
        .start_ms = (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000,
        .quiet = quiet,
    };
    SvmServer *srv = svm_server_start(&sctx, tops->name, cfg.listen, cfg.workers, &err);
    if (!srv) {
        fprintf(stderr, "splitvm-memserver: %s\n", err->message);
        svm_store_close(store);
        if (tpool) {
            tops->pool_free(tpool, tpool_len);
        }
        return 1;
    }
    SvmStoreInfo si;
    svm_store_info(store, &si);
    g_message("listening on %s:%s (port %d), capacity %" G_GUINT64_FORMAT " pages%s, %s backing%s%s%s, "
              "%u workers, %u VMs known, %" G_GUINT64_FORMAT " pages stored",
              tops->name, cfg.listen, svm_server_port(srv), si.capacity_pages,
              si.preallocated ? " (preallocated)" : "",
              cfg.backing == SVM_BACKING_FILE ? "file" :
              cfg.backing == SVM_BACKING_HUGETLB ? "hugetlbfs" : "anonymous",
              cfg.backing_path ? " " : "", cfg.backing_path ? cfg.backing_path : "",
              cfg.backing == SVM_BACKING_ANON && !tpool ?
              (si.huge_pages ? " (transparent huge pages)" : " (4 KiB pages: no THP)") : "",
              cfg.workers, g_hash_table_size(sctx.secrets->vms), si.pages_stored);

    int sig;
    do {
        sigwait(&sigs, &sig);
        if (sig == SIGHUP) {
            reload_secrets(&sctx, cfg.secrets_path);
        }
    } while (sig == SIGHUP);
    g_message("%s: shutting down", strsignal(sig));
    svm_server_stop(srv);
    GError *ferr = NULL;
    int rc = 0;
    if (!svm_store_flush(store, &ferr)) {
        fprintf(stderr, "splitvm-memserver: %s\n", ferr->message);
        g_error_free(ferr);
        rc = 1;
    }
    svm_store_close(store);
    if (tpool) {
        tops->pool_free(tpool, tpool_len);
    }
    svm_secrets_free(sctx.secrets);
    svm_server_config_clear(&cfg);
    g_message("stopped");
    return rc;
}
