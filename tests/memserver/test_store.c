/*
 * Unit tests of the page store and its extent allocator (memserver/store.c).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include "store.h"

#define PAGE SVM_WIRE_PAGE_SIZE

static char msg[256];

static void fill(uint8_t *buf, uint64_t tag, uint64_t page)
{
    for (unsigned i = 0; i < PAGE / 8; i++) {
        ((uint64_t *)buf)[i] = tag * 1000003 + page * 7 + i;
    }
}

static bool holds(SvmStore *st, SvmNs *ns, uint64_t page, uint64_t tag)
{
    uint8_t got[PAGE], want[PAGE];
    g_assert_cmpint(svm_store_read(st, ns, &page, 1, got, msg, sizeof(msg)), ==, SVM_ST_OK);
    if (tag == 0) {
        memset(want, 0, PAGE);
    } else {
        fill(want, tag, page);
    }
    return memcmp(got, want, PAGE) == 0;
}

static SvmWireStatus put(SvmStore *st, SvmNs *ns, uint64_t page, uint64_t tag)
{
    uint8_t data[PAGE];
    fill(data, tag, page);
    return svm_store_write(st, ns, 0, &page, 1, data, msg, sizeof(msg));
}

static SvmNs *attach(SvmStore *st, const char *id, uint64_t npages, uint64_t quota)
{
    SvmNs *ns = NULL;
    g_assert_cmpint(svm_store_attach(st, id, npages, quota, 0, &ns, msg, sizeof(msg)), ==,
                    SVM_ST_OK);
    return ns;
}

static void test_zero_and_roundtrip(void)
{
    g_autoptr(GError) err = NULL;
    SvmStore *st = svm_store_open(64 << 20, SVM_BACKING_ANON, NULL, &err);
    g_assert_no_error(err);
    SvmNs *ns = attach(st, "vm1", 100000, 0);
    SvmStoreInfo info;

    /* Never-written pages read as zeroes and cost nothing. */
    g_assert_true(holds(st, ns, 99999, 0));
    svm_store_info(st, &info);
    g_assert_cmpuint(info.pages_stored, ==, 0);
    g_assert_cmpuint(info.extents_used, ==, 0);

    g_assert_cmpint(put(st, ns, 5, 1), ==, SVM_ST_OK);
    g_assert_cmpint(put(st, ns, 99999, 1), ==, SVM_ST_OK);
    g_assert_true(holds(st, ns, 5, 1));
    g_assert_true(holds(st, ns, 99999, 1));
    g_assert_true(holds(st, ns, 6, 0));
    /* Overwrite in place: no new page. */
    g_assert_cmpint(put(st, ns, 5, 2), ==, SVM_ST_OK);
    g_assert_true(holds(st, ns, 5, 2));
    svm_store_info(st, &info);
    g_assert_cmpuint(info.pages_stored, ==, 2);
    /* Pages far apart share an extent: capacity is used page by page. */
    g_assert_cmpuint(info.extents_used, ==, 1);

    uint64_t past = 100000;
    uint8_t buf[PAGE];
    g_assert_cmpint(svm_store_read(st, ns, &past, 1, buf, msg, sizeof(msg)), ==,
                    SVM_ST_OUT_OF_RANGE);
    g_assert_nonnull(strstr(msg, "100000"));
    g_assert_cmpint(put(st, ns, past, 1), ==, SVM_ST_OUT_OF_RANGE);

    /* A batch with one bad page changes nothing. */
    uint64_t pages[2] = { 7, 100000 };
    uint8_t data[2 * PAGE];
    g_assert_cmpint(svm_store_write(st, ns, 0, pages, 2, data, msg, sizeof(msg)), ==,
                    SVM_ST_OUT_OF_RANGE);
    g_assert_true(holds(st, ns, 7, 0));
    svm_store_detach(st, ns);
    svm_store_close(st);
}

