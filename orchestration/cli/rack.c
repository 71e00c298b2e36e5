/*
 * splitvm rack up|down|status: a local rack on one machine.  Local memory
 * servers run in their own network namespaces; libvirtd and virtlogd are
 * started when they do not run; `up` checks that QEMU can work under
 * libvirt's confinement here.  Everything started is recorded in the rack's
 * state dir, so `up` is idempotent and `down` removes exactly that.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "conf-file.h"
#include "emulator.h"
#include "host-check.h"
#include "local-host.h"
#include "local-rack.h"
#include "memservers.h"
#include "secrets.h"
#include "size.h"

static gboolean opt_force;

static const GOptionEntry entries[] = {
    { "force", 'f', 0, G_OPTION_ARG_NONE, &opt_force,
      "down: stop the rack even while split VMs of it run (they lose their memory)",
      NULL },
    { NULL }
};

/* libvirt on this machine? (a local rack only manages its own hosts) */
static bool host_is_here(const SvmRackHost *h)
{
    return h->local || g_str_has_prefix(h->libvirt_uri, "qemu:///");
}

static bool step_ok(bool ok, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static bool step_ok(bool ok, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    printf("  %-9s %s\n", ok ? "ok" : "FAILED", msg);
    fflush(stdout);
    return ok;
}

static bool check_host(const SvmRack *rack, const SvmRackHost *host, GError **errp)
{
    uid_t uid;
    gid_t gid;
    g_autoptr(virConnect) conn = svm_virt_connect(host->libvirt_uri, errp);

    if (!conn || !svm_virt_qemu_user(conn, &uid, &gid, errp)) {
        return false;
    }
    g_autofree char *emulator = svm_host_emulator(rack, host, errp);
    if (!emulator) {
        return false;
    }
    g_autoptr(GPtrArray) problems = svm_host_check(rack, host, emulator, uid, gid,
                                                   SVM_QEMU_CONF);
    if (problems->len == 0) {
        /* A qemu.conf edited after libvirtd started is not in effect yet. */
        struct stat conf_st, pid_st;
        if (stat(SVM_QEMU_CONF, &conf_st) == 0 && stat("/run/libvirtd.pid", &pid_st) == 0 &&
            conf_st.st_mtime > pid_st.st_mtime) {
            svm_cli_warn("%s changed after libvirtd started: restart libvirtd so it "
                         "takes effect", SVM_QEMU_CONF);
        }
        step_ok(true, "host %s: QEMU (uid %u gid %u) can use /dev/userfaultfd, "
                "its emulator and secrets", host->name, uid, gid);
        return true;
    }
    step_ok(false, "host %s: QEMU cannot run split VMs under libvirt here:", host->name);
    g_autoptr(GString) msg = g_string_new(NULL);
    for (guint i = 0; i < problems->len; i++) {
        g_string_append_printf(msg, "\n  - %s", (char *)problems->pdata[i]);
    }
    g_set_error(errp, SVM_ORCH_ERROR, 0,
                "host %s is not ready for split VMs:%s", host->name, msg->str);
    return false;
}

static int rack_up(SvmRack *rack)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(SvmRackState) st = svm_rack_state_load(rack, &err);
    char sz[32];

    if (!st) {
        return svm_cli_fail(err);
    }
    printf("rack %s (%s): up\n", rack->name, rack->path);
    if (!svm_secrets_dir_ensure(rack->secrets_dir, &err)) {
        return svm_cli_fail(err);
    }
    for (guint i = 0; i < rack->hosts->len; i++) {
        SvmRackHost *h = rack->hosts->pdata[i];
        bool started;
        if (h->local) {
            g_autofree char *detail = NULL;
            bool already;
            if (!svm_local_host_up(rack, st, h, &already, &err)) {
                step_ok(false, "host %s", h->name);
                return svm_cli_fail(err);
            }
            svm_local_host_status(st, h, &detail);
            step_ok(true, "host %s %s: %s", h->name,
                    already ? "already running" : "started", detail);
            if (!check_host(rack, h, &err)) {
                return svm_cli_fail(err);
            }
            continue;
        }
        if (!host_is_here(h)) {
            step_ok(true, "host %s: %s is remote, not managed here", h->name,
                    h->libvirt_uri);
            continue;
        }
        if (!svm_local_daemons_up(st, h->libvirt_uri, &started, &err)) {
            step_ok(false, "libvirtd/virtlogd for host %s", h->name);
            return svm_cli_fail(err);
        }
        step_ok(true, "libvirtd %s (%s)", started ? "started" : "already running",
                h->libvirt_uri);
        if (!check_host(rack, h, &err)) {
            return svm_cli_fail(err);
        }
    }
    for (guint i = 0; i < rack->servers->len; i++) {
        SvmRackServer *s = rack->servers->pdata[i];
        bool already;
        if (!s->local) {
            g_autoptr(GError) e = NULL;
            const char *addr = s->tcp ? s->tcp : s->rdma;
            bool ok = svm_memserver_reachable(addr, 2000, &e);
            step_ok(true, "memory server %s: remote, %s %s", s->name, addr,
                    ok ? "reachable" : e->message);
            continue;
        }
        g_auto(GStrv) args = svm_memserver_local_args(rack, s, &err);
        if (!args || !svm_local_server_up(rack, st, s, (const char *const *)args,
                                          &already, &err)) {
            step_ok(false, "memory server %s", s->name);
            return svm_cli_fail(err);
        }
        g_autofree char *detail = NULL;
        svm_local_server_status(st, s, &detail);
        step_ok(true, "memory server %s %s: %s, %s", s->name,
                already ? "already running" : "started", detail,
                svm_size_format(s->capacity, sz, sizeof(sz)));
    }
    printf("rack %s is up\n", rack->name);
    return 0;
}

