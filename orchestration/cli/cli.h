/*
 * The splitvm CLI: one file per subcommand (kvmtool style), each with its
 * own --help; common.c holds what they share (the rack, connections).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SVM_CLI_H
#define SVM_CLI_H

#include <stdbool.h>
#include <glib.h>
#include <libvirt/libvirt.h>

#include "rack-config.h"
#include "virt.h"

typedef struct SvmCommand {
    const char *name;
    const char *args;           /* e.g. "SPEC" */
    const char *summary;
    int (*run)(int argc, char **argv);
} SvmCommand;

int svm_cmd_launch(int argc, char **argv);
int svm_cmd_ls(int argc, char **argv);
int svm_cmd_stats(int argc, char **argv);
int svm_cmd_set_budget(int argc, char **argv);
int svm_cmd_top(int argc, char **argv);
int svm_cmd_destroy(int argc, char **argv);
int svm_cmd_migrate(int argc, char **argv);
int svm_cmd_rack(int argc, char **argv);

/* Set by each command before anything else, used in messages. */
extern const char *svm_cli_command;

/*
 * Parses argv with ENTRIES plus the common options (--rack, --connect).
 * Exactly NARGS positional arguments must remain (nargs < 0: any number).
 * Prints the error and usage and returns false on bad usage.
 */
bool svm_cli_parse(int *argc, char ***argv, const char *params, const char *summary,
                   const char *description, const GOptionEntry *entries, int nargs);

/* Prints "splitvm CMD: error: MESSAGE" and returns 1. */
int svm_cli_fail(GError *err);
void svm_cli_warn(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

/* The rack file given by --rack, $SPLITVM_RACK or the default. */
SvmRack *svm_cli_rack(GError **errp);
const char *svm_cli_rack_path(void);

/*
 * The libvirt connections the VM commands work on: --connect URI, else
 * every host of the rack.  Each item is an open virConnectPtr.
 */
GPtrArray *svm_cli_connections(GError **errp);

/* Finds a split VM by name on those connections. */
virDomainPtr svm_cli_find_vm(GPtrArray *conns, const char *name, SvmVmInfo **info,
                             GError **errp);

#endif /* SVM_CLI_H */
