/*
 * faultbench: page-fault service latency of the libsplitvm pager and of its
 * floor, measured the same way from a host thread, in one process.
 *
 *   faultbench --addr RAW --server MS [--server MS2...] --vm ID --secret S
 *              [--pages N] [--rounds R] [--toucher-cpu C] [--handler-cpu C]
 *              [--prefetch] [--samples PREFIX]
 *
 * Floor: a handler thread reads the userfaultfd MISSING event, fetches
 * 4 KiB with one raw TCP request/response from `netbench raw-server` at RAW
 * (32-byte request, 4112-byte reply: the bytes of a READ) and resolves the
 * fault with UFFDIO_COPY.  Nothing else.
 * Pager: the same faults served by libsplitvm against real memory servers:
 * every page is written once; each round drops the budget to the minimum
 * (the pager evicts everything to the servers), raises it again and reads
 * each page once -> one remote fill per read.
 *
 * Each round reads the N pages of the floor, then those of the pager, in a
 * new random order (the floor punches its pages out of its memfd between
 * rounds); rounds alternate so both see the same load on a shared machine.
 * The handler threads run on --handler-cpu, the reading thread on
 * --toucher-cpu.  --samples writes PREFIX-floor.cdf and PREFIX-pager.cdf.
 *
 * Output ("result NAME VALUE UNIT" on stdout):
 *   {floor,pager}_touch_{p50,p99,max}  what the faulting thread saw: from
 *                                      just before the load to just after
 *   {floor,pager}_handler_{p50,p99}    handler side: event read -> resolved
 *                                      (for the pager: its stats histogram)
 * plus counters.  Benchmarks report; they never assert.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <glib.h>

#include "benchutil.h"
#include "splitvm/pager.h"
#include "splitvm/transport.h"

#define PAGE 4096u
#define REQ_BYTES 32
#define REP_BYTES (16 + PAGE)
#define TAG_MAGIC 0x5356464254414731ull   /* written into each page */

static char *opt_addr, *opt_vm, *opt_secret, *opt_samples;
static char **opt_servers;
static gint64 opt_pages = 1024;
static gint opt_rounds = 20, opt_toucher_cpu = -1, opt_handler_cpu = -1;
static gboolean opt_prefetch;

static void die(const char *what)
{
    fprintf(stderr, "faultbench: %s: %s\n", what, g_strerror(errno));
    exit(1);
}

/* Pin the calling thread; threads it creates afterwards inherit the mask. */
static void pin_self(int cpu)
{
    cpu_set_t set;

    if (cpu < 0) {
        return;
    }
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) < 0) {
        die("sched_setaffinity");
    }
}

/* ---- latency samples ---- */

typedef struct Samples {
    uint64_t *ns;
    size_t n, cap;
} Samples;

static void samples_add(Samples *s, uint64_t v)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4096;
        s->ns = g_realloc_n(s->ns, s->cap, sizeof(*s->ns));
    }
    s->ns[s->n++] = v;
}

/* Nearest rank on sorted samples, in microseconds. */
static double quantile_us(const Samples *s, double q)
{
    size_t i;

    if (!s->n) {
        return 0;
    }
    i = (size_t)(q * s->n);
    return s->ns[i < s->n ? i : s->n - 1] / 1000.0;
}

static void report(const char *prefix, const char *side, Samples *s, bool with_max)
{
    qsort(s->ns, s->n, sizeof(*s->ns), bench_cmp_u64);
    printf("result %s_%s_p50 %.2f us\n", prefix, side, quantile_us(s, 0.50));
    printf("result %s_%s_p99 %.2f us\n", prefix, side, quantile_us(s, 0.99));
    if (with_max) {
        printf("result %s_%s_max %.2f us\n", prefix, side, quantile_us(s, 1.0));
    }
    printf("result %s_%s_count %zu faults\n", prefix, side, s->n);
}

/* CDF of sorted samples, at most ~2000 points. */
static void write_cdf(const char *path, const Samples *s)
{
    FILE *f;
    size_t step;

    if (!path || !s->n) {
        return;
    }
    f = fopen(path, "w");
    if (!f) {
        die(path);
    }
    step = s->n / 2000 + 1;
    for (size_t i = 0; i < s->n; i += step) {
        fprintf(f, "%.3f %.5f\n", s->ns[i] / 1000.0, (double)(i + 1) / s->n);
    }
    fprintf(f, "%.3f 1.0\n", s->ns[s->n - 1] / 1000.0);
    fclose(f);
}

