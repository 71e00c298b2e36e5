/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "local-host.h"
#include "conf-file.h"
#include "virt.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SYSTEM_QEMU_CONF "/etc/libvirt/qemu.conf"

/* Private dir (under host->dir) bound over each libvirt dir, in this order. */
static const char *const private_dirs[][2] = {
    { "run", "/run/libvirt" },
    { "lib", "/var/lib/libvirt" },
    { "cache", "/var/cache/libvirt" },
    { "log", "/var/log/libvirt" },
    { "etc", "/etc/libvirt" },
};

/* Where the host's mount namespace keeps the root namespace's /run/libvirt. */
#define ROOT_LIBVIRT_DIR "root-libvirt"

char *svm_local_host_netns_name(const SvmRack *rack, const SvmRackHost *h)
{
    return g_strdup_printf("splitvm-%s-host-%s", rack->name, h->name);
}

char *svm_local_host_veth_name(const SvmRack *rack, const SvmRackHost *h)
{
    /* 15 characters at most; "host/" keeps it apart from a server's hash. */
    g_autofree char *key = g_strdup_printf("%s/host/%s", rack->name, h->name);
    return g_strdup_printf("svm%08x", g_str_hash(key));
}

static char *host_group(const char *name)
{
    return g_strdup_printf("host %s", name);
}

static char *veth_root_address(const SvmRackHost *h)
{
    return g_strndup(h->veth, strcspn(h->veth, "/"));
}

char **svm_local_recorded_hosts(SvmRackState *st)
{
    g_auto(GStrv) groups = g_key_file_get_groups(st->kf, NULL);
    GPtrArray *out = g_ptr_array_new();

    for (int i = 0; groups[i]; i++) {
        if (g_str_has_prefix(groups[i], "host ")) {
            g_ptr_array_add(out, g_strdup(groups[i] + strlen("host ")));
        }
    }
    g_ptr_array_add(out, NULL);
    return (char **)g_ptr_array_free(out, FALSE);
}

static bool daemon_alive(SvmRackState *st, const char *group, const char *name)
{
    g_autofree char *start_key = g_strconcat(name, "-start-time", NULL);
    pid_t pid = g_key_file_get_integer(st->kf, group, name, NULL);
    unsigned long long start = g_key_file_get_uint64(st->kf, group, start_key, NULL);

    return pid > 0 && svm_pid_alive_as(pid, name, start);
}

SvmLocalStatus svm_local_host_status(SvmRackState *st, const SvmRackHost *h,
                                     char **detail)
{
    g_autofree char *group = host_group(h->name);
    g_autoptr(GError) err = NULL;

    if (!g_key_file_has_group(st->kf, group)) {
        *detail = g_strdup("not running");
        return SVM_LOCAL_DOWN;
    }
    const char *names[] = { "virtlogd", "libvirtd" };
    for (int i = 0; i < 2; i++) {
        if (!daemon_alive(st, group, names[i])) {
            *detail = g_strdup_printf("%s is not running (log: %s/%s.log)", names[i],
                                      h->dir, names[i]);
            return SVM_LOCAL_BROKEN;
        }
    }
    g_autoptr(virConnect) conn = svm_virt_connect(h->libvirt_uri, &err);
    if (!conn) {
        *detail = g_strdup_printf("libvirtd does not answer: %s", err->message);
        return SVM_LOCAL_BROKEN;
    }
    g_autofree char *ns = g_key_file_get_string(st->kf, group, "netns", NULL);
    *detail = g_strdup_printf("libvirtd pid %d, netns %s, address %s, %s",
                              g_key_file_get_integer(st->kf, group, "libvirtd", NULL),
                              ns, h->address, h->libvirt_uri);
    return SVM_LOCAL_RUNNING;
}

/* ---- the host's libvirt configuration ------------------------------------ */

static bool write_file(const char *path, const char *text, GError **errp)
{
    g_autoptr(GError) err = NULL;

    if (!g_file_set_contents_full(path, text, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0644,
                                  &err)) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "%s", err->message);
        return false;
    }
    return true;
}

