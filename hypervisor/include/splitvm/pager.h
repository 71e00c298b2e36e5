/*
 * libsplitvm pager: guest RAM backed by pages in memory servers.
 *
 * The caller (QEMU's memory-backend-remote) owns a shared memfd mapped at
 * `host`; the pager registers that range with one userfaultfd and serves its
 * faults on its own threads, which never call back into the caller except
 * through event_cb.  Only `budget` bytes of guest RAM are resident at any
 * time; every other written page lives on the memory servers, striped across
 * them.  Accelerator-agnostic: KVM's and TCG's faults look the same here.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SPLITVM_PAGER_H
#define SPLITVM_PAGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

typedef struct SvmPager SvmPager;

/* GError domain of the pager; codes are errno values (EINVAL, ETIMEDOUT...). */
#define SVM_PAGER_ERROR svm_pager_error_quark()
GQuark svm_pager_error_quark(void);

typedef enum SvmPagerEventKind {
    SVM_PAGER_EVENT_SERVER_LOST,    /* faults on pages of `server` are blocked */
    SVM_PAGER_EVENT_SERVER_BACK,    /* `server` answers again; faults resume */
} SvmPagerEventKind;

typedef struct SvmPagerEvent {
    SvmPagerEventKind kind;
    const char *server;             /* "transport:HOST:PORT" as configured */
    const char *reason;             /* human-readable, e.g. "connection refused" */
} SvmPagerEvent;

typedef struct SvmPagerConfig {
    int memfd;                      /* shared memfd backing the range */
    void *host;                     /* where the caller mapped it (MAP_SHARED) */
    uint64_t size;                  /* bytes, multiple of 4 KiB */
    uint64_t budget;                /* max resident bytes; 0 = size (all local) */
    const char *vm_id;
    const void *secret;
    size_t secret_len;
    const char *const *servers;     /* "[tcp:|rdma:]HOST:PORT", nservers entries */
    unsigned nservers;
    bool prefetch;                  /* sequential/stride prefetch */
    /* Called on a pager thread; must not block for long. May be NULL. */
    void (*event_cb)(void *opaque, const SvmPagerEvent *ev);
    void *event_opaque;
    /*
     * Live migration (docs/migration.md).  incoming: this is a migration
     * destination; the pager starts not owning the VM's pages (it never
     * writes to the servers) and treats every page as remote until
     * svm_pager_set_written() says otherwise.  svm_pager_take_ownership()
     * makes it the owner.
     */
    bool incoming;
    /*
     * Owner epoch to attach with (fencing).  0: one above the highest epoch
     * the servers have seen for this VM, so any older owner is fenced.
     */
    uint64_t owner_epoch;
    /*
     * Nice increment (0..19) of the pager's own threads: fault handling,
     * eviction, retry, warm-up and the memory clients'.  They work for the
     * vCPUs; when they share a CPU with one, a higher number lets the vCPU
     * run first.  0 keeps them at the priority of the thread that started
     * the pager.
     */
    int service_nice;
} SvmPagerConfig;

typedef struct SvmPagerStats {
    uint64_t size, budget;
    uint64_t resident_pages, dirty_pages, remote_pages;
    uint64_t faults_missing, faults_wp, faults_minor;
    uint64_t fills_remote, fills_zero;
    uint64_t evictions, writebacks;
    uint64_t prefetch_issued, prefetch_hits;
    uint64_t bytes_in, bytes_out;
    uint64_t fault_lat_p50_ns, fault_lat_p99_ns, fault_lat_max_ns;
    uint32_t servers_down;          /* servers currently unreachable */
} SvmPagerStats;

/*
 * Connect to every server (all must answer and accept the secret), register
 * the range with userfaultfd and start serving faults.  Nothing in the range
 * may have been touched before this call.  NULL + errp on failure, with a
 * message naming the server and the reason.
 *
 *   SvmPager *svm_pager_start(const SvmPagerConfig *cfg, GError **errp);
 *
 * is a macro around what it really calls, with the caller's sizeof(cfg): a
 * caller built against an older, shorter SvmPagerConfig gets the newer
 * fields' zero defaults; one built against a newer header is refused with
 * an error saying so, instead of the library reading past its config.
 * (Fields are only ever appended; a change that is not an append bumps the
 * soname.)
 */
