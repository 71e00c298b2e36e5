/*
 * Scheduling of splitvm's service threads.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SPLITVM_THREAD_H
#define SPLITVM_THREAD_H

/* Highest nice value (and increment) a service thread takes. */
#define SVM_THREAD_NICE_MAX 19

/*
 * Lower the calling thread's priority by `increment` nice levels
 * (0..SVM_THREAD_NICE_MAX; the result is capped at 19; 0 does nothing).
 * On Linux nice is per thread, so only the caller is affected.  0 or
 * -errno; the first refusal by the kernel in a process is logged (a
 * warning naming `who`), the thread then runs on at its priority.
 */
int svm_thread_lower_priority(int increment, const char *who);

#endif
