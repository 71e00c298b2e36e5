/*
 * Secrets file and server config file (GKeyFile).  See config.h and
 * docs/protocol.md ("Secrets file").
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <gio/gio.h>
#include "config.h"

#define SVM_CONFIG_ERROR g_quark_from_static_string("svm-config-error")

bool svm_parse_size(const char *text, uint64_t *out)
{
    static const struct { const char *suffix; unsigned shift; } units[] = {
        { "", 0 }, { "B", 0 },
        { "K", 10 }, { "KiB", 10 }, { "M", 20 }, { "MiB", 20 },
        { "G", 30 }, { "GiB", 30 }, { "T", 40 }, { "TiB", 40 },
    };
    char *end;

    if (!text || !g_ascii_isdigit(*text)) {
        return false;
    }
    errno = 0;
    guint64 v = g_ascii_strtoull(text, &end, 10);
    if (errno) {
        return false;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(units); i++) {
        if (!g_ascii_strcasecmp(end, units[i].suffix)) {
            if (units[i].shift && v > (UINT64_MAX >> units[i].shift)) {
                return false;
            }
            *out = v << units[i].shift;
            return true;
        }
    }
    return false;
}

void svm_parse_backing(const char *text, SvmBacking *kind, char **path)
{
    *path = NULL;
    if (!text || !strcmp(text, "anon")) {
        *kind = SVM_BACKING_ANON;
    } else if (!strcmp(text, "hugetlbfs")) {
        *kind = SVM_BACKING_HUGETLB;
    } else {
        *kind = SVM_BACKING_FILE;
        *path = g_strdup(text);
    }
}

/* ---- line numbers for errors ---- */

static char *line_group(const char *line)
{
    const char *end = strchr(line, ']');
    return end ? g_strndup(line + 1, end - line - 1) : NULL;
}

/* 1-based line of `key` in `group` (or of the group header when key is NULL). */
static int find_line(const char *text, const char *group, const char *key)
{
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    g_autofree char *cur = NULL;

    for (int i = 0; lines[i]; i++) {
        const char *l = lines[i];
        while (*l == ' ' || *l == '\t') {
            l++;
        }
        if (*l == '[') {
            g_free(cur);
            cur = line_group(l);
            if (!key && cur && !strcmp(cur, group)) {
                return i + 1;
            }
            continue;
        }
        if (key && cur && !strcmp(cur, group)) {
            size_t kl = strlen(key);
            if (!strncmp(l, key, kl)) {
                const char *r = l + kl;
                while (*r == ' ' || *r == '\t') {
                    r++;
                }
                if (*r == '=') {
                    return i + 1;
                }
            }
        }
    }
    return 0;
}

/* Reject what GKeyFile would refuse (or silently accept), naming the line. */
static bool check_syntax(const char *text, const char *name, GError **errp)
{
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    bool in_group = false;

    for (int i = 0; lines[i]; i++) {
        g_autofree char *l = g_strstrip(g_strdup(lines[i]));
        if (!*l || *l == '#') {
            continue;
        }
        if (*l == '[') {
            if (l[strlen(l) - 1] != ']' || strlen(l) < 3) {
                g_set_error(errp, SVM_CONFIG_ERROR, 0, "%s:%d: bad group header '%s'",
                            name, i + 1, l);
                return false;
            }
            in_group = true;
            continue;
        }
        if (!strchr(l, '=')) {
            g_set_error(errp, SVM_CONFIG_ERROR, 0,
                        "%s:%d: expected 'key = value', '[group]' or a '#' comment, got '%s'",
                        name, i + 1, l);
            return false;
        }
        if (!in_group) {
            g_set_error(errp, SVM_CONFIG_ERROR, 0, "%s:%d: key outside of any [group]",
                        name, i + 1);
            return false;
        }
    }
    return true;
}

