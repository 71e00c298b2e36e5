/*
 * libsplitvm pager: lifecycle, configuration and live budget.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pager-internal.h"
#include "uffd.h"

G_DEFINE_QUARK(svm-pager-error-quark, svm_pager_error)

void svm_pager_log(SvmPager *p, const char *fmt, ...)
{
    va_list ap;
    char msg[512];

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "splitvm-pager: %s\n", msg);
}

void svm_pager_release(SvmPager *p, uint64_t page, uint8_t state)
{
    if (svm_pt_release(&p->pt, page, state)) {
        svm_uffd_wake(p->uffd, svm_page_addr(p, page), SVM_PAGE);
    }
}

void svm_pager_release_wake(SvmPager *p, uint64_t page, uint8_t state)
{
    svm_pt_release(&p->pt, page, state);
    svm_uffd_wake(p->uffd, svm_page_addr(p, page), SVM_PAGE);
}

static bool check_budget(SvmPager *p, uint64_t budget, uint64_t *pages,
                         GError **errp)
{
    uint64_t n = budget ? budget / SVM_PAGE : p->npages;

    if (n > p->npages) {
        n = p->npages;
    }
    if (n < p->npages && p->nservers == 0) {
        g_set_error(errp, SVM_PAGER_ERROR, EINVAL,
                    "budget %" PRIu64 " bytes is below the RAM size %" PRIu64
                    " but no memory server is configured", budget, p->size);
        return false;
    }
    if (n < SVM_MIN_BUDGET_PAGES && n < p->npages) {
        g_set_error(errp, SVM_PAGER_ERROR, EINVAL,
                    "budget %" PRIu64 " bytes is below the minimum of %u KiB",
                    budget, SVM_MIN_BUDGET_PAGES * SVM_PAGE / 1024);
        return false;
    }
    *pages = n;
    return true;
}

/* Ask the kernel which features it has, on a throw-away uffd. */
static int uffd_features(uint64_t *features)
{
    const char *how;
    int fd = svm_uffd_open(&how);
    int ret;

    if (fd < 0) {
        return fd;
    }
    ret = svm_uffd_api(fd, 0, features);
    close(fd);
    return ret;
}

/*
 * CONTINUE_MODE_WP (Linux 6.4+) lets a MINOR fault on a clean page be
 * resolved with the page still write-protected.  Without it MINOR faults
 * would map clean pages writable and writes would go unseen, so the
 * pager then does not use MINOR at all.
 */
static bool probe_continue_wp(int uffd)
{
    int fd = memfd_create("splitvm-probe", MFD_CLOEXEC);
    static const char one = 1;
    void *m = MAP_FAILED;
    bool ok = false;

    if (fd < 0 || ftruncate(fd, SVM_PAGE) < 0) {
        goto out;
    }
    m = mmap(NULL, SVM_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED ||
        pwrite(fd, &one, 1, 0) != 1 ||
        svm_uffd_register(uffd, m, SVM_PAGE,
                          UFFDIO_REGISTER_MODE_MINOR | UFFDIO_REGISTER_MODE_WP,
                          NULL) < 0) {
        goto out;
    }
    ok = svm_uffd_continue(uffd, m, SVM_PAGE, true) == 0;
    svm_uffd_unregister(uffd, m, SVM_PAGE);
out:
    if (m != MAP_FAILED) {
        munmap(m, SVM_PAGE);
    }
    if (fd >= 0) {
        close(fd);
    }
    return ok;
}

/* Pages the caller already has in the memfd are adopted as resident-dirty. */
static void adopt_existing_pages(SvmPager *p)
{
    off_t off = 0, end;

    for (;;) {
        off = lseek(p->memfd, off, SEEK_DATA);
        if (off < 0 || (uint64_t)off >= p->size) {
            break;
        }
        end = lseek(p->memfd, off, SEEK_HOLE);
        if (end < 0 || (uint64_t)end > p->size) {
            end = p->size;
        }
        for (uint64_t i = off / SVM_PAGE; i < (uint64_t)(end + SVM_PAGE - 1) / SVM_PAGE; i++) {
            atomic_store(&p->pt.state[i], PT_MAPPED | PT_DIRTY);
            svm_stat_add(&p->resident, 1);
            svm_stat_add(&p->dirty, 1);
        }
        off = end;
    }
    if (p->resident) {
        svm_pager_log(p, "%" PRIu64 " pages were already present; kept as dirty",
                      (uint64_t)p->resident);
    }
}