/* ---- touching ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void shuffle(uint64_t *order, uint64_t n)
{
    for (uint64_t i = n - 1; i > 0; i--) {
        uint64_t j = rng_next() % (i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

/*
 * Read the first word of every page not resident in a new random order and
 * record how long each read took.  Returns how many pages held the wrong
 * tag (only checked when want_tags).
 */
static uint64_t touch_round(uint8_t *area, uint64_t npages, uint64_t *order,
                            const uint8_t *resident, bool want_tags, Samples *out)
{
    uint64_t bad = 0;

    shuffle(order, npages);
    for (uint64_t k = 0; k < npages; k++) {
        uint64_t pg = order[k], t0, t1, v;

        if (resident && (resident[pg] & 1)) {
            continue;       /* not a fault: the pager kept it */
        }
        t0 = bench_now_ns();
        v = *(volatile uint64_t *)(area + pg * PAGE);
        t1 = bench_now_ns();
        samples_add(out, t1 - t0);
        if (want_tags && v != (pg ^ TAG_MAGIC)) {
            bad++;
        }
    }
    return bad;
}

/* ---- floor: userfaultfd + raw TCP + UFFDIO_COPY ---- */

typedef struct Floor {
    int uffd, sock, stop_fd;
    pthread_t thread;
    Samples handler;
    uint64_t errors;
} Floor;

static int tcp_connect_to(const char *addr)
{
    g_autoptr(GError) err = NULL;
    int fd = bench_tcp_connect(addr, &err);

    if (fd < 0) {
        fprintf(stderr, "faultbench: --addr: %s\n", err->message);
        exit(2);
    }
    return fd;
}

static void *floor_handler(void *opaque)
{
    Floor *f = opaque;
    static uint8_t rep[REP_BYTES] __attribute__((aligned(PAGE)));
    uint8_t req[REQ_BYTES] = { 0 };
    struct pollfd pfd[2] = {
        { .fd = f->uffd, .events = POLLIN },
        { .fd = f->stop_fd, .events = POLLIN },
    };

    for (;;) {
        struct uffd_msg msg;
        uint64_t t0;

        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("poll");
        }
        if (pfd[1].revents) {
            return NULL;
        }
        if (read(f->uffd, &msg, sizeof(msg)) != sizeof(msg)) {
            if (errno == EAGAIN || errno == EINTR) {
                continue;
            }
            die("read userfaultfd");
        }
        t0 = bench_now_ns();
        if (msg.event != UFFD_EVENT_PAGEFAULT) {
            continue;
        }
        memcpy(req, &msg.arg.pagefault.address, sizeof(uint64_t));
        if (!bench_send_full(f->sock, req, REQ_BYTES) ||
            !bench_recv_full(f->sock, rep, REP_BYTES)) {
            die("raw TCP round trip");
        }
        struct uffdio_copy copy = {
            .dst = msg.arg.pagefault.address & ~(uint64_t)(PAGE - 1),
            .src = (uintptr_t)(rep + 16),
            .len = PAGE,
        };
        if (ioctl(f->uffd, UFFDIO_COPY, &copy) < 0 && errno != EEXIST) {
            die("UFFDIO_COPY");
        }
        samples_add(&f->handler, bench_now_ns() - t0);
    }
}

/* Floor: memfd, userfaultfd (MISSING), its handler thread, raw TCP connection. */
static void floor_start(Floor *f, uint8_t **area_out, int *memfd_out)
{
    uint64_t size = (uint64_t)opt_pages * PAGE;
    pthread_t th;
    int memfd;
    uint8_t *area;

    f->sock = tcp_connect_to(opt_addr);
    if (!bench_send_full(f->sock, "P", 1)) {
        die("raw-server handshake");
    }
    memfd = memfd_create("faultbench-floor", MFD_CLOEXEC);
    if (memfd < 0 || ftruncate(memfd, size) < 0) {
        die("memfd");
    }
    area = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    if (area == MAP_FAILED) {
        die("mmap");
    }
    f->uffd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (f->uffd < 0) {
        die("userfaultfd (needs root)");
    }
    struct uffdio_api api = { .api = UFFD_API };
    struct uffdio_register reg = {
        .range = { .start = (uintptr_t)area, .len = size },
        .mode = UFFDIO_REGISTER_MODE_MISSING,
    };
    if (ioctl(f->uffd, UFFDIO_API, &api) < 0 || ioctl(f->uffd, UFFDIO_REGISTER, &reg) < 0) {
        die("userfaultfd register");
    }
    f->stop_fd = eventfd(0, EFD_CLOEXEC);
    if (pthread_create(&th, NULL, floor_handler, f) != 0) {
        die("pthread_create");
    }
    f->thread = th;
    *area_out = area;
    *memfd_out = memfd;
}

