/*
 * The <emulator> of a rack host.  libvirt runs it (also to probe its
 * capabilities) with a scrubbed environment, so a QEMU that finds
 * libsplitvm only through LD_LIBRARY_PATH (the host's library-path) gets a
 * small wrapper script that sets it and execs the real binary.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SVM_EMULATOR_H
#define SVM_EMULATOR_H

#include <glib.h>

#include "rack-config.h"

/* The path to put in <emulator>: the host's emulator, or its wrapper in
 * <state-dir>/bin/HOST/ (written when missing or different). */
char *svm_host_emulator(const SvmRack *rack, const SvmRackHost *host, GError **errp);

#endif /* SVM_EMULATOR_H */
