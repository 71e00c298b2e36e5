/*
 * Helpers shared by the pager's integration tests.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef PAGER_TEST_UTIL_H
#define PAGER_TEST_UTIL_H

#include <glib.h>
#include <stdint.h>
#include <sys/mman.h>
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

#endif
