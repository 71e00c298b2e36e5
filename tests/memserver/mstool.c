/*
 * mstool: drives a real splitvm-memserver through the client library for
 * the integration tests (tests/memserver/test_memserver.py).
 *
 *   mstool COMMAND --addr A --vm ID --secret S --npages N [options]
 *     connect                 connect + authenticate + attach, then close
 *     fill   --first F --count C --tag T     write pattern(T) pages
 *     check  --first F --count C --tag T     verify them (--tag 0: zeroes)
 *     free                    free the namespace
 *     stats                   print the VM's stats as key=value
 *     traffic --clients K --threads T --ops M --seed X
 *             random READ/WRITE/DISCARD batches (sync and async) from T
 *             threads over K connections, every read checked against an
 *             in-memory model; then a full read-back and a stats check.
 *
 * Exit status 0 on success; on failure prints "FAIL: ..." or, for an error
 * the test expects, "ERROR <errno-name>: message" and exits 3.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "splitvm/memclient.h"

static char *opt_addr, *opt_vm, *opt_secret;
static gint64 opt_npages = 4096, opt_first, opt_count = 1, opt_tag = 1;
static gint opt_clients = 2, opt_threads = 4, opt_ops = 2000, opt_seed = 1;
static gint opt_timeout = 5000, opt_reconnect = 5000, opt_stop_pid;

static uint64_t splitmix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Page contents for (tag, page, version); tag 0 is the zero page. */
static void pattern(uint64_t tag, uint64_t page, uint64_t version, uint8_t *buf)
{
    uint64_t *w = (uint64_t *)buf;
    if (!tag) {
        memset(buf, 0, SVM_PAGE_SIZE);
        return;
    }
    uint64_t seed = splitmix(tag * 0x1000003ull ^ page * 0x9e37ull ^ version);
    for (unsigned i = 0; i < SVM_PAGE_SIZE / 8; i++) {
        w[i] = seed + i;
    }
    w[0] = tag;
    w[1] = page;
    w[2] = version;
}

static const char *errname(int e)
{
    switch (e) {
    case ERANGE: return "ERANGE";
    case ENOSPC: return "ENOSPC";
    case EACCES: return "EACCES";
    case ETIMEDOUT: return "ETIMEDOUT";
    case ESTALE: return "ESTALE";
    default: return "OTHER";
    }
}

static SvmMemClient *connect_or_die(void)
{
    SvmMemClientConfig cfg = {
        .address = opt_addr, .vm_id = opt_vm,
        .secret = opt_secret, .secret_len = strlen(opt_secret),
        .npages = (uint64_t)opt_npages,
        .timeout_ms = (unsigned)opt_timeout, .reconnect_ms = (unsigned)opt_reconnect,
    };
    g_autoptr(GError) err = NULL;
    SvmMemClient *c = svm_memclient_connect(&cfg, &err);
    if (!c) {
        printf("ERROR %s: %s\n",
               g_error_matches(err, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED) ? "EACCES"
                                                                             : "CONNECT",
               err->message);
        exit(3);
    }
    return c;
}

static void resume_server(void)
{
    if (opt_stop_pid > 0) {
        kill(opt_stop_pid, SIGCONT);
    }
}

/* SIGSTOP is asynchronous: wait until every thread of pid is stopped. */
static bool wait_stopped(pid_t pid, unsigned timeout_ms)
{
    g_autofree char *taskdir = g_strdup_printf("/proc/%d/task", (int)pid);
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;

    while (g_get_monotonic_time() < deadline) {
        g_autoptr(GDir) d = g_dir_open(taskdir, 0, NULL);
        if (!d) {
            return false;
        }
        bool all_stopped = true;
        const char *tid;
        while (all_stopped && (tid = g_dir_read_name(d))) {
            g_autofree char *path = g_strdup_printf("%s/%s/stat", taskdir, tid);
            g_autofree char *stat = NULL;
            /* The state follows the ")" closing the command name. */
            const char *rp = g_file_get_contents(path, &stat, NULL, NULL) ?
                             strrchr(stat, ')') : NULL;
            all_stopped = rp && rp[1] == ' ' && (rp[2] == 'T' || rp[2] == 't');
        }
        if (all_stopped) {
            return true;
        }
        g_usleep(1000);
    }
    return false;
}

