/*
 * netbench: memory-server benchmarks and their floors, measured the same way.
 *
 *   netbench raw-server --listen HOST:PORT
 *       plain blocking TCP server (one thread per connection): a connection
 *       starting with 'P' is a ping-pong (32-byte request, 4112-byte reply:
 *       the same bytes as a 4 KiB READ), one starting with 'S' a stream.
 *   netbench raw-rtt    --addr A [--iters N] [--samples FILE]
 *   netbench raw-stream --addr A [--seconds S]
 *   netbench rtt        --addr A --vm ID --secret S [--iters N] [--samples FILE]
 *       4 KiB READ round trips through the client library (sync).
 *   netbench rtt-proto  (same, straight on the transport: no memclient)
 *   netbench batch      --addr A --vm ID --secret S [--seconds S] [--depth D]
 *       64-page READ batches; depth 1 = sync, > 1 = async pipelined.
 *   netbench metadata   --addr A --vm ID --secret S [--pages N] [--fill F]
 *       write F % of an N-page namespace at random, report the server's
 *       metadata bytes per stored byte.
 *
 * Output: "result NAME VALUE UNIT" lines on stdout (bench/run.sh reads
 * them).  No asserts: benchmarks report, tests check.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "benchutil.h"
#include "splitvm/clientproto.h"
#include "splitvm/memclient.h"
#include "splitvm/transport.h"

#define REQ_BYTES   32
#define REP_BYTES   (16 + 4096)
#define STREAM_CHUNK (256 * 1024)

static char *opt_listen, *opt_addr, *opt_vm, *opt_secret, *opt_samples;
static gint opt_iters = 20000, opt_depth = 1, opt_fill = 50;
static gdouble opt_seconds = 3;
static gint64 opt_pages = 131072;

static void die(const char *what)
{
    fprintf(stderr, "netbench: %s: %s\n", what, g_strerror(errno));
    exit(1);
}

static int tcp_connect_to(const char *addr)
{
    g_autoptr(GError) err = NULL;
    int fd = bench_tcp_connect(addr, &err);

    if (fd < 0) {
        fprintf(stderr, "netbench: %s\n", err->message);
        exit(1);
    }
    return fd;
}

/* ---- raw server ---- */

static void *raw_conn(void *opaque)
{
    int fd = (int)(intptr_t)opaque;
    static uint8_t rep[REP_BYTES];
    uint8_t *chunk = g_malloc0(STREAM_CHUNK);
    uint8_t req[REQ_BYTES];
    char kind;

    if (bench_recv_full(fd, &kind, 1)) {
        if (kind == 'P') {
            while (bench_recv_full(fd, req, REQ_BYTES) &&
                   bench_send_full(fd, rep, REP_BYTES)) {
            }
        } else if (kind == 'S') {
            while (bench_send_full(fd, chunk, STREAM_CHUNK)) {
            }
        }
    }
    close(fd);
    g_free(chunk);
    return NULL;
}

static int cmd_raw_server(void)
{
    g_autoptr(GError) err = NULL;
    int lfd = bench_tcp_listen(opt_listen, &err);
    int one = 1;

    if (lfd < 0) {
        fprintf(stderr, "netbench: %s\n", err->message);
        return 1;
    }
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        pthread_t t;
        pthread_create(&t, NULL, raw_conn, (void *)(intptr_t)fd);
        pthread_detach(t);
    }
}

/* ---- latency reporting ---- */

static void report_latency(const char *name, uint64_t *ns, size_t n)
{
    qsort(ns, n, sizeof(*ns), bench_cmp_u64);
    printf("result %s_p50 %.2f us\n", name, ns[n / 2] / 1000.0);
    printf("result %s_p99 %.2f us\n", name, ns[n * 99 / 100] / 1000.0);
    printf("result %s_p999 %.2f us\n", name, ns[n * 999 / 1000] / 1000.0);
    if (opt_samples) {
        FILE *f = fopen(opt_samples, "w");
        if (!f) {
            die(opt_samples);
        }
        /* At most 2000 points of the sorted distribution: enough for a CDF. */
        size_t step = n > 2000 ? n / 2000 : 1;
        for (size_t i = 0; i < n; i += step) {
            fprintf(f, "%.3f %.5f\n", ns[i] / 1000.0, (double)i / (double)n);
        }
        fclose(f);
    }
}

