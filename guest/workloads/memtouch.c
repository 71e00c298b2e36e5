/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * memtouch: time the first read of each page of a memory area, one page at
 * a time, from inside the guest.  Used by the `pager` benchmark to measure
 * the vCPU stall of a remote page fault the same way for splitvm and for
 * QEMU's postcopy: the host makes the pages remote while memtouch waits
 * between its fill and its touch phase (--sync), then every read of a page
 * that is not local stalls the vCPU for as long as the host takes to bring
 * the page in, and the guest's clock sees it.
 *
 * Phases: fill (write a tag into every page), [sync], touch (read each page
 * once, in sequential or random order, timing each read with
 * clock_gettime(CLOCK_MONOTONIC) and checking its tag), [sync], report.
 *
 * The touch phase touches no other memory that could be remote: the random
 * order is computed (a keyed bijection, no array) and latencies go into a
 * 2 KiB histogram.  So the host can count the page faults of the touch
 * phase and attribute them to timed reads.
 */
#include "workload-common.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096u
#define WORDS_PER_PAGE (PAGE / sizeof(uint64_t))
#define TAG_MAGIC 0x4d454d544f554348ull        /* "MEMTOUCH" */

/*
 * Log-linear latency histogram (nanoseconds): values below 16 have their
 * own bucket, above that 16 buckets per power of two (about 4 % wide), up
 * to 2^32 ns.  The host decodes it the same way (bench/pagerbench.py).
 */
#define HIST_SUB_BITS 4
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS ((32 - HIST_SUB_BITS + 1) * HIST_SUB)

static uint32_t hist[HIST_BUCKETS];

static unsigned hist_bucket(uint64_t v)
{
    unsigned e;

    if (v >= (1ull << 32)) {
        return HIST_BUCKETS - 1;
    }
    if (v < HIST_SUB) {
        return (unsigned)v;
    }
    e = 63 - (unsigned)__builtin_clzll(v);              /* >= HIST_SUB_BITS */
    return (e - HIST_SUB_BITS + 1) * HIST_SUB +
           (unsigned)((v >> (e - HIST_SUB_BITS)) & (HIST_SUB - 1));
}

static uint64_t hist_low(unsigned b)
{
    unsigned e;

    if (b < HIST_SUB) {
        return b;
    }
    e = b / HIST_SUB + HIST_SUB_BITS - 1;
    return (uint64_t)(HIST_SUB + b % HIST_SUB) << (e - HIST_SUB_BITS);
}

/* Value at quantile q of the reads at or above bucket `from` (microseconds). */
static double hist_quantile_us(unsigned from, double q)
{
    uint64_t total = 0, rank, seen = 0;

    for (unsigned b = from; b < HIST_BUCKETS; b++) {
        total += hist[b];
    }
    if (!total) {
        return 0;
    }
    rank = (uint64_t)(q * (double)total);
    if (rank >= total) {
        rank = total - 1;
    }
    for (unsigned b = from; b < HIST_BUCKETS; b++) {
        seen += hist[b];
        if (seen > rank) {
            uint64_t lo = hist_low(b), hi = b + 1 < HIST_BUCKETS ? hist_low(b + 1) : lo;
            return (lo + hi) / 2 / 1000.0;
        }
    }
    return 0;
}

