/*
 * Unit tests: victim choice (CLOCK, drop-behind) and striping.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <glib.h>

#include "policy.h"
#include "stripe.h"

typedef struct Rec {
    unsigned second_chances, wakes;
    uint64_t no_evict;          /* page the test marks unevictable */
} Rec;

static uint8_t rec_second_chance(void *o, uint64_t page, uint8_t s)
{
    ((Rec *)o)->second_chances++;
    return s & ~PT_REF;
}

static bool rec_evictable(void *o, uint64_t page, uint8_t s)
{
    return page != ((Rec *)o)->no_evict;
}

static void rec_wake(void *o, uint64_t page)
{
    ((Rec *)o)->wakes++;
}

static void test_clock(void)
{
    SvmPageTable pt;
    SvmClock c = { 0 };
    Rec rec = { .no_evict = UINT64_MAX };
    SvmClockOps ops = { rec_second_chance, rec_evictable, rec_wake, &rec };
    uint64_t v[8];
    uint8_t st[8];
    unsigned n;

    g_assert_true(svm_pt_init(&pt, 16));
    /* pages 0..7 resident in fill order; 0,1,2 used again (REF) */
    for (unsigned i = 0; i < 8; i++) {
        pt.state[i] = PT_MAPPED | (i < 3 ? PT_REF : 0);
    }
    n = svm_clock_pick(&c, &pt, &ops, 3, v, st, 32);
    /* not FIFO: the oldest three were referenced and survive */
    g_assert_cmpuint(n, ==, 3);
    g_assert_cmpuint(v[0], ==, 3);
    g_assert_cmpuint(v[1], ==, 4);
    g_assert_cmpuint(v[2], ==, 5);
    g_assert_cmpuint(rec.second_chances, ==, 3);
    for (unsigned i = 0; i < 3; i++) {
        /* victims come back owned; survivors lost their REF bit */
        g_assert_cmpuint(pt.state[v[i]] & PT_BUSY, ==, PT_BUSY);
        g_assert_cmpuint(pt.state[i], ==, PT_MAPPED);
        svm_pt_release(&pt, v[i], PT_ABSENT);
    }
    /* page 6 is not evictable, 7 is busy with a waiter-free owner */
    rec.no_evict = 6;
    pt.state[7] |= PT_BUSY;
    n = svm_clock_pick(&c, &pt, &ops, 8, v, st, 32);
    g_assert_cmpuint(n, ==, 3);    /* 0,1,2 on the second round */
    g_assert_cmpuint(v[0], ==, 0);
    g_assert_cmpuint(v[1], ==, 1);
    g_assert_cmpuint(v[2], ==, 2);
    g_assert_cmpuint(pt.state[6], ==, PT_MAPPED);
    /* nothing resident -> nothing picked, scan bounded */
    for (unsigned i = 0; i < 16; i++) {
        pt.state[i] = PT_ABSENT;
    }
    g_assert_cmpuint(svm_clock_pick(&c, &pt, &ops, 8, v, st, 32), ==, 0);
    svm_pt_destroy(&pt);
}

static void test_clock_waiter_woken(void)
{
    SvmPageTable pt;
    SvmClock c = { 0 };
    Rec rec = { .no_evict = 0 };
    SvmClockOps ops = { rec_second_chance, rec_evictable, rec_wake, &rec };
    uint64_t v[1];
    uint8_t st[1];

    g_assert_true(svm_pt_init(&pt, 1));
    pt.state[0] = PT_MAPPED | PT_WAITERS;   /* a fault raced with the scan */
    g_assert_cmpuint(svm_clock_pick(&c, &pt, &ops, 1, v, st, 1), ==, 0);
    g_assert_cmpuint(rec.wakes, ==, 1);
    svm_pt_destroy(&pt);
}

/* Second chances of consecutive pages reach the pager as runs, still owned. */
typedef struct RunRec {
    SvmPageTable *pt;
    unsigned calls;
    uint64_t firsts[8];
    unsigned lens[8];
    bool all_busy;
} RunRec;

static uint8_t run_second_chance(void *o, uint64_t page, uint8_t s)
{
    return (s & ~(PT_WHERE_MASK | PT_REF)) | PT_CACHED;
}

