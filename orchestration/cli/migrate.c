/*
 * splitvm migrate VM HOST: live-migrate a split VM to another rack host.
 * Its RAM stays on the memory servers; QEMU's stream carries device and
 * CPU state and the pager's hand-over (docs/migration.md).  libvirt drives
 * it peer to peer and moves the persistent definition with it, so ls,
 * stats, set-budget and destroy find the VM on its new host.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "conf-file.h"
#include "emulator.h"
#include "local-host.h"

static int opt_max_downtime = 2000;
static gboolean opt_quiet;

static const GOptionEntry entries[] = {
    { "max-downtime", 'd', 0, G_OPTION_ARG_INT, &opt_max_downtime,
      "longest pause of the guest QEMU may plan for when it switches over, in ms "
      "(default 2000; raise it if a busy guest does not converge)", "MS" },
    { "quiet", 'q', 0, G_OPTION_ARG_NONE, &opt_quiet, "no progress lines", NULL },
    { NULL }
};

/* Ctrl-C / SIGTERM during the migration: abort libvirt's job, not the CLI. */
static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
    (void)sig;
    interrupted = 1;
}

typedef struct Migration {
    virDomainPtr dom;
    const char *dconnuri;
    virTypedParameterPtr params;
    int nparams;
    unsigned int flags;
    int ret;
    char *error;
    volatile gint done;
} Migration;

static gpointer migrate_thread(gpointer opaque)
{
    Migration *m = opaque;

    m->ret = virDomainMigrateToURI3(m->dom, m->dconnuri, m->params, m->nparams, m->flags);
    if (m->ret < 0) {
        m->error = g_strdup(virGetLastErrorMessage());
    }
    g_atomic_int_set(&m->done, 1);
    return NULL;
}

/* The domain XML for DEST: the same, with DEST's <emulator>. */
static char *dest_xml(virDomainPtr dom, const char *emulator, GError **errp)
{
    g_autofree char *xml = virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_MIGRATABLE |
                                                    VIR_DOMAIN_XML_SECURE);
    if (!xml) {
        svm_virt_error(errp, "cannot read the domain XML");
        return NULL;
    }
    const char *open = strstr(xml, "<emulator>");
    const char *close = open ? strstr(open, "</emulator>") : NULL;
    if (!close) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "the domain XML has no <emulator>");
        return NULL;
    }
    g_autoptr(GString) out = g_string_new_len(xml, open - xml);
    g_autofree char *escaped = g_markup_escape_text(emulator, -1);
    g_string_append_printf(out, "<emulator>%s%s", escaped, close);
    return g_string_free(g_steal_pointer(&out), FALSE);
}

/* The host VM runs on (first host whose libvirt knows it). */
static virDomainPtr find_vm(const SvmRack *rack, const char *name, SvmRackHost **host,
                            virConnectPtr *conn, GError **errp)
{
    for (guint i = 0; i < rack->hosts->len; i++) {
        SvmRackHost *h = rack->hosts->pdata[i];
        g_autoptr(GError) err = NULL;
        virConnectPtr c = svm_virt_connect(h->libvirt_uri, &err);
        if (!c) {
            svm_cli_warn("host %s: %s", h->name, err->message);
            continue;
        }
        virResetLastError();
        virDomainPtr dom = virDomainLookupByName(c, name);
        if (dom && virDomainIsActive(dom) == 1) {
            *host = h;
            *conn = c;
            return dom;
        }
        if (dom) {
            virDomainFree(dom);
            if (!*host) {
                *host = h;      /* defined but not running: remembered for the error */
            }
        }
        virConnectClose(c);
    }
    if (*host) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "VM '%s' is not running (defined on host "
                    "%s); only a running VM migrates", name, (*host)->name);
    } else {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "no VM named '%s' on the hosts of rack %s "
                    "(see `splitvm ls`)", name, rack->name);
    }
    return NULL;
}