static bool make_dirs(const SvmRackHost *h, GError **errp)
{
    g_autofree char *root = g_build_filename(h->dir, ROOT_LIBVIRT_DIR, NULL);
    g_autofree char *domains = g_build_filename(h->dir, "etc", "qemu", NULL);
    const char *dirs[G_N_ELEMENTS(private_dirs) * 2 + 2];
    g_autoptr(GPtrArray) owned = g_ptr_array_new_with_free_func(g_free);
    int n = 0;

    for (size_t i = 0; i < G_N_ELEMENTS(private_dirs); i++) {
        char *d = g_build_filename(h->dir, private_dirs[i][0], NULL);
        g_ptr_array_add(owned, d);
        dirs[n++] = d;
        dirs[n++] = private_dirs[i][1];     /* mount points in the root fs */
    }
    dirs[n++] = root;
    dirs[n++] = domains;
    for (int i = 0; i < n; i++) {
        /* QEMU's user traverses them (its home is /var/lib/libvirt/qemu). */
        if (g_mkdir_with_parents(dirs[i], 0755) < 0) {
            g_set_error(errp, SVM_ORCH_ERROR, 0, "cannot create %s: %s", dirs[i],
                        g_strerror(errno));
            return false;
        }
    }
    return true;
}

/*
 * libvirtd.conf: its own host UUID (libvirt refuses a migration between two
 * libvirtds with the same one), root-only sockets without polkit.
 * qemu.conf: the system's (user, device ACL for /dev/userfaultfd...) with
 * cgroups off: both libvirtds would otherwise name the cgroup of a
 * migrating VM alike, and the source would tear down the destination's.
 */
static bool write_config(const SvmRackHost *h, GError **errp)
{
    g_autofree char *etc = g_build_filename(h->dir, "etc", NULL);
    g_autofree char *uuid_path = g_build_filename(etc, "host-uuid", NULL);
    g_autofree char *uuid = NULL;
    g_autofree char *system_qemu = NULL;

    if (!g_file_get_contents(uuid_path, &uuid, NULL, NULL)) {
        uuid = g_uuid_string_random();
        if (!write_file(uuid_path, uuid, errp)) {
            return false;
        }
    }
    g_strstrip(uuid);
    if (!g_file_get_contents(SYSTEM_QEMU_CONF, &system_qemu, NULL, NULL)) {
        system_qemu = g_strdup("");
    }
    g_autofree char *libvirtd = g_strdup_printf(
        "# Written by splitvm rack up for host %s.\n"
        "host_uuid = \"%s\"\n"
        "auth_unix_rw = \"none\"\n"
        "auth_unix_ro = \"none\"\n"
        "unix_sock_rw_perms = \"0700\"\n"
        "unix_sock_ro_perms = \"0700\"\n"
        "unix_sock_admin_perms = \"0700\"\n", h->name, uuid);
    /* libvirt's config parser takes the first of a repeated key. */
    g_autofree char *qemu = g_strdup_printf(
        "# Written by splitvm rack up for host %s: " SYSTEM_QEMU_CONF " with cgroups off.\n"
        "cgroup_controllers = [ ]\n%s", h->name, system_qemu);
    g_autofree char *p1 = g_build_filename(etc, "libvirtd.conf", NULL);
    g_autofree char *p2 = g_build_filename(etc, "qemu.conf", NULL);
    g_autofree char *p3 = g_build_filename(etc, "virtlogd.conf", NULL);
    g_autofree char *p4 = g_build_filename(etc, "libvirt.conf", NULL);
    /* The namespace has its own host name (UTS) and maybe no DNS: libvirt
     * resolving it must not wait for a name server it cannot reach. */
    g_autofree char *system_hosts = NULL;
    if (!g_file_get_contents("/etc/hosts", &system_hosts, NULL, NULL)) {
        system_hosts = g_strdup("127.0.0.1 localhost\n");
    }
    g_autofree char *hosts = g_strdup_printf("%s\n# splitvm rack host %s\n%s %s\n",
                                             system_hosts, h->name, h->address, h->name);
    g_autofree char *p5 = g_build_filename(h->dir, "hosts", NULL);
    return write_file(p1, libvirtd, errp) && write_file(p2, qemu, errp) &&
           write_file(p3, "", errp) && write_file(p4, "", errp) &&
           write_file(p5, hosts, errp);
}

