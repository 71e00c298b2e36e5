/*
 * A second (third...) host on one machine: a rack host with local = true
 * gets its own network namespace, joined to the root namespace by a veth
 * pair, and its own virtlogd and libvirtd.  They run in a private mount
 * namespace where <state-dir>/host-NAME/{run,lib,cache,log,etc} are bound
 * over /run/libvirt, /var/lib/libvirt, /var/cache/libvirt, /var/log/libvirt
 * and /etc/libvirt, with a host_uuid of their own, so two libvirtds on one
 * machine migrate VMs between each other as between two machines.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SVM_LOCAL_HOST_H
#define SVM_LOCAL_HOST_H

#include <stdbool.h>
#include <glib.h>

#include "local-rack.h"
#include "rack-config.h"

char *svm_local_host_netns_name(const SvmRack *rack, const SvmRackHost *h);
char *svm_local_host_veth_name(const SvmRack *rack, const SvmRackHost *h);

/* *detail says what runs (pids, namespace, address) or what is wrong. */
SvmLocalStatus svm_local_host_status(SvmRackState *st, const SvmRackHost *h,
                                     char **detail);
/* Namespace, veth, virtlogd and libvirtd of H unless they run; *already tells. */
bool svm_local_host_up(const SvmRack *rack, SvmRackState *st, const SvmRackHost *h,
                       bool *already, GError **errp);
/* Destroys the domains still running there, stops its daemons and every
 * process left in its namespace, removes namespace, veth and its dirs. */
bool svm_local_host_down(SvmRackState *st, const char *name, GError **errp);
/* Names of the local hosts recorded in the state. */
char **svm_local_recorded_hosts(SvmRackState *st);

/*
 * The libvirt URI of DEST as SRC's libvirtd sees it (peer-to-peer
 * migration: the source libvirtd connects to the destination).  In a local
 * host's mount namespace /run/libvirt is its own, so the root namespace's
 * libvirtd is reached through the bind mount the host keeps of it.
 */
char *svm_host_peer_uri(const SvmRackHost *src, const SvmRackHost *dest);
/* The address SRC's QEMU connects to for migrating to DEST, NULL to let
 * libvirt choose (the destination's host name). */
char *svm_host_migration_address(const SvmRackHost *src, const SvmRackHost *dest);

#endif /* SVM_LOCAL_HOST_H */