static int cmd_raw_rtt(void)
{
    int fd = tcp_connect_to(opt_addr);
    uint8_t req[REQ_BYTES] = { 0 }, rep[REP_BYTES];
    uint64_t *lat = g_new(uint64_t, opt_iters);

    if (!bench_send_full(fd, "P", 1)) {
        die("send");
    }
    for (int i = -1000; i < opt_iters; i++) {
        uint64_t t0 = bench_now_ns();
        if (!bench_send_full(fd, req, REQ_BYTES) || !bench_recv_full(fd, rep, REP_BYTES)) {
            die("ping-pong");
        }
        if (i >= 0) {
            lat[i] = bench_now_ns() - t0;
        }
    }
    close(fd);
    report_latency("raw_tcp_rtt", lat, (size_t)opt_iters);
    return 0;
}

static int cmd_raw_stream(void)
{
    int fd = tcp_connect_to(opt_addr);
    uint8_t *buf = g_malloc(STREAM_CHUNK);
    uint64_t bytes = 0;

    if (!bench_send_full(fd, "S", 1)) {
        die("send");
    }
    uint64_t t0 = bench_now_ns(), end = t0 + (uint64_t)(opt_seconds * 1e9), t;
    while ((t = bench_now_ns()) < end) {
        ssize_t r = recv(fd, buf, STREAM_CHUNK, 0);
        if (r <= 0) {
            die("stream");
        }
        bytes += (uint64_t)r;
    }
    close(fd);
    printf("result raw_tcp_stream %.1f MiB/s\n", bytes / ((t - t0) / 1e9) / (1 << 20));
    return 0;
}

/* ---- through the client library ---- */

static SvmMemClient *client(uint64_t npages)
{
    SvmMemClientConfig cfg = {
        .address = opt_addr, .vm_id = opt_vm, .secret = opt_secret,
        .secret_len = strlen(opt_secret), .npages = npages,
    };
    g_autoptr(GError) err = NULL;
    SvmMemClient *c = svm_memclient_connect(&cfg, &err);
    if (!c) {
        fprintf(stderr, "netbench: %s\n", err->message);
        exit(1);
    }
    return c;
}

static int cmd_rtt(void)
{
    SvmMemClient *c = client(1024);
    uint8_t *page = g_malloc0(4096);
    uint64_t *lat = g_new(uint64_t, opt_iters);
    void *bufs[1] = { page };

    /* Real pages, so the server copies from its pool rather than zeroing. */
    for (uint64_t p = 0; p < 1024; p++) {
        memset(page, (int)p, 4096);
        const void *w[1] = { page };
        if (svm_memclient_write(c, &p, 1, w) < 0) {
            die("write");
        }
    }
    for (int i = -1000; i < opt_iters; i++) {
        uint64_t p = (uint64_t)(i & 1023);
        uint64_t t0 = bench_now_ns();
        int rc = svm_memclient_read(c, &p, 1, bufs);
        if (rc < 0) {
            errno = -rc;
            die("read");
        }
        if (i >= 0) {
            lat[i] = bench_now_ns() - t0;
        }
    }
    svm_memclient_close(c);
    report_latency("memclient_read4k_rtt", lat, (size_t)opt_iters);
    return 0;
}

/* The same READ round trip straight on the transport connection, without
 * memclient: separates the client library's cost from the server's. */
static int cmd_rtt_proto(void)
{
    const SvmClientTransportOps *ops = svm_client_transport_find("tcp");
    SvmWireAttach at = { .npages = 1024 };
    SvmProtoLogin login = {
        .address = opt_addr, .role = SVM_ROLE_VM, .id = opt_vm, .secret = opt_secret,
        .secret_len = strlen(opt_secret), .timeout_ms = 5000, .attach = &at,
    };
    g_autoptr(GError) err = NULL;
    SvmClientConn *conn = svm_proto_login(ops, &login, NULL, &err);
    if (!conn) {
        fprintf(stderr, "netbench: %s\n", err->message);
        return 1;
    }
    uint64_t *lat = g_new(uint64_t, opt_iters);
    uint8_t req[64], rep[REP_BYTES];
    for (int i = -1000; i < opt_iters; i++) {
        uint64_t p = (uint64_t)(i & 1023);
        size_t len = svm_wire_enc_pagevec_req(req, sizeof(req), (uint64_t)(i + 2000),
                                              SVM_OP_READ, &p, 1);
        struct iovec iov = { .iov_base = req, .iov_len = len };
        uint64_t t0 = bench_now_ns();
        if (ops->sendv(conn, &iov, 1) < 0) {
            die("send");
        }
        size_t have = 0;
        while (have < REP_BYTES) {
            ssize_t r = ops->recv(conn, rep + have, REP_BYTES - have, SVM_RECV_WAIT_FOREVER);
            if (r <= 0) {
                die("recv");
            }
            have += (size_t)r;
        }
        if (i >= 0) {
            lat[i] = bench_now_ns() - t0;
        }
    }
    ops->close(conn);
    report_latency("proto_read4k_rtt", lat, (size_t)opt_iters);
    return 0;
}