/* Split VMs of this rack that are running, as "a, b". */
static char *running_vms(const SvmRack *rack)
{
    g_autoptr(GString) s = g_string_new(NULL);

    for (guint i = 0; i < rack->hosts->len; i++) {
        SvmRackHost *h = rack->hosts->pdata[i];
        g_autoptr(virConnect) c = host_is_here(h)
                                  ? svm_virt_connect(h->libvirt_uri, NULL) : NULL;
        virDomainPtr *doms = NULL;
        int n = c ? virConnectListAllDomains(c, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE) : 0;
        for (int j = 0; j < n; j++) {
            g_autoptr(SvmVmInfo) info = svm_vm_info_get(doms[j], NULL);
            if (info && !g_strcmp0(info->rack, rack->name)) {
                g_string_append_printf(s, "%s%s", s->len ? ", " : "", info->name);
            }
            virDomainFree(doms[j]);
        }
        free(doms);
    }
    return s->len ? g_string_free(g_steal_pointer(&s), FALSE) : NULL;
}

static int rack_down(SvmRack *rack)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(SvmRackState) st = svm_rack_state_load(rack, &err);
    bool ok = true;

    if (!st) {
        return svm_cli_fail(err);
    }
    printf("rack %s (%s): down\n", rack->name, rack->path);
    g_autofree char *vms = running_vms(rack);
    if (vms && !opt_force) {
        g_set_error(&err, SVM_ORCH_ERROR, 0,
                    "split VMs of rack %s still run (%s): `splitvm destroy` them first, "
                    "or use --force", rack->name, vms);
        return svm_cli_fail(err);
    }
    /* Hosts first: with --force their VMs go before the servers do. */
    g_auto(GStrv) hosts = svm_local_recorded_hosts(st);
    for (int i = 0; hosts[i]; i++) {
        g_autoptr(GError) e = NULL;
        bool down = svm_local_host_down(st, hosts[i], &e);
        step_ok(down, "host %s: libvirtd stopped, namespace removed%s%s", hosts[i],
                e ? ": " : "", e ? e->message : "");
        ok &= down;
    }
    g_auto(GStrv) recorded = svm_local_recorded_servers(st);
    for (int i = 0; recorded[i]; i++) {
        g_autoptr(GError) e = NULL;
        bool down = svm_local_server_down(st, recorded[i], &e);
        step_ok(down, "memory server %s stopped, namespace removed%s%s", recorded[i],
                e ? ": " : "", e ? e->message : "");
        ok &= down;
    }
    if (g_key_file_has_group(st->kf, "daemons")) {
        g_autoptr(GError) e = NULL;
        bool d = svm_local_daemons_down(st, &e);
        if (!d) {
            svm_cli_warn("%s", e->message);
        } else {
            step_ok(true, "libvirtd and virtlogd that rack up started are stopped");
        }
        ok &= d;
    }
    if (ok) {
        svm_rack_state_remove(st);
        printf("rack %s is down\n", rack->name);
        return 0;
    }
    if (!svm_rack_state_save(st, &err)) {
        return svm_cli_fail(err);
    }
    fprintf(stderr, "splitvm rack: error: rack %s is only partly down (state kept in %s)\n",
            rack->name, st->path);
    return 1;
}

