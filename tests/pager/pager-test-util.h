/*
 * Helpers shared by the pager's integration tests.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef PAGER_TEST_UTIL_H
#define PAGER_TEST_UTIL_H

#include <glib.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "splitvm/pager.h"

#define PG 4096u

typedef struct TestRam {
    int memfd;
    uint8_t *host;
    uint64_t size;
} TestRam;

static inline void test_ram_init(TestRam *r, uint64_t size)
{
    r->size = size;
    r->memfd = memfd_create("pager-test-ram", MFD_CLOEXEC);
    g_assert_cmpint(r->memfd, >=, 0);
    g_assert_cmpint(ftruncate(r->memfd, (off_t)size), ==, 0);
    r->host = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, r->memfd, 0);
    g_assert_true(r->host != MAP_FAILED);
}

static inline void test_ram_destroy(TestRam *r)
{
    munmap(r->host, r->size);
    close(r->memfd);
}

static inline SvmPagerConfig test_config(TestRam *r, uint64_t budget)
{
    SvmPagerConfig c = {
        .memfd = r->memfd,
        .host = r->host,
        .size = r->size,
        .budget = budget,
    };
    return c;
}

static inline SvmPagerStats test_stats(SvmPager *p)
{
    SvmPagerStats st;

    svm_pager_get_stats(p, &st);
    return st;
}

static inline void test_print_stats(SvmPager *p)
{
    SvmPagerStats st = test_stats(p);
    g_autofree char *txt = svm_pager_stats_text(&st);

    g_test_message("pager stats:\n%s", txt);
}

/*
 * The calling thread's nice value, or -1 (the test skipped) when it leaves
 * less than `room` levels to nice the pager's threads by.
 */
static inline int test_nice_with_room(int room)
{
    int base;

    errno = 0;
    base = getpriority(PRIO_PROCESS, 0);
    g_assert_cmpint(errno, ==, 0);
    if (base + room > 19) {
        g_test_skip("running at a nice value too high to lower further");
        return -1;
    }
    return base;
}

/*
 * Wait up to 2 s until every thread of this process whose name starts with
 * `prefix` (there must be some) runs at nice `want` (they apply it when they
 * start); false if one does not.  Field 19 of /proc/self/task/TID/stat.
 */
static inline bool test_threads_at_nice(const char *prefix, long want)
{
    for (int tries = 0; tries < 200; tries++) {
        g_autoptr(GDir) dir = g_dir_open("/proc/self/task", 0, NULL);
        const char *tid;
        unsigned seen = 0, right = 0;

        g_assert_nonnull(dir);
        while ((tid = g_dir_read_name(dir))) {
            g_autofree char *cpath = g_strdup_printf("/proc/self/task/%s/comm", tid);
            g_autofree char *spath = g_strdup_printf("/proc/self/task/%s/stat", tid);
            g_autofree char *comm = NULL, *stat = NULL;
            g_auto(GStrv) f = NULL;
            const char *rest;

            if (!g_file_get_contents(cpath, &comm, NULL, NULL) ||
                !g_str_has_prefix(comm, prefix) ||
                !g_file_get_contents(spath, &stat, NULL, NULL)) {
                continue;
            }
            /* after "(comm) ": field 3 on; nice is field 19 */
            rest = strrchr(stat, ')');
            g_assert_nonnull(rest);
            f = g_strsplit(rest + 2, " ", 0);
            g_assert_cmpuint(g_strv_length(f), >, 16);
            seen++;
            right += g_ascii_strtoll(f[16], NULL, 10) == want;
        }
        if (seen && seen == right) {
            return true;
        }
        g_usleep(10 * 1000);
    }
    return false;
}

#endif
