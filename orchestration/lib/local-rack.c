/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "local-rack.h"
#include "conf-file.h"
#include "memservers.h"
#include "virt.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define LIBVIRTD_PIDFILE    "/run/libvirtd.pid"
#define VIRTLOGD_PIDFILE    "/run/virtlogd.pid"

/* ---- state file --------------------------------------------------------- */

SvmRackState *svm_rack_state_load(const SvmRack *rack, GError **errp)
{
    g_autoptr(SvmRackState) st = g_new0(SvmRackState, 1);
    g_autoptr(GError) err = NULL;

    st->path = g_build_filename(rack->state_dir, "rack.state", NULL);
    st->kf = g_key_file_new();
    st->lock_fd = -1;

    g_autofree char *lock = g_build_filename(rack->state_dir, "rack.lock", NULL);
    if (g_mkdir_with_parents(rack->state_dir, 0755) < 0 ||
        (st->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0 ||
        flock(st->lock_fd, LOCK_EX) < 0) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "cannot lock %s: %s", lock, g_strerror(errno));
        return NULL;
    }
    if (!g_key_file_load_from_file(st->kf, st->path, G_KEY_FILE_KEEP_COMMENTS, &err) &&
        !g_error_matches(err, G_FILE_ERROR, G_FILE_ERROR_NOENT)) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "rack state %s is unreadable: %s "
                    "(remove it after checking nothing of the rack still runs)",
                    st->path, err->message);
        return NULL;
    }
    return g_steal_pointer(&st);
}

bool svm_rack_state_save(SvmRackState *st, GError **errp)
{
    g_autofree char *dir = g_path_get_dirname(st->path);
    g_autoptr(GError) err = NULL;

    if (g_mkdir_with_parents(dir, 0755) < 0) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "cannot create %s: %s", dir,
                    g_strerror(errno));
        return false;
    }
    if (!g_key_file_save_to_file(st->kf, st->path, &err)) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "cannot write rack state: %s", err->message);
        return false;
    }
    return true;
}

void svm_rack_state_remove(SvmRackState *st)
{
    /* The lock file and the logs stay (unlinking a held lock would let a
     * waiter and a newcomer in at once). */
    unlink(st->path);
}

void svm_rack_state_free(SvmRackState *st)
{
    if (!st) {
        return;
    }
    g_free(st->path);
    g_key_file_unref(st->kf);
    if (st->lock_fd >= 0) {
        close(st->lock_fd);
    }
    g_free(st);
}

/* ---- processes ---------------------------------------------------------- */

/* Field 22 of /proc/PID/stat: tells a reused pid from the one we started. */
unsigned long long svm_pid_start_time(pid_t pid)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/stat", pid);
    g_autofree char *text = NULL;

    if (!g_file_get_contents(path, &text, NULL, NULL)) {
        return 0;
    }
    char *p = strrchr(text, ')');
    if (!p) {
        return 0;
    }
    g_auto(GStrv) f = g_strsplit(p + 2, " ", 0);
    /* f[0] is field 3 (state), so field 22 is f[19]. */
    return g_strv_length(f) > 19 ? g_ascii_strtoull(f[19], NULL, 10) : 0;
}

bool svm_pid_is(pid_t pid, const char *comm)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/comm", pid);
    g_autofree char *text = NULL;

    if (pid <= 0 || !g_file_get_contents(path, &text, NULL, NULL)) {
        return false;
    }
    g_strstrip(text);
    /* The kernel truncates comm to 15 characters. */
    return !strncmp(text, comm, 15);
}

bool svm_pid_alive_as(pid_t pid, const char *comm, unsigned long long start)
{
    if (!svm_pid_is(pid, comm)) {
        return false;
    }
    g_autofree char *stat = g_strdup_printf("/proc/%d/stat", pid);
    g_autofree char *text = NULL;
    /* A zombie is not alive. */
    if (g_file_get_contents(stat, &text, NULL, NULL)) {
        char *p = strrchr(text, ')');
        if (p && p[2] == 'Z') {
            return false;
        }
    }
    return !start || svm_pid_start_time(pid) == start;
}

