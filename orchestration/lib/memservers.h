/*
 * What the CLI asks of memory servers: are they reachable, let a VM in
 * (its secret), a VM's page counts, and freeing a destroyed VM's pages.
 * Servers are given as "HOST:PORT" addresses for one transport.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SVM_MEMSERVERS_H
#define SVM_MEMSERVERS_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "rack-config.h"

/* A TCP connection to every server within TIMEOUT_MS, else an error naming it. */
bool svm_memservers_check_reachable(GPtrArray *servers, const char *transport,
                                    unsigned timeout_ms, GError **errp);
bool svm_memserver_reachable(const char *addr, unsigned timeout_ms, GError **errp);

/*
 * Makes the rack's memory servers SERVERS (SvmRackServer *) accept VM_ID
 * with the secret in SECRET_FILE: adds it to each server's secrets file in
 * the rack's secrets dir and has running local servers reload it.
 */
bool svm_memservers_admit_vm(const SvmRack *rack, GPtrArray *servers,
                             const char *vm_id, const char *secret_file,
                             uint64_t memory, GError **errp);
/* Removes VM_ID from those secrets files again (its pages must be freed first). */
bool svm_memservers_revoke_vm(const SvmRack *rack, GPtrArray *servers,
                              const char *vm_id, GError **errp);

/* The secrets file of one memory server (what its --secrets reads). */
char *svm_memserver_secrets_file(const SvmRack *rack, const char *server);
/* Creates it with a random [admin] secret (for --stats) if it has none. */
bool svm_memserver_secrets_init(const SvmRack *rack, const SvmRackServer *s,
                                GError **errp);
/* `splitvm-memserver --stats` of S as admin: "key" -> "value". */
GHashTable *svm_memserver_admin_stats(const SvmRack *rack, const SvmRackServer *s,
                                      const char *transport, GError **errp);

typedef struct SvmVmServerStats {
    bool ok;
    char *error;                /* why not ok */
    uint64_t pages_stored;      /* pages of this VM on the server */
} SvmVmServerStats;

/*
 * These talk to server S of RACK for TRANSPORT; admin calls run
 * `splitvm-memserver --stats` with the server's secrets file.
 */
/* Does VM_ID have a namespace on S, of how many pages, how many stored? */
bool svm_memserver_vm_pages(const SvmRack *rack, const SvmRackServer *s,
                            const char *transport, const char *vm_id, bool *exists,
                            uint64_t *npages, uint64_t *stored, GError **errp);
/* Does S accept VM_ID with the secret its secrets file holds? (no attach) */
bool svm_memserver_check_vm(const SvmRack *rack, const SvmRackServer *s,
                            const char *transport, const char *vm_id, GError **errp);
/* Frees every page of VM_ID on S (logs in as the VM). */
bool svm_memserver_free_vm(const SvmRack *rack, const SvmRackServer *s,
                           const char *transport, const char *vm_id,
                           const char *secret_file, GError **errp);

/* Arguments (after the binary) that run local server S of RACK; creates its
 * secrets file if missing. */
char **svm_memserver_local_args(const SvmRack *rack, const SvmRackServer *s,
                                GError **errp);

#endif /* SVM_MEMSERVERS_H */
