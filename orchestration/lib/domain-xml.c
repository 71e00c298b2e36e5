/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "domain-xml.h"

#include <inttypes.h>
#include <string.h>
#include <json-glib/json-glib.h>

/* QemuOpts values: a ',' inside a value is written ",,". */
static char *qemu_opt_escape(const char *v)
{
    g_autoptr(GString) s = g_string_new(NULL);

    for (; *v; v++) {
        if (*v == ',') {
            g_string_append_c(s, ',');
        }
        g_string_append_c(s, *v);
    }
    return g_string_free(g_steal_pointer(&s), FALSE);
}

/*
 * The backend as a JSON -object (QEMU 7.2 takes both forms): `servers` is
 * a list, which the key=value form could only spell as servers.0=...
 */
static char *backend_json(const SvmDomainParams *p)
{
    const SvmVmSpec *spec = p->spec;
    g_autoptr(JsonBuilder) b = json_builder_new();

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "qom-type");
    json_builder_add_string_value(b, "memory-backend-remote");
    json_builder_set_member_name(b, "id");
    json_builder_add_string_value(b, SVM_BACKEND_ID);
    json_builder_set_member_name(b, "size");
    json_builder_add_int_value(b, spec->memory);
    json_builder_set_member_name(b, "servers");
    json_builder_begin_array(b);
    for (guint i = 0; i < p->servers->len; i++) {
        g_autofree char *entry = g_strdup_printf(
            "%s:%s", spec->transport,
            svm_rack_server_address(p->servers->pdata[i], spec->transport));
        json_builder_add_string_value(b, entry);
    }
    json_builder_end_array(b);
    json_builder_set_member_name(b, "vm-id");
    json_builder_add_string_value(b, spec->name);
    json_builder_set_member_name(b, "secret");
    json_builder_add_string_value(b, SVM_SECRET_ID);
    json_builder_set_member_name(b, "budget");
    json_builder_add_int_value(b, spec->budget);
    json_builder_set_member_name(b, "transport");
    json_builder_add_string_value(b, spec->transport);
    json_builder_set_member_name(b, "prefetch");
    json_builder_add_boolean_value(b, spec->prefetch);
    if (spec->service_nice >= 0) {
        json_builder_set_member_name(b, "service-nice");
        json_builder_add_int_value(b, spec->service_nice);
    }
    json_builder_end_object(b);
    g_autoptr(JsonNode) root = json_builder_get_root(b);
    return json_to_string(root, FALSE);
}

static void add_qemu_arg(GString *x, const char *value)
{
    g_autofree char *v = g_markup_printf_escaped("    <qemu:arg value='%s'/>\n", value);
    g_string_append(x, v);
}

static const char *disk_format(const char *path)
{
    return g_str_has_suffix(path, ".qcow2") ? "qcow2" : "raw";
}

static void add_disk(GString *x, const char *path, int index, bool boot)
{
    g_autofree char *xml = g_markup_printf_escaped(
        "    <disk type='file' device='disk'>\n"
        "      <driver name='qemu' type='%s'/>\n"
        "      <source file='%s'/>\n"
        "      <target dev='vd%c' bus='virtio'/>\n"
        "%s"
        "    </disk>\n",
        disk_format(path), path, 'a' + index,
        boot ? "      <boot order='1'/>\n" : "");
    g_string_append(x, xml);
}

static void append_escaped(GString *x, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_autofree char *s = g_markup_vprintf_escaped(fmt, ap);
    va_end(ap);
    g_string_append(x, s);
}