/* One progress line; *streaming remembers that the stream has started. */
static void print_progress(virDomainPtr dom, gint64 start, bool *streaming)
{
    virDomainJobInfo job;
    double elapsed = (g_get_monotonic_time() - start) / 1e6;
    bool have = virDomainGetJobInfo(dom, &job) == 0 && job.type != VIR_DOMAIN_JOB_NONE;

    if (have && job.memTotal) {
        *streaming = true;
        printf("  %5.1f s  stream %llu KiB sent, %llu KiB to go (RAM outside the "
               "servers: %llu/%llu KiB)\n", elapsed, job.dataProcessed >> 10,
               job.dataRemaining >> 10, job.memProcessed >> 10, job.memTotal >> 10);
    } else {
        printf("  %5.1f s  %s\n", elapsed, *streaming ? "switching over to the destination"
                                                   : "starting QEMU on the destination");
    }
    fflush(stdout);
}

int svm_cmd_migrate(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;

    if (!svm_cli_parse(&argc, &argv, "VM HOST",
                       "Live-migrates the split VM VM to the rack host HOST.",
                       "The guest keeps running; its RAM stays on the memory servers, only\n"
                       "pages dirty in the source's cache are written back and device and\n"
                       "CPU state move (docs/migration.md).  libvirt migrates peer to peer\n"
                       "and moves the VM's definition to HOST.  HOST's QEMU must reach the\n"
                       "VM's memory servers and have its secret file.", entries, 2)) {
        return 2;
    }
    const char *name = argv[1], *host_name = argv[2];
    if (opt_max_downtime < 1 || opt_max_downtime > 600000) {
        fprintf(stderr, "splitvm migrate: --max-downtime must be 1..600000 ms\n");
        return 2;
    }
    g_autoptr(SvmRack) rack = svm_cli_rack(&err);
    if (!rack) {
        return svm_cli_fail(err);
    }
    SvmRackHost *dest = svm_rack_find_host(rack, host_name);
    if (!dest) {
        g_autoptr(GString) known = g_string_new(NULL);
        for (guint i = 0; i < rack->hosts->len; i++) {
            g_string_append_printf(known, "%s%s", i ? ", " : "",
                                   ((SvmRackHost *)rack->hosts->pdata[i])->name);
        }
        g_set_error(&err, SVM_ORCH_ERROR, 0, "no host '%s' in rack %s (%s); its hosts: %s",
                    host_name, rack->name, rack->path, known->str);
        return svm_cli_fail(err);
    }
    SvmRackHost *src = NULL;
    g_autoptr(virConnect) src_conn = NULL;
    g_autoptr(virDomain) dom = find_vm(rack, name, &src, &src_conn, &err);
    if (!dom) {
        return svm_cli_fail(err);
    }
    g_autoptr(SvmVmInfo) info = svm_vm_info_require(dom, &err);
    if (!info) {
        return svm_cli_fail(err);
    }
    if (src == dest || !strcmp(src->libvirt_uri, dest->libvirt_uri)) {
        g_set_error(&err, SVM_ORCH_ERROR, 0, "VM '%s' already runs on host %s", name,
                    dest->name);
        return svm_cli_fail(err);
    }
    /* The destination must answer before anything is asked of the source. */
    g_autoptr(virConnect) dest_conn = svm_virt_connect(dest->libvirt_uri, &err);
    if (!dest_conn) {
        g_prefix_error(&err, "host %s%s: ", dest->name,
                       dest->local ? " (is it up? `splitvm rack up`)" : "");
        return svm_cli_fail(err);
    }
    virResetLastError();
    virDomainPtr clash = virDomainLookupByName(dest_conn, name);
    if (clash) {
        virDomainFree(clash);
        g_set_error(&err, SVM_ORCH_ERROR, 0, "host %s already has a domain named '%s'",
                    dest->name, name);
        return svm_cli_fail(err);
    }
    g_autofree char *emulator = svm_host_emulator(rack, dest, &err);
    g_autofree char *xml = emulator ? dest_xml(dom, emulator, &err) : NULL;
    if (!xml) {
        return svm_cli_fail(err);
    }
    if (virDomainMigrateSetMaxDowntime(dom, (unsigned long long)opt_max_downtime, 0) < 0) {
        svm_virt_error(&err, "cannot set the maximum downtime of %s", name);
        return svm_cli_fail(err);
    }

    g_autofree char *dconnuri = svm_host_peer_uri(src, dest);
    g_autofree char *address = svm_host_migration_address(src, dest);
    g_autofree char *mig_uri = address ? g_strdup_printf("tcp://%s", address) : NULL;
    virTypedParameterPtr params = NULL;
    int nparams = 0, maxparams = 0;
    virTypedParamsAddString(&params, &nparams, &maxparams, VIR_MIGRATE_PARAM_DEST_XML, xml);
    if (mig_uri) {
        virTypedParamsAddString(&params, &nparams, &maxparams, VIR_MIGRATE_PARAM_URI,
                                mig_uri);
    }
    Migration m = {
        .dom = dom, .dconnuri = dconnuri, .params = params, .nparams = nparams,
        .flags = VIR_MIGRATE_LIVE | VIR_MIGRATE_PEER2PEER | VIR_MIGRATE_PERSIST_DEST,
    };
    /* launch defines VMs persistently: the definition moves with the VM. */
    if (virDomainIsPersistent(dom) == 1) {
        m.flags |= VIR_MIGRATE_UNDEFINE_SOURCE;
    }
    printf("migrating %s from host %s to host %s (%s, stream %s, max downtime %d ms)\n",
           name, src->name, dest->name, dconnuri, mig_uri ? mig_uri : "libvirt's default",
           opt_max_downtime);
    fflush(stdout);

    struct sigaction sa = { .sa_handler = on_interrupt }, old_int, old_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    gint64 start = g_get_monotonic_time();
    GThread *t = g_thread_new("migrate", migrate_thread, &m);
    gint64 next = start + G_USEC_PER_SEC;
    bool streaming = false, aborted = false;
    while (!g_atomic_int_get(&m.done)) {
        /* Reporting progress, not synchronising: the thread ends the loop. */
        g_usleep(50000);
        if (interrupted && !aborted) {
            aborted = true;
            printf("  interrupted: aborting the migration (the VM stays on host %s)\n",
                   src->name);
            fflush(stdout);
            if (virDomainAbortJob(dom) < 0) {
                svm_cli_warn("cannot abort the migration job: %s",
                             virGetLastErrorMessage());
            }
        }
        if (!opt_quiet && g_get_monotonic_time() >= next && !g_atomic_int_get(&m.done)) {
            print_progress(dom, start, &streaming);
            next += G_USEC_PER_SEC;
        }
    }
    g_thread_join(t);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    virTypedParamsFree(params, nparams);
    double elapsed = (g_get_monotonic_time() - start) / 1e6;
    if (m.ret < 0) {
        g_set_error(&err, SVM_ORCH_ERROR, 0, "migrating %s to host %s failed after "
                    "%.1f s: %s (the VM keeps running on host %s if it still can)",
                    name, dest->name, elapsed, m.error ? m.error : "unknown error",
                    src->name);
        g_free(m.error);
        return svm_cli_fail(err);
    }

    virResetLastError();
    g_autoptr(virDomain) moved = virDomainLookupByName(dest_conn, name);
    if (!moved || virDomainIsActive(moved) != 1) {
        g_set_error(&err, SVM_ORCH_ERROR, 0, "libvirt reports the migration done, but %s "
                    "is not running on host %s", name, dest->name);
        return svm_cli_fail(err);
    }
    g_autofree char *downtime = g_strdup("");
    virTypedParameterPtr stats = NULL;
    int nstats = 0, type;
    unsigned long long ms;
    if (virDomainGetJobStats(moved, &type, &stats, &nstats,
                             VIR_DOMAIN_JOB_STATS_COMPLETED) == 0 &&
        virTypedParamsGetULLong(stats, nstats, VIR_DOMAIN_JOB_DOWNTIME, &ms) == 1) {
        g_free(downtime);
        downtime = g_strdup_printf(", guest paused %llu ms", ms);
    }
    virTypedParamsFree(stats, nstats);
    printf("%s migrated to host %s in %.1f s%s\n", name, dest->name, elapsed, downtime);
    return 0;
}
