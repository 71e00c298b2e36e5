/*
 * libsplitvm pager internals shared by its source files.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SVM_PAGER_INTERNAL_H
#define SVM_PAGER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "splitvm/pager.h"
#include "splitvm/memclient.h"
#include "splitvm/thread.h"
#include "histogram.h"
#include "pagetable.h"
#include "policy.h"
#include "prefetch.h"
#include "stripe.h"

#define SVM_PAGE 4096u
#define SVM_FAULT_THREADS 4
#define SVM_EVICT_BATCH 32u
#define SVM_WRITEBACK_MAX 64u       /* pages per write-back batch */
#define SVM_PREFETCH_MIN 8u
#define SVM_PREFETCH_MAX 256u           /* pages in one read-ahead window */
#define SVM_PREFETCH_BATCH 64u          /* pages per request (SVM_MAX_BATCH) */
#define SVM_PREFETCH_INFLIGHT 512u      /* pages: keeps demand reads from queueing long */
#define SVM_WARM_INFLIGHT 128u         /* pages: warm-up reads on the wire */
#define SVM_MIN_BUDGET_PAGES 16u
#define SVM_ZERO_PAGES 64u              /* longest run mapped zero at once */

#define SVM_LOCAL __attribute__((visibility("hidden")))

typedef struct SvmServer {
    SvmPager *pager;
    unsigned idx;
    char *name;                 /* as configured */
    SvmMemClient *client;
    SvmMemClient *old_client;   /* before take_ownership; closed at stop */
    atomic_bool down;
    _Atomic uint64_t outages;   /* so far; a request's ticket (remote.c) */
} SvmServer;

/* A fault thread with its own epoll set (see fault.c). */
typedef struct SvmFaultThread {
    SvmPager *pager;
    pthread_t thread;
    int epfd;
} SvmFaultThread;

typedef struct SvmRetryList {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t *pages;
    size_t n, cap;
} SvmRetryList;

struct SvmPager {
    /* configuration */
    int memfd;
    uint8_t *host;
    uint64_t size, npages;
    bool prefetch;
    int service_nice;           /* nice increment of every thread it starts */
    void (*event_cb)(void *opaque, const SvmPagerEvent *ev);
    void *event_opaque;
    pthread_mutex_t event_lock;

    /* userfaultfd */
    int uffd;
    const char *uffd_how;
    bool minor;                 /* MINOR registered and CONTINUE_MODE_WP works */
    int stop_fd;                /* eventfd: wakes the fault threads on stop */
    atomic_bool stopping;

    /* ownership of the VM's pages on the servers (migrate.c) */
    atomic_bool owner;          /* false: never write to the servers */
    atomic_bool fenced;         /* a server refused a write: not the owner now */
    _Atomic uint64_t epoch;     /* epoch the current clients attached with */
    pthread_mutex_t flush_lock;     /* one flush at a time: */
    uint64_t flush_cursor;          /* next page a flush looks at */
    struct SvmWbPipe *flush_pipe;   /* its write-backs, made on first use */
    char *vm_id;                /* for new connections (take_ownership) */
    void *secret;
    size_t secret_len;

    SvmPageTable pt;
    SvmStripe stripe;
    SvmServer *servers;
    unsigned nservers;

    /* budget: `resident` counts resident pages plus fills in progress */
    _Atomic uint64_t budget_pages;
    _Atomic uint64_t resident;
    _Atomic uint64_t dirty;
    _Atomic uint64_t remote;
    pthread_mutex_t room_lock;
    pthread_cond_t room_cond;       /* fault threads wait for room */
    pthread_cond_t evict_cond;      /* the evictor waits for work */
    bool evict_kicked;

    /* eviction */
    pthread_t evict_thread;
    SvmClock clock;
    struct SvmWbPipe *evict_pipe;   /* dirty victims on their way out */

    /* faults */
    SvmFaultThread fault_threads[SVM_FAULT_THREADS];
    unsigned nfault_threads;
    const uint8_t *zero_page;       /* SVM_ZERO_PAGES pages of zeroes */

    /* remote fills that failed and wait for their server */
    SvmRetryList retry;
    pthread_t retry_thread;
    bool retry_started, evict_started;

