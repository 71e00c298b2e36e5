/*
 * splitvm: launch and watch split VMs (libvirt), run a local rack.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const SvmCommand commands[] = {
    { "launch", "SPEC", "define and start a split VM from a VM spec", svm_cmd_launch },
    { "ls", "", "list split VMs with budget, resident, remote and fault rate", svm_cmd_ls },
    { "stats", "VM", "show every pager and memory-server counter of a VM", svm_cmd_stats },
    { "set-budget", "VM SIZE", "change a VM's resident budget live", svm_cmd_set_budget },
    { "top", "", "live, refreshing view of all split VMs", svm_cmd_top },
    { "migrate", "VM HOST", "live-migrate a VM to another rack host", svm_cmd_migrate },
    { "destroy", "VM", "stop and undefine a VM, free its pages and secret", svm_cmd_destroy },
    { "rack", "up|down|status", "run a local rack (memory servers, libvirtd)", svm_cmd_rack },
};

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: splitvm COMMAND [OPTIONS] [ARGS]\n\n"
            "splitvm runs VMs whose RAM lives mostly on a rack's memory servers.\n\n"
            "Commands:\n");
    for (size_t i = 0; i < G_N_ELEMENTS(commands); i++) {
        g_autofree char *head = g_strdup_printf("%s %s", commands[i].name,
                                                commands[i].args);
        fprintf(out, "  %-26s %s\n", head, commands[i].summary);
    }
    fprintf(out,
            "\n`splitvm COMMAND --help` describes each command.  Every command takes\n"
            "--rack FILE (default $SPLITVM_RACK, else " SVM_DEFAULT_RACK_FILE ").\n"
            "Formats of rack files and VM specs: docs/config.md.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(commands); i++) {
        if (!strcmp(argv[1], commands[i].name)) {
            svm_cli_command = commands[i].name;
            return commands[i].run(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "splitvm: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