static void usage(void)
{
    printf(
"Usage: memtouch --mib N [--order seq|random] [--seed S] [--sync DEV]\n"
"                [--stall-us T]\n"
"\n"
"Write a tag into every page of N MiB of anonymous memory, then read each\n"
"page once, timing every read with clock_gettime(CLOCK_MONOTONIC) and\n"
"checking its tag.  Reports the latency distribution of all reads and of\n"
"the reads slower than T microseconds (\"stalls\": page faults served by\n"
"the host while the vCPU waits, and reads an interrupt delayed).\n"
"\n"
"  --mib N        size of the area in MiB (required, >= 1)\n"
"  --order O      touch order: random (default) or seq\n"
"  --seed S       seed of the random order (default 1)\n"
"  --sync DEV     hand-shake with the host on serial port DEV (e.g.\n"
"                 /dev/ttyS1) around the touch phase: write 'R' after the\n"
"                 fill and wait for any byte; after the touch phase write\n"
"                 'D', the number of histogram buckets (uint32 LE) and the\n"
"                 latency histogram (uint32 LE counts; 16 buckets per power\n"
"                 of two of nanoseconds), then wait for any byte\n"
"  --stall-us T   reads slower than T us count as stalls (default 10)\n"
"  -h, --help     show this help\n"
"\n"
"Progress goes to stderr. Exactly one line goes to stdout:\n"
"  SPLITVM-RESULT memtouch ok=1 mib=N pages=P order=O touch_p50_us=..\n"
"                 touch_p99_us=.. touch_max_us=.. stall_us=T stalls=K\n"
"                 stall_p50_us=.. stall_p99_us=.. touch_seconds=S clock=SRC\n"
"(latencies: bucket middles, about 4 %% wide; clock: the guest kernel's\n"
"clocksource).\n"
"Exit status: 0 ok, 1 a page read back a wrong tag (ok=0) or setup\n"
"failed, 2 bad usage.\n");
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * A keyed bijection on [0, 2^bits): odd multiplications and xor-shifts
 * modulo 2^bits are each invertible.  Visiting permute(0..n-1), skipping
 * values >= n (cycle walking), reads every page once in an order without
 * a stride, and without an array that could itself be remote.
 */
static uint64_t permute(uint64_t x, unsigned bits, uint64_t key)
{
    uint64_t mask = (bits >= 64 ? ~0ull : (1ull << bits) - 1);
    unsigned s = bits / 2 ? bits / 2 : 1;

    for (int round = 0; round < 3; round++) {
        x = (x + (key >> (round * 16))) & mask;
        x = (x * 0x9e3779b97f4a7c15ull) & mask;
        x ^= x >> s;
        x = (x * 0xbf58476d1ce4e5b9ull) & mask;
        x ^= x >> s;
    }
    return x;
}

static uint64_t next_page(uint64_t *cursor, uint64_t npages, unsigned bits,
                          uint64_t key, bool random_order)
{
    uint64_t pg;

    if (!random_order) {
        return (*cursor)++;
    }
    do {
        pg = permute((*cursor)++, bits, key);
    } while (pg >= npages);
    return pg;
}

/* Serial port in raw mode, so single bytes pass both ways unchanged. */
static int sync_open(const char *dev)
{
    struct termios t;
    int fd = open(dev, O_RDWR | O_NOCTTY);

    if (fd < 0) {
        return -1;
    }
    if (tcgetattr(fd, &t) == 0) {
        cfmakeraw(&t);
        t.c_cc[VMIN] = 1;
        t.c_cc[VTIME] = 0;
        tcsetattr(fd, TCSANOW, &t);
    }
    tcflush(fd, TCIOFLUSH);
    return fd;
}

static bool write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len) {
        ssize_t r = write(fd, p, len);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return false;
        }
        p += r;
        len -= (size_t)r;
    }
    return true;
}

/* Send @len bytes of @msg, then block until the host answers with any byte. */
static bool sync_point(int fd, const void *msg, size_t len)
{
    char c;

    if (!write_all(fd, msg, len) || tcdrain(fd) < 0) {
        return false;
    }
    for (;;) {
        ssize_t r = read(fd, &c, 1);
        if (r == 1) {
            return true;
        }
        if (r < 0 && errno == EINTR) {
            continue;
        }
        return false;
    }
}

