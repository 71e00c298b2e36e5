/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "workload-common.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static const char *wl_program = "workload";

void wl_init(const char *name)
{
    wl_program = name;
    /* Result and progress lines must reach the console whole and in order. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    setvbuf(stderr, NULL, _IOLBF, 0);
}

const char *wl_name(void)
{
    return wl_program;
}

void wl_usage_error(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: error: ", wl_program);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (try '%s --help')\n", wl_program);
    exit(WL_EXIT_USAGE);
}

void wl_bad_option(int c, char **argv)
{
    const char *arg = argv[optind - 1];

    if (c == ':') {
        wl_usage_error("option '%s' needs a value", arg);
    }
    wl_usage_error("unknown option '%s'", arg);
}

void wl_no_positional(int argc, char **argv)
{
    if (optind < argc) {
        wl_usage_error("unexpected argument '%s'", argv[optind]);
    }
}

uint64_t wl_parse_u64(const char *opt, const char *arg,
                      uint64_t min, uint64_t max)
{
    char *end;
    unsigned long long v;

    errno = 0;
    if (arg[0] == '-' || arg[0] == '\0') {
        wl_usage_error("%s: '%s' is not a non-negative integer", opt, arg);
    }
    v = strtoull(arg, &end, 0);
    if (errno != 0 || *end != '\0') {
        wl_usage_error("%s: '%s' is not a non-negative integer", opt, arg);
    }
    if (v < min || v > max) {
        wl_usage_error("%s: %llu is out of range [%llu, %llu]", opt, v,
                       (unsigned long long)min, (unsigned long long)max);
    }
    return v;
}

double wl_parse_seconds(const char *opt, const char *arg)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(arg, &end);
    if (errno != 0 || end == arg || *end != '\0' || !(v > 0) || v > 1e7) {
        wl_usage_error("%s: '%s' is not a positive number of seconds", opt,
                       arg);
    }
    return v;
}

void wl_progress(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", wl_program);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void wl_result(const char *fmt, ...)
{
    va_list ap;

    printf("SPLITVM-RESULT %s ", wl_program);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

double wl_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

uint64_t *wl_map_mib(uint64_t mib)
{
    void *p = mmap(NULL, mib << 20, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (p == MAP_FAILED) {
        wl_progress("cannot map %" PRIu64 " MiB: %s", mib, strerror(errno));
        wl_result("ok=0 mib=%" PRIu64 " error=mmap-failed", mib);
        return NULL;
    }
    return p;
}

void wl_unmap_mib(uint64_t *mem, uint64_t mib)
{
    munmap(mem, mib << 20);
}