static void test_extents_reuse(void)
{
    g_autoptr(GError) err = NULL;
    SvmStore *st = svm_store_open(4 * 64 * PAGE, SVM_BACKING_ANON, NULL, &err);
    SvmNs *ns = attach(st, "vm1", 10000, 0);
    SvmStoreInfo info;

    for (uint64_t p = 0; p < 130; p++) {
        g_assert_cmpint(put(st, ns, p * 17, 3), ==, SVM_ST_OK);
    }
    svm_store_info(st, &info);
    g_assert_cmpuint(info.extents_used, ==, 3);
    /* Discarding everything returns every extent to the pool. */
    for (uint64_t p = 0; p < 130; p++) {
        uint64_t pg = p * 17;
        g_assert_cmpint(svm_store_discard(st, ns, 0, &pg, 1, msg, sizeof(msg)), ==, SVM_ST_OK);
        g_assert_true(holds(st, ns, pg, 0));
    }
    svm_store_info(st, &info);
    g_assert_cmpuint(info.extents_used, ==, 0);
    g_assert_cmpuint(info.pages_stored, ==, 0);
    /* Discarding a page never written is fine. */
    uint64_t pg = 3;
    g_assert_cmpint(svm_store_discard(st, ns, 0, &pg, 1, msg, sizeof(msg)), ==, SVM_ST_OK);
    /* The whole capacity is usable again, and not one page more. */
    for (uint64_t p = 0; p < 256; p++) {
        g_assert_cmpint(put(st, ns, p, 4), ==, SVM_ST_OK);
    }
    g_assert_cmpint(put(st, ns, 256, 4), ==, SVM_ST_CAPACITY);
    g_assert_nonnull(strstr(msg, "capacity"));
    g_assert_true(holds(st, ns, 255, 4));
    svm_store_detach(st, ns);
    svm_store_close(st);
}

static void test_isolation_and_capacity_sharing(void)
{
    g_autoptr(GError) err = NULL;
    SvmStore *st = svm_store_open(2 * 64 * PAGE, SVM_BACKING_ANON, NULL, &err);
    SvmNs *a = attach(st, "vmA", 1000, 0);
    SvmNs *b = attach(st, "vmB", 1000, 0);

    for (uint64_t p = 0; p < 64; p++) {
        g_assert_cmpint(put(st, a, p, 0xA), ==, SVM_ST_OK);
        g_assert_cmpint(put(st, b, p, 0xB), ==, SVM_ST_OK);
    }
    for (uint64_t p = 0; p < 64; p++) {
        g_assert_true(holds(st, a, p, 0xA));
        g_assert_true(holds(st, b, p, 0xB));
    }
    /* Pool is full: each VM owns one extent. */
    g_assert_cmpint(put(st, a, 64, 0xA), ==, SVM_ST_CAPACITY);
    /* A frees its extent; B may now take it, and never sees A's data. */
    for (uint64_t p = 0; p < 64; p++) {
        g_assert_cmpint(svm_store_discard(st, a, 0, &p, 1, msg, sizeof(msg)), ==, SVM_ST_OK);
    }
    g_assert_cmpint(put(st, b, 500, 0xB), ==, SVM_ST_OK);
    g_assert_true(holds(st, b, 500, 0xB));
    for (uint64_t p = 64; p < 500; p++) {
        g_assert_true(holds(st, b, p, 0));
    }
    for (uint64_t p = 0; p < 64; p++) {
        g_assert_true(holds(st, a, p, 0));
    }
    svm_store_detach(st, a);
    svm_store_detach(st, b);
    svm_store_close(st);
}

