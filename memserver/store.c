/*
 * Page store: pool, extents, namespaces, persistence.  See store.h.
 *
 * Memory layout.  The pool is one mapping of `capacity` bytes split into
 * extents of 64 pages.  A namespace takes whole extents from the pool and
 * places its pages in free slots of its own extents (so capacity is used
 * page by page, not extent by extent, whatever the access pattern).  An
 * extent goes back to the pool when its last page is discarded.
 *
 * Metadata, per stored page: 4 bytes in the namespace's leaf table (leaves
 * of 1024 entries, allocated on first write in their 4 MiB of namespace)
 * and 8 bytes of reverse map (pool page -> namespace, page number), which
 * is what makes the file backing restartable; per extent 24 bytes.  That is
 * about 0.3 % of the stored bytes once leaves are reasonably filled.
 *
 * The reverse map and the namespace table live in `meta`, a MAP_SHARED
 * mapping of FILE.meta for file backing (anonymous otherwise), so they are
 * persisted by the kernel's page cache like the pages themselves.
 *
 * Isolation: a pool page is reachable only through the leaf table of the
 * namespace that wrote it; a slot is always written whole before it is
 * mapped; reads of unmapped pages return zeroes without touching the pool.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <gio/gio.h>
#include "store.h"

#define LEAF_SHIFT      10u
#define LEAF_ENTRIES    (1u << LEAF_SHIFT)
#define EXTENT_BYTES    ((size_t)SVM_EXTENT_PAGES * SVM_WIRE_PAGE_SIZE)
#define EXTENT_FULL     UINT64_MAX
#define POOL_ALIGN      ((size_t)2 << 20)   /* a huge page */
#define RMAP_PAGE_BITS  40u
#define RMAP_PAGE_MASK  ((UINT64_C(1) << RMAP_PAGE_BITS) - 1)

#define META_MAGIC      "SVMSTOR1"
#define META_VERSION    1u
#define META_HDR_SIZE   4096u

typedef struct MetaHeader {
    char magic[8];
    uint32_t version;
    uint32_t page_size;
    uint64_t capacity_pages;
    uint32_t max_ns;
    uint32_t extent_pages;
    uint32_t clean;                 /* 1 after an orderly shutdown */
} MetaHeader;

typedef struct MetaNs {
    char id[72];
    uint64_t npages;
    uint64_t epoch;
    uint32_t in_use;
    uint8_t pad[36];
} MetaNs;
_Static_assert(sizeof(MetaNs) == 128, "MetaNs is part of the file format");

typedef struct Extent {
    uint64_t used;                  /* bitmap of occupied slots */
    uint32_t owner;                 /* namespace index + 1; 0 = free */
    uint32_t prev, next;            /* extent index + 1 in a list; 0 = none */
} Extent;

struct SvmNs {
    uint32_t index;
    char id[SVM_WIRE_ID_MAX + 1];
    pthread_mutex_t lock;
    uint64_t npages, quota, epoch, stored;
    uint64_t requests;
    uint32_t **dir;                 /* leaves of pool page + 1 (0 = zero page) */
    size_t ndir, nleaves;
    uint32_t partial_head;          /* own extents with free slots */
    uint64_t free_slots;
    unsigned attached;              /* store lock */
    bool freed;
};

struct SvmStore {
    SvmBacking backing;
    char *path, *meta_path;
    int data_fd, meta_fd;
    uint8_t *pool;
    size_t pool_len;
    uint8_t *meta;
    size_t meta_len;
    MetaHeader *hdr;
    MetaNs *mns;
    uint64_t *rmap;
    uint64_t capacity_pages, nextents;

    pthread_mutex_t lock;
    Extent *extents;
    uint64_t ext_hwm;               /* extents >= hwm were never used */
    uint32_t ext_free_head;
    uint64_t ext_free_count, extents_used;
    uint64_t pages_stored;          /* atomic */
    bool pool_external;             /* svm_store_open_in: not ours to unmap */
    bool pool_thp;                  /* anonymous pool in transparent huge pages */
    bool prealloc;                  /* svm_store_prealloc: free extents stay backed */
    void (*extent_released)(void *opaque, uint64_t extent);
    void *extent_opaque;
    SvmNs *ns[SVM_STORE_MAX_NS];
    GHashTable *by_id;
    uint64_t nns;
};

/* ---- namespace leaf table ---- */

static uint32_t *leaf_entry(SvmNs *ns, uint64_t page, bool create)
{
    uint32_t *leaf = ns->dir[page >> LEAF_SHIFT];
    if (!leaf) {
        if (!create) {
            return NULL;
        }
        leaf = g_new0(uint32_t, LEAF_ENTRIES);
        ns->dir[page >> LEAF_SHIFT] = leaf;
        ns->nleaves++;
    }
    return &leaf[page & (LEAF_ENTRIES - 1)];
}

static uint32_t lookup(SvmNs *ns, uint64_t page)
{
    uint32_t *e = leaf_entry(ns, page, false);
    return e ? *e : 0;
}

