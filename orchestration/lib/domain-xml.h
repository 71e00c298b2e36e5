/*
 * The libvirt domain XML of a split VM: a standard domain running the
 * patched QEMU (<emulator>), whose RAM is a memory-backend-remote object and
 * whose secret reaches QEMU as a `secret` object read from a file; both go
 * in <qemu:commandline>.  What we need to find the VM again (rack, servers,
 * secret file) is kept in <metadata>.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SVM_DOMAIN_XML_H
#define SVM_DOMAIN_XML_H

#include <glib.h>

#include "rack-config.h"
#include "vm-spec.h"

#define SVM_XMLNS           "https://splitvm.dev/schema/vm/1"
#define SVM_XMLNS_PREFIX    "splitvm"
#define SVM_BACKEND_ID      "svm-ram"
#define SVM_SECRET_ID       "svm-secret"

typedef struct SvmDomainParams {
    const SvmVmSpec *spec;
    const SvmRack *rack;
    const SvmRackHost *host;
    const char *emulator;       /* <emulator>: svm_host_emulator() */
    GPtrArray *servers;         /* SvmRackServer * */
    SvmVirtType type;           /* resolved: KVM or QEMU */
    const char *secret_file;    /* what QEMU's secret object reads */
} SvmDomainParams;

char *svm_domain_xml(const SvmDomainParams *p);

#endif /* SVM_DOMAIN_XML_H */
