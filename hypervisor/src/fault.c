/*
 * Fault threads: read userfaultfd events and resolve them.  They never
 * call back into the caller (no QEMU lock), and they hand remote fills
 * whose server does not answer to the retry thread so other faults go on.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "pager-internal.h"
#include "uffd.h"

#define FAULT_MSGS 16

void svm_install(SvmPager *p, uint64_t page, uint8_t old, const void *data,
                 bool from_server, uint8_t extra)
{
    _Atomic uint64_t *fills = from_server ? &p->fills_remote : &p->fills_zero;
    bool dirty = extra & PT_DIRTY;
    int ret;

    /*
     * Counted before the COPY wakes the faulting thread, so that whatever
     * it reads in the stats next includes this fill; undone on failure.
     */
    svm_stat_add(fills, 1);
    if (from_server) {
        svm_stat_sub(&p->remote, 1);
    }
    if (dirty) {
        svm_stat_add(&p->dirty, 1);
    }
    /*
     * COPY is atomic and MODE_WP arms write tracking in the same step.  A
     * page filled for a write fault is dirty at once: it goes in writable,
     * which spares the writer a second (WP) fault right after this one.
     */
    ret = svm_uffd_copy(p->uffd, svm_page_addr(p, page), data, SVM_PAGE, !dirty);
    if (ret == -EEXIST) {
        /* Someone populated it behind our back: keep it, assume written. */
        svm_pager_log(p, "page %" PRIu64 " already present at fill; kept as dirty",
                      page);
        svm_stat_sub(fills, 1);
        if (!dirty) {
            svm_stat_add(&p->dirty, 1);
        }
        svm_pager_release_wake(p, page, PT_MAPPED | PT_DIRTY | PT_REF |
                               (old & PT_ONSERVER));
        return;
    }
    if (ret < 0) {
        svm_pager_log(p, "UFFDIO_COPY of page %" PRIu64 " failed: %s", page,
                      strerror(-ret));
        svm_stat_sub(fills, 1);
        if (from_server) {
            svm_stat_add(&p->remote, 1);
        }
        if (dirty) {
            svm_stat_sub(&p->dirty, 1);
        }
        svm_budget_unreserve(p, 1);
        svm_pager_release_wake(p, page, old);
        return;
    }
    svm_pager_release(p, page, PT_MAPPED | PT_REF | (old & PT_ONSERVER) | extra);
}

void svm_install_run(SvmPager *p, const uint64_t *pages, const uint8_t *olds,
                     unsigned n, const uint8_t *data, bool from_server,
                     uint8_t extra)
{
    _Atomic uint64_t *fills = from_server ? &p->fills_remote : &p->fills_zero;
    bool dirty = extra & PT_DIRTY;
    uint64_t copied = 0;
    unsigned done;

    if (n > 1) {
        /* counted first, as in svm_install(); what did not go in is undone */
        svm_stat_add(fills, n);
        if (from_server) {
            svm_stat_sub(&p->remote, n);
        }
        if (dirty) {
            svm_stat_add(&p->dirty, n);
        }
        svm_uffd_copy_some(p->uffd, svm_page_addr(p, pages[0]), data,
                           (uint64_t)n * SVM_PAGE, !dirty, &copied);
    }
    done = copied / SVM_PAGE;
    if (n > 1 && done < n) {
        svm_stat_sub(fills, n - done);
        if (from_server) {
            svm_stat_add(&p->remote, n - done);
        }
        if (dirty) {
            svm_stat_sub(&p->dirty, n - done);
        }
    }
    for (unsigned i = 0; i < done; i++) {
        svm_pager_release(p, pages[i], PT_MAPPED | PT_REF |
                          (olds[i] & PT_ONSERVER) | extra);
    }
    /* the rest (or a run of one) one by one: that handles every error */
    for (unsigned i = done; i < n; i++) {
        svm_install(p, pages[i], olds[i], data + (size_t)i * SVM_PAGE,
                    from_server, extra);
    }
}

void svm_fill_remote(SvmPager *p, uint64_t page, uint8_t old, uint8_t extra)
{
    static __thread uint8_t buf[SVM_PAGE] __attribute__((aligned(SVM_PAGE)));
    SvmServer *s = svm_remote_server(p, page);

    if (atomic_load(&s->down) || svm_remote_read(p, page, buf) < 0) {
        /* Never fill zero or stale data: park the fault until it answers. */
        svm_retry_add(p, page);
        return;
    }
    svm_install(p, page, old, buf, true, extra);
}

/*
 * Map a page that is in the page cache (prefetched or probed).  For a
 * write fault it is mapped writable and dirty at once (one fault, not a
 * MINOR fault and then a WP fault).
 */