static void ns_resize_dir(SvmNs *ns, uint64_t npages)
{
    size_t ndir = (npages + LEAF_ENTRIES - 1) >> LEAF_SHIFT;
    if (ndir > ns->ndir) {
        ns->dir = g_renew(uint32_t *, ns->dir, ndir);
        memset(ns->dir + ns->ndir, 0, (ndir - ns->ndir) * sizeof(*ns->dir));
        ns->ndir = ndir;
    }
    ns->npages = npages;
}

/* ---- extents ---- */

static void list_push(SvmStore *st, uint32_t *head, uint64_t e)
{
    Extent *x = &st->extents[e];
    x->prev = 0;
    x->next = *head;
    if (*head) {
        st->extents[*head - 1].prev = (uint32_t)e + 1;
    }
    *head = (uint32_t)e + 1;
}

static void list_remove(SvmStore *st, uint32_t *head, uint64_t e)
{
    Extent *x = &st->extents[e];
    if (x->prev) {
        st->extents[x->prev - 1].next = x->next;
    } else {
        *head = x->next;
    }
    if (x->next) {
        st->extents[x->next - 1].prev = x->prev;
    }
    x->prev = x->next = 0;
}

static uint64_t extents_available(SvmStore *st)
{
    return st->ext_free_count + (st->nextents - st->ext_hwm);
}

/* Give `count` extents to ns (store lock held, availability checked). */
static void extents_take(SvmStore *st, SvmNs *ns, uint64_t count)
{
    while (count--) {
        uint64_t e;
        if (st->ext_free_head) {
            e = st->ext_free_head - 1;
            list_remove(st, &st->ext_free_head, e);
            st->ext_free_count--;
        } else {
            e = st->ext_hwm++;
        }
        st->extents[e].used = 0;
        st->extents[e].owner = ns->index + 1;
        st->extents_used++;
        list_push(st, &ns->partial_head, e);
        ns->free_slots += SVM_EXTENT_PAGES;
    }
}

/* An empty extent goes back to the pool (ns lock held). */
static void extent_release(SvmStore *st, SvmNs *ns, uint64_t e)
{
    if (st->extent_released) {
        /* One-sided transports revoke their keys to it first. */
        st->extent_released(st->extent_opaque, e);
    }
    list_remove(st, &ns->partial_head, e);
    ns->free_slots -= SVM_EXTENT_PAGES;
    pthread_mutex_lock(&st->lock);
    st->extents[e].owner = 0;
    list_push(st, &st->ext_free_head, e);
    st->ext_free_count++;
    st->extents_used--;
    pthread_mutex_unlock(&st->lock);

    /*
     * Give the memory back; its old contents can never be read anyway.
     * Not when the pool was preallocated: the operator reserved it, and
     * giving it back would reintroduce the faults (and the chance of
     * running out) that preallocation is there to take out of the write path.
     */
    if (st->prealloc) {
        return;
    }
    uint8_t *p = st->pool + e * EXTENT_BYTES;
    if (st->backing == SVM_BACKING_ANON) {
        madvise(p, EXTENT_BYTES, MADV_DONTNEED);
    } else if (st->backing == SVM_BACKING_FILE) {
        fallocate(st->data_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  (off_t)(e * EXTENT_BYTES), EXTENT_BYTES);
    }
}

static uint64_t slot_alloc(SvmStore *st, SvmNs *ns)
{
    uint64_t e = ns->partial_head - 1;
    Extent *x = &st->extents[e];
    unsigned bit = (unsigned)__builtin_ctzll(~x->used);
    x->used |= UINT64_C(1) << bit;
    ns->free_slots--;
    if (x->used == EXTENT_FULL) {
        list_remove(st, &ns->partial_head, e);
    }
    return e * SVM_EXTENT_PAGES + bit;
}

static void slot_free(SvmStore *st, SvmNs *ns, uint64_t pp)
{
    uint64_t e = pp / SVM_EXTENT_PAGES;
    Extent *x = &st->extents[e];
    bool was_full = x->used == EXTENT_FULL;

    x->used &= ~(UINT64_C(1) << (pp % SVM_EXTENT_PAGES));
    ns->free_slots++;
    if (was_full) {
        list_push(st, &ns->partial_head, e);
    }
    st->rmap[pp] = 0;
    if (x->used == 0) {
        extent_release(st, ns, e);
    }
}

/* ---- open / close ---- */

static size_t meta_size(uint64_t capacity_pages)
{
    size_t len = META_HDR_SIZE + SVM_STORE_MAX_NS * sizeof(MetaNs) + capacity_pages * 8;
    return (len + 4095) & ~(size_t)4095;
}