    /* prefetch */
    pthread_mutex_t pf_lock;
    SvmPrefetchDetector pf_det;
    _Atomic uint64_t pf_inflight;
    /* the read-ahead stream (pf_lock): see pager-prefetch.c */
    int64_t pf_stride;              /* 0: no stream */
    uint64_t pf_next;               /* first page past the issued windows */
    unsigned pf_depth;              /* pages in the last window */
    uint64_t pf_pending;            /* issued pages not yet walked past */
    SvmDropBehind pf_behind;        /* what it walked past: the first victims */

    /* migration warm-up (migrate.c): a thread fetching the source's hot set */
    pthread_t warm_thread;
    atomic_bool warm_started;
    uint8_t *warm_bits;
    pthread_cond_t warm_cond;       /* (room_lock) prefetch reads completed */

    /* API calls in progress (set_budget may run on another thread than stop) */
    _Atomic unsigned api_calls;

    /* statistics */
    _Atomic uint64_t faults_missing, faults_wp, faults_minor;
    _Atomic uint64_t fills_remote, fills_zero;
    _Atomic uint64_t evictions, writebacks;
    _Atomic uint64_t prefetch_issued, prefetch_hits;
    _Atomic uint64_t bytes_in, bytes_out;
    SvmHistogram fault_lat;
};

static inline void *svm_page_addr(SvmPager *p, uint64_t page)
{
    return p->host + page * SVM_PAGE;
}

static inline uint64_t svm_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static inline void svm_stat_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static inline void svm_stat_sub(_Atomic uint64_t *c, uint64_t n)
{
    atomic_fetch_sub_explicit(c, n, memory_order_relaxed);
}

/* Owner is done with page: install `state`, wake faults that waited. */
SVM_LOCAL void svm_pager_release(SvmPager *p, uint64_t page, uint8_t state);
/* Same, and wake the page in any case: its own fault was not resolved by a
 * COPY/CONTINUE that woke it (one UFFDIO_WAKE covers the waiters too). */
