/*
 * splitvm-memserver configuration: sizes, the secrets file and the optional
 * server config file (both GKeyFile).  Every error names the file, the line
 * and the key that is wrong.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SPLITVM_MEMSERVER_CONFIG_H
#define SPLITVM_MEMSERVER_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>
#include "store.h"

typedef struct SvmVmSecret {
    char *id;
    uint8_t *secret;
    size_t secret_len;
    uint64_t quota_pages;           /* 0 = none */
} SvmVmSecret;

typedef struct SvmSecrets {
    char *path;
    GHashTable *vms;                /* id -> SvmVmSecret */
    uint8_t *admin_secret;          /* NULL: no admin access */
    size_t admin_secret_len;
} SvmSecrets;

typedef struct SvmServerConfig {
    char *listen;
    uint64_t capacity;              /* bytes; 0 = unset */
    SvmBacking backing;
    char *backing_path;             /* SVM_BACKING_FILE */
    char *secrets_path;
    unsigned workers;               /* 0 = unset */
    char *transport;                /* "tcp" or "rdma"; NULL = unset (tcp) */
    bool prealloc;                  /* reserve the whole pool at start */
} SvmServerConfig;

/* "4096", "64K", "512MiB", "4G", "1T" (binary units). */
bool svm_parse_size(const char *text, uint64_t *out);

/* "anon", "hugetlbfs" or a file path. */
void svm_parse_backing(const char *text, SvmBacking *kind, char **path);

SvmSecrets *svm_secrets_parse(const char *text, size_t len, const char *name, GError **errp);
SvmSecrets *svm_secrets_load(const char *path, GError **errp);
const SvmVmSecret *svm_secrets_lookup(const SvmSecrets *s, const char *id);
void svm_secrets_free(SvmSecrets *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SvmSecrets, svm_secrets_free)

/* Fill the fields of cfg that are still unset from the [server] group. */
bool svm_server_config_load(const char *path, SvmServerConfig *cfg, GError **errp);
void svm_server_config_clear(SvmServerConfig *cfg);

#endif /* SPLITVM_MEMSERVER_CONFIG_H */
