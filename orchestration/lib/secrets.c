/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "secrets.h"
#include "conf-file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

char *svm_secret_path(const SvmRack *rack, const char *vm_name)
{
    g_autofree char *file = g_strdup_printf("vm-%s.key", vm_name);
    return g_build_filename(rack->secrets_dir, file, NULL);
}

bool svm_secrets_dir_ensure(const char *dir, GError **errp)
{
    g_autofree char *parent = g_path_get_dirname(dir);
    struct stat st;

    if (g_mkdir_with_parents(parent, 0755) < 0 ||
        (mkdir(dir, 0711) < 0 && errno != EEXIST)) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "cannot create secrets directory %s: %s",
                    dir, g_strerror(errno));
        return false;
    }
    /* Others may traverse (QEMU opens its own file by name) but not list. */
    if (stat(dir, &st) == 0 && (st.st_mode & 0777) != 0711 && chmod(dir, 0711) < 0) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "cannot chmod secrets directory %s: %s",
                    dir, g_strerror(errno));
        return false;
    }
    return true;
}

bool svm_secret_ensure(const char *path, uid_t uid, gid_t gid, bool *created,
                       GError **errp)
{
    g_autofree char *dir = g_path_get_dirname(path);
    unsigned char raw[SVM_SECRET_HEX_LEN / 2];
    char hex[SVM_SECRET_HEX_LEN + 1];

    *created = false;
    if (!svm_secrets_dir_ensure(dir, errp)) {
        return false;
    }
    if (access(path, F_OK) == 0) {
        g_autofree char *s = svm_secret_read(path, errp);
        if (!s) {
            return false;
        }
        /* Keep it, but make sure QEMU can still read it. */
        if (chown(path, uid, gid) < 0 || chmod(path, 0400) < 0) {
            g_set_error(errp, SVM_ORCH_ERROR, 0, "cannot set owner/mode of %s: %s",
                        path, g_strerror(errno));
            return false;
        }
        return true;
    }
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "getrandom failed: %s", g_strerror(errno));
        return false;
    }
    for (unsigned i = 0; i < sizeof(raw); i++) {
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0400);
    if (fd < 0) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "cannot create %s: %s", path,
                    g_strerror(errno));
        return false;
    }
    bool ok = write(fd, hex, SVM_SECRET_HEX_LEN) == SVM_SECRET_HEX_LEN &&
              fchown(fd, uid, gid) == 0 && fsync(fd) == 0;
    int saved = errno;
    close(fd);
    if (!ok) {
        unlink(path);
        g_set_error(errp, SVM_ORCH_ERROR, 0, "cannot write %s: %s", path,
                    g_strerror(saved));
        return false;
    }
    *created = true;
    return true;
}

char *svm_secret_read(const char *path, GError **errp)
{
    g_autoptr(GError) err = NULL;
    char *text = NULL;
    gsize len;

    if (!g_file_get_contents(path, &text, &len, &err)) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "cannot read secret: %s", err->message);
        return NULL;
    }
    if (len != SVM_SECRET_HEX_LEN || strspn(text, "0123456789abcdef") != len) {
        g_free(text);
        g_set_error(errp, SVM_ORCH_ERROR, 0,
                    "%s is not a splitvm secret (%d lowercase hex digits)",
                    path, SVM_SECRET_HEX_LEN);
        return NULL;
    }
    return text;
}

bool svm_secret_remove(const char *path, GError **errp)
{
    if (unlink(path) < 0 && errno != ENOENT) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "cannot remove %s: %s", path,
                    g_strerror(errno));
        return false;
    }
    return true;
}