/* SIGTERM, wait up to TIMEOUT_S for it to go, then SIGKILL. */
bool svm_stop_pid(pid_t pid, const char *comm, unsigned long long start,
                     int timeout_s)
{
    if (!svm_pid_alive_as(pid, comm, start)) {
        return true;
    }
    kill(pid, SIGTERM);
    for (gint64 end = g_get_monotonic_time() + timeout_s * G_USEC_PER_SEC;
         g_get_monotonic_time() < end;) {
        waitpid(pid, NULL, WNOHANG);    /* our own child when started in this run */
        if (!svm_pid_alive_as(pid, comm, start)) {
            return true;
        }
        g_usleep(20000);
    }
    kill(pid, SIGKILL);
    for (gint64 end = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
         g_get_monotonic_time() < end;) {
        waitpid(pid, NULL, WNOHANG);
        if (!svm_pid_alive_as(pid, comm, start)) {
            return true;
        }
        g_usleep(20000);
    }
    return false;
}

bool svm_run(GError **errp, const char *const *argv)
{
    g_autofree char *out = NULL, *err_text = NULL;
    g_autoptr(GError) err = NULL;
    int status;

    if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL,
                      &out, &err_text, &status, &err)) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "cannot run %s: %s", argv[0], err->message);
        return false;
    }
    if (!g_spawn_check_wait_status(status, NULL)) {
        g_autofree char *cmd = g_strjoinv(" ", (char **)argv);
        g_set_error(errp, SVM_ORCH_ERROR, 0, "`%s` failed: %s", cmd,
                    g_strstrip(err_text));
        return false;
    }
    return true;
}


/* ---- local memory servers ----------------------------------------------- */

char *svm_local_netns_name(const SvmRack *rack, const SvmRackServer *s)
{
    return g_strdup_printf("splitvm-%s-%s", rack->name, s->name);
}

char *svm_local_veth_name(const SvmRack *rack, const SvmRackServer *s)
{
    /* Interface names have 15 characters at most: hash rack and server. */
    g_autofree char *key = g_strdup_printf("%s/%s", rack->name, s->name);
    return g_strdup_printf("svm%08x", g_str_hash(key));
}

bool svm_netns_exists(const char *ns)
{
    g_autofree char *path = g_build_filename("/run/netns", ns, NULL);
    return access(path, F_OK) == 0;
}

bool svm_link_exists(const char *dev)
{
    g_autofree char *path = g_build_filename("/sys/class/net", dev, NULL);
    return access(path, F_OK) == 0;
}

static char *server_group(const char *name)
{
    return g_strdup_printf("memserver %s", name);
}

static const char *server_address(const SvmRackServer *s)
{
    return s->tcp ? s->tcp : s->rdma;
}

SvmLocalStatus svm_local_server_status(SvmRackState *st, const SvmRackServer *s,
                                       char **detail)
{
    g_autofree char *group = server_group(s->name);
    g_autoptr(GError) err = NULL;

    if (!g_key_file_has_group(st->kf, group)) {
        *detail = g_strdup("not running");
        return SVM_LOCAL_DOWN;
    }
    pid_t pid = g_key_file_get_integer(st->kf, group, "pid", NULL);
    unsigned long long start = g_key_file_get_uint64(st->kf, group, "start-time", NULL);
    g_autofree char *comm = g_key_file_get_string(st->kf, group, "comm", NULL);
    if (!comm || !svm_pid_alive_as(pid, comm, start)) {
        g_autofree char *log = g_key_file_get_string(st->kf, group, "log", NULL);
        *detail = g_strdup_printf("process %d is gone (log: %s)", pid, log ? log : "?");
        return SVM_LOCAL_BROKEN;
    }
    if (!svm_memserver_reachable(server_address(s), 2000, &err)) {
        *detail = g_strdup_printf("pid %d does not answer on %s: %s", pid,
                                  server_address(s), err->message);
        return SVM_LOCAL_BROKEN;
    }
    g_autofree char *ns = g_key_file_get_string(st->kf, group, "netns", NULL);
    *detail = g_strdup_printf("pid %d, netns %s, %s%s%s%s", pid, ns,
                              s->tcp ? "tcp " : "", s->tcp ? s->tcp : "",
                              s->rdma ? " rdma " : "", s->rdma ? s->rdma : "");
    return SVM_LOCAL_RUNNING;
}

