/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the in-guest workloads, run directly on the host (they are
 * ordinary static Linux programs) with small sizes.  The binaries come from
 * the environment: SPLITVM_MEMVERIFY, SPLITVM_MEMSCAN, SPLITVM_MEMRAND.
 */
#include <glib.h>
#include <string.h>

typedef struct {
    int status;         /* exit status, or -1 if killed by a signal */
    char *out;
    char *err;
} RunResult;

static void run_result_clear(RunResult *r)
{
    g_free(r->out);
    g_free(r->err);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(RunResult, run_result_clear)

static const char *workload_path(const char *env)
{
    const char *path = g_getenv(env);

    if (!path) {
        g_error("%s is not set (run this test through meson)", env);
    }
    return path;
}

/* Run workload @env with a NULL-terminated argument list. */
static void run_workload(RunResult *r, const char *env, ...)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autoptr(GError) err = NULL;
    const char *arg;
    int wait_status;
    va_list ap;

    g_ptr_array_add(argv, (char *)workload_path(env));
    va_start(ap, env);
    while ((arg = va_arg(ap, const char *))) {
        g_ptr_array_add(argv, (char *)arg);
    }
    va_end(ap);
    g_ptr_array_add(argv, NULL);

    memset(r, 0, sizeof(*r));
    if (!g_spawn_sync(NULL, (char **)argv->pdata, NULL, G_SPAWN_DEFAULT,
                      NULL, NULL, &r->out, &r->err, &wait_status, &err)) {
        g_error("cannot run %s: %s", (char *)argv->pdata[0], err->message);
    }
    r->status = WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1;
    g_test_message("status %d\nstdout: %sstderr: %s", r->status, r->out,
                   r->err);
}

/* The workload's stdout must be exactly one SPLITVM-RESULT line. */
static GHashTable *parse_result_line(const RunResult *r, const char *name)
{
    g_autofree char *prefix = g_strdup_printf("SPLITVM-RESULT %s ", name);
    GHashTable *fields = g_hash_table_new_full(g_str_hash, g_str_equal,
                                               g_free, g_free);
    g_auto(GStrv) words = NULL;
    g_autofree char *rest = NULL;
    size_t len = strlen(r->out);

    g_assert_true(g_str_has_prefix(r->out, prefix));
    /* exactly one line */
    g_assert_true(strchr(r->out, '\n') == r->out + len - 1);

    rest = g_strstrip(g_strdup(r->out + strlen(prefix)));
    words = g_strsplit(rest, " ", -1);
    for (char **w = words; *w; w++) {
        char *eq = strchr(*w, '=');

        g_assert_nonnull(eq);
        g_hash_table_insert(fields, g_strndup(*w, eq - *w), g_strdup(eq + 1));
    }
    return fields;
}

static const char *field(GHashTable *fields, const char *key)
{
    const char *v = g_hash_table_lookup(fields, key);

    if (!v) {
        g_error("result line has no '%s='", key);
    }
    return v;
}

static double field_double(GHashTable *fields, const char *key)
{
    return g_ascii_strtod(field(fields, key), NULL);
}

/* A run that succeeded: exit 0 and a result line with ok=1; its fields. */
static GHashTable *expect_ok(const RunResult *r, const char *name)
{
    GHashTable *fields;

    g_assert_cmpint(r->status, ==, 0);
    fields = parse_result_line(r, name);
    g_assert_cmpstr(field(fields, "ok"), ==, "1");
    return fields;
}

static void test_memverify_passes(void)
{
    g_auto(RunResult) r;
    g_autoptr(GHashTable) f = NULL;

    run_workload(&r, "SPLITVM_MEMVERIFY", "--mib", "8", "--loops", "3",
                 "--seed", "42", NULL);
    f = expect_ok(&r, "memverify");
    g_assert_cmpstr(field(f, "mib"), ==, "8");
    g_assert_cmpstr(field(f, "loops"), ==, "3");
    g_assert_cmpstr(field(f, "seed"), ==, "42");
    g_assert_cmpfloat(field_double(f, "seconds"), >, 0);
    /* progress on stderr, one line per loop at most */
    g_assert_nonnull(strstr(r.err, "loop 1: ok"));
}

static void test_memverify_seconds(void)
{
    g_auto(RunResult) r;
    g_autoptr(GHashTable) f = NULL;

    run_workload(&r, "SPLITVM_MEMVERIFY", "--mib", "4", "--seconds", "0.3",
                 NULL);
    f = expect_ok(&r, "memverify");
    g_assert_cmpint(g_ascii_strtoull(field(f, "loops"), NULL, 10), >=, 1);
    g_assert_cmpfloat(field_double(f, "seconds"), >=, 0.3);
}

static void test_memverify_corrupt(void)
{
    g_auto(RunResult) r;
    g_autoptr(GHashTable) f = NULL;

    run_workload(&r, "SPLITVM_MEMVERIFY", "--mib", "4",
                 "--corrupt-for-selftest", NULL);
    g_assert_cmpint(r.status, ==, 1);
    f = parse_result_line(&r, "memverify");
    g_assert_cmpstr(field(f, "ok"), ==, "0");
    g_assert_cmpstr(field(f, "mib"), ==, "4");
    g_assert_cmpstr(field(f, "loop"), ==, "1");
    g_assert_cmpstr(field(f, "bad_words"), ==, "1");
    g_assert_true(g_str_has_prefix(field(f, "offset"), "0x"));
    g_assert_cmpstr(field(f, "expected"), !=, field(f, "got"));
    g_assert_nonnull(strstr(r.err, "MISMATCH"));
}

