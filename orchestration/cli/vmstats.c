/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmstats.h"
#include "domain-xml.h"
#include "size.h"

void svm_vm_sample_free(SvmVmSample *s)
{
    if (!s) {
        return;
    }
    g_free(s->name);
    g_free(s->error);
    if (s->raw) {
        json_object_unref(s->raw);
    }
    g_free(s);
}

static const char *state_name(int state)
{
    switch (state) {
    case VIR_DOMAIN_RUNNING: return "running";
    case VIR_DOMAIN_BLOCKED: return "blocked";
    case VIR_DOMAIN_PAUSED: return "paused";
    case VIR_DOMAIN_SHUTDOWN: return "shutting down";
    case VIR_DOMAIN_SHUTOFF: return "shut off";
    case VIR_DOMAIN_CRASHED: return "crashed";
    case VIR_DOMAIN_PMSUSPENDED: return "suspended";
    default: return "unknown";
    }
}

/* The stats object of our backend out of a QMP reply (object or list). */
static JsonObject *backend_stats(JsonNode *ret, const char *backend)
{
    if (JSON_NODE_HOLDS_OBJECT(ret)) {
        return json_object_ref(json_node_get_object(ret));
    }
    if (JSON_NODE_HOLDS_ARRAY(ret)) {
        JsonArray *a = json_node_get_array(ret);
        for (guint i = 0; i < json_array_get_length(a); i++) {
            JsonObject *o = json_array_get_object_element(a, i);
            if (o && json_object_has_member(o, "id") &&
                !g_strcmp0(json_object_get_string_member(o, "id"), backend)) {
                return json_object_ref(o);
            }
        }
        if (json_array_get_length(a) == 1) {
            return json_object_ref(json_array_get_object_element(a, 0));
        }
    }
    return NULL;
}

SvmVmSample *svm_vm_sample(virDomainPtr dom, const SvmVmInfo *info)
{
    SvmVmSample *s = g_new0(SvmVmSample, 1);
    virDomainInfo di;
    g_autoptr(GError) err = NULL;

    s->name = g_strdup(info->name);
    s->memory = info->memory;
    s->budget = info->budget;
    if (virDomainGetInfo(dom, &di) < 0) {
        s->state = "unknown";
        s->error = g_strdup(virGetLastErrorMessage());
        return s;
    }
    s->state = state_name(di.state);
    s->vcpus = di.nrVirtCpu;
    /* Every state but shut off is a running QEMU (saves a libvirt round trip). */
    s->active = di.state != VIR_DOMAIN_SHUTOFF;
    if (!s->active) {
        return s;
    }
    g_autoptr(JsonObject) args = json_object_new();
    json_object_set_string_member(args, "id", info->backend);
    g_autoptr(JsonNode) ret = svm_qmp(dom, "x-remote-memory-stats", args, &err);
    s->t_us = g_get_monotonic_time();
    if (!ret) {
        s->error = g_strdup(err->message);
        return s;
    }
    s->raw = backend_stats(ret, info->backend);
    if (!s->raw) {
        s->error = g_strdup("x-remote-memory-stats returned no stats for the backend");
        return s;
    }
    s->budget = svm_json_u64(s->raw, "budget");
    s->resident = svm_json_u64(s->raw, "resident-pages") * 4096;
    s->remote = svm_json_u64(s->raw, "remote-pages") * 4096;
    s->faults = svm_json_u64(s->raw, "faults-missing") +
                svm_json_u64(s->raw, "faults-wp") +
                svm_json_u64(s->raw, "faults-minor");
    return s;
}

static gint by_name(gconstpointer a, gconstpointer b)
{
    const SvmVmSample *x = *(SvmVmSample *const *)a, *y = *(SvmVmSample *const *)b;
    return strcmp(x->name, y->name);
}

GPtrArray *svm_vm_sample_all(GPtrArray *conns)
{
    GPtrArray *out = g_ptr_array_new_with_free_func((GDestroyNotify)svm_vm_sample_free);

    for (guint c = 0; c < conns->len; c++) {
        virDomainPtr *doms = NULL;
        int n = virConnectListAllDomains(conns->pdata[c], &doms, 0);
        for (int i = 0; i < n; i++) {
            g_autoptr(SvmVmInfo) info = svm_vm_info_get(doms[i], NULL);
            if (info) {
                g_ptr_array_add(out, svm_vm_sample(doms[i], info));
            }
            virDomainFree(doms[i]);
        }
        free(doms);
    }
    g_ptr_array_sort(out, by_name);
    return out;
}

double svm_vm_fault_rate(const SvmVmSample *before, const SvmVmSample *after)
{
    if (!before || !after || !before->raw || !after->raw ||
        after->t_us <= before->t_us || after->faults < before->faults) {
        return -1;
    }
    return (after->faults - before->faults) * 1e6 / (after->t_us - before->t_us);
}

static const SvmVmSample *find(GPtrArray *a, const char *name)
{
    for (guint i = 0; a && i < a->len; i++) {
        const SvmVmSample *s = a->pdata[i];
        if (!strcmp(s->name, name)) {
            return s;
        }
    }
    return NULL;
}

void svm_vm_print_table(GPtrArray *now, GPtrArray *before)
{
    char b1[32], b2[32], b3[32], b4[32];

    printf("%-20s %-10s %5s %10s %10s %10s %10s %9s\n", "NAME", "STATE", "VCPUS",
           "MEMORY", "BUDGET", "RESIDENT", "REMOTE", "FAULTS/S");
    for (guint i = 0; i < now->len; i++) {
        const SvmVmSample *s = now->pdata[i];
        double rate = svm_vm_fault_rate(find(before, s->name), s);
        g_autofree char *rate_s = rate < 0 ? g_strdup("-") : g_strdup_printf("%.0f", rate);
        bool have = s->raw != NULL;

        printf("%-20s %-10s %5u %10s %10s %10s %10s %9s\n", s->name, s->state, s->vcpus,
               svm_size_format(s->memory, b1, sizeof(b1)),
               svm_size_format(s->budget, b2, sizeof(b2)),
               have ? svm_size_format(s->resident, b3, sizeof(b3)) : "-",
               have ? svm_size_format(s->remote, b4, sizeof(b4)) : "-", rate_s);
        if (s->error && s->active) {
            printf("  (%s)\n", s->error);
        }
    }
    if (now->len == 0) {
        printf("(no split VMs)\n");
    }
}