static int open_sized(const char *path, size_t want, bool *created, GError **errp)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(errno),
                    "%s: %s", path, g_strerror(errno));
        return -1;
    }
    struct stat sb;
    fstat(fd, &sb);
    *created = sb.st_size == 0;
    if (*created) {
        if (ftruncate(fd, (off_t)want) < 0) {
            g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(errno),
                        "%s: cannot size to %zu bytes: %s", path, want, g_strerror(errno));
            close(fd);
            return -1;
        }
    } else if ((size_t)sb.st_size != want) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "%s: size %lld does not match the configured capacity (expected %zu "
                    "bytes); start with the capacity it was created with",
                    path, (long long)sb.st_size, want);
        close(fd);
        return -1;
    }
    return fd;
}

static SvmNs *ns_new(SvmStore *st, uint32_t index, const char *id, uint64_t npages,
                     uint64_t epoch)
{
    SvmNs *ns = g_new0(SvmNs, 1);
    ns->index = index;
    g_strlcpy(ns->id, id, sizeof(ns->id));
    pthread_mutex_init(&ns->lock, NULL);
    ns->epoch = epoch;
    ns_resize_dir(ns, npages);
    st->ns[index] = ns;
    g_hash_table_insert(st->by_id, ns->id, ns);
    st->nns++;
    return ns;
}

static void ns_free(SvmStore *st, SvmNs *ns)
{
    g_hash_table_remove(st->by_id, ns->id);
    st->ns[ns->index] = NULL;
    st->nns--;
    for (size_t i = 0; i < ns->ndir; i++) {
        g_free(ns->dir[i]);
    }
    g_free(ns->dir);
    pthread_mutex_destroy(&ns->lock);
    g_free(ns);
}

/* Rebuild namespaces, leaves and extents from the persistent tables. */
static bool store_rebuild(SvmStore *st, GError **errp)
{
    for (uint32_t i = 0; i < SVM_STORE_MAX_NS; i++) {
        MetaNs *m = &st->mns[i];
        if (!m->in_use) {
            continue;
        }
        m->id[sizeof(m->id) - 1] = '\0';
        if (!*m->id || m->npages == 0 || m->npages > SVM_WIRE_MAX_NS_PAGES ||
            g_hash_table_contains(st->by_id, m->id)) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                        "%s: namespace entry %u is corrupt", st->meta_path, i);
            return false;
        }
        ns_new(st, i, m->id, m->npages, m->epoch);
    }
    for (uint64_t pp = 0; pp < st->capacity_pages; pp++) {
        uint64_t r = st->rmap[pp];
        if (!r) {
            continue;
        }
        uint64_t idx = (r >> RMAP_PAGE_BITS) - 1;
        uint64_t page = r & RMAP_PAGE_MASK;
        SvmNs *ns = idx < SVM_STORE_MAX_NS ? st->ns[idx] : NULL;
        uint64_t e = pp / SVM_EXTENT_PAGES;
        Extent *x = &st->extents[e];
        if (!ns || page >= ns->npages || (x->owner && x->owner != idx + 1) ||
            lookup(ns, page)) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                        "%s: page map entry for pool page %" G_GUINT64_FORMAT " is corrupt",
                        st->meta_path, pp);
            return false;
        }
        if (!x->owner) {
            x->owner = (uint32_t)idx + 1;
            st->extents_used++;
        }
        x->used |= UINT64_C(1) << (pp % SVM_EXTENT_PAGES);
        *leaf_entry(ns, page, true) = (uint32_t)pp + 1;
        ns->stored++;
        st->pages_stored++;
        if (e >= st->ext_hwm) {
            st->ext_hwm = e + 1;
        }
    }
    for (uint64_t e = 0; e < st->ext_hwm; e++) {
        Extent *x = &st->extents[e];
        if (!x->owner) {
            list_push(st, &st->ext_free_head, e);
            st->ext_free_count++;
        } else if (x->used != EXTENT_FULL) {
            SvmNs *ns = st->ns[x->owner - 1];
            list_push(st, &ns->partial_head, e);
            ns->free_slots += SVM_EXTENT_PAGES - (uint64_t)__builtin_popcountll(x->used);
        }
    }
    return true;
}

size_t svm_store_pool_bytes(uint64_t capacity)
{
    return (size_t)(capacity / EXTENT_BYTES) * EXTENT_BYTES;
}

static SvmStore *store_open(uint64_t capacity, SvmBacking backing, const char *path,
                            void *external_pool, GError **errp);

SvmStore *svm_store_open(uint64_t capacity, SvmBacking backing, const char *path,
                         GError **errp)
{
    return store_open(capacity, backing, path, NULL, errp);
}

SvmStore *svm_store_open_in(uint64_t capacity, void *pool, GError **errp)
{
    return store_open(capacity, SVM_BACKING_ANON, NULL, pool, errp);
}

/*
 * An anonymous pool, 2 MiB aligned and marked for transparent huge pages:
 * every page written for the first time would otherwise cost a fault (and
 * under nested paging an exit as well) inside the write path; with huge
 * pages that is one per 2 MiB.  Discarded extents are still given back
 * (the kernel splits the huge page).  *thp says whether the kernel took
 * the advice (it refuses without CONFIG_TRANSPARENT_HUGEPAGE).
 */
