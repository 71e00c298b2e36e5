/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * memscan: sequential write and read passes over a memory area, reporting
 * bandwidth.  Each pass writes word i = base + i (base differs per pass)
 * and the following read pass sums the area and checks the sum against the
 * closed form, so a lost or stale write is reported, not just timed.
 */
#include "workload-common.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

static void usage(void)
{
    printf(
"Usage: memscan --mib N [--passes P]\n"
"\n"
"Sequential write pass then read pass over N MiB of anonymous memory,\n"
"repeated P times; reports the bandwidth of each direction.\n"
"\n"
"  --mib N       size of the area in MiB (required, >= 1)\n"
"  --passes P    number of write+read passes (default 3)\n"
"  -h, --help    show this help\n"
"\n"
"Progress goes to stderr. Exactly one line goes to stdout:\n"
"  SPLITVM-RESULT memscan ok=1 mib=N passes=P read_mibps=R write_mibps=W\n"
"                 seconds=T\n"
"Exit status: 0 ok, 1 a read pass saw wrong data (ok=0), 2 bad usage.\n");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "mib", required_argument, NULL, 'm' },
        { "passes", required_argument, NULL, 'p' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    uint64_t mib = 0, passes = 3, nwords, *mem;
    double read_s = 0, write_s = 0, start;
    int c;

    wl_init("memscan");
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm':
            mib = wl_parse_u64("--mib", optarg, 1, WL_MAX_MIB);
            break;
        case 'p':
            passes = wl_parse_u64("--passes", optarg, 1, 1000000);
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

    nwords = (mib << 20) / sizeof(uint64_t);
    mem = wl_map_mib(mib);
    if (!mem) {
        return WL_EXIT_FAILED;
    }

    start = wl_now();
    for (uint64_t pass = 1; pass <= passes; pass++) {
        uint64_t base = wl_splitmix64(pass);
        /* sum of (base + i) for i < n, modulo 2^64 */
        uint64_t want = nwords * base + (nwords & 1 ? nwords * ((nwords - 1) / 2)
                                                    : (nwords / 2) * (nwords - 1));
        uint64_t sum = 0;
        double t0, t1, t2;

        t0 = wl_now();
        for (uint64_t i = 0; i < nwords; i++) {
            mem[i] = base + i;
        }
        t1 = wl_now();
        for (uint64_t i = 0; i < nwords; i++) {
            sum += ((volatile uint64_t *)mem)[i];
        }
        t2 = wl_now();
        write_s += t1 - t0;
        read_s += t2 - t1;
        if (sum != want) {
            wl_progress("pass %" PRIu64 ": read back wrong data (sum 0x%016"
                        PRIx64 ", expected 0x%016" PRIx64 ")", pass, sum, want);
            wl_result("ok=0 mib=%" PRIu64 " pass=%" PRIu64 " error=bad-sum"
                      " expected=0x%016" PRIx64 " got=0x%016" PRIx64,
                      mib, pass, want, sum);
            return WL_EXIT_FAILED;
        }
        wl_progress("pass %" PRIu64 ": write %.0f MiB/s, read %.0f MiB/s",
                    pass, mib / (t1 - t0), mib / (t2 - t1));
    }
    wl_result("ok=1 mib=%" PRIu64 " passes=%" PRIu64 " read_mibps=%.1f"
              " write_mibps=%.1f seconds=%.3f", mib, passes,
              mib * passes / read_s, mib * passes / write_s, wl_now() - start);
    wl_unmap_mib(mem, mib);
    return WL_EXIT_OK;
}
