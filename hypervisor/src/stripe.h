/*
 * Striping of guest pages across memory servers.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Guest pages are dealt to servers in units of `unit` consecutive pages,
 * round robin.  The unit is larger than a prefetch batch so one batch
 * usually goes to one server.  Each server sees a dense namespace: its
 * units are numbered consecutively, so a server stores no more than its share.
 */
#ifndef SVM_STRIPE_H
#define SVM_STRIPE_H

#include <stdint.h>

#define SVM_STRIPE_UNIT_PAGES 64u   /* 256 KiB */

typedef struct SvmStripe {
    uint64_t npages;
    unsigned nservers;
    unsigned unit;
} SvmStripe;

void svm_stripe_init(SvmStripe *st, uint64_t npages, unsigned nservers,
                     unsigned unit);

static inline unsigned svm_stripe_server(const SvmStripe *st, uint64_t page)
{
    return (unsigned)((page / st->unit) % st->nservers);
}

/* Page number inside the server's namespace. */
static inline uint64_t svm_stripe_server_page(const SvmStripe *st, uint64_t page)
{
    uint64_t u = page / st->unit;

    return (u / st->nservers) * st->unit + page % st->unit;
}

/* Namespace size the server needs (pages), enough for every page it holds. */
uint64_t svm_stripe_server_npages(const SvmStripe *st, unsigned server);

#endif