static uint8_t *map_anon_pool(size_t len, bool *thp)
{
    uint8_t *raw = mmap(NULL, len + POOL_ALIGN, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    uint8_t *pool;
    size_t head;

    *thp = false;
    if (raw == MAP_FAILED) {
        return MAP_FAILED;
    }
    pool = (uint8_t *)(((uintptr_t)raw + POOL_ALIGN - 1) & ~(uintptr_t)(POOL_ALIGN - 1));
    head = (size_t)(pool - raw);
    if (head) {
        munmap(raw, head);
    }
    if (POOL_ALIGN - head) {
        munmap(pool + len, POOL_ALIGN - head);
    }
    *thp = madvise(pool, len, MADV_HUGEPAGE) == 0;
    return pool;
}

/* Populate [p, p + len) writable, a GiB at a time so a large pool shows progress. */
static bool populate_pool(uint8_t *p, size_t len, GError **errp)
{
    const size_t chunk = (size_t)1 << 30;
    gint64 t0 = g_get_monotonic_time();

    for (size_t off = 0; off < len; off += chunk) {
        size_t n = MIN(chunk, len - off);
        if (madvise(p + off, n, MADV_POPULATE_WRITE) < 0) {
            int err = errno;
            g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(err),
                        "cannot preallocate the pool (%zu MiB done of %zu MiB): %s%s",
                        off >> 20, len >> 20, g_strerror(err),
                        err == EINVAL ? " (MADV_POPULATE_WRITE needs Linux 5.14)" : "");
            return false;
        }
        if (len > chunk) {
            g_message("preallocating the pool: %zu of %zu MiB", (off + n) >> 20, len >> 20);
        }
    }
    g_message("preallocated the pool (%zu MiB) in %.2f s", len >> 20,
              (g_get_monotonic_time() - t0) / 1e6);
    return true;
}

bool svm_store_prealloc(SvmStore *st, GError **errp)
{
    if (st->backing == SVM_BACKING_FILE) {
        /* Reserve the blocks; the pages themselves stay in the page cache's hands. */
        int err = posix_fallocate(st->data_fd, 0, (off_t)st->pool_len);
        if (err) {
            g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(err),
                        "%s: cannot preallocate %zu MiB: %s", st->path, st->pool_len >> 20,
                        g_strerror(err));
            return false;
        }
    } else if (!populate_pool(st->pool, st->pool_len, errp)) {
        return false;
    }
    st->prealloc = true;
    return true;
}