static bool setup_uffd(SvmPager *p, GError **errp)
{
    uint64_t have = 0, got = 0, ioctls = 0, modes, need_ioctls;
    uint64_t want = UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
    int ret;

    ret = uffd_features(&have);
    if (ret < 0) {
        g_set_error(errp, SVM_PAGER_ERROR, -ret,
                    "cannot open a userfaultfd (/dev/userfaultfd or the "
                    "syscall): %s; run as root or give /dev/userfaultfd access",
                    g_strerror(-ret));
        return false;
    }
    if ((have & want) != want) {
        g_set_error(errp, SVM_PAGER_ERROR, ENOTSUP,
                    "kernel userfaultfd lacks %s (features 0x%" PRIx64 "); "
                    "Linux 5.19 or newer is needed",
                    !(have & UFFD_FEATURE_MISSING_SHMEM) ? "MISSING_SHMEM" :
                    "WP_HUGETLBFS_SHMEM (write-protect on shmem)", have);
        return false;
    }
    if (have & UFFD_FEATURE_MINOR_SHMEM) {
        want |= UFFD_FEATURE_MINOR_SHMEM;
    }
    p->uffd = svm_uffd_open(&p->uffd_how);
    if (p->uffd < 0) {
        g_set_error(errp, SVM_PAGER_ERROR, -p->uffd,
                    "cannot open a userfaultfd: %s", g_strerror(-p->uffd));
        return false;
    }
    ret = svm_uffd_api(p->uffd, want, &got);
    if (ret < 0) {
        g_set_error(errp, SVM_PAGER_ERROR, -ret,
                    "UFFDIO_API(features 0x%" PRIx64 ") failed: %s", want,
                    g_strerror(-ret));
        return false;
    }
    /*
     * SPLITVM_PAGER_NO_MINOR=1 forces the MISSING|WP-only mode a kernel
     * before 6.4 gets, so that path is tested on new kernels too.
     */
    p->minor = (got & UFFD_FEATURE_MINOR_SHMEM) && probe_continue_wp(p->uffd) &&
               !g_strcmp0(g_getenv("SPLITVM_PAGER_NO_MINOR") ?: "0", "0");

    modes = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP |
            (p->minor ? UFFDIO_REGISTER_MODE_MINOR : 0);
    ret = svm_uffd_register(p->uffd, p->host, p->size, modes, &ioctls);
    if (ret < 0) {
        g_set_error(errp, SVM_PAGER_ERROR, -ret,
                    "cannot register guest RAM at %p (+%" PRIu64 " bytes) "
                    "with userfaultfd: %s%s", p->host, p->size, g_strerror(-ret),
                    ret == -EBUSY ? " (another userfaultfd, e.g. postcopy, "
                    "already owns it)" : "");
        return false;
    }
    need_ioctls = (1ull << _UFFDIO_COPY) | (1ull << _UFFDIO_WAKE) |
                  (1ull << _UFFDIO_WRITEPROTECT) |
                  (p->minor ? 1ull << _UFFDIO_CONTINUE : 0);
    if ((ioctls & need_ioctls) != need_ioctls) {
        g_set_error(errp, SVM_PAGER_ERROR, ENOTSUP,
                    "userfaultfd registration offers ioctls 0x%" PRIx64
                    ", need 0x%" PRIx64 " (is the RAM a shared memfd?)",
                    ioctls, need_ioctls);
        return false;
    }
    return true;
}

