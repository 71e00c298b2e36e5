/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "conf-file.h"

const char *svm_cli_command = "splitvm";

static char *opt_rack;
static char *opt_connect;

static const GOptionEntry common_entries[] = {
    { "rack", 0, 0, G_OPTION_ARG_FILENAME, &opt_rack,
      "rack file (default: $SPLITVM_RACK, else " SVM_DEFAULT_RACK_FILE ")", "FILE" },
    { "connect", 'c', 0, G_OPTION_ARG_STRING, &opt_connect,
      "libvirt URI to use instead of the rack's hosts", "URI" },
    { NULL }
};

bool svm_cli_parse(int *argc, char ***argv, const char *params, const char *summary,
                   const char *description, const GOptionEntry *entries, int nargs)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *prog = g_strdup_printf("splitvm %s", svm_cli_command);
    g_autoptr(GOptionContext) ctx = g_option_context_new(params);

    g_set_prgname(prog);
    g_option_context_set_summary(ctx, summary);
    if (description) {
        g_option_context_set_description(ctx, description);
    }
    if (entries) {
        g_option_context_add_main_entries(ctx, entries, NULL);
    }
    g_option_context_add_main_entries(ctx, common_entries, NULL);
    if (!g_option_context_parse(ctx, argc, argv, &err)) {
        fprintf(stderr, "splitvm %s: %s\nTry `splitvm %s --help`.\n",
                svm_cli_command, err->message, svm_cli_command);
        return false;
    }
    if (nargs >= 0 && *argc - 1 != nargs) {
        fprintf(stderr, "splitvm %s: expected %d argument%s (%s), got %d\n"
                "Try `splitvm %s --help`.\n", svm_cli_command, nargs,
                nargs == 1 ? "" : "s", params, *argc - 1, svm_cli_command);
        return false;
    }
    return true;
}

int svm_cli_fail(GError *err)
{
    fprintf(stderr, "splitvm %s: error: %s\n", svm_cli_command,
            err ? err->message : "unknown error");
    return 1;
}

void svm_cli_warn(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    fprintf(stderr, "splitvm %s: warning: %s\n", svm_cli_command, msg);
}

const char *svm_cli_rack_path(void)
{
    return svm_rack_default_path(opt_rack);
}

SvmRack *svm_cli_rack(GError **errp)
{
    return svm_rack_load(svm_cli_rack_path(), errp);
}

static void conn_close(gpointer p)
{
    virConnectClose(p);
}

GPtrArray *svm_cli_connections(GError **errp)
{
    g_autoptr(GPtrArray) conns = g_ptr_array_new_with_free_func(conn_close);

    if (opt_connect) {
        virConnectPtr c = svm_virt_connect(opt_connect, errp);
        if (!c) {
            return NULL;
        }
        g_ptr_array_add(conns, c);
        return g_steal_pointer(&conns);
    }
    g_autoptr(SvmRack) rack = svm_cli_rack(errp);
    if (!rack) {
        return NULL;
    }
    for (guint i = 0; i < rack->hosts->len; i++) {
        SvmRackHost *h = rack->hosts->pdata[i];
        bool dup = false;
        /* Several rack hosts may share one libvirt (a local rack). */
        for (guint j = 0; j < i; j++) {
            dup |= !strcmp(((SvmRackHost *)rack->hosts->pdata[j])->libvirt_uri,
                           h->libvirt_uri);
        }
        if (dup) {
            continue;
        }
        g_autoptr(GError) err = NULL;
        virConnectPtr c = svm_virt_connect(h->libvirt_uri, &err);
        if (!c && h->local) {
            /* A rack host in a namespace exists only while the rack is up. */
            svm_cli_warn("host %s is not up (`splitvm rack up`): %s", h->name,
                         err->message);
            continue;
        }
        if (!c) {
            g_propagate_prefixed_error(errp, g_steal_pointer(&err), "host %s: ", h->name);
            return NULL;
        }
        g_ptr_array_add(conns, c);
    }
    return g_steal_pointer(&conns);
}

virDomainPtr svm_cli_find_vm(GPtrArray *conns, const char *name, SvmVmInfo **info,
                             GError **errp)
{
    for (guint i = 0; i < conns->len; i++) {
        virResetLastError();
        virDomainPtr dom = virDomainLookupByName(conns->pdata[i], name);
        if (!dom) {
            continue;
        }
        SvmVmInfo *found = svm_vm_info_require(dom, errp);
        if (!found) {
            virDomainFree(dom);
            return NULL;
        }
        if (info) {
            *info = found;
        } else {
            svm_vm_info_free(found);
        }
        return dom;
    }
    g_set_error(errp, SVM_ORCH_ERROR, 0, "no VM named '%s' (see `splitvm ls`)", name);
    return NULL;
}
