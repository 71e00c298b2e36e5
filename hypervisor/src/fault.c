/*
 * Fault threads: read userfaultfd events and resolve them.  They never
 * call back into the caller (no QEMU lock), and they hand remote fills
 * whose server does not answer to the retry thread so other faults go on.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "pager-internal.h"
#include "uffd.h"

#define FAULT_MSGS 16

void svm_install(SvmPager *p, uint64_t page, uint8_t old, const void *data,
                 bool from_server, uint8_t extra)
{
    /* COPY is atomic and MODE_WP arms write tracking in the same step. */
    int ret = svm_uffd_copy(p->uffd, svm_page_addr(p, page), data, SVM_PAGE, true);

    if (ret == -EEXIST) {
        /* Someone populated it behind our back: keep it, assume written. */
        svm_pager_log(p, "page %" PRIu64 " already present at fill; kept as dirty",
                      page);
        svm_stat_add(&p->dirty, 1);
        svm_pager_release(p, page, PT_MAPPED | PT_DIRTY | PT_REF |
                          (old & PT_ONSERVER));
        svm_uffd_wake(p->uffd, svm_page_addr(p, page), SVM_PAGE);
        if (from_server) {
            svm_stat_sub(&p->remote, 1);
        }
        return;
    }
    if (ret < 0) {
        svm_pager_log(p, "UFFDIO_COPY of page %" PRIu64 " failed: %s", page,
                      strerror(-ret));
        svm_budget_unreserve(p, 1);
        svm_pager_release(p, page, old);
        svm_uffd_wake(p->uffd, svm_page_addr(p, page), SVM_PAGE);
        return;
    }
    if (from_server) {
        svm_stat_sub(&p->remote, 1);
        svm_stat_add(&p->fills_remote, 1);
    } else {
        svm_stat_add(&p->fills_zero, 1);
    }
    svm_pager_release(p, page, PT_MAPPED | PT_REF | (old & PT_ONSERVER) | extra);
}

void svm_fill_remote(SvmPager *p, uint64_t page, uint8_t old)
{
    static __thread uint8_t buf[SVM_PAGE] __attribute__((aligned(SVM_PAGE)));
    SvmServer *s = svm_remote_server(p, page);

    if (atomic_load(&s->down) || svm_remote_read(p, page, buf) < 0) {
        /* Never fill zero or stale data: park the fault until it answers. */
        svm_retry_add(p, page);
        return;
    }
    svm_install(p, page, old, buf, true, 0);
}

/* Map a page that is in the page cache (prefetched or probed). */
static void map_cached(SvmPager *p, uint64_t page, uint8_t s)
{
    int ret = svm_uffd_continue(p->uffd, svm_page_addr(p, page), SVM_PAGE,
                                !(s & PT_DIRTY));

    if (ret < 0 && ret != -EEXIST) {
        svm_pager_log(p, "UFFDIO_CONTINUE of page %" PRIu64 " failed: %s",
                      page, strerror(-ret));
    }
    if (s & PT_PREFETCHED) {
        svm_stat_add(&p->prefetch_hits, 1);
    }
    svm_pager_release(p, page, PT_MAPPED | PT_REF |
                      (s & (PT_DIRTY | PT_ONSERVER)));
    if (ret == -EEXIST) {
        svm_uffd_wake(p->uffd, svm_page_addr(p, page), SVM_PAGE);
    }
}

/*
 * MISSING fault on a page we have as mapped: usually a stale event (another
 * thread's fault filled it meanwhile), then COPY says EEXIST and we wake.
 * If someone discarded the page behind our back (balloon), it reads as zero
 * now, as it would without us; it is kept as dirty so the zero reaches the
 * server instead of an older copy coming back.
 */
static void map_missing_again(SvmPager *p, uint64_t page, uint8_t s)
{
    int ret = svm_uffd_copy(p->uffd, svm_page_addr(p, page), p->zero_page,
                            SVM_PAGE, false);

    if (ret == 0) {
        svm_pager_log(p, "page %" PRIu64 " was discarded behind the pager; "
                      "it is zero now", page);
        if (!(s & PT_DIRTY)) {
            svm_stat_add(&p->dirty, 1);
        }
        s |= PT_DIRTY;
    } else if (ret != -EEXIST) {
        svm_pager_log(p, "UFFDIO_COPY of page %" PRIu64 " failed: %s", page,
                      strerror(-ret));
    }
    svm_pager_release(p, page, s | PT_REF);
    svm_uffd_wake(p->uffd, svm_page_addr(p, page), SVM_PAGE);
}

