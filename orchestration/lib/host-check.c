/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "host-check.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIX_HINT "orchestration/setup-libvirt.sh does this (see docs/operations.md)"

typedef struct Who {
    uid_t uid;
    gid_t gid;
    gid_t groups[65];
    int ngroups;
    char *name;
} Who;

static void who_init(Who *w, uid_t uid, gid_t gid)
{
    struct passwd *pw = getpwuid(uid);

    w->uid = uid;
    w->gid = gid;
    w->ngroups = G_N_ELEMENTS(w->groups) - 1;
    w->name = pw ? g_strdup(pw->pw_name) : g_strdup_printf("uid %u", uid);
    /* libvirt gives QEMU the user's groups: those of its passwd entry (primary
     * group included) plus the configured gid. */
    if (!pw || getgrouplist(pw->pw_name, pw->pw_gid, w->groups, &w->ngroups) < 0) {
        w->ngroups = 0;
    }
    w->groups[w->ngroups++] = gid;
}

/* Would WHO get MODE (R_OK/W_OK/X_OK bits) on ST by plain permission bits? */
static bool may(const Who *w, const struct stat *st, int mode)
{
    int shift;

    if (w->uid == 0) {
        return true;
    }
    if (st->st_uid == w->uid) {
        shift = 6;
    } else {
        shift = 0;
        for (int i = 0; i < w->ngroups; i++) {
            if (w->groups[i] == st->st_gid) {
                shift = 3;
            }
        }
    }
    int bits = (st->st_mode >> shift) & 7;
    return (bits & mode) == mode;
}

/* Every directory on the way must be searchable, the file itself MODE. */
static char *path_problem(const Who *w, const char *path, int mode)
{
    g_autofree char *abs = g_canonicalize_filename(path, NULL);
    struct stat st;

    if (stat(abs, &st) < 0) {
        return g_strdup_printf("%s: %s", abs, g_strerror(errno));
    }
    for (char *p = abs; (p = strchr(p + 1, '/'));) {
        *p = '\0';
        struct stat d;
        bool ok = stat(abs, &d) == 0 && may(w, &d, X_OK);
        g_autofree char *dir = g_strdup(abs);
        *p = '/';
        if (!ok) {
            return g_strdup_printf("directory %s is not searchable by %s", dir, w->name);
        }
    }
    if (!may(w, &st, mode)) {
        return g_strdup_printf("%s (%04o, uid %u gid %u) is not %s%s%s by %s", abs,
                               st.st_mode & 07777, st.st_uid, st.st_gid,
                               mode & R_OK ? "readable" : "",
                               mode & W_OK ? "/writable" : "",
                               mode & X_OK ? (mode & R_OK ? "/executable" : "executable") : "",
                               w->name);
    }
    return NULL;
}

gboolean svm_qemu_conf_acl_has(const char *text, const char *path)
{
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    bool in_acl = false;
    bool found = false;

    for (int i = 0; lines[i]; i++) {
        char *l = g_strstrip(lines[i]);
        if (*l == '#') {
            continue;
        }
        char *hash = strchr(l, '#');
        if (hash) {
            *hash = '\0';
        }
        if (!in_acl && g_str_has_prefix(l, "cgroup_device_acl")) {
            in_acl = true;
            found = false;      /* a later setting replaces an earlier one */
        }
        if (in_acl) {
            g_autofree char *quoted = g_strdup_printf("\"%s\"", path);
            found |= strstr(l, quoted) != NULL;
            if (strchr(l, ']')) {
                in_acl = false;
            }
        }
    }
    return found;
}

/*
 * libvirt probes an emulator's capabilities with a scrubbed environment (no
 * LD_LIBRARY_PATH, whatever <qemu:env> a domain sets), so QEMU must find
 * libsplitvm on its own: installed, or through its RUNPATH.
 */