typedef struct Batch {
    uint64_t pages[SVM_MAX_BATCH];
    void *bufs[SVM_MAX_BATCH];
} Batch;

typedef struct Pipe {
    sem_t slots;
    gint failed;
} Pipe;

static void batch_done(void *opaque, int status)
{
    Pipe *p = opaque;
    if (status < 0) {
        g_atomic_int_set(&p->failed, status);
    }
    sem_post(&p->slots);
}

static int cmd_batch(void)
{
    const uint64_t npages = 16384;
    SvmMemClient *c = client(npages);
    int depth = MAX(opt_depth, 1);
    Batch *b = g_new0(Batch, depth);
    uint8_t *mem = g_malloc0((size_t)depth * SVM_MAX_BATCH * 4096);

    for (int d = 0; d < depth; d++) {
        for (unsigned i = 0; i < SVM_MAX_BATCH; i++) {
            b[d].bufs[i] = mem + ((size_t)d * SVM_MAX_BATCH + i) * 4096;
        }
    }
    /* Fill the namespace so reads copy real pages. */
    for (uint64_t p = 0; p < npages; p += SVM_MAX_BATCH) {
        for (unsigned i = 0; i < SVM_MAX_BATCH; i++) {
            b[0].pages[i] = p + i;
            memset(b[0].bufs[i], (int)(p + i), 4096);
        }
        if (svm_memclient_write(c, b[0].pages, SVM_MAX_BATCH,
                                (const void *const *)b[0].bufs) < 0) {
            die("fill");
        }
    }
    Pipe pipe;
    sem_init(&pipe.slots, 0, (unsigned)depth);
    pipe.failed = 0;
    uint64_t batches = 0, next = 0;
    uint64_t t0 = bench_now_ns(), end = t0 + (uint64_t)(opt_seconds * 1e9), t;
    while ((t = bench_now_ns()) < end && !pipe.failed) {
        Batch *cur = &b[batches % (uint64_t)depth];
        if (depth > 1) {
            sem_wait(&pipe.slots);
        }
        for (unsigned i = 0; i < SVM_MAX_BATCH; i++) {
            cur->pages[i] = next++ % npages;
        }
        int rc = depth > 1 ? svm_memclient_read_async(c, cur->pages, SVM_MAX_BATCH, cur->bufs,
                                                     batch_done, &pipe)
                           : svm_memclient_read(c, cur->pages, SVM_MAX_BATCH, cur->bufs);
        if (rc < 0) {
            errno = -rc;
            die("read");
        }
        batches++;
    }
    for (int d = 1; depth > 1 && d <= depth; d++) {
        sem_wait(&pipe.slots);      /* drain */
    }
    t = bench_now_ns();
    svm_memclient_close(c);
    printf("result memclient_read64_d%d %.1f MiB/s\n", depth,
           batches * SVM_MAX_BATCH * 4096.0 / ((t - t0) / 1e9) / (1 << 20));
    return 0;
}