static void test_memscan(void)
{
    g_auto(RunResult) r;
    g_autoptr(GHashTable) f = NULL;

    run_workload(&r, "SPLITVM_MEMSCAN", "--mib", "8", "--passes", "2", NULL);
    f = expect_ok(&r, "memscan");
    g_assert_cmpstr(field(f, "mib"), ==, "8");
    g_assert_cmpstr(field(f, "passes"), ==, "2");
    g_assert_cmpfloat(field_double(f, "read_mibps"), >, 0);
    g_assert_cmpfloat(field_double(f, "write_mibps"), >, 0);
    g_assert_cmpfloat(field_double(f, "seconds"), >, 0);
}

static void test_memrand_ops(void)
{
    g_auto(RunResult) r;
    g_autoptr(GHashTable) f = NULL;

    run_workload(&r, "SPLITVM_MEMRAND", "--mib", "8", "--ops", "100000",
                 "--seed", "5", NULL);
    f = expect_ok(&r, "memrand");
    g_assert_cmpstr(field(f, "mib"), ==, "8");
    g_assert_cmpstr(field(f, "ops"), ==, "100000");
    g_assert_cmpfloat(field_double(f, "ops_per_sec"), >, 0);
}

static void test_memrand_seconds(void)
{
    g_auto(RunResult) r;
    g_autoptr(GHashTable) f = NULL;

    run_workload(&r, "SPLITVM_MEMRAND", "--mib", "2", "--seconds", "0.2",
                 NULL);
    f = expect_ok(&r, "memrand");
    g_assert_cmpfloat(field_double(f, "seconds"), >=, 0.2);
    g_assert_cmpint(g_ascii_strtoull(field(f, "ops"), NULL, 10), >, 0);
}

typedef struct {
    const char *env;
    const char *args[6];
    const char *message;    /* must appear in stderr */
} BadFlagCase;

static const BadFlagCase bad_flag_cases[] = {
    { "SPLITVM_MEMVERIFY", { NULL }, "--mib is required" },
    { "SPLITVM_MEMVERIFY", { "--mib", "lots" }, "'lots' is not" },
    { "SPLITVM_MEMVERIFY", { "--mib", "0" }, "out of range" },
    { "SPLITVM_MEMVERIFY", { "--mib", "4", "--bogus" }, "unknown option '--bogus'" },
    { "SPLITVM_MEMVERIFY", { "--mib" }, "'--mib' needs a value" },
    { "SPLITVM_MEMVERIFY", { "--mib", "4", "--seconds", "-1" }, "'-1' is not a positive" },
    { "SPLITVM_MEMVERIFY", { "--mib", "4", "stray" }, "unexpected argument 'stray'" },
    { "SPLITVM_MEMSCAN", { "--mib", "4", "--passes", "0" }, "--passes" },
    { "SPLITVM_MEMSCAN", { "-x" }, "unknown option '-x'" },
    { "SPLITVM_MEMRAND", { "--mib", "4", "--ops", "5", "--seconds", "1" },
      "mutually exclusive" },
    { "SPLITVM_MEMRAND", { "--mib", "4", "--seed", "1e3" }, "'1e3' is not" },
};

static void test_bad_flags(void)
{
    for (size_t i = 0; i < G_N_ELEMENTS(bad_flag_cases); i++) {
        const BadFlagCase *c = &bad_flag_cases[i];
        g_auto(RunResult) r;

        run_workload(&r, c->env, c->args[0], c->args[1], c->args[2],
                     c->args[3], c->args[4], c->args[5], NULL);
        g_assert_cmpint(r.status, ==, 2);
        g_assert_cmpstr(r.out, ==, "");
        if (!strstr(r.err, c->message)) {
            g_error("case %zu: stderr '%s' does not say '%s'", i, r.err,
                    c->message);
        }
        g_assert_nonnull(strstr(r.err, "--help"));
    }
}

static void test_help(void)
{
    const char *envs[] = { "SPLITVM_MEMVERIFY", "SPLITVM_MEMSCAN",
                           "SPLITVM_MEMRAND" };

    for (size_t i = 0; i < G_N_ELEMENTS(envs); i++) {
        g_auto(RunResult) r;

        run_workload(&r, envs[i], "--help", NULL);
        g_assert_cmpint(r.status, ==, 0);
        g_assert_true(g_str_has_prefix(r.out, "Usage: "));
        g_assert_nonnull(strstr(r.out, "SPLITVM-RESULT"));
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/guest/memverify/passes", test_memverify_passes);
    g_test_add_func("/guest/memverify/seconds", test_memverify_seconds);
    g_test_add_func("/guest/memverify/corrupt-selftest-fails",
                    test_memverify_corrupt);
    g_test_add_func("/guest/memscan/passes", test_memscan);
    g_test_add_func("/guest/memrand/ops", test_memrand_ops);
    g_test_add_func("/guest/memrand/seconds", test_memrand_seconds);
    g_test_add_func("/guest/workloads/bad-flags-exit-2", test_bad_flags);
    g_test_add_func("/guest/workloads/help", test_help);
    return g_test_run();
}
