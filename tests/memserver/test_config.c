/*
 * Unit tests of size parsing, the secrets file and the config file
 * (memserver/config.c): good files load, bad ones fail naming file:line.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include "config.h"

static void test_sizes(void)
{
    uint64_t v;
    g_assert_true(svm_parse_size("4096", &v));
    g_assert_cmpuint(v, ==, 4096);
    g_assert_true(svm_parse_size("64K", &v));
    g_assert_cmpuint(v, ==, 65536);
    g_assert_true(svm_parse_size("512MiB", &v));
    g_assert_cmpuint(v, ==, 512ull << 20);
    g_assert_true(svm_parse_size("4g", &v));
    g_assert_cmpuint(v, ==, 4ull << 30);
    g_assert_true(svm_parse_size("1T", &v));
    g_assert_cmpuint(v, ==, 1ull << 40);
    g_assert_false(svm_parse_size("", &v));
    g_assert_false(svm_parse_size("-1", &v));
    g_assert_false(svm_parse_size("12X", &v));
    g_assert_false(svm_parse_size("G", &v));
    g_assert_false(svm_parse_size("99999999999T", &v));
    g_assert_false(svm_parse_size("99999999999999999999999", &v));
}

static void test_secrets_ok(void)
{
    static const char text[] =
        "# secrets\n"
        "[admin]\n"
        "secret = adminadminadminadmin\n"
        "\n"
        "[vm alpha]\n"
        "secret=alpha-secret-0123456789\n"
        "quota = 1G\n"
        "[vm beta]\n"
        "secret-hex = 00ff10203040506070809000aabbccdd\n";
    g_autoptr(GError) err = NULL;
    g_autoptr(SvmSecrets) s = svm_secrets_parse(text, strlen(text), "sec.ini", &err);
    g_assert_no_error(err);
    const SvmVmSecret *a = svm_secrets_lookup(s, "alpha");
    g_assert_nonnull(a);
    g_assert_cmpuint(a->secret_len, ==, strlen("alpha-secret-0123456789"));
    g_assert_cmpuint(a->quota_pages, ==, (1u << 30) / 4096);
    const SvmVmSecret *b = svm_secrets_lookup(s, "beta");
    g_assert_cmpuint(b->secret_len, ==, 16);
    g_assert_cmpuint(b->secret[1], ==, 0xff);
    g_assert_cmpuint(b->quota_pages, ==, 0);
    g_assert_null(svm_secrets_lookup(s, "gamma"));
    g_assert_cmpuint(s->admin_secret_len, ==, 20);
}

/* Each bad file must fail with a message containing `want`. */
static void expect_error(const char *text, const char *want)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(SvmSecrets) s = svm_secrets_parse(text, strlen(text), "bad.ini", &err);
    g_assert_null(s);
    g_assert_nonnull(err);
    if (!strstr(err->message, want)) {
        g_error("error '%s' does not contain '%s'", err->message, want);
    }
}

static void test_secrets_bad(void)
{
    expect_error("[vm a]\nsecret=x\nquota=lots\n", "bad.ini:3: [vm a] key 'quota'");
    expect_error("[vm a]\nsecret=x\ncolour=red\n", "bad.ini:3: [vm a] unknown key 'colour'");
    expect_error("[vm a]\nquota=1G\n", "bad.ini:1: [vm a] needs a 'secret'");
    expect_error("[vm a]\nsecret=\n", "bad.ini:2: [vm a] key 'secret' is empty");
    expect_error("[vm a]\nsecret-hex=abc\n", "bad.ini:2: [vm a] key 'secret-hex'");
    expect_error("[vm a]\nsecret-hex=zz\n", "bad.ini:2");
    expect_error("[vm a]\nsecret=x\nsecret-hex=00\n", "both");
    expect_error("[vmx]\nsecret=x\n", "bad.ini:1: unknown group [vmx]");
    expect_error("\n\n[vm a]\nsecret=x\njunk line\n", "bad.ini:5: expected 'key = value'");
    expect_error("secret=x\n", "bad.ini:1: key outside of any [group]");
    expect_error("[vm a\n", "bad.ini:1: bad group header");
    expect_error("[vm a]\nsecret=x\nquota=1\n", "less than one page");
}

static void test_server_config(void)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *dir = g_dir_make_tmp("svm-cfg-XXXXXX", &err);
    g_autofree char *path = g_build_filename(dir, "memserver.ini", NULL);
    SvmServerConfig cfg = { 0 };

    g_assert_true(g_file_set_contents(path,
        "[server]\nlisten = 127.0.0.1:7000\ncapacity = 2G\nbacking = pool.img\n"
        "secrets = secrets.ini\nworkers = 3\n", -1, NULL));
    cfg.workers = 2;    /* already set on the command line: wins */
    g_assert_true(svm_server_config_load(path, &cfg, &err));
    g_assert_no_error(err);
    g_assert_cmpstr(cfg.listen, ==, "127.0.0.1:7000");
    g_assert_cmpuint(cfg.capacity, ==, 2ull << 30);
    g_assert_cmpint(cfg.backing, ==, SVM_BACKING_FILE);
    g_autofree char *pool = g_build_filename(dir, "pool.img", NULL);
    g_assert_cmpstr(cfg.backing_path, ==, pool);
    g_assert_true(g_str_has_prefix(cfg.secrets_path, dir));
    g_assert_cmpuint(cfg.workers, ==, 2);
    g_assert_false(cfg.prealloc);
    svm_server_config_clear(&cfg);

    g_assert_true(g_file_set_contents(path, "[server]\nprealloc = true\n", -1, NULL));
    g_assert_true(svm_server_config_load(path, &cfg, &err));
    g_assert_true(cfg.prealloc);
    svm_server_config_clear(&cfg);
    g_assert_true(g_file_set_contents(path, "[server]\nprealloc = false\n", -1, NULL));
    cfg.prealloc = true;    /* --prealloc on the command line: wins */
    g_assert_true(svm_server_config_load(path, &cfg, &err));
    g_assert_true(cfg.prealloc);
    svm_server_config_clear(&cfg);
    g_assert_true(g_file_set_contents(path, "[server]\ncapacity = 1G\nprealloc = sure\n", -1,
                                      NULL));
    g_assert_false(svm_server_config_load(path, &cfg, &err));
    g_assert_nonnull(strstr(err->message, "memserver.ini:3: [server] key 'prealloc': 'sure' "
                                          "is not true or false"));
    g_clear_error(&err);
    svm_server_config_clear(&cfg);

    g_assert_true(g_file_set_contents(path, "[server]\nworkers = many\n", -1, NULL));
    g_assert_false(svm_server_config_load(path, &cfg, &err));
    g_assert_nonnull(strstr(err->message, "memserver.ini:2: [server] key 'workers'"));
    g_clear_error(&err);
    g_assert_true(g_file_set_contents(path, "[server]\nlisten=x\n[other]\na=b\n", -1, NULL));
    g_assert_false(svm_server_config_load(path, &cfg, &err));
    g_assert_nonnull(strstr(err->message, "memserver.ini:3: unknown group [other]"));
    g_clear_error(&err);
    svm_server_config_clear(&cfg);
    g_unlink(path);
    g_rmdir(dir);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_log_set_always_fatal(G_LOG_LEVEL_CRITICAL);
    g_test_add_func("/config/sizes", test_sizes);
    g_test_add_func("/config/secrets-ok", test_secrets_ok);
    g_test_add_func("/config/secrets-bad", test_secrets_bad);
    g_test_add_func("/config/server", test_server_config);
    return g_test_run();
}
