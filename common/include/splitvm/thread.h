/*
 * Scheduling of splitvm's service threads.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SPLITVM_THREAD_H
#define SPLITVM_THREAD_H

/* Highest nice value (and increment) a service thread takes. */
#define SVM_THREAD_NICE_MAX 19

/* The calling thread's nice value (on Linux nice is per thread). */
int svm_thread_nice(void);

/*
 * Run the calling thread at nice `nice` (-20..19; only a privileged caller
 * may go below its current value).  0 or -errno.
 */
int svm_thread_set_nice(int nice);

/*
 * Lower the calling thread's priority by `increment` nice levels
 * (0..SVM_THREAD_NICE_MAX; the result is capped at 19).  0 or -errno.
 */
int svm_thread_lower_priority(int increment);

#endif