char **svm_local_recorded_servers(SvmRackState *st)
{
    g_auto(GStrv) groups = g_key_file_get_groups(st->kf, NULL);
    GPtrArray *out = g_ptr_array_new();

    for (int i = 0; groups[i]; i++) {
        if (g_str_has_prefix(groups[i], "memserver ")) {
            g_ptr_array_add(out, g_strdup(groups[i] + strlen("memserver ")));
        }
    }
    g_ptr_array_add(out, NULL);
    return (char **)g_ptr_array_free(out, FALSE);
}

bool svm_local_server_down(SvmRackState *st, const char *name, GError **errp)
{
    g_autofree char *group = server_group(name);

    if (!g_key_file_has_group(st->kf, group)) {
        return true;
    }
    pid_t pid = g_key_file_get_integer(st->kf, group, "pid", NULL);
    unsigned long long start = g_key_file_get_uint64(st->kf, group, "start-time", NULL);
    g_autofree char *comm = g_key_file_get_string(st->kf, group, "comm", NULL);
    g_autofree char *ns = g_key_file_get_string(st->kf, group, "netns", NULL);
    g_autofree char *veth = g_key_file_get_string(st->kf, group, "veth", NULL);

    if (pid > 0 && comm && !svm_stop_pid(pid, comm, start, 10)) {
        g_set_error(errp, SVM_ORCH_ERROR, 0,
                    "memory server %s (pid %d) does not exit", name, pid);
        return false;
    }
    if (!svm_veth_netns_delete(ns, veth, errp)) {
        return false;
    }
    g_key_file_remove_group(st->kf, group, NULL);
    return true;
}

bool svm_local_server_reload(SvmRackState *st, const char *name, GError **errp)
{
    g_autofree char *group = server_group(name);
    pid_t pid = g_key_file_get_integer(st->kf, group, "pid", NULL);
    unsigned long long start = g_key_file_get_uint64(st->kf, group, "start-time", NULL);
    g_autofree char *comm = g_key_file_get_string(st->kf, group, "comm", NULL);

    if (!comm || !svm_pid_alive_as(pid, comm, start)) {
        g_set_error(errp, SVM_ORCH_ERROR, 0,
                    "local memory server %s is not running (`splitvm rack up`)", name);
        return false;
    }
    if (kill(pid, SIGHUP) < 0) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "cannot signal memory server %s: %s",
                    name, g_strerror(errno));
        return false;
    }
    return true;
}

char *svm_log_tail(const char *path)
{
    g_autofree char *text = NULL;

    if (!g_file_get_contents(path, &text, NULL, NULL)) {
        return g_strdup("(no log)");
    }
    g_strstrip(text);
    const char *p = text + strlen(text);
    for (int lines = 0; p > text && lines < 5; p--) {
        lines += p[-1] == '\n';
    }
    return g_strdup(p);
}

static bool setup_netns(const SvmRackServer *s, const char *ns, const char *veth,
                        GError **errp)
{
    g_autofree char *host = NULL;

    svm_parse_host_port(server_address(s), &host, NULL);
    g_autofree char *inner = g_strdup_printf("%s%s", host, strchr(s->veth, '/'));
    return svm_veth_netns_add(ns, veth, s->veth, inner, errp);
}

bool svm_veth_netns_add(const char *ns, const char *veth, const char *root_cidr,
                        const char *inner_cidr, GError **errp)
{
    g_autofree char *peer = g_strdup_printf("%sn", veth);

    return SVM_RUN(errp, "ip", "netns", "add", ns) &&
           SVM_RUN(errp, "ip", "link", "add", veth, "type", "veth", "peer", "name", peer,
                   "netns", ns) &&
           SVM_RUN(errp, "ip", "addr", "add", root_cidr, "dev", veth) &&
           SVM_RUN(errp, "ip", "link", "set", veth, "up") &&
           SVM_RUN(errp, "ip", "-n", ns, "addr", "add", inner_cidr, "dev", peer) &&
           SVM_RUN(errp, "ip", "-n", ns, "link", "set", peer, "up") &&
           SVM_RUN(errp, "ip", "-n", ns, "link", "set", "lo", "up");
}