static GKeyFile *parse_keyfile(const char *text, size_t len, const char *name, GError **errp)
{
    g_autoptr(GKeyFile) kf = g_key_file_new();
    g_autoptr(GError) err = NULL;

    if (!check_syntax(text, name, errp)) {
        return NULL;
    }
    if (!g_key_file_load_from_data(kf, text, len, G_KEY_FILE_NONE, &err)) {
        g_set_error(errp, SVM_CONFIG_ERROR, 0, "%s: %s", name, err->message);
        return NULL;
    }
    return g_steal_pointer(&kf);
}

static void vm_secret_free(gpointer p)
{
    SvmVmSecret *v = p;
    if (v) {
        memset(v->secret, 0, v->secret_len);
        g_free(v->secret);
        g_free(v->id);
        g_free(v);
    }
}

static bool valid_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > SVM_WIRE_ID_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (id[i] <= ' ' || id[i] > '~') {
            return false;
        }
    }
    return true;
}

/* Read `secret` or `secret-hex` of a group. */
static uint8_t *read_secret(GKeyFile *kf, const char *text, const char *name,
                            const char *group, size_t *len, GError **errp)
{
    g_autofree char *plain = g_key_file_get_value(kf, group, "secret", NULL);
    g_autofree char *hex = g_key_file_get_value(kf, group, "secret-hex", NULL);

    if (plain && hex) {
        g_set_error(errp, SVM_CONFIG_ERROR, 0,
                    "%s:%d: [%s] has both 'secret' and 'secret-hex'; keep one", name,
                    find_line(text, group, "secret-hex"), group);
        return NULL;
    }
    if (plain) {
        if (!*plain) {
            g_set_error(errp, SVM_CONFIG_ERROR, 0, "%s:%d: [%s] key 'secret' is empty",
                        name, find_line(text, group, "secret"), group);
            return NULL;
        }
        *len = strlen(plain);
        return (uint8_t *)g_steal_pointer(&plain);
    }
    if (hex) {
        size_t n = strlen(hex);
        if (n == 0 || n % 2) {
            goto bad_hex;
        }
        uint8_t *out = g_malloc(n / 2);
        for (size_t i = 0; i < n / 2; i++) {
            int hi = g_ascii_xdigit_value(hex[2 * i]);
            int lo = g_ascii_xdigit_value(hex[2 * i + 1]);
            if (hi < 0 || lo < 0) {
                g_free(out);
                goto bad_hex;
            }
            out[i] = (uint8_t)(hi << 4 | lo);
        }
        *len = n / 2;
        return out;
bad_hex:
        g_set_error(errp, SVM_CONFIG_ERROR, 0,
                    "%s:%d: [%s] key 'secret-hex' must be an even number of hex digits",
                    name, find_line(text, group, "secret-hex"), group);
        return NULL;
    }
    g_set_error(errp, SVM_CONFIG_ERROR, 0, "%s:%d: [%s] needs a 'secret' or 'secret-hex' key",
                name, find_line(text, group, NULL), group);
    return NULL;
}

static bool only_keys(GKeyFile *kf, const char *text, const char *name, const char *group,
                      const char *const *allowed, GError **errp)
{
    g_auto(GStrv) keys = g_key_file_get_keys(kf, group, NULL, NULL);
    for (int i = 0; keys && keys[i]; i++) {
        if (!g_strv_contains(allowed, keys[i])) {
            g_autofree char *list = g_strjoinv(", ", (char **)allowed);
            g_set_error(errp, SVM_CONFIG_ERROR, 0,
                        "%s:%d: [%s] unknown key '%s' (known: %s)", name,
                        find_line(text, group, keys[i]), group, keys[i], list);
            return false;
        }
    }
    return true;
}

