/*
 * Can QEMU run a split VM under libvirt's confinement on this host?  QEMU
 * runs as an unprivileged user (qemu.conf user/group), in a device cgroup
 * and a private /dev (namespaces = ["mount"]) with a seccomp sandbox.  The
 * pager needs /dev/userfaultfd (vm.unprivileged_userfaultfd=0 only allows
 * user-mode faults otherwise, which breaks KVM and syscalls that write guest
 * RAM).  docs/operations.md explains each check.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SVM_HOST_CHECK_H
#define SVM_HOST_CHECK_H

#include <sys/types.h>
#include <glib.h>

#include "rack-config.h"

#define SVM_QEMU_CONF "/etc/libvirt/qemu.conf"

/* One string per problem, saying what is wrong and how to fix it; empty
 * when QEMU can run there.  HOST must be this machine; EMULATOR is what
 * <emulator> will say (svm_host_emulator()). */
GPtrArray *svm_host_check(const SvmRack *rack, const SvmRackHost *host,
                          const char *emulator, uid_t qemu_uid, gid_t qemu_gid,
                          const char *qemu_conf);

/* Does QEMU_CONF put PATH in cgroup_device_acl? */
gboolean svm_qemu_conf_acl_has(const char *qemu_conf_text, const char *path);

#endif /* SVM_HOST_CHECK_H */