/* The guest kernel's clocksource: a slow one (hpet, acpi_pm) inflates reads. */
static void clock_source(char *buf, size_t len)
{
    FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");

    snprintf(buf, len, "unknown");
    if (f) {
        if (fgets(buf, (int)len, f)) {
            buf[strcspn(buf, "\n")] = '\0';
        }
        fclose(f);
    }
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "mib", required_argument, NULL, 'm' },
        { "order", required_argument, NULL, 'o' },
        { "seed", required_argument, NULL, 's' },
        { "sync", required_argument, NULL, 'y' },
        { "stall-us", required_argument, NULL, 't' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    uint64_t mib = 0, seed = 1, stall_us = 10, npages, bad = 0, nstalls = 0;
    uint64_t first_bad = 0, got_bad = 0, t_start, t_end, cursor = 0, key;
    const char *sync_dev = NULL;
    bool random_order = true;
    unsigned bits = 1, stall_bucket;
    uint64_t *mem;
    char clk[32];
    int c, sync_fd = -1;

    wl_init("memtouch");
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm':
            mib = wl_parse_u64("--mib", optarg, 1, 65536);
            break;
        case 'o':
            if (!strcmp(optarg, "random")) {
                random_order = true;
            } else if (!strcmp(optarg, "seq")) {
                random_order = false;
            } else {
                wl_usage_error("--order: '%s' is not 'seq' or 'random'", optarg);
            }
            break;
        case 's':
            seed = wl_parse_u64("--seed", optarg, 0, UINT64_MAX);
            break;
        case 'y':
            sync_dev = optarg;
            break;
        case 't':
            stall_us = wl_parse_u64("--stall-us", optarg, 1, 1000000);
            break;
        case 'h':
            usage();
            return WL_EXIT_OK;
        default:
            wl_bad_option(c, argv);
        }
    }
    wl_no_positional(argc, argv);
    if (mib == 0) {
        wl_usage_error("--mib is required");
    }

    npages = (mib << 20) / PAGE;
    while ((1ull << bits) < npages) {
        bits++;
    }
    key = wl_splitmix64(seed);
    mem = wl_map_mib(mib);
    if (!mem) {
        return WL_EXIT_FAILED;
    }
    if (sync_dev) {
        sync_fd = sync_open(sync_dev);
        if (sync_fd < 0) {
            wl_progress("cannot open %s: %s", sync_dev, strerror(errno));
            wl_result("ok=0 mib=%" PRIu64 " error=sync-open-failed", mib);
            return WL_EXIT_FAILED;
        }
    }

    /* Fill: one tag per page (the first touch also makes the guest kernel
     * allocate and zero the page). */
    for (uint64_t pg = 0; pg < npages; pg++) {
        mem[pg * WORDS_PER_PAGE] = pg ^ TAG_MAGIC ^ seed;
    }
    memset(hist, 0, sizeof(hist));
    (void)now_ns();     /* the vDSO is mapped and used before the touch phase */
    wl_progress("filled %" PRIu64 " MiB (%" PRIu64 " pages)%s", mib, npages,
                sync_fd >= 0 ? "; waiting for the host" : "");
    if (sync_fd >= 0 && !sync_point(sync_fd, "R", 1)) {
        wl_progress("sync on %s failed: %s", sync_dev, strerror(errno));
        wl_result("ok=0 mib=%" PRIu64 " error=sync-failed", mib);
        return WL_EXIT_FAILED;
    }

    t_start = now_ns();
    for (uint64_t k = 0; k < npages; k++) {
        uint64_t pg = next_page(&cursor, npages, bits, key, random_order), t0, t1, v;

        t0 = now_ns();
        v = ((volatile uint64_t *)mem)[pg * WORDS_PER_PAGE];
        t1 = now_ns();
        hist[hist_bucket(t1 - t0)]++;
        if (v != (uint64_t)(pg ^ TAG_MAGIC ^ seed)) {
            if (!bad) {
                first_bad = pg;
                got_bad = v;
            }
            bad++;
        }
    }
    t_end = now_ns();
    if (sync_fd >= 0) {
        uint32_t n32 = HIST_BUCKETS;      /* x86: little endian */

        if (!write_all(sync_fd, "D", 1) || !write_all(sync_fd, &n32, sizeof(n32)) ||
            !sync_point(sync_fd, hist, sizeof(hist))) {
            wl_progress("sync on %s failed: %s", sync_dev, strerror(errno));
            wl_result("ok=0 mib=%" PRIu64 " error=sync-failed", mib);
            return WL_EXIT_FAILED;
        }
    }
    if (bad) {
        wl_progress("%" PRIu64 " pages read back a wrong tag", bad);
        wl_result("ok=0 mib=%" PRIu64 " error=bad-tag bad_pages=%" PRIu64
                  " page=%" PRIu64 " expected=0x%016" PRIx64 " got=0x%016" PRIx64,
                  mib, bad, first_bad, (uint64_t)(first_bad ^ TAG_MAGIC ^ seed), got_bad);
        return WL_EXIT_FAILED;
    }

    /* Stalls: the buckets at or above the threshold (bucket resolution). */
    stall_bucket = hist_bucket(stall_us * 1000);
    for (unsigned b = stall_bucket; b < HIST_BUCKETS; b++) {
        nstalls += hist[b];
    }
    clock_source(clk, sizeof(clk));
    wl_progress("touched %" PRIu64 " pages in %.3f s, %" PRIu64 " reads >= %" PRIu64 " us",
                npages, (t_end - t_start) / 1e9, nstalls, stall_us);
    wl_result("ok=1 mib=%" PRIu64 " pages=%" PRIu64 " order=%s touch_p50_us=%.2f"
              " touch_p99_us=%.2f touch_max_us=%.1f stall_us=%" PRIu64
              " stalls=%" PRIu64 " stall_p50_us=%.1f stall_p99_us=%.1f"
              " touch_seconds=%.3f clock=%s",
              mib, npages, random_order ? "random" : "seq",
              hist_quantile_us(0, 0.50), hist_quantile_us(0, 0.99),
              hist_quantile_us(0, 1.0), stall_us, nstalls,
              hist_quantile_us(stall_bucket, 0.50), hist_quantile_us(stall_bucket, 0.99),
              (t_end - t_start) / 1e9, clk);
    wl_unmap_mib(mem, mib);
    return WL_EXIT_OK;
}