static void test_quota(void)
{
    g_autoptr(GError) err = NULL;
    SvmStore *st = svm_store_open(16 << 20, SVM_BACKING_ANON, NULL, &err);
    SvmNs *ns = attach(st, "vmq", 1000, 10);
    uint64_t pages[12];
    uint8_t data[12 * PAGE];

    for (unsigned i = 0; i < 12; i++) {
        pages[i] = i;
    }
    /* 12 > quota: refused as a whole. */
    g_assert_cmpint(svm_store_write(st, ns, 0, pages, 12, data, msg, sizeof(msg)), ==,
                    SVM_ST_QUOTA);
    g_assert_nonnull(strstr(msg, "quota"));
    SvmNsInfo info;
    svm_store_ns_info(st, ns, &info);
    g_assert_cmpuint(info.pages_stored, ==, 0);
    /* Duplicates in a batch count once. */
    uint64_t dup[11] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9 };
    g_assert_cmpint(svm_store_write(st, ns, 0, dup, 11, data, msg, sizeof(msg)), ==, SVM_ST_OK);
    /* Overwrites need no quota, new pages do. */
    g_assert_cmpint(put(st, ns, 3, 1), ==, SVM_ST_OK);
    g_assert_cmpint(put(st, ns, 10, 1), ==, SVM_ST_QUOTA);
    uint64_t p = 0;
    g_assert_cmpint(svm_store_discard(st, ns, 0, &p, 1, msg, sizeof(msg)), ==, SVM_ST_OK);
    g_assert_cmpint(put(st, ns, 10, 1), ==, SVM_ST_OK);
    svm_store_detach(st, ns);
    svm_store_close(st);
}

static void test_attach_rules(void)
{
    g_autoptr(GError) err = NULL;
    SvmStore *st = svm_store_open(16 << 20, SVM_BACKING_ANON, NULL, &err);
    SvmNs *ns = NULL, *ns2 = NULL;

    g_assert_cmpint(svm_store_attach(st, "v", 0, 0, 0, &ns, msg, sizeof(msg)), ==,
                    SVM_ST_TOO_LARGE);
    g_assert_cmpint(svm_store_attach(st, "v", (1ull << 32) + 1, 0, 0, &ns, msg, sizeof(msg)),
                    ==, SVM_ST_TOO_LARGE);
    g_assert_cmpint(svm_store_attach(st, "v", 100, 0, 5, &ns, msg, sizeof(msg)), ==, SVM_ST_OK);
    /* Shrinking is refused, growing allowed. */
    g_assert_cmpint(svm_store_attach(st, "v", 50, 0, 5, &ns2, msg, sizeof(msg)), ==,
                    SVM_ST_TOO_LARGE);
    g_assert_cmpint(svm_store_attach(st, "v", 200, 0, 5, &ns2, msg, sizeof(msg)), ==, SVM_ST_OK);
    g_assert_true(ns == ns2);
    g_assert_cmpint(put(st, ns, 150, 1), ==, SVM_ST_OK);
    svm_store_detach(st, ns2);
    /* Fencing: an older epoch cannot attach; a newer one fences the old owner. */
    g_assert_cmpint(svm_store_attach(st, "v", 200, 0, 4, &ns2, msg, sizeof(msg)), ==,
                    SVM_ST_FENCED);
    g_assert_cmpint(svm_store_attach(st, "v", 200, 0, 6, &ns2, msg, sizeof(msg)), ==, SVM_ST_OK);
    uint8_t data[PAGE] = { 0 };
    uint64_t p = 1;
    g_assert_cmpint(svm_store_write(st, ns, 5, &p, 1, data, msg, sizeof(msg)), ==,
                    SVM_ST_FENCED);
    g_assert_cmpint(svm_store_write(st, ns2, 6, &p, 1, data, msg, sizeof(msg)), ==, SVM_ST_OK);
    svm_store_detach(st, ns2);

    /* FREE_NS drops the pages; the namespace goes with its last detach. */
    SvmStoreInfo si;
    g_assert_cmpint(svm_store_free_ns(st, ns, 0, msg, sizeof(msg)), ==, SVM_ST_OK);
    svm_store_info(st, &si);
    g_assert_cmpuint(si.pages_stored, ==, 0);
    g_assert_cmpuint(si.namespaces, ==, 1);
    svm_store_detach(st, ns);
    svm_store_info(st, &si);
    g_assert_cmpuint(si.namespaces, ==, 0);
    g_assert_cmpuint(si.extents_used, ==, 0);
    /* A new namespace of that name starts empty and unfenced. */
    ns = attach(st, "v", 10, 0);
    g_assert_true(holds(st, ns, 1, 0));
    svm_store_detach(st, ns);
    svm_store_close(st);
}