static void map_cached(SvmPager *p, uint64_t page, uint8_t s, bool write)
{
    int ret;

    if (write && !(s & PT_DIRTY)) {
        svm_stat_add(&p->dirty, 1);
        s |= PT_DIRTY;
    }
    ret = svm_uffd_continue(p->uffd, svm_page_addr(p, page), SVM_PAGE,
                            !(s & PT_DIRTY));

    if (ret < 0 && ret != -EEXIST) {
        svm_pager_log(p, "UFFDIO_CONTINUE of page %" PRIu64 " failed: %s",
                      page, strerror(-ret));
    }
    if (s & PT_PREFETCHED) {
        svm_stat_add(&p->prefetch_hits, 1);
    }
    s = PT_MAPPED | PT_REF | (s & (PT_DIRTY | PT_ONSERVER));
    if (ret == -EEXIST) {
        svm_pager_release_wake(p, page, s);     /* CONTINUE did not wake */
    } else {
        svm_pager_release(p, page, s);
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
    svm_pager_release_wake(p, page, s | PT_REF);
}

static void handle_fault(SvmPager *p, uint64_t addr, uint64_t flags)
{
    uint64_t t0 = svm_now_ns();
    uint64_t page;
    uint8_t s;
    bool feed_prefetch = false;
    bool write = flags & UFFD_PAGEFAULT_FLAG_WRITE;

    if (addr < (uintptr_t)p->host || addr >= (uintptr_t)p->host + p->size) {
        return;
    }
    page = (addr - (uintptr_t)p->host) / SVM_PAGE;
    if (!svm_pt_try_own(&p->pt, page, &s, true)) {
        return;     /* the owner wakes this fault when it lets go */
    }
    /*
     * Counted once resolved here (as in fault_lat), not when the event
     * only found the page BUSY: it comes back then and would count twice.
     */
    if (flags & UFFD_PAGEFAULT_FLAG_WP) {
        svm_stat_add(&p->faults_wp, 1);
    } else if (flags & UFFD_PAGEFAULT_FLAG_MINOR) {
        svm_stat_add(&p->faults_minor, 1);
    } else {
        svm_stat_add(&p->faults_missing, 1);
    }

    switch (svm_pt_where(s)) {
    case PT_ABSENT:
        if (!svm_budget_reserve(p, 1, true)) {
            svm_pager_release(p, page, s);      /* stopping */
            return;
        }
        if (s & PT_ONSERVER) {
            svm_fill_remote(p, page, s, write ? PT_DIRTY : 0);
        } else {
            /* never written anywhere: zero, without a network trip */
            svm_install(p, page, s, p->zero_page, false, write ? PT_DIRTY : 0);
        }
        feed_prefetch = true;
        break;
    case PT_CACHED:
        feed_prefetch = (s & PT_PREFETCHED) != 0;
        map_cached(p, page, s, write);
        break;
    default: /* PT_MAPPED */
        if (flags & UFFD_PAGEFAULT_FLAG_MINOR) {
            map_cached(p, page, s, write);
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
        svm_prefetch_after_fault(p, page, write);
    }
}

static void *fault_thread(void *opaque)
{
    SvmFaultThread *t = opaque;
    SvmPager *p = t->pager;
    struct uffd_msg msgs[FAULT_MSGS];

    svm_thread_lower_priority(p->service_nice, "pager fault thread");
    while (!atomic_load(&p->stopping)) {
        struct epoll_event ev;
        ssize_t n;
        int ready = epoll_wait(t->epfd, &ev, 1, 1000);

        if (ready < 0 && errno != EINTR) {
            svm_pager_log(p, "epoll on userfaultfd: %s", strerror(errno));
            break;
        }
        if (ready <= 0) {
            continue;
        }
        if (ev.data.fd == p->stop_fd) {
            break;
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

/*
 * Each thread waits in its own epoll set with the uffd EXCLUSIVE, so a
 * fault wakes one idle thread instead of all of them (with poll() every
 * thread woke and all but one read nothing: wasted syscalls and context
 * switches per fault).  stop_fd is not exclusive: it wakes them all.
 */
static int fault_epoll(SvmPager *p)
{
    struct epoll_event uffd_ev = {
        .events = EPOLLIN | EPOLLEXCLUSIVE, .data.fd = p->uffd,
    };
    struct epoll_event stop_ev = { .events = EPOLLIN, .data.fd = p->stop_fd };
    int epfd = epoll_create1(EPOLL_CLOEXEC);

    if (epfd < 0) {
        return -errno;
    }
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, p->uffd, &uffd_ev) < 0 ||
        epoll_ctl(epfd, EPOLL_CTL_ADD, p->stop_fd, &stop_ev) < 0) {
        int ret = -errno;

        close(epfd);
        return ret;
    }
    return epfd;
}

int svm_fault_start(SvmPager *p)
{
    for (unsigned i = 0; i < SVM_FAULT_THREADS; i++) {
        SvmFaultThread *t = &p->fault_threads[i];

        t->pager = p;
        t->epfd = fault_epoll(p);
        if (t->epfd < 0) {
            return t->epfd;
        }
        if (pthread_create(&t->thread, NULL, fault_thread, t) != 0) {
            close(t->epfd);
            return -EAGAIN;
        }
        pthread_setname_np(t->thread, "svm-fault");
        p->nfault_threads++;
    }
    return 0;
}

void svm_fault_stop(SvmPager *p)
{
    for (unsigned i = 0; i < p->nfault_threads; i++) {
        pthread_join(p->fault_threads[i].thread, NULL);
        close(p->fault_threads[i].epfd);
    }
    p->nfault_threads = 0;
}
