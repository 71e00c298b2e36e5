/*
 * splitvm launch SPEC: generate the domain XML of a split VM, define it in
 * libvirt and start it.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "conf-file.h"
#include "domain-xml.h"
#include "emulator.h"
#include "local-rack.h"
#include "memservers.h"
#include "secrets.h"
#include "size.h"
#include "vm-spec.h"

static gboolean opt_dry_run;
static gboolean opt_no_start;

static const GOptionEntry entries[] = {
    { "dry-run", 'n', 0, G_OPTION_ARG_NONE, &opt_dry_run,
      "print the domain XML instead of defining it (the VM's secret is still "
      "prepared, so `virsh define` + `virsh start` of the output work)", NULL },
    { "no-start", 0, 0, G_OPTION_ARG_NONE, &opt_no_start,
      "define the VM but do not start it", NULL },
    { NULL }
};

/* Everything launch created, removed again when a later step fails. */
typedef struct Launch {
    char *secret_file;
    bool secret_created;
    bool registered;
    bool started;               /* QEMU was asked to start */
    virDomainPtr dom;
    const SvmRack *rack;
    GPtrArray *servers;
    const SvmVmSpec *spec;
} Launch;

static void undo(Launch *l)
{
    g_autoptr(GError) err = NULL;

    if (l->dom) {
        virDomainDestroy(l->dom);       /* fine if it never ran */
        if (virDomainUndefine(l->dom) < 0) {
            svm_cli_warn("could not undefine %s: %s", l->spec->name,
                         virGetLastErrorMessage());
        }
    }
    if (l->started) {
        /* QEMU may have written pages before it failed. */
        for (guint i = 0; i < l->servers->len; i++) {
            SvmRackServer *s = l->servers->pdata[i];
            if (!svm_memserver_free_vm(l->rack, s, l->spec->transport, l->spec->name,
                                       l->secret_file, &err)) {
                svm_cli_warn("memory server %s: %s", s->name, err->message);
                g_clear_error(&err);
            }
        }
    }
    if (l->registered &&
        !svm_memservers_revoke_vm(l->rack, l->servers, l->spec->name, &err)) {
        svm_cli_warn("%s", err->message);
        g_clear_error(&err);
    }
    if (l->secret_created && !svm_secret_remove(l->secret_file, &err)) {
        svm_cli_warn("%s", err->message);
    }
}

/* Polls until S accepts the VM's secret or TIMEOUT_MS pass. */
static bool wait_accepted(const SvmRack *rack, const SvmRackServer *s,
                          const SvmVmSpec *spec, unsigned timeout_ms, GError **errp)
{
    gint64 end = g_get_monotonic_time() + timeout_ms * 1000ll;

    for (;;) {
        g_autoptr(GError) err = NULL;
        if (svm_memserver_check_vm(rack, s, spec->transport, spec->name, &err)) {
            return true;
        }
        if (g_get_monotonic_time() > end) {
            g_propagate_error(errp, g_steal_pointer(&err));
            return false;
        }
        g_usleep(50000);
    }
}

/*
 * Gives every memory server the VM's secret and checks it is accepted.
 * Local servers re-read their secrets file on SIGHUP; remote ones need the
 * rack's secrets file installed by the operator.
 */
static bool admit(const SvmRack *rack, GPtrArray *servers, const SvmVmSpec *spec,
                  const char *secret_file, GError **errp)
{
    if (!svm_memservers_admit_vm(rack, servers, spec->name, secret_file, spec->memory,
                                 errp)) {
        return false;
    }
    g_autoptr(SvmRackState) st = svm_rack_state_load(rack, errp);
    if (!st) {
        return false;
    }
    for (guint i = 0; i < servers->len; i++) {
        SvmRackServer *s = servers->pdata[i];
        g_autoptr(GError) err = NULL;
        if (s->local && !svm_local_server_reload(st, s->name, &err)) {
            g_propagate_prefixed_error(errp, g_steal_pointer(&err),
                                       "memory server %s: ", s->name);
            return false;
        }
        if (!wait_accepted(rack, s, spec, s->local ? 5000 : 0, &err)) {
            g_set_error(errp, SVM_ORCH_ERROR, 0,
                        "memory server %s does not accept VM %s: %s (%s)", s->name,
                        spec->name, err->message,
                        s->local ? "see its log in the rack's state dir"
                                 : "install the rack's secrets file on it");
            return false;
        }
    }
    return true;
}