static void floor_stop(Floor *f)
{
    uint64_t one = 1;

    if (write(f->stop_fd, &one, sizeof(one)) != sizeof(one)) {
        die("eventfd");
    }
    pthread_join(f->thread, NULL);
}

static SvmPager *pager_start(uint8_t **area_out)
{
    uint64_t size = (uint64_t)opt_pages * PAGE;
    g_autoptr(GError) err = NULL;
    uint8_t *area;
    SvmPager *p;
    int memfd;

    memfd = memfd_create("faultbench-pager", MFD_CLOEXEC);
    if (memfd < 0 || ftruncate(memfd, size) < 0) {
        die("memfd");
    }
    area = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    if (area == MAP_FAILED) {
        die("mmap");
    }
    SvmPagerConfig cfg = {
        .memfd = memfd,
        .host = area,
        .size = size,
        .budget = size,
        .vm_id = opt_vm,
        .secret = opt_secret,
        .secret_len = strlen(opt_secret),
        .servers = (const char *const *)opt_servers,
        .nservers = g_strv_length(opt_servers),
        .prefetch = opt_prefetch,
    };
    p = svm_pager_start(&cfg, &err);
    if (!p) {
        fprintf(stderr, "faultbench: pager: %s\n", err->message);
        exit(1);
    }
    /* Write every page once, so each has data on the servers once evicted. */
    for (gint64 i = 0; i < opt_pages; i++) {
        *(uint64_t *)(area + i * PAGE) = (uint64_t)i ^ TAG_MAGIC;
    }
    *area_out = area;
    return p;
}

/*
 * One pager round: the budget drops to the minimum (the pager evicts every
 * page to the servers) and goes back up, then every page not kept is read.
 */
static uint64_t pager_round(SvmPager *p, uint8_t *area, uint64_t *order,
                            uint8_t *resident, Samples *touch, uint64_t *skipped)
{
    uint64_t size = (uint64_t)opt_pages * PAGE;
    uint64_t min_budget = 64 * 1024;    /* the pager's minimum: 16 pages */
    g_autoptr(GError) err = NULL;

    if (!svm_pager_set_budget(p, min_budget, &err) ||
        !svm_pager_set_budget(p, size, &err)) {
        fprintf(stderr, "faultbench: set budget: %s\n", err->message);
        exit(1);
    }
    /* Pages the pager kept (up to its minimum budget) will not fault. */
    if (mincore(area, size, resident) < 0) {
        die("mincore");
    }
    for (gint64 i = 0; i < opt_pages; i++) {
        *skipped += resident[i] & 1;
    }
    return touch_round(area, opt_pages, order, resident, true, touch);
}

/*
 * Floor and pager rounds alternate in one process with the same CPU
 * placement, so both see the same (shared, noisy) machine.
 */
