/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "emulator.h"
#include "conf-file.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

/* Single-quoted for sh. */
static char *sh_quote(const char *s)
{
    g_autoptr(GString) q = g_string_new("'");

    for (; *s; s++) {
        if (*s == '\'') {
            g_string_append(q, "'\\''");
        } else {
            g_string_append_c(q, *s);
        }
    }
    g_string_append_c(q, '\'');
    return g_string_free(g_steal_pointer(&q), FALSE);
}

char *svm_host_emulator(const SvmRack *rack, const SvmRackHost *host, GError **errp)
{
    if (!host->library_path) {
        return g_strdup(host->emulator);
    }
    g_autofree char *dir = g_build_filename(rack->state_dir, "bin", host->name, NULL);
    g_autofree char *base = g_path_get_basename(host->emulator);
    g_autofree char *path = g_build_filename(dir, base, NULL);
    g_autofree char *lib = sh_quote(host->library_path);
    g_autofree char *exe = sh_quote(host->emulator);
    g_autofree char *text = g_strdup_printf(
        "#!/bin/sh\n"
        "# Written by splitvm for rack %s, host %s: libvirt runs QEMU with a\n"
        "# scrubbed environment, and this QEMU finds libsplitvm via LD_LIBRARY_PATH.\n"
        "LD_LIBRARY_PATH=%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}\n"
        "export LD_LIBRARY_PATH\n"
        "exec %s \"$@\"\n", rack->name, host->name, lib, exe);
    g_autofree char *old = NULL;
    g_autoptr(GError) err = NULL;

    if (g_file_get_contents(path, &old, NULL, NULL) && !strcmp(old, text)) {
        return g_steal_pointer(&path);
    }
    /* QEMU's user must be able to reach it: 0755 all the way. */
    if (g_mkdir_with_parents(dir, 0755) < 0) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "cannot create %s: %s", dir,
                    g_strerror(errno));
        return NULL;
    }
    if (!g_file_set_contents_full(path, text, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0755,
                                  &err)) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "cannot write the emulator wrapper: %s",
                    err->message);
        return NULL;
    }
    return g_steal_pointer(&path);
}