static int cmd_fill_check(bool fill)
{
    SvmMemClient *c = connect_or_die();
    gint64 t0 = g_get_monotonic_time();
    if (opt_stop_pid > 0) {
        /* A server that stops answering mid-session. */
        atexit(resume_server);
        if (kill(opt_stop_pid, SIGSTOP) < 0 || !wait_stopped(opt_stop_pid, 5000)) {
            printf("FAIL: cannot stop pid %d\n", opt_stop_pid);
            return 1;
        }
    }
    uint8_t *bufs = g_malloc(SVM_MAX_BATCH * SVM_PAGE_SIZE);
    uint8_t *expect = g_malloc(SVM_PAGE_SIZE);
    uint64_t pages[SVM_MAX_BATCH];
    void *ptrs[SVM_MAX_BATCH];

    for (uint64_t p = (uint64_t)opt_first; p < (uint64_t)(opt_first + opt_count);) {
        unsigned n = (unsigned)MIN((uint64_t)SVM_MAX_BATCH, (uint64_t)(opt_first + opt_count) - p);
        for (unsigned i = 0; i < n; i++) {
            pages[i] = p + i;
            ptrs[i] = bufs + (size_t)i * SVM_PAGE_SIZE;
            if (fill) {
                pattern((uint64_t)opt_tag, p + i, 0, ptrs[i]);
            }
        }
        int rc = fill ? svm_memclient_write(c, pages, n, (const void *const *)ptrs)
                      : svm_memclient_read(c, pages, n, ptrs);
        if (rc < 0) {
            printf("ERROR %s: %s of pages %" G_GUINT64_FORMAT "..%" G_GUINT64_FORMAT
                   ": %s after %" G_GINT64_FORMAT " ms\n", errname(-rc),
                   fill ? "write" : "read", p, p + n - 1, g_strerror(-rc),
                   (g_get_monotonic_time() - t0) / 1000);
            resume_server();
            svm_memclient_close(c);
            return 3;
        }
        if (!fill) {
            for (unsigned i = 0; i < n; i++) {
                pattern((uint64_t)opt_tag, p + i, 0, expect);
                if (memcmp(expect, ptrs[i], SVM_PAGE_SIZE)) {
                    uint64_t *w = ptrs[i];
                    printf("FAIL: page %" G_GUINT64_FORMAT " holds tag %" G_GUINT64_FORMAT
                           " page %" G_GUINT64_FORMAT ", expected tag %" G_GINT64_FORMAT "\n",
                           p + i, w[0], w[1], opt_tag);
                    svm_memclient_close(c);
                    return 1;
                }
            }
        }
        p += n;
    }
    svm_memclient_close(c);
    g_free(bufs);
    g_free(expect);
    printf("ok %s %" G_GINT64_FORMAT " pages\n", fill ? "filled" : "checked", opt_count);
    return 0;
}

/* ---- traffic ---- */

typedef struct Traffic {
    SvmMemClient **clients;
    uint64_t *version;          /* per page: 0 = never written/discarded */
    gint failures;
    uint64_t reads, writes, discards, async_ops;
} Traffic;

typedef struct ThreadArg {
    Traffic *t;
    unsigned tid;
} ThreadArg;

typedef struct AsyncWait {
    sem_t sem;
    int status;
} AsyncWait;

static void async_done(void *opaque, int status)
{
    AsyncWait *w = opaque;
    w->status = status;
    sem_post(&w->sem);
}