static bool check_config(const SvmPagerConfig *cfg, GError **errp)
{
    struct stat st;

    if (!cfg->host || ((uintptr_t)cfg->host % SVM_PAGE) != 0) {
        g_set_error(errp, SVM_PAGER_ERROR, EINVAL,
                    "host address %p is not page aligned", cfg->host);
        return false;
    }
    if (cfg->size == 0 || cfg->size % SVM_PAGE != 0) {
        g_set_error(errp, SVM_PAGER_ERROR, EINVAL,
                    "size %" PRIu64 " is not a positive multiple of 4096",
                    cfg->size);
        return false;
    }
    if (cfg->budget % SVM_PAGE != 0) {
        g_set_error(errp, SVM_PAGER_ERROR, EINVAL,
                    "budget %" PRIu64 " is not a multiple of 4096", cfg->budget);
        return false;
    }
    if (cfg->memfd < 0 || fstat(cfg->memfd, &st) < 0) {
        g_set_error(errp, SVM_PAGER_ERROR, EBADF,
                    "memfd %d is not an open file", cfg->memfd);
        return false;
    }
    if ((uint64_t)st.st_size < cfg->size) {
        g_set_error(errp, SVM_PAGER_ERROR, EINVAL,
                    "memfd is %" PRIu64 " bytes, smaller than size %" PRIu64,
                    (uint64_t)st.st_size, cfg->size);
        return false;
    }
    if (cfg->nservers && (!cfg->vm_id || !cfg->vm_id[0])) {
        g_set_error(errp, SVM_PAGER_ERROR, EINVAL,
                    "vm_id is required with memory servers");
        return false;
    }
    if (cfg->service_nice < 0 || cfg->service_nice > SVM_THREAD_NICE_MAX) {
        g_set_error(errp, SVM_PAGER_ERROR, EINVAL,
                    "service_nice %d is not in 0..%d", cfg->service_nice,
                    SVM_THREAD_NICE_MAX);
        return false;
    }
    for (unsigned i = 0; i < cfg->nservers; i++) {
        if (!cfg->servers || !cfg->servers[i] || !cfg->servers[i][0]) {
            g_set_error(errp, SVM_PAGER_ERROR, EINVAL,
                        "memory server %u has an empty address", i);
            return false;
        }
    }
    return true;
}

/* The first config the library shipped with ended with event_opaque. */
#define CONFIG_SIZE_V0 (offsetof(SvmPagerConfig, event_opaque) + sizeof(void *))

SvmPager *svm_pager_start_sized(const SvmPagerConfig *caller_cfg,
                                size_t cfg_size, GError **errp)
{
    SvmPagerConfig full = { 0 }, *cfg = &full;
    SvmPager *p;
    uint64_t budget_pages;

    if (!caller_cfg || cfg_size < CONFIG_SIZE_V0 ||
        cfg_size > sizeof(SvmPagerConfig)) {
        g_set_error(errp, SVM_PAGER_ERROR, EINVAL,
                    "pager configuration of %zu bytes: this libsplitvm takes "
                    "%zu to %zu (was the caller built against another "
                    "libsplitvm's header?)", cfg_size, (size_t)CONFIG_SIZE_V0,
                    sizeof(SvmPagerConfig));
        return NULL;
    }
    memcpy(&full, caller_cfg, cfg_size);
    if (!check_config(cfg, errp)) {
        return NULL;
    }
    p = g_new0(SvmPager, 1);
    p->memfd = cfg->memfd;
    p->host = cfg->host;
    p->size = cfg->size;
    p->npages = cfg->size / SVM_PAGE;
    p->prefetch = cfg->prefetch;
    p->service_nice = cfg->service_nice;
    p->event_cb = cfg->event_cb;
    p->event_opaque = cfg->event_opaque;
    p->nservers = cfg->nservers;
    p->uffd = -1;
    p->stop_fd = -1;
    pthread_mutex_init(&p->event_lock, NULL);
    pthread_mutex_init(&p->room_lock, NULL);
    pthread_cond_init(&p->room_cond, NULL);
    pthread_cond_init(&p->evict_cond, NULL);
    pthread_cond_init(&p->warm_cond, NULL);
    pthread_mutex_init(&p->pf_lock, NULL);
    pthread_mutex_init(&p->flush_lock, NULL);
    svm_prefetch_init(&p->pf_det, SVM_PREFETCH_MIN, SVM_PREFETCH_MAX);
    /* (the evictor sets what it keeps from the budget) */
    svm_dropbehind_init(&p->pf_behind, 0);
    svm_stripe_init(&p->stripe, p->npages, cfg->nservers, SVM_STRIPE_UNIT_PAGES);

    if (!check_budget(p, cfg->budget, &budget_pages, errp)) {
        goto fail;
    }
    p->budget_pages = budget_pages;
    if (!svm_pt_init(&p->pt, p->npages)) {
        g_set_error(errp, SVM_PAGER_ERROR, ENOMEM,
                    "cannot allocate the page table for %" PRIu64 " pages",
                    p->npages);
        goto fail;
    }
    /* never written: every page of it reads as the kernel's zero page */
    p->zero_page = mmap(NULL, (size_t)SVM_ZERO_PAGES * SVM_PAGE, PROT_READ,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p->zero_page == MAP_FAILED) {
        p->zero_page = NULL;
        g_set_error(errp, SVM_PAGER_ERROR, ENOMEM, "out of memory");
        goto fail;
    }
    if (cfg->incoming) {
        svm_migrate_init_incoming(p);
    }
    adopt_existing_pages(p);

    if (!svm_remote_connect(p, cfg, errp)) {
        goto fail;
    }
    if (!svm_migrate_claim(p, cfg, errp)) {
        goto fail;
    }
    if (!setup_uffd(p, errp)) {
        goto fail;
    }
    p->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p->stop_fd < 0) {
        g_set_error(errp, SVM_PAGER_ERROR, errno, "eventfd: %s",
                    g_strerror(errno));
        goto fail;
    }
    if (svm_retry_start(p) < 0 || svm_evict_start(p) < 0 ||
        svm_fault_start(p) < 0) {
        g_set_error(errp, SVM_PAGER_ERROR, EAGAIN,
                    "cannot start the pager threads");
        goto fail;
    }
    svm_pager_log(p, "serving %" PRIu64 " MiB at %p, budget %" PRIu64
                  " MiB, %u server(s), uffd via %s, %s, threads at nice +%d",
                  p->size >> 20, p->host,
                  (budget_pages * SVM_PAGE) >> 20, p->nservers, p->uffd_how,
                  p->minor ? "MINOR+CONTINUE_WP (read tracking, lazy prefetch)" :
                  "MISSING|WP only", p->service_nice);
    svm_pager_log(p, atomic_load(&p->owner) ? "owner, epoch %" PRIu64 :
                  "incoming: not the owner yet (epoch %" PRIu64 ")",
                  (uint64_t)atomic_load(&p->epoch));
    return p;

