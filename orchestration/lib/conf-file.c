/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "conf-file.h"
#include "size.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

G_DEFINE_QUARK(svm-orchestration-error-quark, svm_orch_error)

struct SvmConf {
    char *path;
    char *dir;
    GKeyFile *kf;
    GPtrArray *groups;          /* char *, file order, NULL-terminated */
    GHashTable *lines;          /* "group\x1fkey" or "group" -> line */
};

static char *line_key(const char *group, const char *key)
{
    return key ? g_strconcat(group, "\x1f", key, NULL) : g_strdup(group);
}

void svm_conf_free(SvmConf *conf)
{
    if (!conf) {
        return;
    }
    g_free(conf->path);
    g_free(conf->dir);
    if (conf->kf) {
        g_key_file_unref(conf->kf);
    }
    g_ptr_array_unref(conf->groups);
    g_hash_table_unref(conf->lines);
    g_free(conf);
}

static bool valid_key_name(const char *k)
{
    if (!*k) {
        return false;
    }
    for (; *k; k++) {
        if (!g_ascii_isalnum(*k) && *k != '-' && *k != '_') {
            return false;
        }
    }
    return true;
}

/* GKeyFile's own messages lack line numbers; this pass finds the lines. */
static bool scan_lines(SvmConf *conf, const char *text, GError **errp)
{
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    const char *group = NULL;

    for (int i = 0; lines[i]; i++) {
        int lineno = i + 1;
        char *l = g_strstrip(lines[i]);

        if (!*l || *l == '#') {
            continue;
        }
        if (*l == '[') {
            size_t n = strlen(l);
            if (l[n - 1] != ']' || n < 3) {
                g_set_error(errp, SVM_ORCH_ERROR, 0,
                            "%s:%d: malformed group header '%s' (expected [name])",
                            conf->path, lineno, l);
                return false;
            }
            l[n - 1] = '\0';
            char *name = l + 1;
            if (strpbrk(name, "[]")) {
                g_set_error(errp, SVM_ORCH_ERROR, 0,
                            "%s:%d: malformed group header '[%s]'", conf->path,
                            lineno, name);
                return false;
            }
            int prev = GPOINTER_TO_INT(g_hash_table_lookup(conf->lines, name));
            if (prev) {
                g_set_error(errp, SVM_ORCH_ERROR, 0,
                            "%s:%d: group [%s] appears twice (first at line %d)",
                            conf->path, lineno, name, prev);
                return false;
            }
            g_hash_table_insert(conf->lines, g_strdup(name), GINT_TO_POINTER(lineno));
            g_ptr_array_insert(conf->groups, conf->groups->len - 1, g_strdup(name));
            group = g_ptr_array_index(conf->groups, conf->groups->len - 2);
            continue;
        }
        char *eq = strchr(l, '=');
        if (!eq) {
            g_set_error(errp, SVM_ORCH_ERROR, 0,
                        "%s:%d: '%s' is not a 'key = value' line, a [group] "
                        "header or a '#' comment", conf->path, lineno, l);
            return false;
        }
        *eq = '\0';
        char *key = g_strstrip(l);
        if (!valid_key_name(key)) {
            g_set_error(errp, SVM_ORCH_ERROR, 0,
                        "%s:%d: '%s' is not a valid key name (letters, digits, '-')",
                        conf->path, lineno, key);
            return false;
        }
        if (!group) {
            g_set_error(errp, SVM_ORCH_ERROR, 0,
                        "%s:%d: key '%s' comes before any [group] header",
                        conf->path, lineno, key);
            return false;
        }
        g_autofree char *lk = line_key(group, key);
        int prev = GPOINTER_TO_INT(g_hash_table_lookup(conf->lines, lk));
        if (prev) {
            g_set_error(errp, SVM_ORCH_ERROR, 0,
                        "%s:%d: [%s] %s is set twice (first at line %d)",
                        conf->path, lineno, group, key, prev);
            return false;
        }
        g_hash_table_insert(conf->lines, g_steal_pointer(&lk), GINT_TO_POINTER(lineno));
    }
    return true;
}