static void test_file_persistence(void)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *dir = g_dir_make_tmp("svm-store-XXXXXX", &err);
    g_autofree char *path = g_build_filename(dir, "pool", NULL);
    g_autofree char *meta = g_strconcat(path, ".meta", NULL);
    SvmStore *st = svm_store_open(8 << 20, SVM_BACKING_FILE, path, &err);
    g_assert_no_error(err);
    SvmNs *a = attach(st, "vmA", 5000, 0);
    SvmNs *b = attach(st, "vmB", 300, 0);
    for (uint64_t p = 0; p < 5000; p += 7) {
        g_assert_cmpint(put(st, a, p, 0xA), ==, SVM_ST_OK);
    }
    for (uint64_t p = 0; p < 300; p++) {
        g_assert_cmpint(put(st, b, p, 0xB), ==, SVM_ST_OK);
    }
    for (uint64_t p = 0; p < 300; p += 2) {
        g_assert_cmpint(svm_store_discard(st, b, 0, &p, 1, msg, sizeof(msg)), ==, SVM_ST_OK);
    }
    svm_store_detach(st, a);
    svm_store_detach(st, b);
    svm_store_close(st);

    st = svm_store_open(8 << 20, SVM_BACKING_FILE, path, &err);
    g_assert_no_error(err);
    SvmStoreInfo si;
    svm_store_info(st, &si);
    g_assert_cmpuint(si.namespaces, ==, 2);
    g_assert_cmpuint(si.pages_stored, ==, (5000 + 6) / 7 + 150);
    a = attach(st, "vmA", 5000, 0);
    b = attach(st, "vmB", 300, 0);
    for (uint64_t p = 0; p < 5000; p++) {
        g_assert_true(holds(st, a, p, p % 7 ? 0 : 0xA));
    }
    for (uint64_t p = 0; p < 300; p++) {
        g_assert_true(holds(st, b, p, p % 2 ? 0xB : 0));
    }
    /* Allocation state was rebuilt: new writes do not clobber old pages. */
    for (uint64_t p = 0; p < 300; p += 2) {
        g_assert_cmpint(put(st, b, p, 0xC), ==, SVM_ST_OK);
    }
    for (uint64_t p = 1; p < 5000; p += 7) {
        g_assert_cmpint(put(st, a, p, 0xD), ==, SVM_ST_OK);
    }
    for (uint64_t p = 0; p < 5000; p += 7) {
        g_assert_true(holds(st, a, p, 0xA));
    }
    for (uint64_t p = 1; p < 300; p += 2) {
        g_assert_true(holds(st, b, p, 0xB));
    }
    svm_store_detach(st, a);
    svm_store_detach(st, b);
    svm_store_close(st);

    /* A different capacity is refused with a message naming the file. */
    st = svm_store_open(16 << 20, SVM_BACKING_FILE, path, &err);
    g_assert_null(st);
    g_assert_nonnull(strstr(err->message, path));
    g_clear_error(&err);
    /* A corrupt page map is refused too. */
    g_autofree char *text = NULL;
    gsize len;
    g_assert_true(g_file_get_contents(meta, &text, &len, NULL));
    memcpy(text, "garbage!", 8);
    g_assert_true(g_file_set_contents(meta, text, (gssize)len, NULL));
    st = svm_store_open(8 << 20, SVM_BACKING_FILE, path, &err);
    g_assert_null(st);
    g_assert_nonnull(strstr(err->message, ".meta"));
    g_clear_error(&err);

    g_unlink(path);
    g_unlink(meta);
    g_rmdir(dir);
}