static SvmStore *store_open(uint64_t capacity, SvmBacking backing, const char *path,
                            void *external_pool, GError **errp)
{
    uint64_t nextents = capacity / EXTENT_BYTES;

    if (nextents == 0) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "capacity %" G_GUINT64_FORMAT " is below one extent (%zu bytes)",
                    capacity, EXTENT_BYTES);
        return NULL;
    }
    if (nextents * SVM_EXTENT_PAGES >= UINT32_MAX) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "capacity %" G_GUINT64_FORMAT " exceeds 16 TiB", capacity);
        return NULL;
    }
    if (backing == SVM_BACKING_HUGETLB && (nextents * EXTENT_BYTES) % (2u << 20)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "capacity must be a multiple of 2 MiB with hugetlbfs backing");
        return NULL;
    }

    SvmStore *st = g_new0(SvmStore, 1);
    st->backing = backing;
    st->data_fd = st->meta_fd = -1;
    st->nextents = nextents;
    st->capacity_pages = nextents * SVM_EXTENT_PAGES;
    st->pool_len = nextents * EXTENT_BYTES;
    st->meta_len = meta_size(st->capacity_pages);
    pthread_mutex_init(&st->lock, NULL);
    st->by_id = g_hash_table_new(g_str_hash, g_str_equal);
    /* calloc: pages of the table cost memory only once extents are used. */
    st->extents = calloc(nextents, sizeof(Extent));
    if (!st->extents) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NO_SPACE, "cannot allocate extent table");
        goto fail;
    }

    bool fresh = true;
    if (backing == SVM_BACKING_FILE) {
        bool data_created, meta_created;
        st->path = g_strdup(path);
        st->meta_path = g_strdup_printf("%s.meta", path);
        st->data_fd = open_sized(st->path, st->pool_len, &data_created, errp);
        if (st->data_fd < 0) {
            goto fail;
        }
        st->meta_fd = open_sized(st->meta_path, st->meta_len, &meta_created, errp);
        if (st->meta_fd < 0) {
            goto fail;
        }
        if (data_created != meta_created) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                        "%s and %s do not belong together (one of them is new); "
                        "remove both to start empty", st->path, st->meta_path);
            goto fail;
        }
        fresh = meta_created;
        st->pool = mmap(NULL, st->pool_len, PROT_READ | PROT_WRITE, MAP_SHARED,
                        st->data_fd, 0);
        st->meta = mmap(NULL, st->meta_len, PROT_READ | PROT_WRITE, MAP_SHARED,
                        st->meta_fd, 0);
    } else {
        if (external_pool) {
            st->pool = external_pool;
            st->pool_external = true;
        } else if (backing == SVM_BACKING_HUGETLB) {
            st->pool = mmap(NULL, st->pool_len, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
        } else {
            st->pool = map_anon_pool(st->pool_len, &st->pool_thp);
        }
        st->meta = mmap(NULL, st->meta_len, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    }
    if (st->pool == MAP_FAILED || st->meta == MAP_FAILED) {
        int err = errno;
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(err),
                    "cannot map a pool of %zu bytes (%s backing): %s%s", st->pool_len,
                    backing == SVM_BACKING_HUGETLB ? "hugetlbfs" :
                    backing == SVM_BACKING_FILE ? "file" : "anonymous", g_strerror(err),
                    backing == SVM_BACKING_HUGETLB ?
                    " (reserve huge pages in /proc/sys/vm/nr_hugepages)" : "");
        if (st->pool == MAP_FAILED) {
            st->pool = NULL;
        }
        if (st->meta == MAP_FAILED) {
            st->meta = NULL;
        }
        goto fail;
    }
    st->hdr = (MetaHeader *)st->meta;
    st->mns = (MetaNs *)(st->meta + META_HDR_SIZE);
    st->rmap = (uint64_t *)(st->meta + META_HDR_SIZE + SVM_STORE_MAX_NS * sizeof(MetaNs));

    if (fresh) {
        memcpy(st->hdr->magic, META_MAGIC, 8);
        st->hdr->version = META_VERSION;
        st->hdr->page_size = SVM_WIRE_PAGE_SIZE;
        st->hdr->capacity_pages = st->capacity_pages;
        st->hdr->max_ns = SVM_STORE_MAX_NS;
        st->hdr->extent_pages = SVM_EXTENT_PAGES;
    } else {
        if (memcmp(st->hdr->magic, META_MAGIC, 8) || st->hdr->version != META_VERSION ||
            st->hdr->page_size != SVM_WIRE_PAGE_SIZE ||
            st->hdr->capacity_pages != st->capacity_pages ||
            st->hdr->max_ns != SVM_STORE_MAX_NS ||
            st->hdr->extent_pages != SVM_EXTENT_PAGES) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                        "%s: not a splitvm-memserver page map for this capacity "
                        "(bad magic, version or geometry)", st->meta_path);
            goto fail;
        }
        if (!st->hdr->clean) {
            g_warning("%s: the server was not shut down cleanly; pages written just "
                      "before that may be lost", st->meta_path);
        }
        if (!store_rebuild(st, errp)) {
            goto fail;
        }
    }
    st->hdr->clean = 0;
    return st;

fail:
    svm_store_close(st);
    return NULL;
}

bool svm_store_flush(SvmStore *st, GError **errp)
{
    if (st->backing != SVM_BACKING_FILE) {
        return true;
    }
    if (msync(st->pool, st->pool_len, MS_SYNC) < 0 ||
        msync(st->meta, st->meta_len, MS_SYNC) < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(errno),
                    "%s: flushing pages: %s", st->path, g_strerror(errno));
        return false;
    }
    return true;
}

void svm_store_close(SvmStore *st)
{
    if (!st) {
        return;
    }
    if (st->hdr && st->backing == SVM_BACKING_FILE) {
        g_autoptr(GError) err = NULL;
        if (svm_store_flush(st, &err)) {
            st->hdr->clean = 1;
            msync(st->meta, META_HDR_SIZE, MS_SYNC);
        } else {
            g_warning("%s", err->message);
        }
    }
    for (unsigned i = 0; i < SVM_STORE_MAX_NS; i++) {
        if (st->ns[i]) {
            ns_free(st, st->ns[i]);
        }
    }
    if (st->pool && !st->pool_external) {
        munmap(st->pool, st->pool_len);
    }
    if (st->meta) {
        munmap(st->meta, st->meta_len);
    }
    if (st->data_fd >= 0) {
        close(st->data_fd);
    }
    if (st->meta_fd >= 0) {
        close(st->meta_fd);
    }
    if (st->by_id) {
        g_hash_table_destroy(st->by_id);
    }
    free(st->extents);
    pthread_mutex_destroy(&st->lock);
    g_free(st->path);
    g_free(st->meta_path);
    g_free(st);
}

/* ---- info ---- */

static uint64_t resident_bytes(const void *addr, size_t len)
{
    size_t pages = len / 4096;
    g_autofree unsigned char *vec = g_malloc(pages ? pages : 1);
    uint64_t n = 0;

    if (mincore((void *)addr, len, vec) < 0) {
        return len;     /* cannot tell: count all of it */
    }
    for (size_t i = 0; i < pages; i++) {
        n += vec[i] & 1;
    }
    return n * 4096;
}

