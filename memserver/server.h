/*
 * splitvm-memserver worker threads: one transport poll group each.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SPLITVM_MEMSERVER_SERVER_H
#define SPLITVM_MEMSERVER_SERVER_H

#include "session.h"

typedef struct SvmServer SvmServer;

SvmServer *svm_server_start(SvmServerCtx *ctx, const char *transport, const char *listen,
                            unsigned workers, GError **errp);
int svm_server_port(SvmServer *srv);
/* Close every connection, join the workers and free srv. */
void svm_server_stop(SvmServer *srv);

#endif /* SPLITVM_MEMSERVER_SERVER_H */
