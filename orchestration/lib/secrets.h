/*
 * Per-VM secrets: 32 random bytes, hex-encoded (QEMU reads secret objects
 * as UTF-8), in <secrets-dir>/vm-<name>.key.  The directory is root's; each
 * key file is 0400 and owned by the user QEMU runs as, so only root and that
 * QEMU can read it.  The value never appears on a command line or in XML.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SVM_SECRETS_H
#define SVM_SECRETS_H

#include <stdbool.h>
#include <sys/types.h>
#include <glib.h>

#include "rack-config.h"

#define SVM_SECRET_HEX_LEN 64

char *svm_secret_path(const SvmRack *rack, const char *vm_name);
/* Creates DIR (parents 0755) and makes it 0711: traversable, not listable. */
bool svm_secrets_dir_ensure(const char *dir, GError **errp);

/* Creates the key file unless it exists (then it is checked and kept);
 * *created tells which.  Ownership uid:gid, mode 0400. */
bool svm_secret_ensure(const char *path, uid_t uid, gid_t gid, bool *created,
                       GError **errp);
/* Reads the secret (the hex text, which is what both ends use as key). */
char *svm_secret_read(const char *path, GError **errp);
/* Removes the key file; absent is fine. */
bool svm_secret_remove(const char *path, GError **errp);

#endif /* SVM_SECRETS_H */