/* ---- namespace and daemons ------------------------------------------------ */

static bool setup_netns(const SvmRackHost *h, const char *ns, const char *veth,
                        GError **errp)
{
    g_autofree char *inner = g_strdup_printf("%s%s", h->address, strchr(h->veth, '/'));
    g_autofree char *gw = veth_root_address(h);

    /* The default route through the root namespace reaches the memory
     * servers' namespaces and other hosts (forwarding on our veth only). */
    return svm_veth_netns_add(ns, veth, h->veth, inner, errp) &&
           SVM_RUN(errp, "ip", "-n", ns, "route", "add", "default", "via", gw) &&
           svm_link_forwarding(veth, errp);
}

static void child_fail(const char *what)
{
    dprintf(2, "splitvm: host namespace setup: %s: %s\n", what, strerror(errno));
    _exit(127);
}

/*
 * Runs ARGV in the host's network namespace, in a mount namespace of its
 * own with the host's libvirt dirs, under the host's name (UTS namespace).
 * Returns the pid of ARGV itself (no daemonising).
 */
static pid_t spawn_in_host(const SvmRackHost *h, const char *ns,
                           const char *const *argv, const char *log, GError **errp)
{
    g_autofree char *nspath = g_build_filename("/run/netns", ns, NULL);
    g_autofree char *root_libvirt = g_build_filename(h->dir, ROOT_LIBVIRT_DIR, NULL);
    g_autofree char *hosts = g_build_filename(h->dir, "hosts", NULL);
    char *sources[G_N_ELEMENTS(private_dirs)];
    int logfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);

    if (logfd < 0) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "cannot open %s: %s", log, g_strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(private_dirs); i++) {
        sources[i] = g_build_filename(h->dir, private_dirs[i][0], NULL);
    }
    pid_t pid = fork();
    if (pid == 0) {
        setsid();
        int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, 0);
        dup2(logfd, 1);
        dup2(logfd, 2);
        int nsfd = open(nspath, O_RDONLY | O_CLOEXEC);
        if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) < 0) {
            child_fail(nspath);
        }
        if (unshare(CLONE_NEWNS | CLONE_NEWUTS) < 0) {
            child_fail("unshare");
        }
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
            child_fail("making / private");
        }
        if (sethostname(h->name, strlen(h->name)) < 0) {
            child_fail("sethostname");
        }
        /* Keep the root namespace's libvirt sockets reachable (peer URI). */
        if (mount("/run/libvirt", root_libvirt, NULL, MS_BIND, NULL) < 0) {
            child_fail(root_libvirt);
        }
        for (size_t i = 0; i < G_N_ELEMENTS(private_dirs); i++) {
            if (mount(sources[i], private_dirs[i][1], NULL, MS_BIND, NULL) < 0) {
                child_fail(private_dirs[i][1]);
            }
        }
        if (mount(hosts, "/etc/hosts", NULL, MS_BIND, NULL) < 0) {
            child_fail("/etc/hosts");
        }
        execvp(argv[0], (char **)argv);
        child_fail(argv[0]);
    }
    int saved = errno;
    close(logfd);
    for (size_t i = 0; i < G_N_ELEMENTS(private_dirs); i++) {
        g_free(sources[i]);
    }
    if (pid < 0) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "fork: %s", g_strerror(saved));
    }
    return pid;
}