SvmSecrets *svm_secrets_parse(const char *text, size_t len, const char *name, GError **errp)
{
    static const char *const vm_keys[] = { "secret", "secret-hex", "quota", NULL };
    static const char *const admin_keys[] = { "secret", "secret-hex", NULL };
    g_autoptr(GKeyFile) kf = parse_keyfile(text, len, name, errp);

    if (!kf) {
        return NULL;
    }
    g_autoptr(SvmSecrets) s = g_new0(SvmSecrets, 1);
    s->path = g_strdup(name);
    s->vms = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, vm_secret_free);

    g_auto(GStrv) groups = g_key_file_get_groups(kf, NULL);
    for (int i = 0; groups[i]; i++) {
        const char *g = groups[i];
        if (!strcmp(g, "admin")) {
            if (!only_keys(kf, text, name, g, admin_keys, errp)) {
                return NULL;
            }
            s->admin_secret = read_secret(kf, text, name, g, &s->admin_secret_len, errp);
            if (!s->admin_secret) {
                return NULL;
            }
            continue;
        }
        if (strncmp(g, "vm ", 3) != 0) {
            g_set_error(errp, SVM_CONFIG_ERROR, 0,
                        "%s:%d: unknown group [%s] (expected [vm NAME] or [admin])", name,
                        find_line(text, g, NULL), g);
            return NULL;
        }
        const char *id = g + 3;
        if (!valid_id(id)) {
            g_set_error(errp, SVM_CONFIG_ERROR, 0,
                        "%s:%d: VM id '%s' must be 1..%u printable characters without spaces",
                        name, find_line(text, g, NULL), id, SVM_WIRE_ID_MAX);
            return NULL;
        }
        if (!only_keys(kf, text, name, g, vm_keys, errp)) {
            return NULL;
        }
        SvmVmSecret *v = g_new0(SvmVmSecret, 1);
        v->id = g_strdup(id);
        g_hash_table_replace(s->vms, v->id, v);
        v->secret = read_secret(kf, text, name, g, &v->secret_len, errp);
        if (!v->secret) {
            return NULL;
        }
        g_autofree char *quota = g_key_file_get_value(kf, g, "quota", NULL);
        uint64_t q = 0;
        if (quota && !svm_parse_size(g_strstrip(quota), &q)) {
            g_set_error(errp, SVM_CONFIG_ERROR, 0,
                        "%s:%d: [%s] key 'quota': '%s' is not a size (like 512M, 4G)",
                        name, find_line(text, g, "quota"), g, quota);
            return NULL;
        }
        v->quota_pages = q / SVM_WIRE_PAGE_SIZE;
        if (q && !v->quota_pages) {
            g_set_error(errp, SVM_CONFIG_ERROR, 0,
                        "%s:%d: [%s] key 'quota': %s is less than one page", name,
                        find_line(text, g, "quota"), g, quota);
            return NULL;
        }
        if (v->secret_len < 16) {
            g_warning("%s: [%s] secret is shorter than 16 bytes", name, g);
        }
    }
    return g_steal_pointer(&s);
}

SvmSecrets *svm_secrets_load(const char *path, GError **errp)
{
    g_autofree char *text = NULL;
    gsize len;
    g_autoptr(GError) err = NULL;

    if (!g_file_get_contents(path, &text, &len, &err)) {
        g_set_error(errp, SVM_CONFIG_ERROR, 0, "secrets file: %s", err->message);
        return NULL;
    }
    struct stat sb;
    if (stat(path, &sb) == 0 && (sb.st_mode & 0077)) {
        g_warning("%s: secrets file is readable by group/others (mode %03o); chmod 600 it",
                  path, sb.st_mode & 0777);
    }
    return svm_secrets_parse(text, len, path, errp);
}

const SvmVmSecret *svm_secrets_lookup(const SvmSecrets *s, const char *id)
{
    return g_hash_table_lookup(s->vms, id);
}

void svm_secrets_free(SvmSecrets *s)
{
    if (s) {
        if (s->vms) {
            g_hash_table_destroy(s->vms);
        }
        if (s->admin_secret) {
            memset(s->admin_secret, 0, s->admin_secret_len);
            g_free(s->admin_secret);
        }
        g_free(s->path);
        g_free(s);
    }
}