static void handle_fault(SvmPager *p, uint64_t addr, uint64_t flags)
{
    uint64_t t0 = svm_now_ns();
    uint64_t page;
    uint8_t s;
    bool feed_prefetch = false;

    if (addr < (uintptr_t)p->host || addr >= (uintptr_t)p->host + p->size) {
        return;
    }
    page = (addr - (uintptr_t)p->host) / SVM_PAGE;
    if (flags & UFFD_PAGEFAULT_FLAG_WP) {
        svm_stat_add(&p->faults_wp, 1);
    } else if (flags & UFFD_PAGEFAULT_FLAG_MINOR) {
        svm_stat_add(&p->faults_minor, 1);
    } else {
        svm_stat_add(&p->faults_missing, 1);
    }
    if (!svm_pt_try_own(&p->pt, page, &s, true)) {
        return;     /* the owner wakes this fault when it lets go */
    }

    switch (svm_pt_where(s)) {
    case PT_ABSENT:
        if (!svm_budget_reserve(p, 1, true)) {
            svm_pager_release(p, page, s);      /* stopping */
            return;
        }
        if (s & PT_ONSERVER) {
            svm_fill_remote(p, page, s);
        } else {
            /* never written anywhere: zero, without a network trip */
            svm_install(p, page, s, p->zero_page, false, 0);
        }
        feed_prefetch = true;
        break;
    case PT_CACHED:
        feed_prefetch = (s & PT_PREFETCHED) != 0;
        map_cached(p, page, s);
        break;
    default: /* PT_MAPPED */
        if (flags & UFFD_PAGEFAULT_FLAG_MINOR) {
            map_cached(p, page, s);
        } else if (flags & UFFD_PAGEFAULT_FLAG_WP) {
            int ret;

            /* First write since the fill: from now on the page is dirty. */
            if (!(s & PT_DIRTY)) {
                svm_stat_add(&p->dirty, 1);
            }
            if (s & PT_PREFETCHED) {
                svm_stat_add(&p->prefetch_hits, 1);
            }
            /* Un-protecting also wakes the writer. */
            ret = svm_uffd_writeprotect(p->uffd, svm_page_addr(p, page),
                                        SVM_PAGE, false, false);
            if (ret < 0) {
                svm_pager_log(p, "un-write-protect of page %" PRIu64
                              " failed: %s", page, strerror(-ret));
            }
            svm_pager_release(p, page, (s | PT_DIRTY | PT_REF) & ~PT_PREFETCHED);
        } else {
            map_missing_again(p, page, s);
        }
        break;
    }
    svm_hist_add(&p->fault_lat, svm_now_ns() - t0);
    if (feed_prefetch) {
        svm_prefetch_after_fault(p, page);
    }
}

static void *fault_thread(void *opaque)
{
    SvmPager *p = opaque;
    struct uffd_msg msgs[FAULT_MSGS];
    struct pollfd pfd[2] = {
        { .fd = p->uffd, .events = POLLIN },
        { .fd = p->stop_fd, .events = POLLIN },
    };

    while (!atomic_load(&p->stopping)) {
        ssize_t n;

        if (poll(pfd, 2, 1000) < 0 && errno != EINTR) {
            svm_pager_log(p, "poll on userfaultfd: %s", strerror(errno));
            break;
        }
        if (pfd[1].revents) {
            break;
        }
        if (!(pfd[0].revents & POLLIN)) {
            continue;
        }
        n = read(p->uffd, msgs, sizeof(msgs));
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                continue;       /* another fault thread took it */
            }
            svm_pager_log(p, "read from userfaultfd: %s", strerror(errno));
            break;
        }
        for (ssize_t i = 0; i < n / (ssize_t)sizeof(msgs[0]); i++) {
            if (msgs[i].event == UFFD_EVENT_PAGEFAULT) {
                handle_fault(p, msgs[i].arg.pagefault.address,
                             msgs[i].arg.pagefault.flags);
            }
        }
    }
    return NULL;
}

int svm_fault_start(SvmPager *p)
{
    for (unsigned i = 0; i < SVM_FAULT_THREADS; i++) {
        if (pthread_create(&p->fault_threads[i], NULL, fault_thread, p) != 0) {
            return -EAGAIN;
        }
        pthread_setname_np(p->fault_threads[i], "svm-fault");
        p->nfault_threads++;
    }
    return 0;
}

void svm_fault_stop(SvmPager *p)
{
    for (unsigned i = 0; i < p->nfault_threads; i++) {
        pthread_join(p->fault_threads[i], NULL);
    }
    p->nfault_threads = 0;
}