static void run_record(void *o, uint64_t first, unsigned n, const uint8_t *old,
                       uint8_t *states)
{
    RunRec *r = o;

    for (unsigned k = 0; k < n; k++) {
        r->all_busy &= (svm_pt_get(r->pt, first + k) & PT_BUSY) != 0;
        g_assert_cmpuint(old[k] & PT_REF, ==, PT_REF);
        g_assert_cmpuint(svm_pt_where(states[k]), ==, PT_CACHED);
    }
    if (first == 5) {
        /* the pager could not unmap this run: it says so in states[] */
        for (unsigned k = 0; k < n; k++) {
            states[k] = (states[k] & ~PT_WHERE_MASK) | (old[k] & PT_WHERE_MASK);
        }
    }
    r->firsts[r->calls] = first;
    r->lens[r->calls++] = n;
}

static bool run_evictable(void *o, uint64_t page, uint8_t s)
{
    return true;
}

static void run_wake(void *o, uint64_t page)
{
}

static void test_clock_runs(void)
{
    SvmPageTable pt;
    SvmClock c = { 0 };
    RunRec rec = { .pt = &pt, .all_busy = true };
    SvmClockOps ops = {
        .second_chance = run_second_chance, .evictable = run_evictable,
        .wake = run_wake, .opaque = &rec, .second_chance_run = run_record,
    };
    uint64_t v[16];
    uint8_t st[16];

    g_assert_true(svm_pt_init(&pt, 16));
    /* referenced: 0-2 and 5-6; 3 and 7 are victims, 4 is absent */
    for (unsigned i = 0; i < 8; i++) {
        pt.state[i] = PT_MAPPED | (i != 3 && i != 7 ? PT_REF : 0);
    }
    pt.state[4] = PT_ABSENT;
    g_assert_cmpuint(svm_clock_pick(&c, &pt, &ops, 2, v, st, 16), ==, 2);
    g_assert_cmpuint(v[0], ==, 3);
    g_assert_cmpuint(v[1], ==, 7);
    g_assert_true(rec.all_busy);
    g_assert_cmpuint(rec.calls, ==, 2);
    g_assert_cmpuint(rec.firsts[0], ==, 0);
    g_assert_cmpuint(rec.lens[0], ==, 3);
    g_assert_cmpuint(rec.firsts[1], ==, 5);
    g_assert_cmpuint(rec.lens[1], ==, 2);
    /* released with the run's states, REF cleared, not busy */
    for (unsigned i = 0; i < 3; i++) {
        g_assert_cmpuint(pt.state[i], ==, PT_CACHED);
    }
    g_assert_cmpuint(pt.state[5], ==, PT_MAPPED);
    g_assert_cmpuint(pt.state[6], ==, PT_MAPPED);
    svm_pt_destroy(&pt);
}

/*
 * Drop-behind on a loop over 4x the budget, read ahead in windows: after
 * the first round, the loop's first part stays resident and hits; the
 * pages a window just filled, or the one before it, are never victims.
 */
static void test_dropbehind_loop(void)
{
    enum { AREA = 4096, BUDGET = 1024, WINDOW = 32 };
    SvmPageTable pt;
    SvmDropBehind d;
    Rec rec = { .no_evict = UINT64_MAX };
    SvmClockOps ops = { rec_second_chance, rec_evictable, rec_wake, &rec };
    uint64_t v[8], resident = 0;
    uint8_t st[8];

    g_assert_true(svm_pt_init(&pt, AREA));
    svm_dropbehind_init(&d, 2 * WINDOW);
    for (unsigned round = 0; round < 4; round++) {
        uint64_t fills = 0;

        for (uint64_t pg = 0; pg < AREA; pg++) {
            uint64_t filled = 0;

            if (svm_pt_resident(pt.state[pg])) {
                continue;
            }
            /* a miss: read ahead a window from here (what is absent) */
            for (uint64_t q = pg; q < pg + WINDOW && q < AREA; q++) {
                if (!svm_pt_resident(pt.state[q])) {
                    pt.state[q] = PT_MAPPED | PT_REF;
                    svm_dropbehind_add(&d, q, 1, 1, 0);
                    filled++;
                }
            }
            fills += filled;
            resident += filled;
            while (resident > BUDGET) {
                unsigned n = svm_dropbehind_pick(&d, &pt, &ops, 8, 0, v, st, 1024);

                g_assert_cmpuint(n, >, 0);
                for (unsigned k = 0; k < n; k++) {
                    /* not in this window nor the one before */
                    g_assert_true(v[k] + WINDOW <= pg || v[k] >= pg + WINDOW);
                    g_assert_cmpuint(st[k] & PT_REF, ==, PT_REF);
                    svm_pt_release(&pt, v[k], PT_ABSENT);
                }
                resident -= n;
            }
        }
        /*
         * After the first round all but about the kept windows of the
         * budget stay and hit (LRU or CLOCK would refill every page).
         */
        g_assert_cmpuint(fills, <=, round ? AREA - (BUDGET - 4 * WINDOW) : AREA);
    }
    g_assert_cmpuint(svm_pt_count(&pt, PT_WHERE_MASK, PT_MAPPED), ==, resident);
    svm_pt_destroy(&pt);
}

