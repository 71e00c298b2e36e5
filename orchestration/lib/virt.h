/*
 * libvirt and QMP-through-libvirt helpers: connections with GError
 * reporting, the host's domain type and QEMU user, the splitvm metadata of
 * a domain, and QMP commands (virDomainQemuMonitorCommand).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SVM_VIRT_H
#define SVM_VIRT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <glib.h>
#include <json-glib/json-glib.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "vm-spec.h"

G_DEFINE_AUTOPTR_CLEANUP_FUNC(virConnect, virConnectClose)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(virDomain, virDomainFree)

/* Opens URI; libvirt's own error printing is turned off, errors go to errp. */
virConnectPtr svm_virt_connect(const char *uri, GError **errp);
/* Sets errp to "<what>: <libvirt's last error>"; returns false. */
bool svm_virt_error(GError **errp, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/* AUTO -> KVM if EMULATOR on the host offers kvm for x86_64, else QEMU.
 * KVM asked for but not offered is an error. */
bool svm_virt_resolve_type(virConnectPtr conn, const char *emulator, SvmVirtType want,
                           SvmVirtType *out, GError **errp);
/* uid/gid QEMU runs as (the DAC base label in the capabilities). */
bool svm_virt_qemu_user(virConnectPtr conn, uid_t *uid, gid_t *gid, GError **errp);

/* What the <metadata> of a split VM says (see domain-xml.c). */
typedef struct SvmVmInfo {
    char *name;
    char *rack;
    char *rack_file;
    char *vm_id;
    char *backend;              /* QOM id of the memory-backend-remote */
    char *secret_file;
    char *transport;
    char **server_names;
    char **server_addrs;
    uint64_t memory, budget;
} SvmVmInfo;

void svm_vm_info_free(SvmVmInfo *info);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SvmVmInfo, svm_vm_info_free)
/* NULL without error: the domain is not a split VM. */
SvmVmInfo *svm_vm_info_get(virDomainPtr dom, GError **errp);
/* The same from a domain XML text (for tests and --dry-run output). */
SvmVmInfo *svm_vm_info_parse(const char *domain_xml, GError **errp);

/* Like svm_vm_info_get, and a domain that is not a split VM is an error too. */
SvmVmInfo *svm_vm_info_require(virDomainPtr dom, GError **errp);

/* Runs a QMP command in the domain's QEMU; returns its "return" member. */
JsonNode *svm_qmp(virDomainPtr dom, const char *command, JsonObject *args,
                  GError **errp);

/* Member of a QMP reply object as uint64 (0 when absent). */
uint64_t svm_json_u64(JsonObject *o, const char *member);

#endif /* SVM_VIRT_H */