fail:
    svm_pager_stop(p);
    return NULL;
}

bool svm_api_enter(SvmPager *p, GError **errp)
{
    atomic_fetch_add(&p->api_calls, 1);
    if (atomic_load(&p->stopping)) {
        atomic_fetch_sub(&p->api_calls, 1);
        g_set_error(errp, SVM_PAGER_ERROR, ESHUTDOWN, "the pager is stopping");
        return false;
    }
    return true;
}

void svm_api_exit(SvmPager *p)
{
    atomic_fetch_sub(&p->api_calls, 1);
}

void svm_pager_stop(SvmPager *p)
{
    if (!p) {
        return;
    }
    atomic_store(&p->stopping, true);
    if (p->stop_fd >= 0) {
        uint64_t one = 1;
        if (write(p->stop_fd, &one, sizeof(one)) < 0) {
            /* the fault threads also poll with a timeout */
        }
    }
    /*
     * A call on another thread (QEMU runs set-budget on a worker) sees
     * `stopping` in its waits and returns; p must outlive it.
     */
    pthread_mutex_lock(&p->room_lock);
    pthread_cond_broadcast(&p->room_cond);
    pthread_mutex_unlock(&p->room_lock);
    while (atomic_load(&p->api_calls) > 0) {
        usleep(1000);
    }
    svm_warm_stop(p);
    svm_fault_stop(p);
    svm_evict_stop(p);
    svm_retry_stop(p);
    svm_prefetch_drain(p);
    if (p->uffd >= 0) {
        /* Unregistering wakes every thread still blocked in a fault. */
        svm_uffd_unregister(p->uffd, p->host, p->size);
        close(p->uffd);
    }
    svm_remote_close(p);
    if (p->stop_fd >= 0) {
        close(p->stop_fd);
    }
    svm_pt_destroy(&p->pt);
    if (p->zero_page) {
        munmap((void *)p->zero_page, (size_t)SVM_ZERO_PAGES * SVM_PAGE);
    }
    svm_wbpipe_free(p->flush_pipe);
    pthread_mutex_destroy(&p->flush_lock);
    pthread_mutex_destroy(&p->event_lock);
    pthread_mutex_destroy(&p->room_lock);
    pthread_cond_destroy(&p->room_cond);
    pthread_cond_destroy(&p->evict_cond);
    pthread_cond_destroy(&p->warm_cond);
    pthread_mutex_destroy(&p->pf_lock);
    g_free(p);
}