void svm_store_info(SvmStore *st, SvmStoreInfo *info)
{
    memset(info, 0, sizeof(*info));
    pthread_mutex_lock(&st->lock);
    info->capacity_pages = st->capacity_pages;
    info->pages_stored = __atomic_load_n(&st->pages_stored, __ATOMIC_RELAXED);
    info->extents_total = st->nextents;
    info->extents_used = st->extents_used;
    info->namespaces = st->nns;
    info->huge_pages = st->backing == SVM_BACKING_HUGETLB || st->pool_thp;
    info->preallocated = st->prealloc;
    uint64_t meta = sizeof(*st) + st->ext_hwm * sizeof(Extent);
    for (unsigned i = 0; i < SVM_STORE_MAX_NS; i++) {
        SvmNs *ns = st->ns[i];
        if (ns) {
            meta += sizeof(*ns) + ns->ndir * sizeof(*ns->dir) +
                    __atomic_load_n(&ns->nleaves, __ATOMIC_RELAXED) * LEAF_ENTRIES * 4;
        }
    }
    pthread_mutex_unlock(&st->lock);
    info->metadata_bytes = meta + resident_bytes(st->meta, st->meta_len);
}

static void fill_ns_info(SvmNs *ns, SvmNsInfo *info)
{
    g_strlcpy(info->id, ns->id, sizeof(info->id));
    info->npages = ns->npages;
    info->pages_stored = __atomic_load_n(&ns->stored, __ATOMIC_RELAXED);
    info->quota_pages = ns->quota;
    info->owner_epoch = ns->epoch;
    info->requests = __atomic_load_n(&ns->requests, __ATOMIC_RELAXED);
    info->attached = ns->attached;
}

void svm_store_ns_info(SvmStore *st, SvmNs *ns, SvmNsInfo *info)
{
    pthread_mutex_lock(&ns->lock);
    fill_ns_info(ns, info);
    pthread_mutex_unlock(&ns->lock);
}

bool svm_store_find_ns_info(SvmStore *st, const char *vm_id, SvmNsInfo *info)
{
    pthread_mutex_lock(&st->lock);
    SvmNs *ns = g_hash_table_lookup(st->by_id, vm_id);
    if (ns) {
        fill_ns_info(ns, info);
    }
    pthread_mutex_unlock(&st->lock);
    return ns != NULL;
}

void svm_store_foreach_ns(SvmStore *st, void (*fn)(void *opaque, const SvmNsInfo *ns),
                          void *opaque)
{
    pthread_mutex_lock(&st->lock);
    for (unsigned i = 0; i < SVM_STORE_MAX_NS; i++) {
        if (st->ns[i]) {
            SvmNsInfo info;
            fill_ns_info(st->ns[i], &info);
            fn(opaque, &info);
        }
    }
    pthread_mutex_unlock(&st->lock);
}

/* ---- attach / detach ---- */

SvmWireStatus svm_store_attach(SvmStore *st, const char *vm_id, uint64_t npages,
                               uint64_t quota_pages, uint64_t owner_epoch, SvmNs **out,
                               char *msg, size_t msg_cap)
{
    if (npages == 0 || npages > SVM_WIRE_MAX_NS_PAGES) {
        snprintf(msg, msg_cap, "namespace size %" G_GUINT64_FORMAT
                 " pages is not in 1..2^32", npages);
        return SVM_ST_TOO_LARGE;
    }
    pthread_mutex_lock(&st->lock);
    SvmNs *ns = g_hash_table_lookup(st->by_id, vm_id);
    if (!ns) {
        uint32_t idx = 0;
        while (idx < SVM_STORE_MAX_NS && st->ns[idx]) {
            idx++;
        }
        if (idx == SVM_STORE_MAX_NS) {
            pthread_mutex_unlock(&st->lock);
            snprintf(msg, msg_cap, "the server holds its maximum of %u namespaces",
                     SVM_STORE_MAX_NS);
            return SVM_ST_CAPACITY;
        }
        ns = ns_new(st, idx, vm_id, npages, owner_epoch);
        MetaNs *m = &st->mns[idx];
        memset(m, 0, sizeof(*m));
        g_strlcpy(m->id, vm_id, sizeof(m->id));
        m->npages = npages;
        m->epoch = owner_epoch;
        m->in_use = 1;
    }
    ns->attached++;
    pthread_mutex_unlock(&st->lock);

    SvmWireStatus status = SVM_ST_OK;
    pthread_mutex_lock(&ns->lock);
    if (npages < ns->npages) {
        snprintf(msg, msg_cap, "namespace '%s' has %" G_GUINT64_FORMAT " pages; shrinking "
                 "it to %" G_GUINT64_FORMAT " is refused", vm_id, ns->npages, npages);
        status = SVM_ST_TOO_LARGE;
    } else if (owner_epoch && owner_epoch < ns->epoch) {
        snprintf(msg, msg_cap, "owner epoch %" G_GUINT64_FORMAT " is older than the "
                 "namespace's %" G_GUINT64_FORMAT, owner_epoch, ns->epoch);
        status = SVM_ST_FENCED;
    } else {
        if (npages > ns->npages) {
            ns_resize_dir(ns, npages);
            st->mns[ns->index].npages = npages;
        }
        if (owner_epoch > ns->epoch) {
            ns->epoch = owner_epoch;
            st->mns[ns->index].epoch = owner_epoch;
        }
        ns->quota = quota_pages;
    }
    pthread_mutex_unlock(&ns->lock);
    if (status != SVM_ST_OK) {
        svm_store_detach(st, ns);
        return status;
    }
    *out = ns;
    return SVM_ST_OK;
}

