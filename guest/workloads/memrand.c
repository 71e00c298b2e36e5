/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * memrand: random 8-byte read-modify-write operations over a working set.
 *
 * Every operation adds a pseudo-random value to a pseudo-randomly chosen
 * word.  Addition commutes, so the sum of all words at the end must equal
 * the initial sum plus the sum of everything added: a lost, duplicated or
 * misplaced-and-lost update shows up as a checksum mismatch (ok=0).
 */
#include "workload-common.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#define DEFAULT_OPS      4000000ull
#define OPS_PER_CLOCK    65536      /* ops between clock reads with --seconds */

static void usage(void)
{
    printf(
"Usage: memrand --mib N [--seconds T | --ops K] [--seed S]\n"
"\n"
"Random 8-byte read-modify-write operations over an N MiB working set,\n"
"validated by a checksum of the whole area at the end.\n"
"\n"
"  --mib N       working set in MiB (required, >= 1)\n"
"  --ops K       number of operations (default %llu)\n"
"  --seconds T   run for T seconds instead of a fixed number of operations\n"
"  --seed S      seed of the address/value sequence (default 1)\n"
"  -h, --help    show this help\n"
"\n"
"Progress goes to stderr. Exactly one line goes to stdout:\n"
"  SPLITVM-RESULT memrand ok=1 mib=N ops=K ops_per_sec=R seconds=T\n"
"Exit status: 0 ok, 1 checksum mismatch (ok=0), 2 bad usage.\n",
           DEFAULT_OPS);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "mib", required_argument, NULL, 'm' },
        { "ops", required_argument, NULL, 'o' },
        { "seconds", required_argument, NULL, 't' },
        { "seed", required_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    uint64_t mib = 0, ops = 0, seed = 1, nwords, *mem;
    uint64_t added = 0, done = 0, sum = 0, initial = 0, state;
    double seconds = 0, start, run_s;
    int c;

    wl_init("memrand");
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm':
            mib = wl_parse_u64("--mib", optarg, 1, WL_MAX_MIB);
            break;
        case 'o':
            ops = wl_parse_u64("--ops", optarg, 1, UINT64_MAX);
            break;
        case 't':
            seconds = wl_parse_seconds("--seconds", optarg);
            break;
        case 's':
            seed = wl_parse_u64("--seed", optarg, 0, UINT64_MAX);
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
    if (ops && seconds > 0) {
        wl_usage_error("--ops and --seconds are mutually exclusive");
    }
    if (!ops && seconds == 0) {
        ops = DEFAULT_OPS;
    }

    nwords = (mib << 20) / sizeof(uint64_t);
    mem = wl_map_mib(mib);
    if (!mem) {
        return WL_EXIT_FAILED;
    }

    /* Touch every page first so the timed phase measures random access. */
    for (uint64_t i = 0; i < nwords; i++) {
        mem[i] = wl_splitmix64(seed ^ i);
        initial += mem[i];
    }
    wl_progress("%" PRIu64 " MiB initialised; %s", mib,
                seconds > 0 ? "running for a fixed time" :
                              "running a fixed number of operations");

    state = seed;
    start = wl_now();
    for (;;) {
        uint64_t batch = OPS_PER_CLOCK;

        if (ops && ops - done < batch) {
            batch = ops - done;
        }
        for (uint64_t k = 0; k < batch; k++) {
            uint64_t r = wl_splitmix64(state++);
            uint64_t idx = r % nwords;
            uint64_t delta = r >> 17 | 1;

            mem[idx] += delta;
            added += delta;
        }
        done += batch;
        if (ops ? done >= ops : wl_now() - start >= seconds) {
            break;
        }
    }
    run_s = wl_now() - start;

    for (uint64_t i = 0; i < nwords; i++) {
        sum += mem[i];
    }
    if (sum != initial + added) {
        wl_progress("checksum mismatch after %" PRIu64 " ops: 0x%016" PRIx64
                    " != 0x%016" PRIx64, done, sum, initial + added);
        wl_result("ok=0 mib=%" PRIu64 " ops=%" PRIu64 " error=bad-checksum"
                  " expected=0x%016" PRIx64 " got=0x%016" PRIx64, mib, done,
                  initial + added, sum);
        return WL_EXIT_FAILED;
    }
    wl_progress("%" PRIu64 " ops in %.2f s, checksum ok", done, run_s);
    wl_result("ok=1 mib=%" PRIu64 " ops=%" PRIu64 " ops_per_sec=%.0f"
              " seconds=%.3f", mib, done, done / run_s, run_s);
    wl_unmap_mib(mem, mib);
    return WL_EXIT_OK;
}