SVM_LOCAL void svm_pager_release_wake(SvmPager *p, uint64_t page, uint8_t state);
SVM_LOCAL void svm_pager_log(SvmPager *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Around API calls that can wait long and may run on another thread than
 * svm_pager_stop(): false + errp once stopping; stop waits for the exits.
 */
SVM_LOCAL bool svm_api_enter(SvmPager *p, GError **errp);
SVM_LOCAL void svm_api_exit(SvmPager *p);

/* budget.c-like helpers (evict.c) */
SVM_LOCAL bool svm_budget_reserve(SvmPager *p, uint64_t n, bool wait);
SVM_LOCAL void svm_budget_unreserve(SvmPager *p, uint64_t n);
/* Pages that can be filled before the evictor has to make room. */
SVM_LOCAL uint64_t svm_budget_room(SvmPager *p);
SVM_LOCAL int svm_evict_start(SvmPager *p);
SVM_LOCAL void svm_evict_stop(SvmPager *p);
SVM_LOCAL void svm_evict_kick(SvmPager *p);
/* The read-ahead stream moved on: what it walked past may go now. */
SVM_LOCAL void svm_evict_dropbehind_kick(SvmPager *p);
SVM_LOCAL bool svm_evict_wait_below(SvmPager *p, uint64_t pages,
                                    unsigned timeout_ms);
/* writeback.c */
/*
 * Writing owned, dirty, resident pages back, `depth` batches on the wire
 * at once.  add() takes such a page (it may send a batch, or wait for a
 * free one); the pipe releases it once its server answered: with `evict`
 * punched and ABSENT (and its budget slot freed), else resident and clean;
 * unchanged (dirty) if it could not be written.  send() sends what add()
 * collected and releases what completed (with `wait`, after waiting for
 * one completion if any is pending); finish() sends the rest and waits for
 * every answer.  add() and finish() return 0 or the first error since the
 * last finish() (-ESTALE, fenced, wins).  One thread uses a pipe.
 */
typedef struct SvmWbPipe SvmWbPipe;
SVM_LOCAL SvmWbPipe *svm_wbpipe_new(SvmPager *p, unsigned depth, bool evict);
SVM_LOCAL int svm_wbpipe_add(SvmWbPipe *w, uint64_t page, uint8_t state);
SVM_LOCAL void svm_wbpipe_send(SvmWbPipe *w, bool wait);
SVM_LOCAL int svm_wbpipe_finish(SvmWbPipe *w, uint64_t *written);
/* Pages added and not released yet. */
SVM_LOCAL uint64_t svm_wbpipe_in_flight(SvmWbPipe *w);
SVM_LOCAL void svm_wbpipe_free(SvmWbPipe *w);
/* Drop pages first..first+n-1 from the memfd. */
SVM_LOCAL void svm_punch(SvmPager *p, uint64_t first, uint64_t n);

/* fault.c */
SVM_LOCAL int svm_fault_start(SvmPager *p);
SVM_LOCAL void svm_fault_stop(SvmPager *p);
/* Page owned, ABSENT with ONSERVER, slot reserved: fetch and install it. */
SVM_LOCAL void svm_fill_remote(SvmPager *p, uint64_t page, uint8_t old,
                               uint8_t extra);
/*
 * Install data with UFFDIO_COPY|WP; `extra` flags go into the new state.
 * With PT_DIRTY in extra (a write fault) the page goes in writable instead.
 */
SVM_LOCAL void svm_install(SvmPager *p, uint64_t page, uint8_t old,
                           const void *data, bool from_server, uint8_t extra);
/*
 * The same for n consecutive pages (olds[i]: their states) from n pages of
 * data, with one UFFDIO_COPY when it can (read-ahead windows).
 */
SVM_LOCAL void svm_install_run(SvmPager *p, const uint64_t *pages,
                               const uint8_t *olds, unsigned n,
                               const uint8_t *data, bool from_server,
                               uint8_t extra);

/* remote.c */
SVM_LOCAL bool svm_remote_connect(SvmPager *p, const SvmPagerConfig *cfg,
                                  GError **errp);
SVM_LOCAL void svm_remote_close(SvmPager *p);
/* A new connection to server i attached with owner epoch `epoch`. */
SVM_LOCAL SvmMemClient *svm_remote_client_new(SvmPager *p, unsigned i,
                                              uint64_t epoch, GError **errp);
SVM_LOCAL SvmServer *svm_remote_server(SvmPager *p, uint64_t page);
SVM_LOCAL int svm_remote_read(SvmPager *p, uint64_t page, void *buf);
/* pages all on server s; buffers valid until done runs */
SVM_LOCAL int svm_remote_write_async(SvmPager *p, SvmServer *s,
                                     const uint64_t *pages, unsigned n,
                                     const void *const *bufs,
                                     SvmMemClientDone done, void *opaque);
/*
 * Taken before a request is sent: its success reports the server back
 * only if it was sent during the outage it is in now (see remote.c).
 */
static inline uint64_t svm_remote_ticket(SvmServer *s)
{
    return atomic_load(&s->outages);
}
/* A request sent with `ticket` succeeded: its server may be back. */
SVM_LOCAL void svm_remote_answered(SvmServer *s, uint64_t ticket);
/* A write-back failed: reports the server lost (or fenced). */
SVM_LOCAL void svm_remote_write_failed(SvmServer *s, int ret);
SVM_LOCAL int svm_remote_read_async(SvmPager *p, SvmServer *s,
                                    const uint64_t *pages, unsigned n,
                                    void *const *bufs, SvmMemClientDone done,
                                    void *opaque);
SVM_LOCAL void svm_server_report(SvmServer *s, bool up, const char *reason);

/* retry.c */
SVM_LOCAL int svm_retry_start(SvmPager *p);
SVM_LOCAL void svm_retry_stop(SvmPager *p);
SVM_LOCAL void svm_retry_add(SvmPager *p, uint64_t page);
SVM_LOCAL void svm_retry_kick(SvmPager *p);

/* migrate.c */
SVM_LOCAL void svm_migrate_init_incoming(SvmPager *p);
SVM_LOCAL bool svm_migrate_claim(SvmPager *p, const SvmPagerConfig *cfg,
                                 GError **errp);

/* migrate.c: the warm-up thread; wake it when prefetch reads complete */
SVM_LOCAL void svm_warm_wake(SvmPager *p);
SVM_LOCAL void svm_warm_stop(SvmPager *p);

/* pager-prefetch.c */
SVM_LOCAL void svm_prefetch_after_fault(SvmPager *p, uint64_t page, bool write);
SVM_LOCAL void svm_prefetch_drain(SvmPager *p);
/* Queue asynchronous fills of remote pages (free budget only); returns how many. */
SVM_LOCAL unsigned svm_prefetch_pages(SvmPager *p, const uint64_t *pages,
                                      unsigned n);

#endif