/* Only pages it was told about are offered, each once; busy ones are skipped. */
static void test_dropbehind_offers(void)
{
    SvmPageTable pt;
    SvmDropBehind d;
    Rec rec = { .no_evict = 12 };
    SvmClockOps ops = { rec_second_chance, rec_evictable, rec_wake, &rec };
    uint64_t v[16];
    uint8_t st[16];
    unsigned n;

    g_assert_true(svm_pt_init(&pt, 64));
    for (unsigned i = 0; i < 64; i++) {
        pt.state[i] = PT_MAPPED;
    }
    svm_dropbehind_init(&d, 4);
    /* a backwards run 20,19,...,11 and then 40..43 (kept: the newest 4) */
    svm_dropbehind_add(&d, 20, -1, 5, 1);
    svm_dropbehind_add(&d, 15, -1, 5, 2);   /* continues it */
    svm_dropbehind_add(&d, 40, 1, 4, 3);
    g_assert_cmpuint(d.count, ==, 2);
    g_assert_cmpuint(d.last_add_ns, ==, 3);
    g_assert_cmpuint(svm_dropbehind_walked(&d), ==, 10);
    pt.state[15] |= PT_BUSY;
    n = svm_dropbehind_pick(&d, &pt, &ops, 16, 0, v, st, 100);
    /* 15 busy and 12 unevictable are passed over; in page order */
    g_assert_cmpuint(n, ==, 8);
    g_assert_cmpuint(v[0], ==, 11);
    g_assert_cmpuint(v[1], ==, 13);
    g_assert_cmpuint(v[2], ==, 14);
    g_assert_cmpuint(v[3], ==, 16);
    g_assert_cmpuint(v[7], ==, 20);
    g_assert_cmpuint(pt.state[12], ==, PT_MAPPED);
    g_assert_cmpuint(svm_dropbehind_walked(&d), ==, 0);
    g_assert_cmpuint(svm_dropbehind_pick(&d, &pt, &ops, 16, 0, v, st, 100), ==, 0);
    /* the next window makes the kept ones walked: offered, not 44.. */
    svm_dropbehind_add(&d, 44, 1, 4, 4);
    n = svm_dropbehind_pick(&d, &pt, &ops, 16, 0, v, st, 100);
    g_assert_cmpuint(n, ==, 4);
    g_assert_cmpuint(v[0], ==, 40);
    g_assert_cmpuint(v[3], ==, 43);
    svm_pt_destroy(&pt);
}

/*
 * More runs than the ring holds: the oldest are forgotten (never offered),
 * compacting drops runs offered whole, and the newest `keep` pages are
 * never offered, whatever the ring went through.
 */