static char *emulator_problem(const char *emulator)
{
    const char *argv[] = { emulator, "--version", NULL };
    const char *envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL };
    g_autofree char *out = NULL, *err_text = NULL;
    g_autoptr(GError) err = NULL;
    int status;

    if (!g_spawn_sync(NULL, (char **)argv, (char **)envp, 0, NULL, NULL, &out,
                      &err_text, &status, &err)) {
        return g_strdup_printf("cannot run it: %s", err->message);
    }
    if (!g_spawn_check_wait_status(status, NULL)) {
        return g_strdup_printf("`%s --version` fails in a clean environment (as libvirt "
                               "runs it to probe capabilities): %s%s", emulator,
                               g_strstrip(err_text),
                               strstr(err_text, "shared librar")
                               ? " -- install libsplitvm (`meson install`), build QEMU "
                                 "with a RUNPATH to it, or set the host's library-path"
                               : "");
    }
    return NULL;
}

static bool cgroup_devices_controller(void)
{
    /* cgroup v1 devices controller, or v2 (libvirt uses a BPF device filter). */
    return access("/sys/fs/cgroup/devices", F_OK) == 0 ||
           access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0;
}

GPtrArray *svm_host_check(const SvmRack *rack, const SvmRackHost *host,
                          const char *emulator, uid_t qemu_uid, gid_t qemu_gid,
                          const char *qemu_conf)
{
    GPtrArray *problems = g_ptr_array_new_with_free_func(g_free);
    Who w;
    struct stat st;
    char *p;

    who_init(&w, qemu_uid, qemu_gid);

    if (stat("/dev/userfaultfd", &st) < 0 || !S_ISCHR(st.st_mode)) {
        g_ptr_array_add(problems, g_strdup(
            "/dev/userfaultfd is missing: the kernel must be 5.11 or newer with "
            "CONFIG_USERFAULTFD (the pager needs it for faults from KVM and syscalls)"));
    } else if ((p = path_problem(&w, "/dev/userfaultfd", R_OK | W_OK))) {
        g_ptr_array_add(problems, g_strdup_printf(
            "QEMU runs as %s under libvirt, but %s.  Give the group kvm access: "
            "`chgrp kvm /dev/userfaultfd; chmod 0660 /dev/userfaultfd` plus a udev rule "
            "to keep it; " FIX_HINT, w.name, p));
        g_free(p);
    }

    g_autofree char *conf = NULL;
    if (cgroup_devices_controller()) {
        if (!g_file_get_contents(qemu_conf, &conf, NULL, NULL)) {
            g_ptr_array_add(problems, g_strdup_printf("cannot read %s", qemu_conf));
        } else if (!svm_qemu_conf_acl_has(conf, "/dev/userfaultfd")) {
            g_ptr_array_add(problems, g_strdup_printf(
                "%s: cgroup_device_acl does not list \"/dev/userfaultfd\", so libvirt's "
                "device cgroup (and private /dev) keep QEMU from opening it.  Add it to "
                "cgroup_device_acl and restart libvirtd; " FIX_HINT, qemu_conf));
        }
    }

    if ((p = path_problem(&w, host->emulator, R_OK | X_OK)) ||
        (strcmp(emulator, host->emulator) && (p = path_problem(&w, emulator, R_OK | X_OK)))) {
        g_ptr_array_add(problems, g_strdup_printf("host %s: emulator: %s", host->name, p));
        g_free(p);
    } else if ((p = emulator_problem(emulator))) {
        g_ptr_array_add(problems, g_strdup_printf("host %s: emulator %s: %s", host->name,
                                                  emulator, p));
        g_free(p);
    }
    if (host->library_path) {
        g_auto(GStrv) dirs = g_strsplit(host->library_path, ":", -1);
        for (int i = 0; dirs[i]; i++) {
            if (*dirs[i] && (p = path_problem(&w, dirs[i], R_OK | X_OK))) {
                g_ptr_array_add(problems, g_strdup_printf(
                    "host %s: library-path: %s", host->name, p));
                g_free(p);
            }
        }
    }
    /* QEMU opens its key file by name inside the secrets directory. */
    if (stat(rack->secrets_dir, &st) == 0 && (p = path_problem(&w, rack->secrets_dir, X_OK))) {
        g_ptr_array_add(problems, g_strdup_printf("secrets-dir: %s", p));
        g_free(p);
    }
    if (rack->memserver_binary && access(rack->memserver_binary, X_OK) != 0) {
        g_ptr_array_add(problems, g_strdup_printf(
            "memserver-binary %s is not executable: %s (build it with `make`)",
            rack->memserver_binary, g_strerror(errno)));
    }
    g_free(w.name);
    return problems;
}
