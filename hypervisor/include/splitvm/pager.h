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
 */
SvmPager *svm_pager_start(const SvmPagerConfig *cfg, GError **errp);

/* Stop serving, unregister and drop the connections.  Guest RAM contents
 * that were only remote are no longer reachable afterwards. */
void svm_pager_stop(SvmPager *p);

/* Change the resident budget live; evicts down to a lower budget before returning. */
bool svm_pager_set_budget(SvmPager *p, uint64_t budget, GError **errp);

void svm_pager_get_stats(SvmPager *p, SvmPagerStats *st);

/* Formats stats as "key value\n" lines (for CLIs and logs); caller frees. */
char *svm_pager_stats_text(const SvmPagerStats *st);

#endif /* SPLITVM_PAGER_H */