static int cmd_compare(void)
{
    uint64_t size = (uint64_t)opt_pages * PAGE;
    g_autofree uint64_t *order = g_new(uint64_t, opt_pages);
    g_autofree uint8_t *resident = g_new(uint8_t, opt_pages);
    Samples ftouch = { 0 }, ptouch = { 0 };
    uint64_t bad = 0, skipped = 0;
    uint8_t *farea, *parea;
    SvmPagerStats st0, st;
    Floor f = { 0 };
    SvmPager *p;
    int fmemfd;

    for (gint64 i = 0; i < opt_pages; i++) {
        order[i] = i;
    }
    /* Handler threads (the floor's, the pager's) inherit the handler CPU. */
    pin_self(opt_handler_cpu);
    floor_start(&f, &farea, &fmemfd);
    p = pager_start(&parea);
    pin_self(opt_toucher_cpu);
    svm_pager_get_stats(p, &st0);

    for (int r = 0; r < opt_rounds; r++) {
        touch_round(farea, opt_pages, order, NULL, false, &ftouch);
        /* Drop the floor's pages: the next read of each faults MISSING again. */
        if (fallocate(fmemfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, size) < 0) {
            die("fallocate(PUNCH_HOLE)");
        }
        bad += pager_round(p, parea, order, resident, &ptouch, &skipped);
    }
    svm_pager_get_stats(p, &st);
    svm_pager_stop(p);
    floor_stop(&f);

    report("floor", "touch", &ftouch, true);
    report("floor", "handler", &f.handler, true);
    report("pager", "touch", &ptouch, true);
    if (opt_samples) {
        g_autofree char *fp = g_strdup_printf("%s-floor.cdf", opt_samples);
        g_autofree char *pp = g_strdup_printf("%s-pager.cdf", opt_samples);
        write_cdf(fp, &ftouch);
        write_cdf(pp, &ptouch);
    }
    /* Handler side: the pager's own histogram, over all its faults (see docs). */
    printf("result pager_handler_p50 %.2f us\n", st.fault_lat_p50_ns / 1000.0);
    printf("result pager_handler_p99 %.2f us\n", st.fault_lat_p99_ns / 1000.0);
    printf("result pager_handler_max %.2f us\n", st.fault_lat_max_ns / 1000.0);
    printf("result pager_fills_remote %" PRIu64 " faults\n",
           st.fills_remote - st0.fills_remote);
    /* Faults in that histogram that are not remote fills (fill phase, MINOR). */
    uint64_t all = st.faults_missing + st.faults_wp + st.faults_minor;
    printf("result pager_local_faults %" PRIu64 " faults\n", all - st.fills_remote);
    printf("result pager_prefetch_issued %" PRIu64 " pages\n", st.prefetch_issued);
    printf("result pager_skipped_resident %" PRIu64 " pages\n", skipped);
    printf("result pager_bad_pages %" PRIu64 " pages\n", bad);
    if (bad) {
        fprintf(stderr, "faultbench: %" PRIu64 " pager reads returned the wrong data\n", bad);
    }
    return 0;
}

int main(int argc, char **argv)
{
    GOptionEntry entries[] = {
        { "addr", 0, 0, G_OPTION_ARG_STRING, &opt_addr,
          "netbench raw-server address (the floor)", "HOST:PORT" },
        { "server", 0, 0, G_OPTION_ARG_STRING_ARRAY, &opt_servers,
          "memory server (repeat for several)", "[tcp:]HOST:PORT" },
        { "vm", 0, 0, G_OPTION_ARG_STRING, &opt_vm, "VM id on the servers", "ID" },
        { "secret", 0, 0, G_OPTION_ARG_STRING, &opt_secret, "VM secret", "S" },
        { "pages", 0, 0, G_OPTION_ARG_INT64, &opt_pages, "pages per round (default 1024)", "N" },
        { "rounds", 0, 0, G_OPTION_ARG_INT, &opt_rounds, "rounds (default 20)", "R" },
        { "toucher-cpu", 0, 0, G_OPTION_ARG_INT, &opt_toucher_cpu,
          "CPU of the faulting thread", "C" },
        { "handler-cpu", 0, 0, G_OPTION_ARG_INT, &opt_handler_cpu,
          "CPU of the fault handler thread(s)", "C" },
        { "prefetch", 0, 0, G_OPTION_ARG_NONE, &opt_prefetch, "pager prefetch on (default off)", NULL },
        { "samples", 0, 0, G_OPTION_ARG_FILENAME, &opt_samples,
          "write PREFIX-floor.cdf and PREFIX-pager.cdf (toucher side)", "PREFIX" },
        { NULL },
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new(NULL);
    g_autoptr(GError) err = NULL;

    g_option_context_set_summary(ctx,
        "Page-fault service latency: the libsplitvm pager vs. a floor of\n"
        "userfaultfd + one raw TCP 4 KiB round trip + UFFDIO_COPY, alternating.");
    g_option_context_add_main_entries(ctx, entries, NULL);
    if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
        fprintf(stderr, "faultbench: %s\n", err->message);
        return 2;
    }
    if (argc != 1) {
        fprintf(stderr, "faultbench: unexpected argument '%s' (see --help)\n", argv[1]);
        return 2;
    }
    if (!opt_addr || !opt_servers || !opt_vm || !opt_secret) {
        fprintf(stderr, "faultbench: --addr, --server, --vm and --secret are required\n");
        return 2;
    }
    if (opt_pages < 64 || opt_pages > (1 << 24)) {
        fprintf(stderr, "faultbench: --pages %" G_GINT64_FORMAT " is out of range [64, 16M]\n",
                opt_pages);
        return 2;
    }
    if (opt_rounds < 1) {
        fprintf(stderr, "faultbench: --rounds %d must be at least 1\n", opt_rounds);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    return cmd_compare();
}
