/*
 * Scheduling of splitvm's service threads (pager, memory clients).
 *
 * Why nice them: these threads do work for vCPU threads, and when they share
 * a CPU with one, the fair scheduler splits it evenly; a read-ahead
 * completion that preempts a running vCPU delays the very guest it serves.
 * A lower priority lets the vCPU run first while it can, and costs nothing
 * when the vCPU is blocked on a page (then it is not competing).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <glib.h>

#include "splitvm/thread.h"

int svm_thread_lower_priority(int increment, const char *who)
{
    static atomic_bool refusal_told;
    /* PRIO_PROCESS with a thread id: that thread only (Linux) */
    pid_t tid = (pid_t)syscall(SYS_gettid);
    int nice, err;

    if (increment < 0 || increment > SVM_THREAD_NICE_MAX) {
        return -EINVAL;
    }
    if (increment == 0) {
        return 0;
    }
    errno = 0;
    nice = getpriority(PRIO_PROCESS, tid);
    if (nice == -1 && errno) {
        err = errno;
    } else {
        nice += increment;
        if (nice > SVM_THREAD_NICE_MAX) {
            nice = SVM_THREAD_NICE_MAX;
        }
        if (setpriority(PRIO_PROCESS, tid, nice) == 0) {
            return 0;
        }
        err = errno;
    }
    /*
     * It only costs the vCPUs some CPU time: go on, and say so once per
     * process (QEMU's -sandbox resourcecontrol=deny, which libvirt sets,
     * refuses it with EPERM for every thread).
     */
    if (!atomic_exchange(&refusal_told, true)) {
        g_warning("%s: cannot lower its priority by %d: %s; splitvm's service "
                  "threads keep their priority", who, increment, g_strerror(err));
    }
    return -err;
}