SvmConf *svm_conf_load(const char *path, GError **errp)
{
    g_autoptr(SvmConf) conf = g_new0(SvmConf, 1);
    g_autofree char *text = NULL;
    gsize len;
    g_autoptr(GError) err = NULL;

    conf->path = g_strdup(path);
    g_autofree char *abs = g_canonicalize_filename(path, NULL);
    conf->dir = g_path_get_dirname(abs);
    conf->groups = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(conf->groups, NULL);
    conf->lines = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);

    if (!g_file_get_contents(path, &text, &len, &err)) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "cannot read %s", err->message);
        return NULL;
    }
    if (strlen(text) != len) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "%s: contains a NUL byte (not a text file)",
                    path);
        return NULL;
    }
    if (!g_utf8_validate(text, len, NULL)) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "%s: not valid UTF-8 text", path);
        return NULL;
    }
    if (!scan_lines(conf, text, errp)) {
        return NULL;
    }
    conf->kf = g_key_file_new();
    if (!g_key_file_load_from_data(conf->kf, text, len, G_KEY_FILE_NONE, &err)) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "%s: %s", path, err->message);
        return NULL;
    }
    return g_steal_pointer(&conf);
}

const char *svm_conf_path(const SvmConf *conf)
{
    return conf->path;
}

const char *svm_conf_dir(const SvmConf *conf)
{
    return conf->dir;
}

const char *const *svm_conf_groups(const SvmConf *conf, guint *n)
{
    if (n) {
        *n = conf->groups->len - 1;
    }
    return (const char *const *)conf->groups->pdata;
}

bool svm_conf_has_group(const SvmConf *conf, const char *group)
{
    return g_key_file_has_group(conf->kf, group);
}

bool svm_conf_has_key(const SvmConf *conf, const char *group, const char *key)
{
    return g_key_file_has_key(conf->kf, group, key, NULL);
}

int svm_conf_line(const SvmConf *conf, const char *group, const char *key)
{
    g_autofree char *lk = line_key(group, key);
    return GPOINTER_TO_INT(g_hash_table_lookup(conf->lines, lk));
}

bool svm_conf_error(const SvmConf *conf, GError **errp, const char *group,
                    const char *key, const char *fmt, ...)
{
    va_list ap;
    int line = 0;

    if (group) {
        line = svm_conf_line(conf, group, key);
        if (!line) {
            line = svm_conf_line(conf, group, NULL);
        }
    }
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_autofree char *where = line ? g_strdup_printf("%s:%d", conf->path, line)
                                  : g_strdup(conf->path);
    if (group && key) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "%s: [%s] %s: %s", where, group, key, msg);
    } else if (group) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "%s: [%s]: %s", where, group, msg);
    } else {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "%s: %s", where, msg);
    }
    return false;
}

bool svm_conf_check_keys(const SvmConf *conf, const char *group,
                         const char *const *known, GError **errp)
{
    g_auto(GStrv) keys = g_key_file_get_keys(conf->kf, group, NULL, NULL);

    for (int i = 0; keys && keys[i]; i++) {
        if (!g_strv_contains(known, keys[i])) {
            g_autofree char *list = g_strjoinv(", ", (char **)known);
            return svm_conf_error(conf, errp, group, keys[i],
                                  "unknown key (known keys: %s)", list);
        }
    }
    return true;
}

/* The raw value, or NULL if absent (true) / required or empty (false). */
static bool get_value(const SvmConf *conf, const char *group, const char *key,
                      bool required, char **out, GError **errp)
{
    g_autoptr(GError) err = NULL;

    *out = NULL;
    if (!g_key_file_has_key(conf->kf, group, key, NULL)) {
        if (required) {
            if (!svm_conf_has_group(conf, group)) {
                return svm_conf_error(conf, errp, NULL, NULL,
                                      "missing group [%s] (it must set %s)",
                                      group, key);
            }
            return svm_conf_error(conf, errp, group, NULL,
                                  "missing required key '%s'", key);
        }
        return true;
    }
    char *v = g_key_file_get_string(conf->kf, group, key, &err);
    if (!v) {
        return svm_conf_error(conf, errp, group, key, "%s", err->message);
    }
    g_strstrip(v);
    if (!*v) {
        g_free(v);
        return svm_conf_error(conf, errp, group, key, "empty value");
    }
    *out = v;
    return true;
}