/* Starts NAME in the host and waits until READY (or it exits, or 30 s). */
static bool start_daemon(const SvmRackHost *h, SvmRackState *st, const char *group,
                         const char *ns, const char *name,
                         bool (*ready)(const SvmRackHost *h), GError **errp)
{
    g_autofree char *conf = g_strdup_printf("%s/etc/%s.conf", h->dir, name);
    g_autofree char *pidfile = g_strdup_printf("%s/run/%s.pid", h->dir, name);
    g_autofree char *log = g_strdup_printf("%s/%s.log", h->dir, name);
    g_autofree char *start_key = g_strconcat(name, "-start-time", NULL);
    const char *argv[] = { name, "--config", conf, "--pid-file", pidfile, NULL };

    pid_t pid = spawn_in_host(h, ns, argv, log, errp);
    if (pid < 0) {
        return false;
    }
    g_key_file_set_integer(st->kf, group, name, pid);
    gint64 end = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
    while (!ready(h)) {
        if (waitpid(pid, NULL, WNOHANG) == pid || g_get_monotonic_time() > end) {
            g_autofree char *tail = svm_log_tail(log);
            svm_rack_state_save(st, NULL);
            g_set_error(errp, SVM_ORCH_ERROR, 0, "%s of host %s %s (log %s):\n%s", name,
                        h->name, svm_pid_is(pid, name) ? "did not get ready within 30 s"
                                                       : "exited at start", log, tail);
            return false;
        }
        g_usleep(20000);
    }
    g_key_file_set_uint64(st->kf, group, start_key, svm_pid_start_time(pid));
    return svm_rack_state_save(st, errp);
}

static bool virtlogd_ready(const SvmRackHost *h)
{
    g_autofree char *sock = g_build_filename(h->dir, "run", "virtlogd-sock", NULL);
    return access(sock, F_OK) == 0;
}

static bool libvirtd_ready(const SvmRackHost *h)
{
    virConnectPtr c = svm_virt_connect(h->libvirt_uri, NULL);
    if (c) {
        virConnectClose(c);
    }
    return c != NULL;
}

bool svm_local_host_up(const SvmRack *rack, SvmRackState *st, const SvmRackHost *h,
                       bool *already, GError **errp)
{
    g_autofree char *group = host_group(h->name);
    g_autofree char *detail = NULL;

    *already = false;
    switch (svm_local_host_status(st, h, &detail)) {
    case SVM_LOCAL_RUNNING: {
        g_autofree char *veth = g_key_file_get_string(st->kf, group, "veth", NULL);
        *already = true;
        return !veth || svm_link_forwarding(veth, errp);
    }
    case SVM_LOCAL_BROKEN:
        if (!svm_local_host_down(st, h->name, errp)) {
            return false;
        }
        break;
    case SVM_LOCAL_DOWN:
        break;
    }

    g_autofree char *ns = svm_local_host_netns_name(rack, h);
    g_autofree char *veth = svm_local_host_veth_name(rack, h);
    if (svm_netns_exists(ns) || svm_link_exists(veth)) {
        g_set_error(errp, SVM_ORCH_ERROR, 0,
                    "network namespace %s or interface %s exists but is not recorded in "
                    "%s: another rack with the same name? Remove them "
                    "(`ip netns delete %s`, `ip link delete %s`) if they are stale",
                    ns, veth, st->path, ns, veth);
        return false;
    }
    /* Record first, so a failure half-way is undone by `rack down`. */
    g_key_file_set_string(st->kf, group, "netns", ns);
    g_key_file_set_string(st->kf, group, "veth", veth);
    g_key_file_set_string(st->kf, group, "dir", h->dir);
    g_key_file_set_string(st->kf, group, "libvirt", h->libvirt_uri);
    if (!svm_rack_state_save(st, errp) || !make_dirs(h, errp) || !write_config(h, errp) ||
        !setup_netns(h, ns, veth, errp)) {
        return false;
    }
    return start_daemon(h, st, group, ns, "virtlogd", virtlogd_ready, errp) &&
           start_daemon(h, st, group, ns, "libvirtd", libvirtd_ready, errp);
}

/* Stops every domain the host's libvirtd still runs (their QEMUs would
 * otherwise outlive it in the namespace). */
static void destroy_domains(const char *uri)
{
    g_autoptr(virConnect) c = svm_virt_connect(uri, NULL);
    virDomainPtr *doms = NULL;
    int n = c ? virConnectListAllDomains(c, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE) : 0;

    for (int i = 0; i < n; i++) {
        virDomainDestroy(doms[i]);
        virDomainFree(doms[i]);
    }
    free(doms);
}

