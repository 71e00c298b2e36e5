/*
 * Built-in transports (private to common/).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SPLITVM_TRANSPORT_INT_H
#define SPLITVM_TRANSPORT_INT_H

#include "splitvm/transport.h"

extern const SvmClientTransportOps svm_tcp_client_ops;
extern const SvmServerTransportOps svm_tcp_server_ops;
#ifdef SVM_HAVE_RDMA
extern const SvmClientTransportOps svm_rdma_client_ops;
extern const SvmServerTransportOps svm_rdma_server_ops;
#endif

#endif /* SPLITVM_TRANSPORT_INT_H */
