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
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "splitvm/thread.h"

/* PRIO_PROCESS with a thread id: that thread only (Linux). */
static pid_t this_thread(void)
{
    return (pid_t)syscall(SYS_gettid);
}

int svm_thread_nice(void)
{
    int nice;

    errno = 0;
    nice = getpriority(PRIO_PROCESS, this_thread());
    /* cannot fail for the caller itself; be safe anyway */
    return nice == -1 && errno ? 0 : nice;
}

int svm_thread_set_nice(int nice)
{
    if (nice < -20 || nice > SVM_THREAD_NICE_MAX) {
        return -EINVAL;
    }
    if (nice == svm_thread_nice()) {
        return 0;
    }
    return setpriority(PRIO_PROCESS, this_thread(), nice) < 0 ? -errno : 0;
}

int svm_thread_lower_priority(int increment)
{
    int nice;

    if (increment < 0 || increment > SVM_THREAD_NICE_MAX) {
        return -EINVAL;
    }
    nice = svm_thread_nice() + increment;
    return svm_thread_set_nice(nice > SVM_THREAD_NICE_MAX ? SVM_THREAD_NICE_MAX
                                                          : nice);
}
