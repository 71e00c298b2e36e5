/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Helpers shared by the C benchmarks (netbench, faultbench): blocking TCP
 * sockets for the raw request/response floor, and timing.
 */
#ifndef SPLITVM_BENCHUTIL_H
#define SPLITVM_BENCHUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t bench_now_ns(void);

/* qsort() comparator for uint64_t. */
int bench_cmp_u64(const void *a, const void *b);

/*
 * svm_sock_connect() / svm_sock_listen(), but blocking: the raw floor is
 * plain blocking send/recv, one thread per connection.  -1 + errp.
 */
int bench_tcp_connect(const char *address, GError **errp);
int bench_tcp_listen(const char *address, GError **errp);

/* Send / receive all @len bytes; false on error or EOF. */
bool bench_send_full(int fd, const void *buf, size_t len);
bool bench_recv_full(int fd, void *buf, size_t len);

#endif /* SPLITVM_BENCHUTIL_H */
