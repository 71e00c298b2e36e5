/*
 * Striping of guest pages across memory servers (see stripe.h).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "stripe.h"

void svm_stripe_init(SvmStripe *st, uint64_t npages, unsigned nservers,
                     unsigned unit)
{
    st->npages = npages;
    st->nservers = nservers ? nservers : 1;
    st->unit = unit ? unit : SVM_STRIPE_UNIT_PAGES;
}

uint64_t svm_stripe_server_npages(const SvmStripe *st, unsigned server)
{
    uint64_t units = (st->npages + st->unit - 1) / st->unit;
    uint64_t mine = units / st->nservers + (server < units % st->nservers);

    return mine * st->unit;
}
