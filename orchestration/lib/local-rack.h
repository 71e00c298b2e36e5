/*
 * A local rack on one machine: each local memory server runs in its own
 * network namespace, joined to the root namespace by a veth pair; libvirtd
 * and virtlogd are started if they do not run.  What was created is
 * recorded in <state-dir>/rack.state, so `rack down` removes exactly that
 * and `rack up` can be repeated.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SVM_LOCAL_RACK_H
#define SVM_LOCAL_RACK_H

#include <stdbool.h>
#include <sys/types.h>
#include <glib.h>

#include "rack-config.h"

typedef struct SvmRackState {
    char *path;
    GKeyFile *kf;
    int lock_fd;                /* flock on <state-dir>/rack.lock while loaded */
} SvmRackState;

/* Loads the state, holding the rack's lock (waits for another splitvm
 * working on the same rack) until svm_rack_state_free(). */
SvmRackState *svm_rack_state_load(const SvmRack *rack, GError **errp);
bool svm_rack_state_save(SvmRackState *st, GError **errp);
/* Removes the state file (logs and the lock file stay). */
void svm_rack_state_remove(SvmRackState *st);
void svm_rack_state_free(SvmRackState *st);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SvmRackState, svm_rack_state_free)

/* Names derived from rack and server: namespace and root-side veth. */
char *svm_local_netns_name(const SvmRack *rack, const SvmRackServer *s);
char *svm_local_veth_name(const SvmRack *rack, const SvmRackServer *s);

typedef enum SvmLocalStatus {
    SVM_LOCAL_DOWN,             /* nothing recorded or nothing left */
    SVM_LOCAL_RUNNING,          /* process alive and answering */
    SVM_LOCAL_BROKEN,           /* something recorded but not working */
} SvmLocalStatus;

/* Status of a local server; *detail says what (pid, address, or the problem). */
SvmLocalStatus svm_local_server_status(SvmRackState *st, const SvmRackServer *s,
                                       char **detail);
/* Starts the server unless it runs; *already tells which. */
bool svm_local_server_up(const SvmRack *rack, SvmRackState *st, const SvmRackServer *s,
                         const char *const *extra_args, bool *already, GError **errp);
/* Stops the process and removes namespace and veth recorded for NAME. */
bool svm_local_server_down(SvmRackState *st, const char *name, GError **errp);
/* Names of the servers recorded in the state (also ones no longer in the rack file). */
char **svm_local_recorded_servers(SvmRackState *st);
/* Sends SIGHUP to a running local server (reload its secrets). */
bool svm_local_server_reload(SvmRackState *st, const char *name, GError **errp);

/* libvirtd and virtlogd for URI: started unless running; recorded if we did. */
bool svm_local_daemons_up(SvmRackState *st, const char *uri, bool *started,
                          GError **errp);
/* Stops daemons recorded as started by us; refuses while domains run. */
bool svm_local_daemons_down(SvmRackState *st, GError **errp);
/* "libvirtd running (pid N, started by rack up)" etc. */
char *svm_local_daemons_status(SvmRackState *st);

/* Is pid alive and running a program whose name is COMM? */
bool svm_pid_is(pid_t pid, const char *comm);

/* Shared with local-host.c. */
/* Start time of PID (/proc/PID/stat field 22): tells a reused pid from ours. */
unsigned long long svm_pid_start_time(pid_t pid);
/* PID runs COMM, is not a zombie and (START != 0) started at START. */
bool svm_pid_alive_as(pid_t pid, const char *comm, unsigned long long start);
/* SIGTERM, up to TIMEOUT_S seconds, then SIGKILL; false if it does not go. */
bool svm_stop_pid(pid_t pid, const char *comm, unsigned long long start, int timeout_s);
/* Runs ARGV (NULL-terminated) and waits; its stderr goes into the error. */
bool svm_run(GError **errp, const char *const *argv);
#define SVM_RUN(errp, ...) svm_run(errp, (const char *const[]){ __VA_ARGS__, NULL })
bool svm_netns_exists(const char *ns);
bool svm_link_exists(const char *dev);
/* The last lines of a log file, for error messages. */
char *svm_log_tail(const char *path);
/*
 * Namespace NS joined to the root namespace by a veth pair: our end VETH
 * gets ROOT_CIDR, its peer (VETH + "n", inside NS) INNER_CIDR; lo is up.
 */
bool svm_veth_netns_add(const char *ns, const char *veth, const char *root_cidr,
                        const char *inner_cidr, GError **errp);
/* Deletes the pair and the namespace (either may be NULL or gone already). */
bool svm_veth_netns_delete(const char *ns, const char *veth, GError **errp);
/* Sets net.ipv4.conf.DEV.forwarding (only the interfaces the rack made). */
bool svm_link_forwarding(const char *dev, GError **errp);

#endif /* SVM_LOCAL_RACK_H */
