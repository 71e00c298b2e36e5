/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "vm-spec.h"
#include "conf-file.h"
#include "size.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MIB (1024ull * 1024)

void svm_vm_spec_free(SvmVmSpec *s)
{
    if (!s) {
        return;
    }
    g_free(s->path);
    g_free(s->name);
    g_free(s->machine);
    g_free(s->host);
    g_free(s->kernel);
    g_free(s->initrd);
    g_free(s->cmdline);
    g_free(s->image);
    g_strfreev(s->servers);
    g_free(s->transport);
    g_strfreev(s->disks);
    g_strfreev(s->networks);
    g_free(s->console_log);
    g_free(s->extra_xml);
    g_free(s);
}

const char *svm_virt_type_name(SvmVirtType t)
{
    switch (t) {
    case SVM_VIRT_KVM: return "kvm";
    case SVM_VIRT_QEMU: return "qemu";
    default: return "auto";
    }
}

static bool check_readable(const SvmConf *conf, const char *group, const char *key,
                           const char *path, GError **errp)
{
    if (path && access(path, R_OK) != 0) {
        return svm_conf_error(conf, errp, group, key, "cannot read %s: %s",
                              path, g_strerror(errno));
    }
    return true;
}

static bool load_vm(SvmVmSpec *s, SvmConf *conf, GError **errp)
{
    static const char *const keys[] = { "name", "vcpus", "memory", "local-budget",
                                        "type", "machine", "host", NULL };
    uint64_t vcpus = 1;
    g_autofree char *budget = NULL, *type = NULL;

    if (!svm_conf_check_keys(conf, "vm", keys, errp) ||
        !svm_conf_get_string(conf, "vm", "name", true, &s->name, errp) ||
        !svm_conf_get_uint(conf, "vm", "vcpus", false, 1, 255, &vcpus, errp) ||
        !svm_conf_get_size(conf, "vm", "memory", true, &s->memory, errp) ||
        !svm_conf_get_string(conf, "vm", "local-budget", true, &budget, errp) ||
        !svm_conf_get_string(conf, "vm", "type", false, &type, errp) ||
        !svm_conf_get_string(conf, "vm", "machine", false, &s->machine, errp) ||
        !svm_conf_get_string(conf, "vm", "host", false, &s->host, errp)) {
        return false;
    }
    s->vcpus = vcpus;
    if (!svm_valid_name(s->name, 64)) {
        return svm_conf_error(conf, errp, "vm", "name",
                              "'%s' is not a valid VM name (1-64 letters, digits, "
                              "'-', '_', '.', starting with a letter or digit)", s->name);
    }
    if (s->memory < 64 * MIB || s->memory % (2 * MIB)) {
        return svm_conf_error(conf, errp, "vm", "memory",
                              "must be a multiple of 2M and at least 64M");
    }
    if (g_str_has_suffix(budget, "%")) {
        char *end;
        double pct = g_ascii_strtod(budget, &end);
        if (end != budget + strlen(budget) - 1 || !(pct > 0 && pct <= 100)) {
            return svm_conf_error(conf, errp, "vm", "local-budget",
                                  "'%s' is not a percentage in (0, 100]", budget);
        }
        /* Whole MiB: the pager evicts whole pages and people read MiB. */
        s->budget = (uint64_t)(s->memory * pct / 100.0) / MIB * MIB;
    } else if (!svm_size_parse(budget, &s->budget)) {
        return svm_conf_error(conf, errp, "vm", "local-budget",
                              "'%s' is neither a size (256M) nor a percentage (25%%)",
                              budget);
    }
    if (s->budget < 16 * MIB) {
        return svm_conf_error(conf, errp, "vm", "local-budget",
                              "%s is below the minimum of 16M", budget);
    }
    if (s->budget > s->memory) {
        return svm_conf_error(conf, errp, "vm", "local-budget",
                              "%s is more than the VM's memory", budget);
    }
    if (!type || !strcmp(type, "auto")) {
        s->type = SVM_VIRT_AUTO;
    } else if (!strcmp(type, "kvm")) {
        s->type = SVM_VIRT_KVM;
    } else if (!strcmp(type, "qemu") || !strcmp(type, "tcg")) {
        s->type = SVM_VIRT_QEMU;
    } else {
        return svm_conf_error(conf, errp, "vm", "type",
                              "'%s' is not one of auto, kvm, qemu", type);
    }
    if (!s->machine) {
        s->machine = g_strdup("pc");
    }
    return true;
}