static void *traffic_thread(void *opaque)
{
    ThreadArg *a = opaque;
    Traffic *t = a->t;
    SvmMemClient *c = t->clients[a->tid % (unsigned)opt_clients];
    uint64_t rng = splitmix((uint64_t)opt_seed * 1000 + a->tid);
    uint8_t *bufs = g_malloc(SVM_MAX_BATCH * SVM_PAGE_SIZE);
    uint8_t *expect = g_malloc(SVM_PAGE_SIZE);
    uint64_t pages[SVM_MAX_BATCH];
    void *ptrs[SVM_MAX_BATCH];
    /* Thread tid owns the pages with page % threads == tid, so the model
     * is exact even though the threads run concurrently. */
    uint64_t owned = (uint64_t)opt_npages / (uint64_t)opt_threads;
    AsyncWait w;
    sem_init(&w.sem, 0, 0);

    for (int op = 0; op < opt_ops && !g_atomic_int_get(&t->failures); op++) {
        rng = splitmix(rng);
        unsigned kind = rng % 10;                       /* 0-3 read, 4-7 write, 8-9 discard */
        unsigned n = 1 + (unsigned)((rng >> 8) % (rng & 0x100 ? SVM_MAX_BATCH : 4));
        if (n > owned) {
            n = (unsigned)owned;
        }
        bool use_async = (rng >> 20) & 1;
        for (unsigned i = 0; i < n; i++) {
            bool dup;
            do {
                rng = splitmix(rng);
                pages[i] = (rng % owned) * (uint64_t)opt_threads + a->tid;
                dup = false;
                for (unsigned j = 0; j < i; j++) {
                    dup |= pages[j] == pages[i];
                }
            } while (dup);
            ptrs[i] = bufs + (size_t)i * SVM_PAGE_SIZE;
        }
        int rc;
        if (kind < 4) {
            if (use_async) {
                rc = svm_memclient_read_async(c, pages, n, ptrs, async_done, &w);
                if (rc == 0) {
                    sem_wait(&w.sem);
                    rc = w.status;
                    t->async_ops++;
                }
            } else {
                rc = svm_memclient_read(c, pages, n, ptrs);
            }
            t->reads++;
            for (unsigned i = 0; i < n && rc == 0; i++) {
                uint64_t v = t->version[pages[i]];
                pattern(v ? 7 : 0, pages[i], v, expect);
                if (memcmp(expect, ptrs[i], SVM_PAGE_SIZE)) {
                    printf("FAIL: thread %u: page %" G_GUINT64_FORMAT " version %"
                           G_GUINT64_FORMAT " read back wrong (holds page %" G_GUINT64_FORMAT
                           " version %" G_GUINT64_FORMAT ")\n", a->tid, pages[i], v,
                           ((uint64_t *)ptrs[i])[1], ((uint64_t *)ptrs[i])[2]);
                    g_atomic_int_inc(&t->failures);
                }
            }
        } else if (kind < 8) {
            for (unsigned i = 0; i < n; i++) {
                pattern(7, pages[i], t->version[pages[i]] + 1, ptrs[i]);
            }
            if (use_async) {
                rc = svm_memclient_write_async(c, pages, n, (const void *const *)ptrs,
                                               async_done, &w);
                if (rc == 0) {
                    sem_wait(&w.sem);
                    rc = w.status;
                    t->async_ops++;
                }
            } else {
                rc = svm_memclient_write(c, pages, n, (const void *const *)ptrs);
            }
            t->writes++;
            for (unsigned i = 0; i < n && rc == 0; i++) {
                t->version[pages[i]]++;
            }
        } else {
            rc = svm_memclient_discard(c, pages, n);
            t->discards++;
            for (unsigned i = 0; i < n && rc == 0; i++) {
                t->version[pages[i]] = 0;
            }
        }
        if (rc < 0) {
            printf("FAIL: thread %u op %d: %s\n", a->tid, op, g_strerror(-rc));
            g_atomic_int_inc(&t->failures);
        }
    }
    sem_destroy(&w.sem);
    g_free(bufs);
    g_free(expect);
    return NULL;
}

static int cmd_traffic(void)
{
    Traffic t = { 0 };
    t.clients = g_new0(SvmMemClient *, opt_clients);
    t.version = g_new0(uint64_t, opt_npages);
    for (int i = 0; i < opt_clients; i++) {
        t.clients[i] = connect_or_die();
    }
    /* The model starts empty, so must the namespace. */
    g_autoptr(GError) ferr = NULL;
    if (!svm_memclient_free_namespace(t.clients[0], &ferr)) {
        printf("FAIL: free: %s\n", ferr->message);
        return 1;
    }
    pthread_t th[opt_threads];
    ThreadArg args[opt_threads];
    for (int i = 0; i < opt_threads; i++) {
        args[i] = (ThreadArg) { .t = &t, .tid = (unsigned)i };
        pthread_create(&th[i], NULL, traffic_thread, &args[i]);
    }
    for (int i = 0; i < opt_threads; i++) {
        pthread_join(th[i], NULL);
    }
    if (t.failures) {
        return 1;
    }
    /* Read everything back through one client and count stored pages. */
    uint64_t stored = 0;
    uint8_t *buf = g_malloc(SVM_PAGE_SIZE), *expect = g_malloc(SVM_PAGE_SIZE);
    uint64_t owned = (uint64_t)opt_npages / (uint64_t)opt_threads;
    for (uint64_t p = 0; p < owned * (uint64_t)opt_threads; p++) {
        void *ptr = buf;
        int rc = svm_memclient_read(t.clients[0], &p, 1, &ptr);
        uint64_t v = t.version[p];
        stored += v != 0;
        pattern(v ? 7 : 0, p, v, expect);
        if (rc < 0 || memcmp(buf, expect, SVM_PAGE_SIZE)) {
            printf("FAIL: final read-back of page %" G_GUINT64_FORMAT ": %s\n", p,
                   rc < 0 ? g_strerror(-rc) : "wrong contents");
            return 1;
        }
    }
    SvmMemServerStats st;
    g_autoptr(GError) err = NULL;
    if (!svm_memclient_stats(t.clients[0], &st, &err)) {
        printf("FAIL: stats: %s\n", err->message);
        return 1;
    }
    if (st.ns_pages_stored != stored) {
        printf("FAIL: server says %" G_GUINT64_FORMAT " pages stored, model says %"
               G_GUINT64_FORMAT "\n", st.ns_pages_stored, stored);
        return 1;
    }
    for (int i = 0; i < opt_clients; i++) {
        svm_memclient_close(t.clients[i]);
    }
    printf("ok traffic: %" G_GUINT64_FORMAT " reads, %" G_GUINT64_FORMAT " writes, %"
           G_GUINT64_FORMAT " discards (%" G_GUINT64_FORMAT " async), %" G_GUINT64_FORMAT
           " pages stored\n", t.reads, t.writes, t.discards, t.async_ops, stored);
    return 0;
}