/* Kills what is left in namespace NS (it is ours alone) and waits. */
static bool kill_netns_pids(const char *ns, GError **errp)
{
    for (gint64 end = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;;) {
        g_autofree char *out = NULL;
        const char *argv[] = { "ip", "netns", "pids", ns, NULL };
        if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH |
                          G_SPAWN_STDERR_TO_DEV_NULL, NULL, NULL, &out, NULL, NULL, NULL)) {
            return true;
        }
        g_auto(GStrv) pids = g_strsplit(g_strstrip(out), "\n", 0);
        if (!pids[0] || !*pids[0]) {
            return true;
        }
        if (g_get_monotonic_time() > end) {
            g_set_error(errp, SVM_ORCH_ERROR, 0, "processes %s in namespace %s do not exit",
                        out, ns);
            return false;
        }
        for (int i = 0; pids[i]; i++) {
            pid_t pid = atoi(pids[i]);
            if (pid > 0) {
                kill(pid, SIGKILL);
                waitpid(pid, NULL, WNOHANG);
            }
        }
        g_usleep(20000);
    }
}

bool svm_local_host_down(SvmRackState *st, const char *name, GError **errp)
{
    g_autofree char *group = host_group(name);

    if (!g_key_file_has_group(st->kf, group)) {
        return true;
    }
    g_autofree char *ns = g_key_file_get_string(st->kf, group, "netns", NULL);
    g_autofree char *veth = g_key_file_get_string(st->kf, group, "veth", NULL);
    g_autofree char *dir = g_key_file_get_string(st->kf, group, "dir", NULL);
    g_autofree char *uri = g_key_file_get_string(st->kf, group, "libvirt", NULL);
    g_autofree char *suffix = g_strdup_printf("/host-%s", name);

    if (uri && daemon_alive(st, group, "libvirtd")) {
        destroy_domains(uri);
    }
    const char *daemons[] = { "libvirtd", "virtlogd" };
    for (int i = 0; i < 2; i++) {
        g_autofree char *start_key = g_strconcat(daemons[i], "-start-time", NULL);
        pid_t pid = g_key_file_get_integer(st->kf, group, daemons[i], NULL);
        unsigned long long start = g_key_file_get_uint64(st->kf, group, start_key, NULL);
        if (pid > 0 && !svm_stop_pid(pid, daemons[i], start, 20)) {
            g_set_error(errp, SVM_ORCH_ERROR, 0, "%s of host %s (pid %d) does not exit",
                        daemons[i], name, pid);
            return false;
        }
    }
    if (ns && svm_netns_exists(ns) && !kill_netns_pids(ns, errp)) {
        return false;
    }
    if (!svm_veth_netns_delete(ns, veth, errp)) {
        return false;
    }
    /* Only ever a dir this rack made for the host (its name says so). */
    if (dir && g_str_has_suffix(dir, suffix) &&
        !SVM_RUN(errp, "rm", "-rf", "--one-file-system", dir)) {
        return false;
    }
    g_key_file_remove_group(st->kf, group, NULL);
    return true;
}

/* ---- migration between hosts ---------------------------------------------- */

char *svm_host_peer_uri(const SvmRackHost *src, const SvmRackHost *dest)
{
    if (src->local && !dest->local && !strcmp(dest->libvirt_uri, "qemu:///system")) {
        return g_strdup_printf("qemu+unix:///system?socket=%s/" ROOT_LIBVIRT_DIR
                               "/libvirt-sock", src->dir);
    }
    return g_strdup(dest->libvirt_uri);
}

char *svm_host_migration_address(const SvmRackHost *src, const SvmRackHost *dest)
{
    if (dest->address) {
        return g_strdup(dest->address);
    }
    /* The root namespace, seen from a local host: the root end of its veth. */
    if (src->local && !dest->local) {
        return veth_root_address(src);
    }
    return NULL;
}