char *svm_domain_xml(const SvmDomainParams *p)
{
    const SvmVmSpec *spec = p->spec;
    g_autoptr(GString) x = g_string_new(NULL);
    const char *type = p->type == SVM_VIRT_KVM ? "kvm" : "qemu";
    int ndisk = 0;

    append_escaped(x,
        "<domain type='%s' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\n"
        "  <name>%s</name>\n"
        "  <title>split VM %s (rack %s)</title>\n",
        type, spec->name, spec->name, p->rack->name);

    /* Everything `splitvm` needs later, so ls/stats/destroy work from the
     * domain alone (also when it was defined with plain virsh). */
    append_escaped(x,
        "  <metadata>\n"
        "    <" SVM_XMLNS_PREFIX ":vm xmlns:" SVM_XMLNS_PREFIX "='" SVM_XMLNS "'>\n"
        "      <" SVM_XMLNS_PREFIX ":rack file='%s'>%s</" SVM_XMLNS_PREFIX ":rack>\n"
        "      <" SVM_XMLNS_PREFIX ":vm-id>%s</" SVM_XMLNS_PREFIX ":vm-id>\n"
        "      <" SVM_XMLNS_PREFIX ":backend>" SVM_BACKEND_ID "</" SVM_XMLNS_PREFIX ":backend>\n"
        "      <" SVM_XMLNS_PREFIX ":secret-file>%s</" SVM_XMLNS_PREFIX ":secret-file>\n"
        "      <" SVM_XMLNS_PREFIX ":transport>%s</" SVM_XMLNS_PREFIX ":transport>\n",
        p->rack->path, p->rack->name, spec->name, p->secret_file, spec->transport);
    for (guint i = 0; i < p->servers->len; i++) {
        SvmRackServer *s = p->servers->pdata[i];
        append_escaped(x,
            "      <" SVM_XMLNS_PREFIX ":server name='%s'>%s</" SVM_XMLNS_PREFIX ":server>\n",
            s->name, svm_rack_server_address(s, spec->transport));
    }
    g_string_append_printf(x,
        "      <" SVM_XMLNS_PREFIX ":memory>%" PRIu64 "</" SVM_XMLNS_PREFIX ":memory>\n"
        "      <" SVM_XMLNS_PREFIX ":budget>%" PRIu64 "</" SVM_XMLNS_PREFIX ":budget>\n"
        "    </" SVM_XMLNS_PREFIX ":vm>\n"
        "  </metadata>\n",
        spec->memory, spec->budget);

    g_string_append_printf(x,
        "  <memory unit='KiB'>%" PRIu64 "</memory>\n"
        "  <vcpu placement='static'>%u</vcpu>\n",
        spec->memory / 1024, spec->vcpus);

    append_escaped(x, "  <os>\n    <type arch='x86_64' machine='%s'>hvm</type>\n",
                   spec->machine);
    if (spec->kernel) {
        append_escaped(x, "    <kernel>%s</kernel>\n", spec->kernel);
        if (spec->initrd) {
            append_escaped(x, "    <initrd>%s</initrd>\n", spec->initrd);
        }
        if (spec->cmdline) {
            append_escaped(x, "    <cmdline>%s</cmdline>\n", spec->cmdline);
        }
    }
    g_string_append(x, "  </os>\n"
                       "  <features>\n    <acpi/>\n    <apic/>\n  </features>\n");
    if (p->type == SVM_VIRT_KVM) {
        g_string_append(x, "  <cpu mode='host-passthrough'/>\n");
    }
    g_string_append(x,
        "  <on_poweroff>destroy</on_poweroff>\n"
        "  <on_reboot>restart</on_reboot>\n"
        "  <on_crash>destroy</on_crash>\n"
        "  <devices>\n");
    append_escaped(x, "    <emulator>%s</emulator>\n", p->emulator);
    if (spec->image) {
        add_disk(x, spec->image, ndisk++, true);
    }
    for (int i = 0; spec->disks && spec->disks[i]; i++) {
        add_disk(x, spec->disks[i], ndisk++, false);
    }
    for (int i = 0; spec->networks && spec->networks[i]; i++) {
        append_escaped(x,
            "    <interface type='network'>\n"
            "      <source network='%s'/>\n"
            "      <model type='virtio'/>\n"
            "    </interface>\n", spec->networks[i]);
    }
    append_escaped(x,
        "    <serial type='pty'>\n"
        "      <log file='%s' append='on'/>\n"
        "      <target port='0'/>\n"
        "    </serial>\n"
        "    <console type='pty'>\n"
        "      <target type='serial' port='0'/>\n"
        "    </console>\n", spec->console_log);
    /* A balloon would fight the pager over what is resident. */
    g_string_append(x, "    <memballoon model='none'/>\n");
    if (spec->extra_xml) {
        g_string_append(x, spec->extra_xml);
        if (!g_str_has_suffix(spec->extra_xml, "\n")) {
            g_string_append_c(x, '\n');
        }
    }
    g_string_append(x, "  </devices>\n");

    /*
     * libvirt cannot express the remote backend: add it and make it the
     * machine's RAM (the later memory-backend= wins over libvirt's own).
     * The secret is read by QEMU from a file; its value never appears here.
     */
    g_autofree char *secret_file = qemu_opt_escape(p->secret_file);
    g_autofree char *secret_obj = g_strdup_printf(
        "secret,id=" SVM_SECRET_ID ",file=%s,format=raw", secret_file);
    g_autofree char *backend_obj = backend_json(p);

    g_string_append(x, "  <qemu:commandline>\n");
    add_qemu_arg(x, "-object");
    add_qemu_arg(x, secret_obj);
    add_qemu_arg(x, "-object");
    add_qemu_arg(x, backend_obj);
    add_qemu_arg(x, "-machine");
    add_qemu_arg(x, "memory-backend=" SVM_BACKEND_ID);
    g_string_append(x, "  </qemu:commandline>\n</domain>\n");
    return g_string_free(g_steal_pointer(&x), FALSE);
}