static void test_metadata_overhead(void)
{
    g_autoptr(GError) err = NULL;
    SvmStore *st = svm_store_open(256 << 20, SVM_BACKING_ANON, NULL, &err);
    /* A 512 MiB namespace, half of its pages written at random. */
    uint64_t npages = 131072;
    SvmNs *ns = attach(st, "vm1", npages, 0);
    uint8_t data[PAGE] = { 1 };
    GRand *r = g_rand_new_with_seed(1);
    for (uint64_t i = 0; i < npages / 2; i++) {
        uint64_t p = g_rand_int_range(r, 0, (gint32)npages);
        svm_store_write(st, ns, 0, &p, 1, data, msg, sizeof(msg));
    }
    g_rand_free(r);
    SvmStoreInfo si;
    svm_store_info(st, &si);
    double ratio = (double)si.metadata_bytes / ((double)si.pages_stored * PAGE);
    g_test_message("%" G_GUINT64_FORMAT " pages stored, %" G_GUINT64_FORMAT
                   " metadata bytes: %.4f %%", si.pages_stored, si.metadata_bytes, ratio * 100);
    g_assert_cmpfloat(ratio, <=, 0.01);
    svm_store_detach(st, ns);
    svm_store_close(st);
}

/*
 * The anonymous pool is mapped 2 MiB aligned for huge pages, whatever its
 * size: every page of a pool that ends inside a huge page is usable, and
 * discarding an extent inside a huge page (the kernel splits it) keeps
 * every other page.
 */
static void test_huge_page_pool(void)
{
    g_autoptr(GError) err = NULL;
    const uint64_t npages = 2 * 512 + 3 * 64;     /* 2 MiB * 2 + 3 extents */
    SvmStore *st = svm_store_open(npages * PAGE, SVM_BACKING_ANON, NULL, &err);
    g_assert_no_error(err);
    SvmNs *ns = attach(st, "vm1", npages, 0);
    SvmStoreInfo info;

    svm_store_info(st, &info);
    if (g_file_test("/sys/kernel/mm/transparent_hugepage/enabled", G_FILE_TEST_EXISTS)) {
        g_assert_true(info.huge_pages);
    }
    for (uint64_t p = 0; p < npages; p++) {
        g_assert_cmpint(put(st, ns, p, 5), ==, SVM_ST_OK);
    }
    g_assert_cmpint(put(st, ns, 0, 5), ==, SVM_ST_OK);     /* overwrite: fits */
    /* Pages 64..127 filled the second extent, inside the first huge page. */
    for (uint64_t p = 64; p < 128; p++) {
        g_assert_cmpint(svm_store_discard(st, ns, 0, &p, 1, msg, sizeof(msg)), ==,
                        SVM_ST_OK);
    }
    svm_store_info(st, &info);
    g_assert_cmpuint(info.pages_stored, ==, npages - 64);
    for (uint64_t p = 0; p < npages; p++) {
        g_assert_true(holds(st, ns, p, p >= 64 && p < 128 ? 0 : 5));
    }
    for (uint64_t p = 64; p < 128; p++) {
        g_assert_cmpint(put(st, ns, p, 6), ==, SVM_ST_OK);
        g_assert_true(holds(st, ns, p, 6));
    }
    g_assert_true(holds(st, ns, npages - 1, 5));
    svm_store_detach(st, ns);
    svm_store_close(st);
}

static size_t pool_resident(SvmStore *st, size_t from, size_t len)
{
    void *base;
    size_t pool_len, n = 0;
    unsigned char vec[1024];

    svm_store_pool(st, &base, &pool_len);
    g_assert_cmpuint(from + len, <=, pool_len);
    g_assert_cmpuint(len / PAGE, <=, sizeof(vec));
    g_assert_cmpint(mincore((uint8_t *)base + from, len, vec), ==, 0);
    for (size_t i = 0; i < len / PAGE; i++) {
        n += vec[i] & 1;
    }
    return n * PAGE;
}