int main(int argc, char **argv)
{
    GOptionEntry entries[] = {
        { "addr", 0, 0, G_OPTION_ARG_STRING, &opt_addr, "server", "HOST:PORT" },
        { "vm", 0, 0, G_OPTION_ARG_STRING, &opt_vm, "VM id", "ID" },
        { "secret", 0, 0, G_OPTION_ARG_STRING, &opt_secret, "secret", "S" },
        { "npages", 0, 0, G_OPTION_ARG_INT64, &opt_npages, "namespace size", "N" },
        { "first", 0, 0, G_OPTION_ARG_INT64, &opt_first, "first page", "F" },
        { "count", 0, 0, G_OPTION_ARG_INT64, &opt_count, "pages", "C" },
        { "tag", 0, 0, G_OPTION_ARG_INT64, &opt_tag, "pattern tag (0 = zeroes)", "T" },
        { "clients", 0, 0, G_OPTION_ARG_INT, &opt_clients, "connections", "K" },
        { "threads", 0, 0, G_OPTION_ARG_INT, &opt_threads, "threads", "T" },
        { "ops", 0, 0, G_OPTION_ARG_INT, &opt_ops, "operations per thread", "M" },
        { "seed", 0, 0, G_OPTION_ARG_INT, &opt_seed, "random seed", "X" },
        { "timeout-ms", 0, 0, G_OPTION_ARG_INT, &opt_timeout, "request timeout", "MS" },
        { "reconnect-ms", 0, 0, G_OPTION_ARG_INT, &opt_reconnect, "reconnect window", "MS" },
        { "stop-pid", 0, 0, G_OPTION_ARG_INT, &opt_stop_pid,
          "fill/check: SIGSTOP this process (the server) once connected, SIGCONT at the end",
          "PID" },
        { NULL },
    };
    g_autoptr(GOptionContext) ctx =
        g_option_context_new("connect|fill|check|free|stats|traffic - memserver test driver");
    g_autoptr(GError) err = NULL;
    g_option_context_add_main_entries(ctx, entries, NULL);
    if (!g_option_context_parse(ctx, &argc, &argv, &err) || argc != 2 || !opt_addr ||
        !opt_vm || !opt_secret || opt_threads < 1 || opt_clients < 1 ||
        opt_npages < opt_threads) {
        fprintf(stderr, "mstool: bad usage%s%s (see --help)\n", err ? ": " : "",
                err ? err->message : "");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *cmd = argv[1];
    if (!strcmp(cmd, "connect")) {
        svm_memclient_close(connect_or_die());
        printf("ok connected\n");
        return 0;
    }
    if (!strcmp(cmd, "fill") || !strcmp(cmd, "check")) {
        return cmd_fill_check(!strcmp(cmd, "fill"));
    }
    if (!strcmp(cmd, "free") || !strcmp(cmd, "stats")) {
        SvmMemClient *c = connect_or_die();
        SvmMemServerStats st;
        bool ok = !strcmp(cmd, "free") ? svm_memclient_free_namespace(c, &err)
                                       : svm_memclient_stats(c, &st, &err);
        svm_memclient_close(c);
        if (!ok) {
            printf("FAIL: %s\n", err->message);
            return 1;
        }
        if (!strcmp(cmd, "stats")) {
            printf("ns_pages_stored=%" G_GUINT64_FORMAT " ns_quota_pages=%" G_GUINT64_FORMAT
                   " server_pages_stored=%" G_GUINT64_FORMAT " server_capacity_pages=%"
                   G_GUINT64_FORMAT " requests=%" G_GUINT64_FORMAT " errors=%"
                   G_GUINT64_FORMAT "\n", st.ns_pages_stored, st.ns_quota_pages,
                   st.server_pages_stored, st.server_capacity_pages, st.requests, st.errors);
        } else {
            printf("ok freed\n");
        }
        return 0;
    }
    if (!strcmp(cmd, "traffic")) {
        return cmd_traffic();
    }
    fprintf(stderr, "mstool: unknown command '%s'\n", cmd);
    return 2;
}