int svm_cmd_launch(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;
    char sz1[32], sz2[32];

    if (!svm_cli_parse(&argc, &argv, "SPEC",
                       "Defines and starts a split VM described by the VM spec SPEC.",
                       "The domain runs the rack host's patched QEMU with its RAM in a\n"
                       "memory-backend-remote object; only the spec's local-budget stays\n"
                       "resident.  Formats: docs/config.md.", entries, 1)) {
        return 2;
    }
    g_autoptr(SvmVmSpec) spec = svm_vm_spec_load(argv[1], &err);
    if (!spec) {
        return svm_cli_fail(err);
    }
    g_autoptr(SvmRack) rack = svm_cli_rack(&err);
    if (!rack) {
        return svm_cli_fail(err);
    }
    SvmRackHost *host = svm_vm_spec_host(spec, rack, &err);
    if (!host) {
        return svm_cli_fail(err);
    }
    g_autoptr(GPtrArray) servers = svm_vm_spec_servers(spec, rack, &err);
    if (!servers) {
        return svm_cli_fail(err);
    }
    if (access(host->emulator, X_OK) != 0) {
        g_set_error(&err, SVM_ORCH_ERROR, 0,
                    "%s: host %s: emulator %s is not executable (build it with "
                    "`make qemu`)", rack->path, host->name, host->emulator);
        return svm_cli_fail(err);
    }

    g_autoptr(virConnect) conn = svm_virt_connect(host->libvirt_uri, &err);
    if (!conn) {
        return svm_cli_fail(err);
    }
    virResetLastError();
    virDomainPtr existing = virDomainLookupByName(conn, spec->name);
    if (existing) {
        virDomainFree(existing);
        g_set_error(&err, SVM_ORCH_ERROR, 0,
                    "a VM named '%s' already exists on host %s (`splitvm destroy %s` "
                    "removes it)", spec->name, host->name, spec->name);
        return svm_cli_fail(err);
    }

    g_autofree char *emulator = svm_host_emulator(rack, host, &err);
    if (!emulator) {
        return svm_cli_fail(err);
    }
    SvmVirtType type;
    uid_t qemu_uid;
    gid_t qemu_gid;
    if (!svm_virt_resolve_type(conn, emulator, spec->type, &type, &err) ||
        !svm_virt_qemu_user(conn, &qemu_uid, &qemu_gid, &err)) {
        return svm_cli_fail(err);
    }

    /* An unreachable rack fails here, before anything is created. */
    if (!opt_dry_run &&
        !svm_memservers_check_reachable(servers, spec->transport, 3000, &err)) {
        return svm_cli_fail(err);
    }

    /* virtlogd writes the console log but does not create its directory. */
    g_autofree char *log_dir = g_path_get_dirname(spec->console_log);
    if (g_mkdir_with_parents(log_dir, 0755) < 0) {
        g_set_error(&err, SVM_ORCH_ERROR, 0, "cannot create %s: %s", log_dir,
                    g_strerror(errno));
        return svm_cli_fail(err);
    }

    Launch l = { .rack = rack, .servers = servers, .spec = spec };
    g_autofree char *secret_file = l.secret_file = svm_secret_path(rack, spec->name);
    if (!svm_secret_ensure(secret_file, qemu_uid, qemu_gid, &l.secret_created, &err)) {
        return svm_cli_fail(err);
    }
    l.registered = true;
    if (!admit(rack, servers, spec, secret_file, &err)) {
        undo(&l);
        return svm_cli_fail(err);
    }
    /* No domain of that name exists, so pages under its name on the servers
     * are left from an earlier life (e.g. a plain `virsh undefine`). */
    for (guint i = 0; i < servers->len; i++) {
        if (!svm_memserver_free_vm(rack, servers->pdata[i], spec->transport, spec->name,
                                   secret_file, &err)) {
            g_prefix_error(&err, "memory server %s: cannot free the pages an earlier "
                           "VM %s left: ", ((SvmRackServer *)servers->pdata[i])->name,
                           spec->name);
            undo(&l);
            return svm_cli_fail(err);
        }
    }

    SvmDomainParams params = {
        .spec = spec, .rack = rack, .host = host, .emulator = emulator, .servers = servers,
        .type = type, .secret_file = secret_file,
    };
    g_autofree char *xml = svm_domain_xml(&params);
    if (opt_dry_run) {
        fputs(xml, stdout);
        return 0;
    }

    l.dom = virDomainDefineXMLFlags(conn, xml, VIR_DOMAIN_DEFINE_VALIDATE);
    if (!l.dom) {
        svm_virt_error(&err, "libvirt refused the domain XML of %s", spec->name);
        undo(&l);
        return svm_cli_fail(err);
    }
    l.started = !opt_no_start;
    if (!opt_no_start && virDomainCreate(l.dom) < 0) {
        svm_virt_error(&err, "starting %s failed", spec->name);
        undo(&l);
        virDomainFree(l.dom);
        return svm_cli_fail(err);
    }
    g_autofree char *names = NULL;
    {
        g_autoptr(GString) s = g_string_new(NULL);
        for (guint i = 0; i < servers->len; i++) {
            g_string_append_printf(s, "%s%s", i ? ", " : "",
                                   ((SvmRackServer *)servers->pdata[i])->name);
        }
        names = g_string_free(g_steal_pointer(&s), FALSE);
    }
    printf("%s %s on host %s (%s): %u vCPU, %s RAM, %s local, remote on %s (%s)\n",
           spec->name, opt_no_start ? "defined" : "started", host->name,
           svm_virt_type_name(type), spec->vcpus,
           svm_size_format(spec->memory, sz1, sizeof(sz1)),
           svm_size_format(spec->budget, sz2, sizeof(sz2)), names, spec->transport);
    virDomainFree(l.dom);
    return 0;
}