/*
 * --prealloc: the whole pool is resident before the first write, and an
 * extent that empties stays resident (without prealloc it is given back).
 * Contents stay isolated either way: a page discarded and never written
 * again reads as zeroes, not as what its slot held.
 */
static void test_prealloc(void)
{
    g_autoptr(GError) err = NULL;
    const size_t len = 4 << 20;

    for (int pre = 0; pre <= 1; pre++) {
        SvmStore *st = svm_store_open(len, SVM_BACKING_ANON, NULL, &err);
        g_assert_no_error(err);
        if (pre) {
            g_assert_true(svm_store_prealloc(st, &err));
            g_assert_no_error(err);
            g_assert_cmpuint(pool_resident(st, 0, len), ==, len);
        }
        SvmStoreInfo info;
        svm_store_info(st, &info);
        g_assert_cmpint(info.preallocated, ==, pre);

        SvmNs *ns = attach(st, "vm1", 128, 0);
        for (uint64_t p = 0; p < 64; p++) {
            g_assert_cmpint(put(st, ns, p, 7), ==, SVM_ST_OK);
        }
        /* One full extent (the first 256 KiB of the pool), now emptied. */
        for (uint64_t p = 0; p < 64; p++) {
            g_assert_cmpint(svm_store_discard(st, ns, 0, &p, 1, msg, sizeof(msg)), ==,
                            SVM_ST_OK);
        }
        g_assert_cmpuint(pool_resident(st, 0, 64 * PAGE), ==, pre ? 64 * PAGE : 0);
        for (uint64_t p = 0; p < 64; p++) {
            g_assert_true(holds(st, ns, p, 0));
        }
        g_assert_cmpint(put(st, ns, 3, 8), ==, SVM_ST_OK);
        g_assert_true(holds(st, ns, 3, 8));
        svm_store_detach(st, ns);
        svm_store_close(st);
    }
}

/* File backing: the pool file's blocks are reserved, its pages kept. */
static void test_prealloc_file(void)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *dir = g_dir_make_tmp("svm-store-XXXXXX", &err);
    g_autofree char *path = g_build_filename(dir, "pool", NULL);
    g_autofree char *meta = g_strconcat(path, ".meta", NULL);
    const size_t len = 2 << 20;

    SvmStore *st = svm_store_open(len, SVM_BACKING_FILE, path, &err);
    g_assert_no_error(err);
    SvmNs *ns = attach(st, "vm1", 64, 0);
    g_assert_cmpint(put(st, ns, 5, 9), ==, SVM_ST_OK);
    g_assert_true(svm_store_prealloc(st, &err));
    g_assert_no_error(err);
    g_assert_true(holds(st, ns, 5, 9));     /* reserving kept the page */
    svm_store_detach(st, ns);
    svm_store_close(st);

    struct stat sb;
    g_assert_cmpint(stat(path, &sb), ==, 0);
    g_assert_cmpuint((uint64_t)sb.st_blocks * 512, >=, len);
    g_unlink(path);
    g_unlink(meta);
    g_rmdir(dir);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/store/zero-and-roundtrip", test_zero_and_roundtrip);
    g_test_add_func("/store/extents-reuse", test_extents_reuse);
    g_test_add_func("/store/isolation", test_isolation_and_capacity_sharing);
    g_test_add_func("/store/quota", test_quota);
    g_test_add_func("/store/attach-rules", test_attach_rules);
    g_test_add_func("/store/file-persistence", test_file_persistence);
    g_test_add_func("/store/metadata-overhead", test_metadata_overhead);
    g_test_add_func("/store/huge-page-pool", test_huge_page_pool);
    g_test_add_func("/store/prealloc", test_prealloc);
    g_test_add_func("/store/prealloc-file", test_prealloc_file);
    return g_test_run();
}