SvmPager *svm_pager_start_sized(const SvmPagerConfig *cfg, size_t cfg_size,
                                GError **errp);
#define svm_pager_start(cfg, errp) \
    svm_pager_start_sized((cfg), sizeof(SvmPagerConfig), (errp))

/* Stop serving, unregister and drop the connections.  Guest RAM contents
 * that were only remote are no longer reachable afterwards.  Calls still
 * running on other threads (set_budget, flush) fail with ESHUTDOWN and are
 * waited for; none may start once stop has been called. */
void svm_pager_stop(SvmPager *p);

/* Change the resident budget live; evicts down to a lower budget before returning. */
bool svm_pager_set_budget(SvmPager *p, uint64_t budget, GError **errp);

void svm_pager_get_stats(SvmPager *p, SvmPagerStats *st);

/* Formats stats as "key value\n" lines (for CLIs and logs); caller frees. */
char *svm_pager_stats_text(const SvmPagerStats *st);

/*
 * Live migration with the RAM staying on the memory servers.
 *
 * Source: svm_pager_flush() while the guest runs (repeatedly, until the
 * remaining dirty bytes are small), svm_pager_flush_all() with the guest
 * stopped, then send svm_pager_owner_epoch() and svm_pager_written_bitmap()
 * to the destination; once the destination owns the pages,
 * svm_pager_release_ownership() (or just svm_pager_stop()).
 * Destination: svm_pager_start() with cfg->incoming, svm_pager_set_written()
 * with the source's bitmap, svm_pager_take_ownership(source epoch) before
 * anything reads guest RAM, then optionally svm_pager_warm() with the
 * source's hot pages.
 */

/* Bytes of resident pages written since their last write-back. */
uint64_t svm_pager_dirty_bytes(SvmPager *p);

/*
 * Write up to max_bytes (0: all) of dirty resident pages back to their
 * servers; they stay resident, clean and write-protected, so a later write
 * makes them dirty again.  Safe while the guest runs.  *remaining (may be
 * NULL) gets the dirty bytes left.  False + errp if a server refused or did
 * not answer (-ESTALE/EPERM-like code ESTALE when this pager was fenced).
 */
bool svm_pager_flush(SvmPager *p, uint64_t max_bytes, uint64_t *remaining,
                     GError **errp);

/* With the guest stopped: flush until no page is dirty (or fail). */
bool svm_pager_flush_all(SvmPager *p, GError **errp);

/* The epoch this pager attached with; 0 while it does not own the pages. */
uint64_t svm_pager_owner_epoch(SvmPager *p);
bool svm_pager_is_owner(SvmPager *p);

/*
 * Bitmap of the pages that were ever written (one bit per 4 KiB page, LSB
 * first, ceil(npages/8) bytes in *len); caller g_free()s.  Exact only after
 * svm_pager_flush_all() with the guest stopped.
 */
uint8_t *svm_pager_written_bitmap(SvmPager *p, size_t *len);

/* Bitmap (same layout) of the resident pages: the hot-page list. */
uint8_t *svm_pager_resident_bitmap(SvmPager *p, size_t *len);

/*
 * Incoming pager, before it owns the pages: pages whose bit is clear were
 * never written by the source and are filled with zeroes locally instead of
 * being read from their server.  A wrong length is refused.
 */
bool svm_pager_set_written(SvmPager *p, const uint8_t *bits, size_t len,
                           GError **errp);

/*
 * Become the owner: forget every page cached locally (the servers hold the
 * truth), attach to every server with an epoch above both min_epoch and the
 * highest one the servers have seen.  From the first successful ATTACH on,
 * the old owner's writes are refused (FENCED).  All servers are checked to
 * be reachable first, so a failure usually leaves the old owner in charge.
 */
bool svm_pager_take_ownership(SvmPager *p, uint64_t min_epoch, GError **errp);

/* Source after the hand-over: never write to the servers again. */
void svm_pager_release_ownership(SvmPager *p);

/*
 * Fetch the pages set in bits (e.g. the source's resident set) in the
 * background, within the free budget, a few reads at a time so demand
 * faults go first; returns at once with how many pages it will try to
 * fetch (0: nothing to do, or a warm-up already runs).  svm_pager_stop()
 * ends it.
 */
uint64_t svm_pager_warm(SvmPager *p, const uint8_t *bits, size_t len);

#endif /* SPLITVM_PAGER_H */
