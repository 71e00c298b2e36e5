/*
 * splitvm top: the ls table, refreshed in place until interrupted.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "vmstats.h"

static double opt_interval = 1.0;
static int opt_iterations;

static const GOptionEntry entries[] = {
    { "interval", 'i', 0, G_OPTION_ARG_DOUBLE, &opt_interval,
      "seconds between refreshes (default 1)", "S" },
    { "iterations", 'n', 0, G_OPTION_ARG_INT, &opt_iterations,
      "stop after N refreshes (default: until Ctrl-C)", "N" },
    { NULL }
};

/*
 * Waits SECONDS or until SIGINT/SIGTERM (blocked in QUIT); true on a signal.
 * g_usleep would restart after the signal and sit out the whole interval.
 */
static bool wait_quit(const sigset_t *quit, double seconds)
{
    gint64 end = g_get_monotonic_time() + (gint64)(seconds * G_USEC_PER_SEC);

    for (;;) {
        gint64 left = end - g_get_monotonic_time();
        if (left <= 0) {
            return false;
        }
        struct timespec ts = { left / G_USEC_PER_SEC, left % G_USEC_PER_SEC * 1000 };
        if (sigtimedwait(quit, NULL, &ts) >= 0) {
            return true;
        }
        if (errno != EINTR) {
            return false;       /* EAGAIN: the interval is over */
        }
    }
}

int svm_cmd_top(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;

    if (!svm_cli_parse(&argc, &argv, "",
                       "Shows the split VMs of the rack, refreshed every interval.",
                       "Columns as in `splitvm ls`.  On a terminal the view is redrawn\n"
                       "in place; otherwise one table per refresh is printed.",
                       entries, 0)) {
        return 2;
    }
    if (opt_interval < 0.1 || opt_interval > 3600 || opt_iterations < 0) {
        fprintf(stderr, "splitvm top: --interval must be in 0.1..3600, "
                "--iterations >= 0\n");
        return 2;
    }
    /* Held pending while sampling, taken by wait_quit(); blocked
     * before libvirt could start a thread that would take them instead. */
    sigset_t quit;
    sigemptyset(&quit);
    sigaddset(&quit, SIGINT);
    sigaddset(&quit, SIGTERM);
    sigprocmask(SIG_BLOCK, &quit, NULL);
    g_autoptr(GPtrArray) conns = svm_cli_connections(&err);
    if (!conns) {
        return svm_cli_fail(err);
    }
    bool tty = isatty(STDOUT_FILENO);
    g_autoptr(GPtrArray) before = svm_vm_sample_all(conns);
    for (int i = 0; opt_iterations == 0 || i < opt_iterations; i++) {
        if (wait_quit(&quit, opt_interval)) {
            break;
        }
        GPtrArray *now = svm_vm_sample_all(conns);
        char when[16];
        time_t t = time(NULL);
        strftime(when, sizeof(when), "%H:%M:%S", localtime(&t));
        if (tty) {
            printf("\033[H\033[2J");
        }
        printf("splitvm top - %s - every %.1fs%s\n", when, opt_interval,
               tty ? " - Ctrl-C quits" : "");
        svm_vm_print_table(now, before);
        fflush(stdout);
        g_ptr_array_unref(before);
        before = now;
    }
    return 0;
}