static bool load_boot(SvmVmSpec *s, SvmConf *conf, GError **errp)
{
    static const char *const keys[] = { "kernel", "initrd", "cmdline", "image", NULL };

    if (!svm_conf_has_group(conf, "boot")) {
        return svm_conf_error(conf, errp, NULL, NULL,
                              "missing group [boot] (set kernel/initrd/cmdline, or image)");
    }
    if (!svm_conf_check_keys(conf, "boot", keys, errp) ||
        !svm_conf_get_path(conf, "boot", "kernel", false, &s->kernel, errp) ||
        !svm_conf_get_path(conf, "boot", "initrd", false, &s->initrd, errp) ||
        !svm_conf_get_string(conf, "boot", "cmdline", false, &s->cmdline, errp) ||
        !svm_conf_get_path(conf, "boot", "image", false, &s->image, errp)) {
        return false;
    }
    if (s->kernel && s->image) {
        return svm_conf_error(conf, errp, "boot", "image",
                              "give either kernel (direct boot) or image (disk boot), "
                              "not both");
    }
    if (!s->kernel && !s->image) {
        return svm_conf_error(conf, errp, "boot", NULL,
                              "nothing to boot: set kernel (and initrd, cmdline) or image");
    }
    if (!s->kernel && (s->initrd || s->cmdline)) {
        return svm_conf_error(conf, errp, "boot", s->initrd ? "initrd" : "cmdline",
                              "only meaningful with kernel");
    }
    return check_readable(conf, "boot", "kernel", s->kernel, errp) &&
           check_readable(conf, "boot", "initrd", s->initrd, errp) &&
           check_readable(conf, "boot", "image", s->image, errp);
}

static bool load_memory(SvmVmSpec *s, SvmConf *conf, GError **errp)
{
    static const char *const keys[] = { "servers", "transport", "prefetch",
                                        "service-nice", NULL };
    uint64_t nice = UINT64_MAX;     /* not given: memory-backend-remote's default */

    s->transport = g_strdup("tcp");
    s->prefetch = true;
    if (!svm_conf_check_keys(conf, "memory", keys, errp) ||
        !svm_conf_get_list(conf, "memory", "servers", false, &s->servers, errp) ||
        !svm_conf_get_string(conf, "memory", "transport", false, &s->transport, errp) ||
        !svm_conf_get_bool(conf, "memory", "prefetch", false, &s->prefetch, errp) ||
        !svm_conf_get_uint(conf, "memory", "service-nice", false, 0, 19, &nice, errp)) {
        return false;
    }
    s->service_nice = nice == UINT64_MAX ? -1 : (int)nice;
    if (strcmp(s->transport, "tcp") && strcmp(s->transport, "rdma")) {
        return svm_conf_error(conf, errp, "memory", "transport",
                              "'%s' is not one of tcp, rdma", s->transport);
    }
    if (s->servers && g_strv_contains((const char *const *)s->servers, "any")) {
        if (g_strv_length(s->servers) > 1) {
            return svm_conf_error(conf, errp, "memory", "servers",
                                  "'any' cannot be combined with server names");
        }
        g_clear_pointer(&s->servers, g_strfreev);
    }
    for (int i = 0; s->servers && s->servers[i]; i++) {
        for (int j = 0; j < i; j++) {
            if (!strcmp(s->servers[i], s->servers[j])) {
                return svm_conf_error(conf, errp, "memory", "servers",
                                      "'%s' is listed twice", s->servers[i]);
            }
        }
    }
    return true;
}