static bool set_budget(SvmPager *p, uint64_t budget, GError **errp)
{
    uint64_t pages, old;

    if (budget % SVM_PAGE != 0) {
        g_set_error(errp, SVM_PAGER_ERROR, EINVAL,
                    "budget %" PRIu64 " is not a multiple of 4096", budget);
        return false;
    }
    if (!check_budget(p, budget, &pages, errp)) {
        return false;
    }
    old = atomic_exchange(&p->budget_pages, pages);
    /* waiters for room may proceed on a raise; the evictor acts on a cut */
    pthread_mutex_lock(&p->room_lock);
    pthread_cond_broadcast(&p->room_cond);
    pthread_mutex_unlock(&p->room_lock);
    svm_evict_kick(p);
    if (pages < old && !svm_evict_wait_below(p, pages, 60000)) {
        if (atomic_load(&p->stopping)) {
            g_set_error(errp, SVM_PAGER_ERROR, ESHUTDOWN,
                        "the pager stopped before the budget of %" PRIu64
                        " pages was reached", pages);
            return false;
        }
        g_set_error(errp, SVM_PAGER_ERROR, ETIMEDOUT,
                    "could not evict down to the new budget of %" PRIu64
                    " pages within 60 s: %" PRIu64 " resident, %" PRIu64
                    " dirty (memory servers unreachable?)", pages,
                    (uint64_t)p->resident, (uint64_t)p->dirty);
        return false;
    }
    svm_pager_log(p, "budget %" PRIu64 " -> %" PRIu64 " pages", old, pages);
    return true;
}

bool svm_pager_set_budget(SvmPager *p, uint64_t budget, GError **errp)
{
    bool ok;

    if (!svm_api_enter(p, errp)) {
        return false;
    }
    ok = set_budget(p, budget, errp);
    svm_api_exit(p);
    return ok;
}

void svm_pager_get_stats(SvmPager *p, SvmPagerStats *st)
{
    uint32_t down = 0;

    for (unsigned i = 0; i < p->nservers; i++) {
        down += atomic_load(&p->servers[i].down);
    }
    *st = (SvmPagerStats) {
        .size = p->size,
        .budget = atomic_load(&p->budget_pages) * SVM_PAGE,
        .resident_pages = atomic_load(&p->resident),
        .dirty_pages = atomic_load(&p->dirty),
        .remote_pages = atomic_load(&p->remote),
        .faults_missing = atomic_load(&p->faults_missing),
        .faults_wp = atomic_load(&p->faults_wp),
        .faults_minor = atomic_load(&p->faults_minor),
        .fills_remote = atomic_load(&p->fills_remote),
        .fills_zero = atomic_load(&p->fills_zero),
        .evictions = atomic_load(&p->evictions),
        .writebacks = atomic_load(&p->writebacks),
        .prefetch_issued = atomic_load(&p->prefetch_issued),
        .prefetch_hits = atomic_load(&p->prefetch_hits),
        .bytes_in = atomic_load(&p->bytes_in),
        .bytes_out = atomic_load(&p->bytes_out),
        .fault_lat_p50_ns = svm_hist_quantile(&p->fault_lat, 0.50),
        .fault_lat_p99_ns = svm_hist_quantile(&p->fault_lat, 0.99),
        .fault_lat_max_ns = atomic_load(&p->fault_lat.max),
        .servers_down = down,
    };
}

char *svm_pager_stats_text(const SvmPagerStats *st)
{
    return g_strdup_printf(
        "size %" PRIu64 "\n" "budget %" PRIu64 "\n"
        "resident_pages %" PRIu64 "\n" "dirty_pages %" PRIu64 "\n"
        "remote_pages %" PRIu64 "\n"
        "faults_missing %" PRIu64 "\n" "faults_wp %" PRIu64 "\n"
        "faults_minor %" PRIu64 "\n"
        "fills_remote %" PRIu64 "\n" "fills_zero %" PRIu64 "\n"
        "evictions %" PRIu64 "\n" "writebacks %" PRIu64 "\n"
        "prefetch_issued %" PRIu64 "\n" "prefetch_hits %" PRIu64 "\n"
        "bytes_in %" PRIu64 "\n" "bytes_out %" PRIu64 "\n"
        "fault_lat_p50_ns %" PRIu64 "\n" "fault_lat_p99_ns %" PRIu64 "\n"
        "fault_lat_max_ns %" PRIu64 "\n" "servers_down %u\n",
        st->size, st->budget, st->resident_pages, st->dirty_pages,
        st->remote_pages, st->faults_missing, st->faults_wp, st->faults_minor,
        st->fills_remote, st->fills_zero, st->evictions, st->writebacks,
        st->prefetch_issued, st->prefetch_hits, st->bytes_in, st->bytes_out,
        st->fault_lat_p50_ns, st->fault_lat_p99_ns, st->fault_lat_max_ns,
        st->servers_down);
}
