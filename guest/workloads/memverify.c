/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * memverify: fill a memory area with a seeded pattern, read it back and
 * check every 8-byte word.
 *
 * Word i of loop l holds splitmix64(loop_seed(l) ^ (8 * i)), so each word
 * depends on the seed and on its position: a page that comes back from the
 * wrong place, a page that reads as zero, or a page left over from an
 * earlier loop (loop seeds differ) all fail verification.
 */
#include "workload-common.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t mib;
    uint64_t seed;
    uint64_t loops;         /* 0: not given */
    double seconds;         /* 0: not given */
    bool corrupt;
} MemverifyOptions;

typedef struct {
    uint64_t bad_words;
    uint64_t first_offset;
    uint64_t expected;
    uint64_t got;
} VerifyOutcome;

static void usage(void)
{
    printf(
"Usage: memverify --mib N [--seed S] [--loops L] [--seconds T]\n"
"                 [--corrupt-for-selftest]\n"
"\n"
"Fill N MiB of anonymous memory with a pseudo-random pattern derived from\n"
"the seed and each word's offset, read it back and verify every word.\n"
"Each loop uses a different seed derived from S, so stale pages are caught.\n"
"\n"
"  --mib N       size of the area in MiB (required, >= 1)\n"
"  --seed S      base seed (default 1)\n"
"  --loops L     number of write+verify loops (default 1)\n"
"  --seconds T   keep looping until T seconds have passed (whole loops;\n"
"                with --loops too, stops at whichever comes first)\n"
"  --corrupt-for-selftest\n"
"                flip one word between writing and verifying (loop 1), to\n"
"                prove that a failed verification is reported as a failure\n"
"  -h, --help    show this help\n"
"\n"
"Progress goes to stderr. Exactly one line goes to stdout:\n"
"  SPLITVM-RESULT memverify ok=1 mib=N loops=L seconds=T seed=S\n"
"  SPLITVM-RESULT memverify ok=0 mib=N loop=L offset=0x.. expected=0x..\n"
"                 got=0x.. bad_words=K seed=S\n"
"Exit status: 0 verified, 1 verification (or setup) failed, 2 bad usage.\n");
}

static void parse_options(int argc, char **argv, MemverifyOptions *o)
{
    static const struct option longopts[] = {
        { "mib", required_argument, NULL, 'm' },
        { "seed", required_argument, NULL, 's' },
        { "loops", required_argument, NULL, 'l' },
        { "seconds", required_argument, NULL, 't' },
        { "corrupt-for-selftest", no_argument, NULL, 'C' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;

    memset(o, 0, sizeof(*o));
    o->seed = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm':
            o->mib = wl_parse_u64("--mib", optarg, 1, WL_MAX_MIB);
            break;
        case 's':
            o->seed = wl_parse_u64("--seed", optarg, 0, UINT64_MAX);
            break;
        case 'l':
            o->loops = wl_parse_u64("--loops", optarg, 1, UINT64_MAX);
            break;
        case 't':
            o->seconds = wl_parse_seconds("--seconds", optarg);
            break;
        case 'C':
            o->corrupt = true;
            break;
        case 'h':
            usage();
            exit(WL_EXIT_OK);
        default:
            wl_bad_option(c, argv);
        }
    }
    wl_no_positional(argc, argv);
    if (o->mib == 0) {
        wl_usage_error("--mib is required");
    }
    if (o->loops == 0 && o->seconds == 0) {
        o->loops = 1;
    }
}

static uint64_t loop_seed(uint64_t seed, uint64_t loop)
{
    return wl_splitmix64(seed ^ wl_splitmix64(loop));
}

static void fill(uint64_t *mem, uint64_t nwords, uint64_t seed)
{
    for (uint64_t i = 0; i < nwords; i++) {
        mem[i] = wl_splitmix64(seed ^ (i * 8));
    }
}

static bool verify(const uint64_t *mem, uint64_t nwords, uint64_t seed,
                   VerifyOutcome *out)
{
    memset(out, 0, sizeof(*out));
    for (uint64_t i = 0; i < nwords; i++) {
        uint64_t want = wl_splitmix64(seed ^ (i * 8));
        uint64_t have = mem[i];

        if (__builtin_expect(have != want, 0)) {
            if (out->bad_words++ == 0) {
                out->first_offset = i * 8;
                out->expected = want;
                out->got = have;
            }
        }
    }
    return out->bad_words == 0;
}

int main(int argc, char **argv)
{
    MemverifyOptions o;
    uint64_t *mem;
    uint64_t nwords, loop;
    double start, last_report = 0;

    wl_init("memverify");
    parse_options(argc, argv, &o);

    nwords = (o.mib << 20) / sizeof(uint64_t);
    mem = wl_map_mib(o.mib);
    if (!mem) {
        return WL_EXIT_FAILED;
    }

    wl_progress("verifying %" PRIu64 " MiB, seed %" PRIu64 ", %s", o.mib,
                o.seed, o.seconds > 0 ? "time-bounded" : "loop-bounded");
    start = wl_now();
    for (loop = 1;; loop++) {
        uint64_t seed = loop_seed(o.seed, loop);
        VerifyOutcome out;
        double t0 = wl_now(), t1, t2;

        fill(mem, nwords, seed);
        t1 = wl_now();
        if (o.corrupt && loop == 1) {
            /* A deterministic word somewhere in the middle of the area. */
            uint64_t victim = nwords / 2 + wl_splitmix64(o.seed) % (nwords / 2);

            mem[victim] ^= 1ull << (o.seed % 64);
            wl_progress("selftest: flipped one bit at offset 0x%" PRIx64,
                        victim * 8);
        }
        if (!verify(mem, nwords, seed, &out)) {
            wl_progress("loop %" PRIu64 ": MISMATCH at offset 0x%" PRIx64
                        " (%" PRIu64 " bad words)", loop, out.first_offset,
                        out.bad_words);
            wl_result("ok=0 mib=%" PRIu64 " loop=%" PRIu64 " offset=0x%" PRIx64
                      " expected=0x%016" PRIx64 " got=0x%016" PRIx64
                      " bad_words=%" PRIu64 " seed=%" PRIu64, o.mib, loop,
                      out.first_offset, out.expected, out.got, out.bad_words,
                      o.seed);
            return WL_EXIT_FAILED;
        }
        t2 = wl_now();
        /* At most about one progress line a second for short loops. */
        if (loop == 1 || t2 - last_report >= 1.0) {
            last_report = t2;
            wl_progress("loop %" PRIu64 ": ok (write %.2f s, verify %.2f s)",
                        loop, t1 - t0, t2 - t1);
        }
        if (o.loops && loop >= o.loops) {
            break;
        }
        if (o.seconds > 0 && t2 - start >= o.seconds) {
            break;
        }
    }
    wl_result("ok=1 mib=%" PRIu64 " loops=%" PRIu64 " seconds=%.3f seed=%"
              PRIu64, o.mib, loop, wl_now() - start, o.seed);
    wl_unmap_mib(mem, o.mib);
    return WL_EXIT_OK;
}
