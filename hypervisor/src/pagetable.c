/*
 * Per-page state table (see pagetable.h).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdlib.h>
#include <sys/mman.h>

#include "pagetable.h"

bool svm_pt_init(SvmPageTable *pt, uint64_t npages)
{
    /* mmap rather than calloc: large tables stay lazily zero-filled. */
    void *m = mmap(NULL, npages ? npages : 1, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (m == MAP_FAILED) {
        return false;
    }
    pt->npages = npages;
    pt->state = m;
    return true;
}

void svm_pt_destroy(SvmPageTable *pt)
{
    if (pt->state) {
        munmap((void *)pt->state, pt->npages ? pt->npages : 1);
        pt->state = NULL;
    }
}

uint64_t svm_pt_count(const SvmPageTable *pt, uint8_t mask, uint8_t value)
{
    uint64_t n = 0;

    for (uint64_t i = 0; i < pt->npages; i++) {
        if ((svm_pt_get(pt, i) & mask) == value) {
            n++;
        }
    }
    return n;
}
