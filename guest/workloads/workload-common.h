/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Helpers shared by the in-guest workloads (memverify, memscan, memrand).
 *
 * The workloads are linked -static so they run in a bare busybox
 * initramfs; they therefore use only libc (getopt_long instead of GLib's
 * GOptionContext, which would drag a static GLib into the guest).
 *
 * Conventions: progress goes to stderr, exactly one "SPLITVM-RESULT <name>
 * ok=0|1 key=value..." line goes to stdout, exit status 0 = ok,
 * 1 = the workload failed, 2 = bad command line.
 */
#ifndef SPLITVM_WORKLOAD_COMMON_H
#define SPLITVM_WORKLOAD_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdnoreturn.h>

#define WL_EXIT_OK     0
#define WL_EXIT_FAILED 1
#define WL_EXIT_USAGE  2

/* Largest working set accepted on the command line (1 TiB). */
#define WL_MAX_MIB (1024u * 1024u)

/* Set the program name used in messages and result lines. */
void wl_init(const char *name);
const char *wl_name(void);

/* Print "<name>: error: ... (try --help)" to stderr and exit 2. */
noreturn void wl_usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/*
 * Report the getopt_long() error for argv[optind - 1] (unknown option or
 * missing argument, depending on @c) and exit 2.
 */
noreturn void wl_bad_option(int c, char **argv);

/* Reject positional arguments left after option parsing (exit 2). */
void wl_no_positional(int argc, char **argv);

/* Parse an unsigned integer option value in [min, max], or exit 2. */
uint64_t wl_parse_u64(const char *opt, const char *arg,
                      uint64_t min, uint64_t max);

/* Parse a positive number of seconds (fractions allowed), or exit 2. */
double wl_parse_seconds(const char *opt, const char *arg);

/* Progress line "<name>: ..." on stderr. */
void wl_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The single machine-readable line on stdout ("SPLITVM-RESULT <name> ..."). */
void wl_result(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Monotonic time in seconds. */
double wl_now(void);

/*
 * Map @mib MiB of private anonymous memory.  Pages are not pre-faulted:
 * first-touch faults are part of what the workloads exercise.  On failure
 * reports it (progress line and an ok=0 error=mmap-failed result line) and
 * returns NULL.
 */
uint64_t *wl_map_mib(uint64_t mib);
void wl_unmap_mib(uint64_t *mem, uint64_t mib);

/* splitmix64 finaliser: a cheap, well-mixed 64-bit hash of @x. */
static inline uint64_t wl_splitmix64(uint64_t x)
{
    uint64_t z = x + 0x9e3779b97f4a7c15ull;

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#endif /* SPLITVM_WORKLOAD_COMMON_H */
