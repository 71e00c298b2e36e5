/*
 * Corpus replay for gcc builds (no libFuzzer): runs built-in seeds, every
 * file or directory given on the command line, and a fixed number of
 * deterministic mutations of the seeds through LLVMFuzzerTestOneInput.
 *
 *   fuzz-dispatch-replay [--mutations N] [--write-seeds DIR] [FILE|DIR ...]
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <glib.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "splitvm/wire.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
void fuzz_make_seeds(GPtrArray *out);

static void run_path(const char *path, unsigned *count)
{
    if (g_file_test(path, G_FILE_TEST_IS_DIR)) {
        g_autoptr(GDir) d = g_dir_open(path, 0, NULL);
        const char *name;
        while (d && (name = g_dir_read_name(d))) {
            g_autofree char *p = g_build_filename(path, name, NULL);
            run_path(p, count);
        }
        return;
    }
    g_autofree char *data = NULL;
    gsize len;
    if (!g_file_get_contents(path, &data, &len, NULL)) {
        fprintf(stderr, "fuzz-replay: cannot read %s\n", path);
        exit(1);
    }
    LLVMFuzzerTestOneInput((const uint8_t *)data, len);
    (*count)++;
}

int main(int argc, char **argv)
{
    gint mutations = 20000;
    g_autofree char *write_seeds = NULL;
    GOptionEntry entries[] = {
        { "mutations", 0, 0, G_OPTION_ARG_INT, &mutations, "mutated inputs to run", "N" },
        { "write-seeds", 0, 0, G_OPTION_ARG_FILENAME, &write_seeds, "write seeds to DIR", "DIR" },
        { NULL },
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("[FILE|DIR ...]");
    g_autoptr(GError) err = NULL;
    g_option_context_add_main_entries(ctx, entries, NULL);
    if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
        fprintf(stderr, "fuzz-replay: %s\n", err->message);
        return 2;
    }
    g_autoptr(GPtrArray) seeds = g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
    fuzz_make_seeds(seeds);
    if (write_seeds) {
        g_mkdir_with_parents(write_seeds, 0755);
        for (guint i = 0; i < seeds->len; i++) {
            gsize len;
            const char *d = g_bytes_get_data(seeds->pdata[i], &len);
            g_autofree char *p = g_strdup_printf("%s/seed-%02u", write_seeds, i);
            g_file_set_contents(p, d, (gssize)len, NULL);
        }
        return 0;
    }
    LLVMFuzzerInitialize(&argc, &argv);
    unsigned count = 0;
    for (guint i = 0; i < seeds->len; i++, count++) {
        gsize len;
        const uint8_t *d = g_bytes_get_data(seeds->pdata[i], &len);
        LLVMFuzzerTestOneInput(d, len);
    }
    for (int i = 1; i < argc; i++) {
        run_path(argv[i], &count);
    }
    /* Cheap deterministic mutations: flips, overwrites, truncations. */
    GRand *r = g_rand_new_with_seed(12345);
    for (gint m = 0; m < mutations; m++, count++) {
        gsize len;
        const uint8_t *d = g_bytes_get_data(seeds->pdata[g_rand_int_range(r, 0, (gint)seeds->len)],
                                             &len);
        g_autofree uint8_t *buf = g_memdup2(d, len);
        unsigned edits = 1 + g_rand_int_range(r, 0, 4);
        for (unsigned e = 0; e < edits && len > 1; e++) {
            gsize at = g_rand_int_range(r, 0, (gint)len);
            switch (g_rand_int_range(r, 0, 4)) {
            case 0: buf[at] ^= (uint8_t)(1u << g_rand_int_range(r, 0, 8)); break;
            case 1: buf[at] = (uint8_t)g_rand_int_range(r, 0, 256); break;
            case 2: len = at + 1; break;
            default: buf[at] = (uint8_t)(g_rand_boolean(r) ? 0xff : 0x00); break;
            }
        }
        LLVMFuzzerTestOneInput(buf, len);
    }
    g_rand_free(r);
    printf("fuzz-replay: %u inputs, no invariant violated\n", count);
    return 0;
}