bool svm_conf_get_string(const SvmConf *conf, const char *group, const char *key,
                         bool required, char **out, GError **errp)
{
    char *v;

    if (!get_value(conf, group, key, required, &v, errp)) {
        return false;
    }
    if (v) {
        g_free(*out);
        *out = v;
    }
    return true;
}

bool svm_conf_get_path(const SvmConf *conf, const char *group, const char *key,
                       bool required, char **out, GError **errp)
{
    char *v;

    if (!get_value(conf, group, key, required, &v, errp)) {
        return false;
    }
    if (v) {
        g_free(*out);
        *out = g_canonicalize_filename(v, conf->dir);
        g_free(v);
    }
    return true;
}

bool svm_conf_get_list(const SvmConf *conf, const char *group, const char *key,
                       bool required, char ***out, GError **errp)
{
    g_autofree char *v = NULL;

    if (!get_value(conf, group, key, required, &v, errp)) {
        return false;
    }
    if (!v) {
        return true;
    }
    char **items = g_strsplit(v, ",", -1);
    for (int i = 0; items[i]; i++) {
        g_strstrip(items[i]);
        if (!*items[i]) {
            g_strfreev(items);
            return svm_conf_error(conf, errp, group, key,
                                  "empty item in list '%s'", v);
        }
    }
    g_strfreev(*out);
    *out = items;
    return true;
}

bool svm_conf_get_uint(const SvmConf *conf, const char *group, const char *key,
                       bool required, uint64_t min, uint64_t max, uint64_t *out,
                       GError **errp)
{
    g_autofree char *v = NULL;
    char *end;

    if (!get_value(conf, group, key, required, &v, errp)) {
        return false;
    }
    if (!v) {
        return true;
    }
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (!g_ascii_isdigit(v[0]) || *end || errno) {
        return svm_conf_error(conf, errp, group, key, "'%s' is not a number", v);
    }
    if (n < min || n > max) {
        return svm_conf_error(conf, errp, group, key,
                              "%llu is out of range (%llu..%llu)", n,
                              (unsigned long long)min, (unsigned long long)max);
    }
    *out = n;
    return true;
}

bool svm_conf_get_size(const SvmConf *conf, const char *group, const char *key,
                       bool required, uint64_t *out, GError **errp)
{
    g_autofree char *v = NULL;

    if (!get_value(conf, group, key, required, &v, errp)) {
        return false;
    }
    if (v && !svm_size_parse(v, out)) {
        return svm_conf_error(conf, errp, group, key,
                              "'%s' is not a size (examples: 4096, 512M, 2GiB)", v);
    }
    return true;
}

bool svm_conf_get_bool(const SvmConf *conf, const char *group, const char *key,
                       bool required, bool *out, GError **errp)
{
    g_autofree char *v = NULL;

    if (!get_value(conf, group, key, required, &v, errp)) {
        return false;
    }
    if (!v) {
        return true;
    }
    if (!g_ascii_strcasecmp(v, "true") || !g_ascii_strcasecmp(v, "yes") ||
        !strcmp(v, "1") || !g_ascii_strcasecmp(v, "on")) {
        *out = true;
    } else if (!g_ascii_strcasecmp(v, "false") || !g_ascii_strcasecmp(v, "no") ||
               !strcmp(v, "0") || !g_ascii_strcasecmp(v, "off")) {
        *out = false;
    } else {
        return svm_conf_error(conf, errp, group, key,
                              "'%s' is not a boolean (true/false)", v);
    }
    return true;
}