bool svm_veth_netns_delete(const char *ns, const char *veth, GError **errp)
{
    /*
     * Deleting our end removes the pair at once; the kernel tears down a
     * deleted namespace's interfaces later, which would leave our end
     * around for a moment and make a quick `rack up` collide with it.
     */
    g_autoptr(GError) err = NULL;
    if (veth && svm_link_exists(veth) && !SVM_RUN(&err, "ip", "link", "delete", veth) &&
        svm_link_exists(veth)) {
        g_propagate_error(errp, g_steal_pointer(&err));
        return false;
    }
    if (ns && svm_netns_exists(ns) && !SVM_RUN(errp, "ip", "netns", "delete", ns)) {
        return false;
    }
    for (gint64 end = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
         veth && svm_link_exists(veth);) {
        if (g_get_monotonic_time() > end) {
            g_set_error(errp, SVM_ORCH_ERROR, 0, "interface %s is still there 5 s after "
                        "its deletion", veth);
            return false;
        }
        g_usleep(20000);    /* the kernel gives no event to wait for here */
    }
    return true;
}

bool svm_link_forwarding(const char *dev, GError **errp)
{
    g_autofree char *path = g_strdup_printf("/proc/sys/net/ipv4/conf/%s/forwarding", dev);
    g_autoptr(GError) err = NULL;

    if (!g_file_set_contents_full(path, "1\n", -1, G_FILE_SET_CONTENTS_NONE, 0644, &err)) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "cannot enable forwarding on %s: %s", dev,
                    err->message);
        return false;
    }
    return true;
}

/*
 * QEMUs of local hosts (other namespaces) reach the server through the root
 * namespace: a default route back out of the server's namespace, and
 * forwarding on the root end of its veth (only there).  Idempotent.
 */
static bool server_routes(const SvmRackServer *s, const char *ns, const char *veth,
                          GError **errp)
{
    g_auto(GStrv) parts = g_strsplit(s->veth, "/", 2);

    return svm_link_forwarding(veth, errp) &&
           SVM_RUN(errp, "ip", "-n", ns, "route", "replace", "default", "via", parts[0]);
}

static pid_t spawn_in_netns(const char *ns, const char *const *argv, const char *log,
                            GError **errp)
{
    int logfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (logfd < 0) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "cannot open %s: %s", log,
                    g_strerror(errno));
        return -1;
    }
    g_autoptr(GPtrArray) full = g_ptr_array_new();
    for (const char *a[] = { "ip", "netns", "exec", ns }, **p = a; p < a + 4; p++) {
        g_ptr_array_add(full, (char *)*p);
    }
    for (int i = 0; argv[i]; i++) {
        g_ptr_array_add(full, (char *)argv[i]);
    }
    g_ptr_array_add(full, NULL);

    pid_t pid = fork();
    if (pid == 0) {
        /* Its own session: it outlives `rack up` and ignores our terminal. */
        setsid();
        int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, 0);
        dup2(logfd, 1);
        dup2(logfd, 2);
        execvp("ip", (char **)full->pdata);     /* `ip netns exec` execs argv in place */
        dprintf(2, "cannot run ip: %s\n", strerror(errno));
        _exit(127);
    }
    int saved = errno;
    close(logfd);
    if (pid < 0) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "fork: %s", g_strerror(saved));
    }
    return pid;
}

