/*
 * `splitvm-memserver --stats ADDR`: fetch and print a server's statistics.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SPLITVM_MEMSERVER_STATSCLI_H
#define SPLITVM_MEMSERVER_STATSCLI_H

#include <glib.h>

/*
 * Authenticate as the admin (secret from the [admin] group of secrets_path)
 * or, with vm_id, as that VM; print "key value" lines on stdout.
 */
bool svm_statscli_run(const char *address, const char *secrets_path, const char *vm_id,
                      unsigned timeout_ms, GError **errp);

#endif /* SPLITVM_MEMSERVER_STATSCLI_H */
