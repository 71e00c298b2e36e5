/*
 * One sample of a split VM's pager counters (QMP x-remote-memory-stats
 * through libvirt), shared by ls, stats and top.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SVM_CLI_VMSTATS_H
#define SVM_CLI_VMSTATS_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>
#include <json-glib/json-glib.h>
#include <libvirt/libvirt.h>

#include "virt.h"

typedef struct SvmVmSample {
    char *name;
    const char *state;          /* "running", "paused", "shut off", ... */
    bool active;
    unsigned vcpus;
    uint64_t memory, budget;    /* bytes */
    uint64_t resident, remote;  /* bytes */
    uint64_t faults;            /* total faults so far */
    int64_t t_us;               /* monotonic time of the sample */
    JsonObject *raw;            /* the whole QMP reply, NULL if none */
    char *error;                /* why there are no pager numbers */
} SvmVmSample;

void svm_vm_sample_free(SvmVmSample *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SvmVmSample, svm_vm_sample_free)

/* Samples DOM (a split VM described by INFO). Never fails: errors land in ->error. */
SvmVmSample *svm_vm_sample(virDomainPtr dom, const SvmVmInfo *info);

/* Samples every split VM on CONNS, sorted by name. */
GPtrArray *svm_vm_sample_all(GPtrArray *conns);

/* Faults per second between two samples of one VM, -1 if unknown. */
double svm_vm_fault_rate(const SvmVmSample *before, const SvmVmSample *after);

/* Prints the ls/top table; BEFORE (may be NULL) gives fault rates. */
void svm_vm_print_table(GPtrArray *now, GPtrArray *before);

#endif /* SVM_CLI_VMSTATS_H */