bool svm_local_server_up(const SvmRack *rack, SvmRackState *st, const SvmRackServer *s,
                         const char *const *extra_args, bool *already, GError **errp)
{
    g_autofree char *group = server_group(s->name);
    g_autofree char *detail = NULL;

    *already = false;
    switch (svm_local_server_status(st, s, &detail)) {
    case SVM_LOCAL_RUNNING: {
        g_autofree char *ns = g_key_file_get_string(st->kf, group, "netns", NULL);
        g_autofree char *veth = g_key_file_get_string(st->kf, group, "veth", NULL);
        *already = true;
        return !ns || !veth || server_routes(s, ns, veth, errp);
    }
    case SVM_LOCAL_BROKEN:
        if (!svm_local_server_down(st, s->name, errp)) {
            return false;
        }
        break;
    case SVM_LOCAL_DOWN:
        break;
    }

    g_autofree char *ns = svm_local_netns_name(rack, s);
    g_autofree char *veth = svm_local_veth_name(rack, s);
    g_autofree char *log = g_strdup_printf("%s/memserver-%s.log", rack->state_dir, s->name);
    g_autofree char *comm = g_path_get_basename(rack->memserver_binary);

    if (svm_netns_exists(ns) || svm_link_exists(veth)) {
        g_set_error(errp, SVM_ORCH_ERROR, 0,
                    "network namespace %s or interface %s exists but is not recorded in "
                    "%s: another rack with the same name? Remove them "
                    "(`ip netns delete %s`, `ip link delete %s`) if they are stale",
                    ns, veth, st->path, ns, veth);
        return false;
    }
    if (g_mkdir_with_parents(rack->state_dir, 0755) < 0) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "cannot create %s: %s", rack->state_dir,
                    g_strerror(errno));
        return false;
    }
    /* Record first, so a failure half-way is undone by `rack down`. */
    g_key_file_set_string(st->kf, group, "netns", ns);
    g_key_file_set_string(st->kf, group, "veth", veth);
    g_key_file_set_string(st->kf, group, "log", log);
    g_key_file_set_string(st->kf, group, "comm", comm);
    if (!svm_rack_state_save(st, errp) || !setup_netns(s, ns, veth, errp) ||
        !server_routes(s, ns, veth, errp)) {
        return false;
    }

    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_ptr_array_add(argv, rack->memserver_binary);
    for (int i = 0; extra_args && extra_args[i]; i++) {
        g_ptr_array_add(argv, (char *)extra_args[i]);
    }
    g_ptr_array_add(argv, NULL);
    pid_t pid = spawn_in_netns(ns, (const char *const *)argv->pdata, log, errp);
    if (pid < 0) {
        return false;
    }
    g_key_file_set_integer(st->kf, group, "pid", pid);

    /* Ready when it accepts connections; give up early if it died. */
    g_autoptr(GError) err = NULL;
    gint64 end = g_get_monotonic_time() + 15 * G_USEC_PER_SEC;
    for (;;) {
        g_clear_error(&err);
        if (svm_memserver_reachable(server_address(s), 500, &err)) {
            break;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid || g_get_monotonic_time() > end) {
            g_autofree char *tail = svm_log_tail(log);
            bool died = !svm_pid_is(pid, comm) && kill(pid, 0) < 0;
            svm_rack_state_save(st, NULL);
            g_set_error(errp, SVM_ORCH_ERROR, 0,
                        "memory server %s %s (log %s):\n%s", s->name,
                        died ? "exited at start" :
                               "did not answer within 15 s", log, tail);
            return false;
        }
        g_usleep(20000);
    }
    g_key_file_set_uint64(st->kf, group, "start-time", svm_pid_start_time(pid));
    return svm_rack_state_save(st, errp);
}

/* ---- libvirtd / virtlogd ------------------------------------------------ */

static pid_t pidfile_pid(const char *pidfile, const char *comm)
{
    g_autofree char *text = NULL;

    if (!g_file_get_contents(pidfile, &text, NULL, NULL)) {
        return 0;
    }
    pid_t pid = atoi(text);
    return svm_pid_is(pid, comm) ? pid : 0;
}

