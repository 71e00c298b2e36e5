/*
 * splitvm ls: the split VMs of the rack with budget, resident, remote and
 * fault rate.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdio.h>

#include "cli.h"
#include "vmstats.h"

static double opt_interval = 1.0;

static const GOptionEntry entries[] = {
    { "interval", 'i', 0, G_OPTION_ARG_DOUBLE, &opt_interval,
      "seconds between the two samples the fault rate comes from (0: no rate)", "S" },
    { NULL }
};

int svm_cmd_ls(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;

    if (!svm_cli_parse(&argc, &argv, "", "Lists the split VMs on the rack's hosts.",
                       "RESIDENT is guest RAM held locally (at most BUDGET), REMOTE is\n"
                       "what lives only on memory servers, FAULTS/S counts userfaultfd\n"
                       "faults the pager served per second.", entries, 0)) {
        return 2;
    }
    if (opt_interval < 0 || opt_interval > 60) {
        fprintf(stderr, "splitvm ls: --interval must be in 0..60\n");
        return 2;
    }
    g_autoptr(GPtrArray) conns = svm_cli_connections(&err);
    if (!conns) {
        return svm_cli_fail(err);
    }
    g_autoptr(GPtrArray) before = NULL;
    if (opt_interval > 0) {
        before = svm_vm_sample_all(conns);
        /* Measuring a rate, not waiting for a condition. */
        g_usleep((gulong)(opt_interval * G_USEC_PER_SEC));
    }
    g_autoptr(GPtrArray) now = svm_vm_sample_all(conns);
    svm_vm_print_table(now, before);
    return 0;
}
