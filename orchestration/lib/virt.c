/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "virt.h"
#include "conf-file.h"
#include "domain-xml.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

static void quiet_libvirt_errors(void *opaque, virErrorPtr err)
{
    /* Reported through GError by the callers instead. */
}

bool svm_virt_error(GError **errp, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_autofree char *what = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(errp, SVM_ORCH_ERROR, 0, "%s: %s", what, virGetLastErrorMessage());
    return false;
}

virConnectPtr svm_virt_connect(const char *uri, GError **errp)
{
    virSetErrorFunc(NULL, quiet_libvirt_errors);
    virConnectPtr conn = virConnectOpen(uri);
    if (!conn) {
        svm_virt_error(errp, "cannot connect to libvirt at %s (is libvirtd running? "
                       "`splitvm rack up` starts it on a local rack)", uri);
    }
    return conn;
}

bool svm_virt_resolve_type(virConnectPtr conn, const char *emulator, SvmVirtType want,
                           SvmVirtType *out, GError **errp)
{
    if (want == SVM_VIRT_QEMU) {
        *out = SVM_VIRT_QEMU;
        return true;
    }
    /* Asking for kvm domain capabilities fails when the host has no usable KVM. */
    g_autofree char *caps = virConnectGetDomainCapabilities(conn, emulator, "x86_64",
                                                            NULL, "kvm", 0);
    if (caps) {
        *out = SVM_VIRT_KVM;
        return true;
    }
    if (want == SVM_VIRT_KVM) {
        return svm_virt_error(errp, "type = kvm, but this host offers no KVM for x86_64");
    }
    *out = SVM_VIRT_QEMU;
    return true;
}

static char *xpath_string(xmlXPathContextPtr ctx, const char *expr)
{
    xmlXPathObjectPtr r = xmlXPathEvalExpression((const xmlChar *)expr, ctx);
    char *out = NULL;

    if (r && r->nodesetval && r->nodesetval->nodeNr > 0) {
        xmlChar *c = xmlNodeGetContent(r->nodesetval->nodeTab[0]);
        out = g_strdup((const char *)c);
        g_strstrip(out);
        xmlFree(c);
    }
    xmlXPathFreeObject(r);
    return out;
}

bool svm_virt_qemu_user(virConnectPtr conn, uid_t *uid, gid_t *gid, GError **errp)
{
    g_autofree char *caps = virConnectGetCapabilities(conn);
    if (!caps) {
        return svm_virt_error(errp, "cannot read the host capabilities");
    }
    xmlDocPtr doc = xmlReadMemory(caps, strlen(caps), "caps.xml", NULL, XML_PARSE_NONET);
    if (!doc) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "cannot parse the host capabilities");
        return false;
    }
    xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    g_autofree char *label = xpath_string(ctx,
        "/capabilities/host/secmodel[model='dac']/baselabel[@type='qemu']");
    xmlXPathFreeContext(ctx);
    xmlFreeDoc(doc);

    /* "+64055:+107"; no DAC model means QEMU runs as root. */
    unsigned long u = 0, g = 0;
    if (label && sscanf(label, "+%lu:+%lu", &u, &g) != 2) {
        g_set_error(errp, SVM_ORCH_ERROR, 0,
                    "unexpected DAC label '%s' in the host capabilities", label);
        return false;
    }
    *uid = u;
    *gid = g;
    return true;
}

/* SUB is "name" or "name/@attr": a child element of BASE by local name. */
static char *sub_string(xmlXPathContextPtr ctx, const char *base, const char *sub)
{
    g_auto(GStrv) parts = g_strsplit(sub, "/", 2);
    g_autofree char *q = g_strdup_printf("%s/*[local-name()='%s']%s%s", base, parts[0],
                                         parts[1] ? "/" : "", parts[1] ? parts[1] : "");
    return xpath_string(ctx, q);
}

void svm_vm_info_free(SvmVmInfo *info)
{
    if (!info) {
        return;
    }
    g_free(info->name);
    g_free(info->rack);
    g_free(info->rack_file);
    g_free(info->vm_id);
    g_free(info->backend);
    g_free(info->secret_file);
    g_free(info->transport);
    g_strfreev(info->server_names);
    g_strfreev(info->server_addrs);
    g_free(info);
}

/*
 * Parses our <splitvm:vm> element at BASE (an XPath).  Children are matched
 * by local name: virDomainGetMetadata hands the element back without its
 * namespace.
 */
static SvmVmInfo *info_from_doc(xmlDocPtr doc, const char *base, GError **errp)
{
    xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    SvmVmInfo *info = NULL;
    g_autofree char *vm_id = sub_string(ctx, base, "vm-id");
    if (!vm_id) {
        xmlXPathFreeContext(ctx);
        return NULL;
    }
    info = g_new0(SvmVmInfo, 1);
    info->vm_id = g_steal_pointer(&vm_id);
    info->rack = sub_string(ctx, base, "rack");
    info->rack_file = sub_string(ctx, base, "rack/@file");
    info->backend = sub_string(ctx, base, "backend");
    info->secret_file = sub_string(ctx, base, "secret-file");
    info->transport = sub_string(ctx, base, "transport");
    g_autofree char *mem = sub_string(ctx, base, "memory");
    g_autofree char *budget = sub_string(ctx, base, "budget");
    info->memory = mem ? g_ascii_strtoull(mem, NULL, 10) : 0;
    info->budget = budget ? g_ascii_strtoull(budget, NULL, 10) : 0;
    {
        g_autofree char *q = g_strdup_printf("%s/*[local-name()='server']", base);
        xmlXPathObjectPtr r = xmlXPathEvalExpression((const xmlChar *)q, ctx);
        int n = r && r->nodesetval ? r->nodesetval->nodeNr : 0;
        info->server_names = g_new0(char *, n + 1);
        info->server_addrs = g_new0(char *, n + 1);
        for (int i = 0; i < n; i++) {
            xmlNodePtr node = r->nodesetval->nodeTab[i];
            xmlChar *name = xmlGetProp(node, (const xmlChar *)"name");
            xmlChar *addr = xmlNodeGetContent(node);
            info->server_names[i] = g_strdup(name ? (const char *)name : "?");
            info->server_addrs[i] = g_strstrip(g_strdup((const char *)addr));
            xmlFree(name);
            xmlFree(addr);
        }
        xmlXPathFreeObject(r);
    }
    if (!info->backend || !info->secret_file || !info->transport) {
        g_set_error(errp, SVM_ORCH_ERROR, 0,
                    "splitvm metadata of VM %s is incomplete (backend, secret-file "
                    "and transport are needed)", info->vm_id);
        svm_vm_info_free(info);
        info = NULL;
    }
    xmlXPathFreeContext(ctx);
    return info;
}