static bool start_daemon(SvmRackState *st, const char *name, const char *pidfile,
                         GError **errp)
{
    if (pidfile_pid(pidfile, name)) {
        return true;
    }
    if (!SVM_RUN(errp, name, "-d")) {
        return false;
    }
    gint64 end = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
    pid_t pid;
    while (!(pid = pidfile_pid(pidfile, name))) {
        if (g_get_monotonic_time() > end) {
            g_set_error(errp, SVM_ORCH_ERROR, 0, "%s -d did not write %s within 30 s",
                        name, pidfile);
            return false;
        }
        g_usleep(20000);
    }
    g_autofree char *start_key = g_strconcat(name, "-start-time", NULL);
    g_key_file_set_integer(st->kf, "daemons", name, pid);
    g_key_file_set_uint64(st->kf, "daemons", start_key, svm_pid_start_time(pid));
    return svm_rack_state_save(st, errp);
}

bool svm_local_daemons_up(SvmRackState *st, const char *uri, bool *started,
                          GError **errp)
{
    bool had = pidfile_pid(LIBVIRTD_PIDFILE, "libvirtd") != 0;

    *started = false;
    if (!start_daemon(st, "virtlogd", VIRTLOGD_PIDFILE, errp) ||
        !start_daemon(st, "libvirtd", LIBVIRTD_PIDFILE, errp)) {
        return false;
    }
    *started = !had;
    /* Ready when it accepts connections. */
    g_autoptr(GError) err = NULL;
    gint64 end = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
    for (;;) {
        g_clear_error(&err);
        virConnectPtr c = svm_virt_connect(uri, &err);
        if (c) {
            virConnectClose(c);
            return true;
        }
        if (g_get_monotonic_time() > end) {
            g_propagate_prefixed_error(errp, g_steal_pointer(&err),
                                       "libvirtd does not answer within 30 s: ");
            return false;
        }
        g_usleep(50000);
    }
}

static bool stop_recorded_daemon(SvmRackState *st, const char *name, GError **errp)
{
    g_autofree char *start_key = g_strconcat(name, "-start-time", NULL);
    pid_t pid = g_key_file_get_integer(st->kf, "daemons", name, NULL);
    unsigned long long start = g_key_file_get_uint64(st->kf, "daemons", start_key, NULL);

    if (pid > 0 && !svm_stop_pid(pid, name, start, 20)) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "%s (pid %d) does not exit", name, pid);
        return false;
    }
    g_key_file_remove_key(st->kf, "daemons", name, NULL);
    g_key_file_remove_key(st->kf, "daemons", start_key, NULL);
    return true;
}

bool svm_local_daemons_down(SvmRackState *st, GError **errp)
{
    if (g_key_file_has_key(st->kf, "daemons", "libvirtd", NULL)) {
        /* Stopping libvirtd under running domains would orphan them. */
        virConnectPtr c = svm_virt_connect("qemu:///system", NULL);
        int n = c ? virConnectNumOfDomains(c) : 0;
        if (c) {
            virConnectClose(c);
        }
        if (n > 0) {
            g_set_error(errp, SVM_ORCH_ERROR, 0,
                        "%d domain%s still running (see `virsh list`): libvirtd, which "
                        "rack up started, is left running", n, n == 1 ? " is" : "s are");
            return false;
        }
        if (!stop_recorded_daemon(st, "libvirtd", errp)) {
            return false;
        }
    }
    if (g_key_file_has_key(st->kf, "daemons", "virtlogd", NULL) &&
        !stop_recorded_daemon(st, "virtlogd", errp)) {
        return false;
    }
    g_key_file_remove_group(st->kf, "daemons", NULL);
    return true;
}

char *svm_local_daemons_status(SvmRackState *st)
{
    g_autoptr(GString) s = g_string_new(NULL);
    const char *names[] = { "libvirtd", "virtlogd" };
    const char *pidfiles[] = { LIBVIRTD_PIDFILE, VIRTLOGD_PIDFILE };

    for (int i = 0; i < 2; i++) {
        pid_t pid = pidfile_pid(pidfiles[i], names[i]);
        bool ours = g_key_file_get_integer(st->kf, "daemons", names[i], NULL) == pid &&
                    pid > 0;
        if (pid) {
            g_string_append_printf(s, "  %-9s running (pid %d%s)\n", names[i], pid,
                                   ours ? ", started by rack up" : "");
        } else {
            g_string_append_printf(s, "  %-9s not running\n", names[i]);
        }
    }
    return g_string_free(g_steal_pointer(&s), FALSE);
}
