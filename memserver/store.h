/*
 * Page store of splitvm-memserver: one pool (anonymous memory, hugetlbfs or
 * a file) carved into extents of 64 pages; each extent belongs to at most
 * one VM namespace.  A namespace maps its page numbers to pool pages through
 * a two-level table allocated on first write; pages never written cost
 * nothing and read as zeroes.
 *
 * Thread-safe: one lock per namespace for page operations, one store lock
 * for extent allocation and the namespace table.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SPLITVM_MEMSERVER_STORE_H
#define SPLITVM_MEMSERVER_STORE_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>
#include "splitvm/wire.h"

#define SVM_EXTENT_PAGES    64u
#define SVM_STORE_MAX_NS    4096u

typedef enum SvmBacking {
    SVM_BACKING_ANON,
    SVM_BACKING_HUGETLB,
    SVM_BACKING_FILE,
} SvmBacking;

typedef struct SvmStore SvmStore;
typedef struct SvmNs SvmNs;

typedef struct SvmStoreInfo {
    uint64_t capacity_pages;
    uint64_t pages_stored;
    uint64_t extents_total, extents_used;
    uint64_t namespaces;
    uint64_t metadata_bytes;        /* tables the store keeps in memory */
    bool huge_pages;                /* pool in huge pages (hugetlbfs or THP) */
    bool preallocated;              /* svm_store_prealloc succeeded */
} SvmStoreInfo;

typedef struct SvmNsInfo {
    char id[SVM_WIRE_ID_MAX + 1];
    uint64_t npages, pages_stored, quota_pages, owner_epoch, requests;
    unsigned attached;
} SvmNsInfo;

/*
 * Open the pool.  capacity is in bytes (rounded down to whole extents).
 * For SVM_BACKING_FILE, `path` holds the pages and `path`.meta the
 * namespace table and page map; both are created, or reopened with their
 * namespaces and pages if they exist.
 */
SvmStore *svm_store_open(uint64_t capacity, SvmBacking backing, const char *path,
                         GError **errp);
/*
 * Back the whole pool now (memory: populated writable; file: blocks
 * reserved) and keep it backed: extents that empty are no longer given
 * back.  Call right after opening, before serving.  On failure the
 * message says how much of the pool could be had (a server should then
 * refuse to start rather than run short later).
 */
bool svm_store_prealloc(SvmStore *st, GError **errp);
/* Write everything to the backing file (no-op for memory backings). */
bool svm_store_flush(SvmStore *st, GError **errp);
void svm_store_close(SvmStore *st);

void svm_store_info(SvmStore *st, SvmStoreInfo *info);
/* Calls fn for each namespace (store lock held: fn must not call the store). */
void svm_store_foreach_ns(SvmStore *st, void (*fn)(void *opaque, const SvmNsInfo *ns),
                          void *opaque);

/*
 * Attach (creating it on first use) the namespace of vm_id with npages
 * pages.  Growing an existing namespace is allowed, shrinking is not.
 * quota_pages 0 means no quota.  owner_epoch 0 means no fencing; otherwise
 * it must be >= the highest epoch seen for the namespace.  On failure
 * returns a status and writes a message into msg.
 */
SvmWireStatus svm_store_attach(SvmStore *st, const char *vm_id, uint64_t npages,
                               uint64_t quota_pages, uint64_t owner_epoch, SvmNs **out,
                               char *msg, size_t msg_cap);
void svm_store_detach(SvmStore *st, SvmNs *ns);
void svm_store_ns_info(SvmStore *st, SvmNs *ns, SvmNsInfo *info);
/* Info of a namespace by VM id, attached or not; false if it does not exist. */
bool svm_store_find_ns_info(SvmStore *st, const char *vm_id, SvmNsInfo *info);

/*
 * Page batches (1..SVM_WIRE_MAX_BATCH pages).  Each call checks the whole
 * batch (range, fencing, quota, capacity) before changing anything, so a
 * refused batch changes nothing.  `epoch` is the owner epoch the caller
 * attached with.  read: out receives n * 4096 bytes.
 */
SvmWireStatus svm_store_read(SvmStore *st, SvmNs *ns, const uint64_t *pages, unsigned n,
                             uint8_t *out, char *msg, size_t msg_cap);
SvmWireStatus svm_store_write(SvmStore *st, SvmNs *ns, uint64_t epoch,
                              const uint64_t *pages, unsigned n, const uint8_t *data,
                              char *msg, size_t msg_cap);
SvmWireStatus svm_store_discard(SvmStore *st, SvmNs *ns, uint64_t epoch,
                                const uint64_t *pages, unsigned n, char *msg, size_t msg_cap);
/* Drop every page of the namespace; the namespace itself goes away with
 * its last detach unless it is written to again. */
SvmWireStatus svm_store_free_ns(SvmStore *st, SvmNs *ns, uint64_t epoch, char *msg,
                                size_t msg_cap);

/* ---- for one-sided transports (rdma, docs/rdma.md) ---- */

/* Bytes of pool svm_store_open uses for this capacity (whole extents). */
size_t svm_store_pool_bytes(uint64_t capacity);
/*
 * Like svm_store_open with anonymous backing, but the pool is `pool`
 * (svm_store_pool_bytes(capacity) bytes of zeroed memory the caller
 * allocated and frees after svm_store_close).
 */
SvmStore *svm_store_open_in(uint64_t capacity, void *pool, GError **errp);
void svm_store_pool(SvmStore *st, void **base, size_t *len);
/*
 * released(opaque, extent) runs whenever an extent leaves its namespace,
 * under that namespace's lock and before the extent can be reused.
 */
void svm_store_set_extent_hook(SvmStore *st, void (*released)(void *opaque, uint64_t extent),
                               void *opaque);
/*
 * Pool page of each page (UINT64_MAX: not stored); extent_cb (may be NULL)
 * runs for the extent of each stored page with the namespace locked.
 */
SvmWireStatus svm_store_locate(SvmStore *st, SvmNs *ns, uint64_t epoch,
                               const uint64_t *pages, unsigned n, uint64_t *pool_pages,
                               void (*extent_cb)(void *opaque, uint64_t extent),
                               void *opaque, char *msg, size_t msg_cap);

#endif /* SPLITVM_MEMSERVER_STORE_H */