SvmVmInfo *svm_vm_info_parse(const char *domain_xml, GError **errp)
{
    xmlDocPtr doc = xmlReadMemory(domain_xml, strlen(domain_xml), "domain.xml",
                                  NULL, XML_PARSE_NONET);
    if (!doc) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "cannot parse domain XML");
        return NULL;
    }
    SvmVmInfo *info = info_from_doc(doc, "/domain/metadata/*[local-name()='vm' and "
                                    "namespace-uri()='" SVM_XMLNS "']", errp);
    if (info) {
        xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
        info->name = xpath_string(ctx, "/domain/name");
        xmlXPathFreeContext(ctx);
    }
    xmlFreeDoc(doc);
    return info;
}

SvmVmInfo *svm_vm_info_get(virDomainPtr dom, GError **errp)
{
    virResetLastError();
    g_autofree char *md = virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT,
                                               SVM_XMLNS, 0);
    if (!md) {
        virErrorPtr e = virGetLastError();
        if (e && e->code != VIR_ERR_NO_DOMAIN_METADATA) {
            svm_virt_error(errp, "cannot read the metadata of domain %s",
                           virDomainGetName(dom));
        }
        return NULL;
    }
    xmlDocPtr doc = xmlReadMemory(md, strlen(md), "metadata.xml", NULL, XML_PARSE_NONET);
    if (!doc) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "cannot parse the splitvm metadata of %s",
                    virDomainGetName(dom));
        return NULL;
    }
    SvmVmInfo *info = info_from_doc(doc, "/*[local-name()='vm']", errp);
    xmlFreeDoc(doc);
    if (info) {
        info->name = g_strdup(virDomainGetName(dom));
    }
    return info;
}

SvmVmInfo *svm_vm_info_require(virDomainPtr dom, GError **errp)
{
    g_autoptr(GError) err = NULL;
    SvmVmInfo *info = svm_vm_info_get(dom, &err);

    if (!info) {
        if (err) {
            g_propagate_error(errp, g_steal_pointer(&err));
        } else {
            g_set_error(errp, SVM_ORCH_ERROR, 0,
                        "domain '%s' is not a split VM (it has no splitvm metadata)",
                        virDomainGetName(dom));
        }
    }
    return info;
}

JsonNode *svm_qmp(virDomainPtr dom, const char *command, JsonObject *args,
                  GError **errp)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(GError) err = NULL;
    char *reply = NULL;

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "execute");
    json_builder_add_string_value(b, command);
    if (args) {
        json_builder_set_member_name(b, "arguments");
        JsonNode *a = json_node_new(JSON_NODE_OBJECT);
        json_node_set_object(a, args);
        json_builder_add_value(b, a);
    }
    json_builder_end_object(b);
    g_autoptr(JsonNode) root = json_builder_get_root(b);
    g_autofree char *cmd = json_to_string(root, FALSE);

    if (virDomainQemuMonitorCommand(dom, cmd, &reply, 0) < 0) {
        svm_virt_error(errp, "QMP %s on %s failed", command, virDomainGetName(dom));
        return NULL;
    }
    g_autofree char *reply_owned = reply;
    g_autoptr(JsonParser) parser = json_parser_new();
    if (!json_parser_load_from_data(parser, reply, -1, &err)) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "QMP %s on %s: unparsable reply: %s",
                    command, virDomainGetName(dom), err->message);
        return NULL;
    }
    JsonNode *r = json_parser_get_root(parser);
    JsonObject *o = JSON_NODE_HOLDS_OBJECT(r) ? json_node_get_object(r) : NULL;
    if (o && json_object_has_member(o, "error")) {
        JsonObject *e = json_object_get_object_member(o, "error");
        const char *desc = e && json_object_has_member(e, "desc")
            ? json_object_get_string_member(e, "desc") : "unknown error";
        g_set_error(errp, SVM_ORCH_ERROR, 0, "QMP %s on %s: %s", command,
                    virDomainGetName(dom), desc);
        return NULL;
    }
    if (!o || !json_object_has_member(o, "return")) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "QMP %s on %s: reply has no 'return'",
                    command, virDomainGetName(dom));
        return NULL;
    }
    return json_node_copy(json_object_get_member(o, "return"));
}

uint64_t svm_json_u64(JsonObject *o, const char *member)
{
    JsonNode *n = o ? json_object_get_member(o, member) : NULL;
    if (!n || !JSON_NODE_HOLDS_VALUE(n)) {
        return 0;
    }
    return (uint64_t)json_node_get_int(n);
}