static int rack_status(SvmRack *rack)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(SvmRackState) st = svm_rack_state_load(rack, &err);
    bool all_up = true;

    if (!st) {
        return svm_cli_fail(err);
    }
    printf("rack %s (%s)\n", rack->name, rack->path);
    g_autofree char *daemons = svm_local_daemons_status(st);
    fputs(daemons, stdout);
    all_up &= strstr(daemons, "libvirtd  running") != NULL;
    for (guint i = 0; i < rack->hosts->len; i++) {
        SvmRackHost *h = rack->hosts->pdata[i];
        g_autofree char *detail = NULL;
        if (!h->local) {
            continue;
        }
        SvmLocalStatus ls = svm_local_host_status(st, h, &detail);
        printf("  %-9s host %s: %s\n", ls == SVM_LOCAL_RUNNING ? "running" :
               ls == SVM_LOCAL_DOWN ? "down" : "BROKEN", h->name, detail);
        all_up &= ls == SVM_LOCAL_RUNNING;
    }
    for (guint i = 0; i < rack->servers->len; i++) {
        SvmRackServer *s = rack->servers->pdata[i];
        g_autofree char *detail = NULL;
        if (s->local) {
            SvmLocalStatus ls = svm_local_server_status(st, s, &detail);
            printf("  %-9s %s: %s\n", ls == SVM_LOCAL_RUNNING ? "running" :
                   ls == SVM_LOCAL_DOWN ? "down" : "BROKEN", s->name, detail);
            all_up &= ls == SVM_LOCAL_RUNNING;
        } else {
            g_autoptr(GError) e = NULL;
            const char *addr = s->tcp ? s->tcp : s->rdma;
            bool ok = svm_memserver_reachable(addr, 2000, &e);
            printf("  %-9s %s: remote %s%s%s\n", ok ? "reachable" : "UNREACHABLE",
                   s->name, addr, ok ? "" : ": ", ok ? "" : e->message);
            all_up &= ok;
        }
    }
    g_auto(GStrv) hosts = svm_local_recorded_hosts(st);
    for (int i = 0; hosts[i]; i++) {
        SvmRackHost *h = svm_rack_find_host(rack, hosts[i]);
        if (!h || !h->local) {
            printf("  %-9s host %s: recorded in %s but no longer a local host in the "
                   "rack file (`rack down` removes it)\n", "stale", hosts[i], st->path);
            all_up = false;
        }
    }
    g_auto(GStrv) recorded = svm_local_recorded_servers(st);
    for (int i = 0; recorded[i]; i++) {
        if (!svm_rack_find_server(rack, recorded[i])) {
            printf("  %-9s %s: recorded in %s but no longer in the rack file "
                   "(`rack down` removes it)\n", "stale", recorded[i], st->path);
            all_up = false;
        }
    }
    g_autofree char *vms = running_vms(rack);
    printf("  split VMs running: %s\n", vms ? vms : "none");
    return all_up ? 0 : 3;
}

int svm_cmd_rack(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;

    if (!svm_cli_parse(&argc, &argv, "up|down|status",
                       "Runs a local rack: memory servers and local hosts (each with "
                       "its own libvirtd) in their own network namespaces, libvirtd and "
                       "virtlogd.",
                       "up      start what is not running (idempotent) and check that\n"
                       "        QEMU can run under libvirt's confinement here\n"
                       "down    stop and remove everything `up` started\n"
                       "status  show what runs (exit status 3 if something is down)\n"
                       "\nState (pids, namespaces, logs) lives in the rack's state-dir.",
                       entries, 1)) {
        return 2;
    }
    if (geteuid() != 0) {
        g_set_error(&err, SVM_ORCH_ERROR, 0, "must run as root (network namespaces, "
                    "libvirtd, secrets)");
        return svm_cli_fail(err);
    }
    g_autoptr(SvmRack) rack = svm_cli_rack(&err);
    if (!rack) {
        return svm_cli_fail(err);
    }
    if (!strcmp(argv[1], "up")) {
        return rack_up(rack);
    } else if (!strcmp(argv[1], "down")) {
        return rack_down(rack);
    } else if (!strcmp(argv[1], "status")) {
        return rack_status(rack);
    }
    fprintf(stderr, "splitvm rack: unknown action '%s' (up, down or status)\n", argv[1]);
    return 2;
}
