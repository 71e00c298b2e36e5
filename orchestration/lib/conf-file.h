/*
 * Key files (GKeyFile syntax) that remember where each group and key was,
 * so every error names FILE:LINE and what is wrong.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SVM_CONF_FILE_H
#define SVM_CONF_FILE_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#define SVM_ORCH_ERROR (svm_orch_error_quark())
GQuark svm_orch_error_quark(void);

typedef struct SvmConf SvmConf;

/* Reads and syntax-checks PATH; unknown syntax, keys outside a group and
 * duplicate keys or groups are errors naming the line. */
SvmConf *svm_conf_load(const char *path, GError **errp);
void svm_conf_free(SvmConf *conf);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SvmConf, svm_conf_free)

const char *svm_conf_path(const SvmConf *conf);
/* Directory of the file: relative paths in it are resolved against this. */
const char *svm_conf_dir(const SvmConf *conf);
/* Groups in file order (owned by conf). */
const char *const *svm_conf_groups(const SvmConf *conf, guint *n);
bool svm_conf_has_group(const SvmConf *conf, const char *group);
bool svm_conf_has_key(const SvmConf *conf, const char *group, const char *key);
/* Line of KEY in GROUP, of GROUP's header when key is NULL; 0 if absent. */
int svm_conf_line(const SvmConf *conf, const char *group, const char *key);

/* Sets *errp to "PATH:LINE: [GROUP] KEY: message" (KEY or LINE left out
 * when absent).  Always returns false so callers can `return svm_conf_error()`. */
bool svm_conf_error(const SvmConf *conf, GError **errp, const char *group,
                    const char *key, const char *fmt, ...) G_GNUC_PRINTF(5, 6);

/* Every key of GROUP must be in KNOWN (NULL-terminated). */
bool svm_conf_check_keys(const SvmConf *conf, const char *group,
                         const char *const *known, GError **errp);

/*
 * Typed getters.  An absent optional key leaves *out untouched and returns
 * true; an absent required key, an empty value or a value of the wrong
 * form returns false with an error naming file, line and key.
 */
bool svm_conf_get_string(const SvmConf *conf, const char *group, const char *key,
                         bool required, char **out, GError **errp);
/* Like get_string, and relative paths become relative to the file's dir. */
bool svm_conf_get_path(const SvmConf *conf, const char *group, const char *key,
                       bool required, char **out, GError **errp);
/* Comma-separated list, items trimmed, no empty items. */
bool svm_conf_get_list(const SvmConf *conf, const char *group, const char *key,
                       bool required, char ***out, GError **errp);
bool svm_conf_get_uint(const SvmConf *conf, const char *group, const char *key,
                       bool required, uint64_t min, uint64_t max, uint64_t *out,
                       GError **errp);
/* A size: bytes, or a number with K/M/G/T (binary, optional "iB"/"B"). */
bool svm_conf_get_size(const SvmConf *conf, const char *group, const char *key,
                       bool required, uint64_t *out, GError **errp);
bool svm_conf_get_bool(const SvmConf *conf, const char *group, const char *key,
                       bool required, bool *out, GError **errp);

#endif /* SVM_CONF_FILE_H */
