/*
 * The rack file: hosts (libvirt URIs and the patched QEMU on each), memory
 * servers (addresses per transport; "local" ones are run by `splitvm rack
 * up` in their own network namespace) and where secrets and state live.
 * Format: docs/config.md.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SVM_RACK_CONFIG_H
#define SVM_RACK_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#define SVM_DEFAULT_RACK_FILE "/etc/splitvm/rack.conf"

typedef struct SvmRackHost {
    char *name;
    char *libvirt_uri;          /* e.g. qemu:///system */
    char *emulator;             /* patched qemu-system-x86_64 */
    char *library_path;         /* LD_LIBRARY_PATH for QEMU (libsplitvm), or NULL */
    char *address;              /* where other hosts' QEMUs reach it (migration), or NULL */
    bool local;                 /* `rack up` runs its libvirtd in a network namespace */
    char *veth;                 /* local: root-namespace end, "A.B.C.D/PREFIX" */
    char *dir;                  /* local: <state-dir>/host-NAME, its libvirt's private dirs */
} SvmRackHost;

typedef struct SvmRackServer {
    char *name;
    char *tcp;                  /* "HOST:PORT" or NULL */
    char *rdma;                 /* "HOST:PORT" or NULL */
    bool local;                 /* run by `rack up` on this machine */
    char *veth;                 /* local: root-namespace end, "A.B.C.D/PREFIX" */
    uint64_t capacity;          /* local: bytes of pool */
} SvmRackServer;

typedef struct SvmRack {
    char *path;
    char *name;
    char *secrets_dir;          /* per-VM secrets and memory-server secret files */
    char *state_dir;            /* pids and logs of a local rack */
    char *memserver_binary;     /* for local memory servers */
    GPtrArray *hosts;           /* SvmRackHost * */
    GPtrArray *servers;         /* SvmRackServer * */
} SvmRack;

SvmRack *svm_rack_load(const char *path, GError **errp);
void svm_rack_free(SvmRack *rack);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SvmRack, svm_rack_free)

/* The rack file to use: explicit, else $SPLITVM_RACK, else the default. */
const char *svm_rack_default_path(const char *explicit_path);

SvmRackHost *svm_rack_find_host(const SvmRack *rack, const char *name);
SvmRackServer *svm_rack_find_server(const SvmRack *rack, const char *name);
/* The server's address for TRANSPORT ("tcp"/"rdma"), NULL if it has none. */
const char *svm_rack_server_address(const SvmRackServer *s, const char *transport);
/* preferred if s has an address for it, else the transport s does have. */
const char *svm_rack_server_transport(const SvmRackServer *s, const char *preferred);

/* Helpers shared with the VM spec parser. */
bool svm_valid_name(const char *name, unsigned maxlen);
bool svm_parse_host_port(const char *text, char **host, unsigned *port);

#endif /* SVM_RACK_CONFIG_H */
