/*
 * The VM spec: what `splitvm launch SPEC` starts.  Format: docs/config.md.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SVM_VM_SPEC_H
#define SVM_VM_SPEC_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "rack-config.h"

typedef enum SvmVirtType {
    SVM_VIRT_AUTO,              /* kvm when the host offers it, else qemu (TCG) */
    SVM_VIRT_KVM,
    SVM_VIRT_QEMU,
} SvmVirtType;

typedef struct SvmVmSpec {
    char *path;
    char *name;
    unsigned vcpus;
    uint64_t memory;            /* bytes */
    uint64_t budget;            /* resident bytes on the host */
    SvmVirtType type;
    char *machine;              /* QEMU machine type, default "pc" */
    char *host;                 /* rack host, NULL = the rack's first */

    char *kernel, *initrd, *cmdline;    /* direct kernel boot, or */
    char *image;                        /* a bootable disk image */

    char **servers;             /* memory server names; NULL = any (all of the rack) */
    char *transport;            /* "tcp" or "rdma" */
    bool prefetch;
    int service_nice;           /* nice increment of the pager's threads; -1: QEMU's default */

    char **disks;               /* extra disk images */
    char **networks;            /* libvirt network names */
    char *console_log;          /* serial console log file */
    char *extra_xml;            /* contents of extra <devices> children, or NULL */
    int host_line, servers_line;    /* for errors found against the rack */
} SvmVmSpec;

/* Parses and checks the spec on its own (files exist, sizes add up). */
SvmVmSpec *svm_vm_spec_load(const char *path, GError **errp);
void svm_vm_spec_free(SvmVmSpec *spec);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SvmVmSpec, svm_vm_spec_free)

/*
 * Resolves the spec against a rack: the host exists, every named server
 * exists and has an address for the transport ("any" becomes all servers
 * that do).  Returns the servers (SvmRackServer *, owned by rack).
 */
GPtrArray *svm_vm_spec_servers(const SvmVmSpec *spec, const SvmRack *rack,
                               GError **errp);
SvmRackHost *svm_vm_spec_host(const SvmVmSpec *spec, const SvmRack *rack,
                              GError **errp);

const char *svm_virt_type_name(SvmVirtType t);

#endif /* SVM_VM_SPEC_H */