void svm_store_detach(SvmStore *st, SvmNs *ns)
{
    pthread_mutex_lock(&st->lock);
    if (--ns->attached == 0 && ns->freed && ns->stored == 0) {
        memset(&st->mns[ns->index], 0, sizeof(MetaNs));
        ns_free(st, ns);
    }
    pthread_mutex_unlock(&st->lock);
}

/* ---- page operations ---- */

static bool check_range(SvmNs *ns, const uint64_t *pages, unsigned n, char *msg,
                        size_t msg_cap)
{
    for (unsigned i = 0; i < n; i++) {
        if (pages[i] >= ns->npages) {
            snprintf(msg, msg_cap, "page %" G_GUINT64_FORMAT " is past the end of "
                     "namespace '%s' (%" G_GUINT64_FORMAT " pages)", pages[i], ns->id,
                     ns->npages);
            return false;
        }
    }
    return true;
}

static bool check_fence(SvmNs *ns, uint64_t epoch, char *msg, size_t msg_cap)
{
    if (epoch && epoch < ns->epoch) {
        snprintf(msg, msg_cap, "owner epoch %" G_GUINT64_FORMAT " was superseded by %"
                 G_GUINT64_FORMAT, epoch, ns->epoch);
        return false;
    }
    return true;
}

SvmWireStatus svm_store_read(SvmStore *st, SvmNs *ns, const uint64_t *pages, unsigned n,
                             uint8_t *out, char *msg, size_t msg_cap)
{
    __atomic_fetch_add(&ns->requests, 1, __ATOMIC_RELAXED);
    pthread_mutex_lock(&ns->lock);
    if (!check_range(ns, pages, n, msg, msg_cap)) {
        pthread_mutex_unlock(&ns->lock);
        return SVM_ST_OUT_OF_RANGE;
    }
    for (unsigned i = 0; i < n; i++, out += SVM_WIRE_PAGE_SIZE) {
        uint32_t slot = lookup(ns, pages[i]);
        if (slot) {
            memcpy(out, st->pool + (size_t)(slot - 1) * SVM_WIRE_PAGE_SIZE,
                   SVM_WIRE_PAGE_SIZE);
        } else {
            memset(out, 0, SVM_WIRE_PAGE_SIZE);
        }
    }
    pthread_mutex_unlock(&ns->lock);
    return SVM_ST_OK;
}

SvmWireStatus svm_store_write(SvmStore *st, SvmNs *ns, uint64_t epoch,
                              const uint64_t *pages, unsigned n, const uint8_t *data,
                              char *msg, size_t msg_cap)
{
    SvmWireStatus status = SVM_ST_OK;

    __atomic_fetch_add(&ns->requests, 1, __ATOMIC_RELAXED);
    pthread_mutex_lock(&ns->lock);
    if (!check_range(ns, pages, n, msg, msg_cap)) {
        status = SVM_ST_OUT_OF_RANGE;
        goto out;
    }
    if (!check_fence(ns, epoch, msg, msg_cap)) {
        status = SVM_ST_FENCED;
        goto out;
    }
    /* Count distinct pages not stored yet, to refuse the batch as a whole. */
    uint64_t fresh = 0;
    for (unsigned i = 0; i < n; i++) {
        if (lookup(ns, pages[i])) {
            continue;
        }
        bool dup = false;
        for (unsigned j = 0; j < i && !dup; j++) {
            dup = pages[j] == pages[i];
        }
        fresh += !dup;
    }
    if (ns->quota && ns->stored + fresh > ns->quota) {
        snprintf(msg, msg_cap, "VM '%s' has %" G_GUINT64_FORMAT " of its %" G_GUINT64_FORMAT
                 " quota pages stored; %" G_GUINT64_FORMAT " more do not fit", ns->id,
                 ns->stored, ns->quota, fresh);
        status = SVM_ST_QUOTA;
        goto out;
    }
    if (fresh > ns->free_slots) {
        uint64_t need = (fresh - ns->free_slots + SVM_EXTENT_PAGES - 1) / SVM_EXTENT_PAGES;
        pthread_mutex_lock(&st->lock);
        if (extents_available(st) < need) {
            pthread_mutex_unlock(&st->lock);
            snprintf(msg, msg_cap, "server capacity of %" G_GUINT64_FORMAT " pages is "
                     "exhausted (%" G_GUINT64_FORMAT " stored)", st->capacity_pages,
                     __atomic_load_n(&st->pages_stored, __ATOMIC_RELAXED));
            status = SVM_ST_CAPACITY;
            goto out;
        }
        extents_take(st, ns, need);
        pthread_mutex_unlock(&st->lock);
    }
    for (unsigned i = 0; i < n; i++) {
        uint32_t *entry = leaf_entry(ns, pages[i], true);
        if (!*entry) {
            uint64_t pp = slot_alloc(st, ns);
            st->rmap[pp] = ((uint64_t)(ns->index + 1) << RMAP_PAGE_BITS) | pages[i];
            *entry = (uint32_t)pp + 1;
            ns->stored++;
            __atomic_fetch_add(&st->pages_stored, 1, __ATOMIC_RELAXED);
        }
        memcpy(st->pool + (size_t)(*entry - 1) * SVM_WIRE_PAGE_SIZE,
               data + (size_t)i * SVM_WIRE_PAGE_SIZE, SVM_WIRE_PAGE_SIZE);
    }
    ns->freed = false;
out:
    pthread_mutex_unlock(&ns->lock);
    return status;
}