static int cmd_metadata(void)
{
    uint64_t npages = (uint64_t)opt_pages;
    SvmMemClient *c = client(npages);
    uint8_t *mem = g_malloc0(SVM_MAX_BATCH * 4096);
    Batch b;
    GRand *r = g_rand_new_with_seed(42);
    uint64_t writes = npages * (uint64_t)opt_fill / 100;

    g_autoptr(GError) err = NULL;
    if (!svm_memclient_free_namespace(c, &err)) {
        fprintf(stderr, "netbench: %s\n", err->message);
        return 1;
    }
    for (unsigned i = 0; i < SVM_MAX_BATCH; i++) {
        b.bufs[i] = mem + (size_t)i * 4096;
    }
    for (uint64_t w = 0; w < writes; w += SVM_MAX_BATCH) {
        for (unsigned i = 0; i < SVM_MAX_BATCH; i++) {
            b.pages[i] = (uint64_t)g_rand_double_range(r, 0, (double)npages);
        }
        if (svm_memclient_write(c, b.pages, SVM_MAX_BATCH, (const void *const *)b.bufs) < 0) {
            die("write");
        }
    }
    g_rand_free(r);
    SvmMemServerStats st;
    if (!svm_memclient_stats(c, &st, &err)) {
        fprintf(stderr, "netbench: %s\n", err->message);
        return 1;
    }
    svm_memclient_close(c);
    printf("result metadata_pages_stored %" G_GUINT64_FORMAT " pages\n", st.server_pages_stored);
    printf("result metadata_bytes %" G_GUINT64_FORMAT " bytes\n", st.server_metadata_bytes);
    printf("result metadata_overhead %.4f %%\n",
           100.0 * (double)st.server_metadata_bytes / ((double)st.server_pages_stored * 4096));
    return 0;
}

int main(int argc, char **argv)
{
    GOptionEntry entries[] = {
        { "listen", 0, 0, G_OPTION_ARG_STRING, &opt_listen, "raw-server address", "A" },
        { "addr", 0, 0, G_OPTION_ARG_STRING, &opt_addr, "server address", "A" },
        { "vm", 0, 0, G_OPTION_ARG_STRING, &opt_vm, "VM id", "ID" },
        { "secret", 0, 0, G_OPTION_ARG_STRING, &opt_secret, "VM secret", "S" },
        { "iters", 0, 0, G_OPTION_ARG_INT, &opt_iters, "round trips", "N" },
        { "seconds", 0, 0, G_OPTION_ARG_DOUBLE, &opt_seconds, "duration", "S" },
        { "depth", 0, 0, G_OPTION_ARG_INT, &opt_depth, "batches in flight", "D" },
        { "pages", 0, 0, G_OPTION_ARG_INT64, &opt_pages, "namespace pages", "N" },
        { "fill", 0, 0, G_OPTION_ARG_INT, &opt_fill, "percent written", "F" },
        { "samples", 0, 0, G_OPTION_ARG_FILENAME, &opt_samples, "latency CDF file", "FILE" },
        { NULL },
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new(
        "raw-server|raw-rtt|raw-stream|rtt|batch|metadata");
    g_autoptr(GError) err = NULL;
    g_option_context_add_main_entries(ctx, entries, NULL);
    if (!g_option_context_parse(ctx, &argc, &argv, &err) || argc != 2 || opt_iters < 1) {
        fprintf(stderr, "netbench: bad usage%s%s\n", err ? ": " : "", err ? err->message : "");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *cmd = argv[1];
    bool need_vm = !strcmp(cmd, "rtt") || !strcmp(cmd, "rtt-proto") || !strcmp(cmd, "batch") || !strcmp(cmd, "metadata");
    if ((!strcmp(cmd, "raw-server") && !opt_listen) ||
        (strcmp(cmd, "raw-server") && !opt_addr) || (need_vm && (!opt_vm || !opt_secret))) {
        fprintf(stderr, "netbench: %s: missing --listen/--addr/--vm/--secret\n", cmd);
        return 2;
    }
    if (!strcmp(cmd, "raw-server")) {
        return cmd_raw_server();
    } else if (!strcmp(cmd, "raw-rtt")) {
        return cmd_raw_rtt();
    } else if (!strcmp(cmd, "raw-stream")) {
        return cmd_raw_stream();
    } else if (!strcmp(cmd, "rtt")) {
        return cmd_rtt();
    } else if (!strcmp(cmd, "rtt-proto")) {
        return cmd_rtt_proto();
    } else if (!strcmp(cmd, "batch")) {
        return cmd_batch();
    } else if (!strcmp(cmd, "metadata")) {
        return cmd_metadata();
    }
    fprintf(stderr, "netbench: unknown command '%s'\n", cmd);
    return 2;
}