static bool load_devices(SvmVmSpec *s, SvmConf *conf, GError **errp)
{
    static const char *const keys[] = { "disks", "networks", "console-log",
                                        "extra-xml", NULL };
    g_autofree char *extra = NULL;
    g_autoptr(GError) err = NULL;

    s->console_log = g_strdup_printf("/var/log/splitvm/%s.console", s->name);
    s->host_line = svm_conf_line(conf, "vm", "host");
    s->servers_line = svm_conf_line(conf, "memory", "servers");
    if (!svm_conf_check_keys(conf, "devices", keys, errp) ||
        !svm_conf_get_list(conf, "devices", "disks", false, &s->disks, errp) ||
        !svm_conf_get_list(conf, "devices", "networks", false, &s->networks, errp) ||
        !svm_conf_get_path(conf, "devices", "console-log", false, &s->console_log, errp) ||
        !svm_conf_get_path(conf, "devices", "extra-xml", false, &extra, errp)) {
        return false;
    }
    for (int i = 0; s->disks && s->disks[i]; i++) {
        char *abs = g_canonicalize_filename(s->disks[i], svm_conf_dir(conf));
        g_free(s->disks[i]);
        s->disks[i] = abs;
        if (!check_readable(conf, "devices", "disks", abs, errp)) {
            return false;
        }
    }
    if (extra && !g_file_get_contents(extra, &s->extra_xml, NULL, &err)) {
        return svm_conf_error(conf, errp, "devices", "extra-xml", "%s", err->message);
    }
    return true;
}

SvmVmSpec *svm_vm_spec_load(const char *path, GError **errp)
{
    g_autoptr(SvmConf) conf = svm_conf_load(path, errp);
    g_autoptr(SvmVmSpec) s = NULL;
    guint ngroups;

    if (!conf) {
        return NULL;
    }
    const char *const *groups = svm_conf_groups(conf, &ngroups);
    static const char *const known[] = { "vm", "boot", "memory", "devices", NULL };
    for (guint i = 0; i < ngroups; i++) {
        if (!g_strv_contains(known, groups[i])) {
            svm_conf_error(conf, errp, groups[i], NULL,
                           "unknown group (expected [vm], [boot], [memory], [devices])");
            return NULL;
        }
    }
    s = g_new0(SvmVmSpec, 1);
    s->path = g_strdup(path);
    if (!load_vm(s, conf, errp) || !load_boot(s, conf, errp) ||
        !load_memory(s, conf, errp) || !load_devices(s, conf, errp)) {
        return NULL;
    }
    return g_steal_pointer(&s);
}

SvmRackHost *svm_vm_spec_host(const SvmVmSpec *spec, const SvmRack *rack,
                              GError **errp)
{
    if (!spec->host) {
        return rack->hosts->pdata[0];
    }
    SvmRackHost *h = svm_rack_find_host(rack, spec->host);
    if (!h) {
        g_set_error(errp, SVM_ORCH_ERROR, 0,
                    "%s:%d: [vm] host: rack %s (%s) has no host '%s'",
                    spec->path, spec->host_line, rack->name, rack->path, spec->host);
    }
    return h;
}

GPtrArray *svm_vm_spec_servers(const SvmVmSpec *spec, const SvmRack *rack,
                               GError **errp)
{
    g_autoptr(GPtrArray) out = g_ptr_array_new();

    if (!spec->servers) {
        for (guint i = 0; i < rack->servers->len; i++) {
            SvmRackServer *s = rack->servers->pdata[i];
            if (svm_rack_server_address(s, spec->transport)) {
                g_ptr_array_add(out, s);
            }
        }
        if (out->len == 0) {
            g_set_error(errp, SVM_ORCH_ERROR, 0,
                        "%s: [memory] servers = any: no memory server of rack %s "
                        "(%s) has a %s address", spec->path, rack->name,
                        rack->path, spec->transport);
            return NULL;
        }
        return g_steal_pointer(&out);
    }
    for (int i = 0; spec->servers[i]; i++) {
        SvmRackServer *s = svm_rack_find_server(rack, spec->servers[i]);
        if (!s) {
            g_set_error(errp, SVM_ORCH_ERROR, 0,
                        "%s:%d: [memory] servers: rack %s (%s) has no memory server '%s'",
                        spec->path, spec->servers_line, rack->name, rack->path,
                        spec->servers[i]);
            return NULL;
        }
        if (!svm_rack_server_address(s, spec->transport)) {
            g_set_error(errp, SVM_ORCH_ERROR, 0,
                        "%s:%d: [memory] servers: memory server '%s' of rack %s has no "
                        "%s address", spec->path, spec->servers_line, s->name, rack->name,
                        spec->transport);
            return NULL;
        }
        g_ptr_array_add(out, s);
    }
    return g_steal_pointer(&out);
}