bool svm_server_config_load(const char *path, SvmServerConfig *cfg, GError **errp)
{
    static const char *const keys[] = {
        "listen", "capacity", "backing", "secrets", "workers", "transport", "prealloc",
        NULL
    };
    g_autofree char *text = NULL;
    g_autofree char *dir = g_path_get_dirname(path);
    gsize len;
    g_autoptr(GError) err = NULL;

    if (!g_file_get_contents(path, &text, &len, &err)) {
        g_set_error(errp, SVM_CONFIG_ERROR, 0, "config file: %s", err->message);
        return false;
    }
    g_autoptr(GKeyFile) kf = parse_keyfile(text, len, path, errp);
    if (!kf) {
        return false;
    }
    g_auto(GStrv) groups = g_key_file_get_groups(kf, NULL);
    for (int i = 0; groups[i]; i++) {
        if (strcmp(groups[i], "server") != 0) {
            g_set_error(errp, SVM_CONFIG_ERROR, 0, "%s:%d: unknown group [%s] (expected [server])",
                        path, find_line(text, groups[i], NULL), groups[i]);
            return false;
        }
    }
    if (!g_key_file_has_group(kf, "server")) {
        return true;
    }
    if (!only_keys(kf, text, path, "server", keys, errp)) {
        return false;
    }
#define GETV(k) g_autofree char *k##_v = g_key_file_get_value(kf, "server", #k, NULL); \
                if (k##_v) g_strstrip(k##_v)
    GETV(listen);
    GETV(capacity);
    GETV(backing);
    GETV(secrets);
    GETV(workers);
    GETV(transport);
    GETV(prealloc);
#undef GETV
    if (transport_v && !cfg->transport) {
        cfg->transport = g_strdup(transport_v);
    }
    if (listen_v && !cfg->listen) {
        cfg->listen = g_strdup(listen_v);
    }
    if (capacity_v && !cfg->capacity && !svm_parse_size(capacity_v, &cfg->capacity)) {
        g_set_error(errp, SVM_CONFIG_ERROR, 0,
                    "%s:%d: [server] key 'capacity': '%s' is not a size (like 512M, 4G)",
                    path, find_line(text, "server", "capacity"), capacity_v);
        return false;
    }
    if (backing_v && cfg->backing == SVM_BACKING_ANON && !cfg->backing_path) {
        svm_parse_backing(backing_v, &cfg->backing, &cfg->backing_path);
        if (cfg->backing_path && !g_path_is_absolute(cfg->backing_path)) {
            char *abs = g_build_filename(dir, cfg->backing_path, NULL);
            g_free(cfg->backing_path);
            cfg->backing_path = abs;
        }
    }
    if (secrets_v && !cfg->secrets_path) {
        cfg->secrets_path = g_path_is_absolute(secrets_v) ? g_strdup(secrets_v)
                                                          : g_build_filename(dir, secrets_v, NULL);
    }
    if (workers_v && !cfg->workers) {
        char *end;
        guint64 w = g_ascii_strtoull(workers_v, &end, 10);
        if (*end || w < 1 || w > 64) {
            g_set_error(errp, SVM_CONFIG_ERROR, 0,
                        "%s:%d: [server] key 'workers': '%s' is not a number in 1..64",
                        path, find_line(text, "server", "workers"), workers_v);
            return false;
        }
        cfg->workers = (unsigned)w;
    }
    if (prealloc_v && !cfg->prealloc) {
        g_autoptr(GError) berr = NULL;
        cfg->prealloc = g_key_file_get_boolean(kf, "server", "prealloc", &berr);
        if (berr) {
            g_set_error(errp, SVM_CONFIG_ERROR, 0,
                        "%s:%d: [server] key 'prealloc': '%s' is not true or false",
                        path, find_line(text, "server", "prealloc"), prealloc_v);
            return false;
        }
    }
    return true;
}

void svm_server_config_clear(SvmServerConfig *cfg)
{
    g_free(cfg->listen);
    g_free(cfg->backing_path);
    g_free(cfg->secrets_path);
    g_free(cfg->transport);
    memset(cfg, 0, sizeof(*cfg));
}