static void test_dropbehind_ring(void)
{
    enum { RUNS = SVM_DROPBEHIND_RUNS + 100, KEEP = 10 };
    SvmPageTable pt;
    SvmDropBehind d;
    Rec rec = { .no_evict = UINT64_MAX };
    SvmClockOps ops = { rec_second_chance, rec_evictable, rec_wake, &rec };
    uint64_t v[64], added = 0;
    uint8_t st[64];
    unsigned n;

    g_assert_true(svm_pt_init(&pt, 4 * RUNS));
    for (uint64_t i = 0; i < 4 * RUNS; i++) {
        pt.state[i] = PT_MAPPED;
    }
    svm_dropbehind_init(&d, KEEP);
    /* one-page runs at even pages: none continues the one before */
    for (; added < RUNS; added++) {
        svm_dropbehind_add(&d, 2 * added, 1, 1, added);
    }
    g_assert_cmpuint(d.count, ==, SVM_DROPBEHIND_RUNS);
    g_assert_cmpuint(svm_dropbehind_walked(&d), ==, SVM_DROPBEHIND_RUNS - KEEP);
    /* offer some, then overflow again: compacting makes the room */
    n = svm_dropbehind_pick(&d, &pt, &ops, 64, 0, v, st, 1000);
    g_assert_cmpuint(n, ==, 64);
    for (unsigned k = 0; k < n; k++) {
        g_assert_cmpuint(v[k], >=, 2 * (RUNS - SVM_DROPBEHIND_RUNS));   /* forgotten */
        g_assert_cmpuint(v[k], <, 2 * (RUNS - KEEP));                   /* kept */
        svm_pt_release(&pt, v[k], PT_ABSENT);
    }
    for (; added < RUNS + 64; added++) {
        svm_dropbehind_add(&d, 2 * added, 1, 1, added);
    }
    for (;;) {
        n = svm_dropbehind_pick(&d, &pt, &ops, 64, 0, v, st, 1000);
        if (n == 0) {
            break;
        }
        for (unsigned k = 0; k < n; k++) {
            g_assert_cmpuint(v[k], <, 2 * (added - KEEP));
            g_assert_cmpuint(v[k] % 2, ==, 0);
            svm_pt_release(&pt, v[k], PT_ABSENT);
        }
    }
    /* the kept pages are all still there */
    for (uint64_t a = added - KEEP; a < added; a++) {
        g_assert_cmpuint(pt.state[2 * a], ==, PT_MAPPED);
    }
    g_assert_cmpuint(svm_dropbehind_walked(&d), ==, 0);
    svm_pt_destroy(&pt);
}

/* Aligned picks stay in one block (one server's stripe unit) each. */
static void test_dropbehind_aligned(void)
{
    SvmPageTable pt;
    SvmDropBehind d;
    Rec rec = { .no_evict = UINT64_MAX };
    SvmClockOps ops = { rec_second_chance, rec_evictable, rec_wake, &rec };
    uint64_t v[64];
    uint8_t st[64];
    static const unsigned want_n[] = { 12, 16, 12, 0 };
    static const uint64_t want_first[] = { 128, 112, 100 };

    g_assert_true(svm_pt_init(&pt, 256));
    for (unsigned i = 0; i < 256; i++) {
        pt.state[i] = PT_MAPPED;
    }
    svm_dropbehind_init(&d, 0);
    svm_dropbehind_add(&d, 100, 1, 40, 0);
    for (unsigned k = 0; k < G_N_ELEMENTS(want_n); k++) {
        unsigned n = svm_dropbehind_pick(&d, &pt, &ops, 64, 16, v, st, 1000);

        g_assert_cmpuint(n, ==, want_n[k]);
        for (unsigned i = 0; i < n; i++) {
            g_assert_cmpuint(v[i], ==, want_first[k] + i);
        }
    }
    svm_pt_destroy(&pt);
}

static void test_stripe(void)
{
    for (unsigned ns = 1; ns <= 3; ns++) {
        SvmStripe st;
        uint64_t npages = 64 * 10 + 17;
        g_autofree uint64_t *seen = NULL;
        uint64_t total = 0;

        svm_stripe_init(&st, npages, ns, 64);
        for (unsigned s = 0; s < ns; s++) {
            total += svm_stripe_server_npages(&st, s);
        }
        g_assert_cmpuint(total, >=, npages);
        g_assert_cmpuint(total, <, npages + 64 * ns);
        seen = g_new0(uint64_t, ns * total);
        for (uint64_t pg = 0; pg < npages; pg++) {
            unsigned s = svm_stripe_server(&st, pg);
            uint64_t sp = svm_stripe_server_page(&st, pg);

            g_assert_cmpuint(sp, <, svm_stripe_server_npages(&st, s));
            /* injective: no two guest pages share a server page */
            g_assert_cmpuint(seen[s * total + sp]++, ==, 0);
            /* a 32-page aligned batch stays on one server */
            g_assert_cmpuint(svm_stripe_server(&st, pg & ~31ull), ==, s);
        }
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/pager/policy/clock", test_clock);
    g_test_add_func("/pager/policy/clock-waiter-woken", test_clock_waiter_woken);
    g_test_add_func("/pager/policy/clock-runs", test_clock_runs);
    g_test_add_func("/pager/policy/dropbehind-loop", test_dropbehind_loop);
    g_test_add_func("/pager/policy/dropbehind-offers", test_dropbehind_offers);
    g_test_add_func("/pager/policy/dropbehind-aligned", test_dropbehind_aligned);
    g_test_add_func("/pager/policy/dropbehind-ring", test_dropbehind_ring);
    g_test_add_func("/pager/stripe/mapping", test_stripe);
    return g_test_run();
}
