/*
 * splitvm stats VM: every pager counter of a VM (QMP) and what each of its
 * memory servers holds for it.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "memservers.h"
#include "size.h"
#include "vmstats.h"

static gboolean opt_json;

static const GOptionEntry entries[] = {
    { "json", 'j', 0, G_OPTION_ARG_NONE, &opt_json,
      "print one JSON object (pager counters under \"pager\", per-server under "
      "\"servers\")", NULL },
    { NULL }
};

static gint cmp_str(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void print_text(const SvmVmSample *s, const SvmVmInfo *info,
                       SvmVmServerStats *srv)
{
    char b[32];

    printf("vm %s\nstate %s\nmemory %" PRIu64 " (%s)\n", s->name, s->state, s->memory,
           svm_size_format(s->memory, b, sizeof(b)));
    if (s->raw) {
        printf("budget %" PRIu64 " (%s)\n", s->budget, svm_size_format(s->budget, b, sizeof(b)));
        printf("resident %" PRIu64 " (%s)\n", s->resident,
               svm_size_format(s->resident, b, sizeof(b)));
        printf("remote %" PRIu64 " (%s)\n", s->remote, svm_size_format(s->remote, b, sizeof(b)));
        printf("faults %" PRIu64 "\n", s->faults);
    }
    if (s->raw) {
        g_autoptr(GList) members = json_object_get_members(s->raw);
        g_autoptr(GPtrArray) names = g_ptr_array_new();
        for (GList *m = members; m; m = m->next) {
            g_ptr_array_add(names, m->data);
        }
        g_ptr_array_sort(names, cmp_str);
        for (guint i = 0; i < names->len; i++) {
            JsonNode *n = json_object_get_member(s->raw, names->pdata[i]);
            if (JSON_NODE_HOLDS_VALUE(n)) {
                if (json_node_get_value_type(n) == G_TYPE_STRING) {
                    printf("pager.%s %s\n", (char *)names->pdata[i],
                           json_node_get_string(n));
                } else if (json_node_get_value_type(n) == G_TYPE_BOOLEAN) {
                    printf("pager.%s %s\n", (char *)names->pdata[i],
                           json_node_get_boolean(n) ? "true" : "false");
                } else {
                    printf("pager.%s %" PRId64 "\n", (char *)names->pdata[i],
                           json_node_get_int(n));
                }
            } else {
                g_autofree char *j = json_to_string(n, FALSE);
                printf("pager.%s %s\n", (char *)names->pdata[i], j);
            }
        }
    } else if (s->active) {
        printf("pager.error %s\n", s->error ? s->error : "no stats");
    }
    for (int i = 0; info->server_names[i]; i++) {
        if (srv[i].ok) {
            printf("server.%s.address %s\nserver.%s.pages-stored %" PRIu64 "\n",
                   info->server_names[i], info->server_addrs[i],
                   info->server_names[i], srv[i].pages_stored);
        } else {
            printf("server.%s.address %s\nserver.%s.error %s\n", info->server_names[i],
                   info->server_addrs[i], info->server_names[i], srv[i].error);
        }
    }
}

static void print_json(const SvmVmSample *s, const SvmVmInfo *info,
                       SvmVmServerStats *srv)
{
    g_autoptr(JsonBuilder) b = json_builder_new();

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "vm");
    json_builder_add_string_value(b, s->name);
    json_builder_set_member_name(b, "state");
    json_builder_add_string_value(b, s->state);
    json_builder_set_member_name(b, "memory");
    json_builder_add_int_value(b, s->memory);
    if (s->raw) {
        /* The same numbers as ls, in bytes, whatever QEMU calls them. */
        json_builder_set_member_name(b, "budget");
        json_builder_add_int_value(b, s->budget);
        json_builder_set_member_name(b, "resident");
        json_builder_add_int_value(b, s->resident);
        json_builder_set_member_name(b, "remote");
        json_builder_add_int_value(b, s->remote);
        json_builder_set_member_name(b, "faults");
        json_builder_add_int_value(b, s->faults);
    }
    json_builder_set_member_name(b, "pager");
    if (s->raw) {
        JsonNode *n = json_node_new(JSON_NODE_OBJECT);
        json_node_set_object(n, s->raw);
        json_builder_add_value(b, n);
    } else {
        json_builder_add_null_value(b);
    }
    json_builder_set_member_name(b, "servers");
    json_builder_begin_array(b);
    for (int i = 0; info->server_names[i]; i++) {
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "name");
        json_builder_add_string_value(b, info->server_names[i]);
        json_builder_set_member_name(b, "address");
        json_builder_add_string_value(b, info->server_addrs[i]);
        if (srv[i].ok) {
            json_builder_set_member_name(b, "pages-stored");
            json_builder_add_int_value(b, srv[i].pages_stored);
        } else {
            json_builder_set_member_name(b, "error");
            json_builder_add_string_value(b, srv[i].error);
        }
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    json_builder_end_object(b);
    g_autoptr(JsonNode) root = json_builder_get_root(b);
    g_autoptr(JsonGenerator) gen = json_generator_new();
    json_generator_set_root(gen, root);
    json_generator_set_pretty(gen, TRUE);
    g_autofree char *text = json_generator_to_data(gen, NULL);
    printf("%s\n", text);
}

int svm_cmd_stats(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(SvmVmInfo) info = NULL;

    if (!svm_cli_parse(&argc, &argv, "VM",
                       "Shows every pager counter of the split VM VM and its pages on "
                       "each memory server.",
                       "Pager counters come from QEMU (QMP x-remote-memory-stats through\n"
                       "libvirt); page counts from each memory server, asked with the\n"
                       "VM's own secret.  Output: one \"key value\" per line, or --json.",
                       entries, 1)) {
        return 2;
    }
    g_autoptr(GPtrArray) conns = svm_cli_connections(&err);
    if (!conns) {
        return svm_cli_fail(err);
    }
    g_autoptr(virDomain) dom = svm_cli_find_vm(conns, argv[1], &info, &err);
    if (!dom) {
        return svm_cli_fail(err);
    }
    g_autoptr(SvmVmSample) s = svm_vm_sample(dom, info);
    guint n = g_strv_length(info->server_names);
    g_autofree SvmVmServerStats *srv = g_new0(SvmVmServerStats, n + 1);
    g_autoptr(GError) rerr = NULL;
    g_autoptr(SvmRack) rack = svm_rack_load(info->rack_file ? info->rack_file
                                                            : svm_cli_rack_path(), &rerr);
    for (guint i = 0; i < n; i++) {
        g_autoptr(GError) e = NULL;
        SvmRackServer *rs = rack ? svm_rack_find_server(rack, info->server_names[i]) : NULL;
        bool exists;
        uint64_t npages;
        if (!rs) {
            srv[i].error = g_strdup(rack ? "not in the rack file" : rerr->message);
        } else if (!svm_memserver_vm_pages(rack, rs, info->transport, info->vm_id, &exists,
                                           &npages, &srv[i].pages_stored, &e)) {
            srv[i].error = g_strdup(e->message);
        } else {
            srv[i].ok = true;
        }
    }
    if (opt_json) {
        print_json(s, info, srv);
    } else {
        print_text(s, info, srv);
    }
    for (guint i = 0; i < n; i++) {
        g_free(srv[i].error);
    }
    return s->active && !s->raw ? 1 : 0;
}
