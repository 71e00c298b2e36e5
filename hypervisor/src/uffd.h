/*
 * Thin userfaultfd wrappers.  All return 0 or -errno.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SVM_UFFD_H
#define SVM_UFFD_H

#include <stdbool.h>
#include <stdint.h>
#include <linux/userfaultfd.h>

/* Not in Linux 6.1 headers (Debian 12); the kernel may still support it. */
#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP ((__u64)1 << 1)
#endif

/*
 * Open a userfaultfd that also sees kernel-mode faults (KVM's GUP,
 * syscalls): through /dev/userfaultfd first, then the syscall.
 * Non-blocking, close-on-exec.  *how names the way it was opened.
 */
int svm_uffd_open(const char **how);
/* UFFDIO_API; fails naming the first missing feature bit in *missing. */
int svm_uffd_api(int uffd, uint64_t want, uint64_t *got);
int svm_uffd_register(int uffd, void *addr, uint64_t len, uint64_t modes,
                      uint64_t *ioctls);
int svm_uffd_unregister(int uffd, void *addr, uint64_t len);
int svm_uffd_copy(int uffd, void *dst, const void *src, uint64_t len, bool wp);
/* Same, and *copied says how many bytes went in (also on an error). */
int svm_uffd_copy_some(int uffd, void *dst, const void *src, uint64_t len,
                       bool wp, uint64_t *copied);
int svm_uffd_continue(int uffd, void *addr, uint64_t len, bool wp);
int svm_uffd_writeprotect(int uffd, void *addr, uint64_t len, bool wp,
                          bool dontwake);
int svm_uffd_wake(int uffd, void *addr, uint64_t len);

#endif