static void drop_page(SvmStore *st, SvmNs *ns, uint32_t *entry)
{
    slot_free(st, ns, *entry - 1);
    *entry = 0;
    ns->stored--;
    __atomic_fetch_sub(&st->pages_stored, 1, __ATOMIC_RELAXED);
}

SvmWireStatus svm_store_discard(SvmStore *st, SvmNs *ns, uint64_t epoch,
                                const uint64_t *pages, unsigned n, char *msg, size_t msg_cap)
{
    SvmWireStatus status = SVM_ST_OK;

    __atomic_fetch_add(&ns->requests, 1, __ATOMIC_RELAXED);
    pthread_mutex_lock(&ns->lock);
    if (!check_range(ns, pages, n, msg, msg_cap)) {
        status = SVM_ST_OUT_OF_RANGE;
    } else if (!check_fence(ns, epoch, msg, msg_cap)) {
        status = SVM_ST_FENCED;
    } else {
        for (unsigned i = 0; i < n; i++) {
            uint32_t *entry = leaf_entry(ns, pages[i], false);
            if (entry && *entry) {
                drop_page(st, ns, entry);
            }
        }
    }
    pthread_mutex_unlock(&ns->lock);
    return status;
}

SvmWireStatus svm_store_free_ns(SvmStore *st, SvmNs *ns, uint64_t epoch, char *msg,
                                size_t msg_cap)
{
    pthread_mutex_lock(&ns->lock);
    if (!check_fence(ns, epoch, msg, msg_cap)) {
        pthread_mutex_unlock(&ns->lock);
        return SVM_ST_FENCED;
    }
    for (size_t d = 0; d < ns->ndir; d++) {
        uint32_t *leaf = ns->dir[d];
        if (!leaf) {
            continue;
        }
        for (unsigned i = 0; i < LEAF_ENTRIES; i++) {
            if (leaf[i]) {
                drop_page(st, ns, &leaf[i]);
            }
        }
        g_free(leaf);
        ns->dir[d] = NULL;
        ns->nleaves--;
    }
    ns->freed = true;
    pthread_mutex_unlock(&ns->lock);
    return SVM_ST_OK;
}

/* ---- one-sided transports ---- */

void svm_store_pool(SvmStore *st, void **base, size_t *len)
{
    *base = st->pool;
    *len = st->pool_len;
}

void svm_store_set_extent_hook(SvmStore *st, void (*released)(void *opaque, uint64_t extent),
                               void *opaque)
{
    pthread_mutex_lock(&st->lock);
    st->extent_released = released;
    st->extent_opaque = opaque;
    pthread_mutex_unlock(&st->lock);
}

SvmWireStatus svm_store_locate(SvmStore *st, SvmNs *ns, uint64_t epoch,
                               const uint64_t *pages, unsigned n, uint64_t *pool_pages,
                               void (*extent_cb)(void *opaque, uint64_t extent),
                               void *opaque, char *msg, size_t msg_cap)
{
    SvmWireStatus status = SVM_ST_OK;
    uint64_t last_extent = UINT64_MAX;

    pthread_mutex_lock(&ns->lock);
    if (!check_range(ns, pages, n, msg, msg_cap)) {
        status = SVM_ST_OUT_OF_RANGE;
    } else if (!check_fence(ns, epoch, msg, msg_cap)) {
        /* A fenced owner must not learn where to write. */
        status = SVM_ST_FENCED;
    } else {
        for (unsigned i = 0; i < n; i++) {
            uint32_t slot = lookup(ns, pages[i]);
            pool_pages[i] = slot ? (uint64_t)slot - 1 : UINT64_MAX;
            if (slot && extent_cb && (slot - 1) / SVM_EXTENT_PAGES != last_extent) {
                last_extent = (slot - 1) / SVM_EXTENT_PAGES;
                extent_cb(opaque, last_extent);
            }
        }
    }
    pthread_mutex_unlock(&ns->lock);
    return status;
}
