/*
 * Sizes as people write them: "4096", "512M", "1GiB", "2T".
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SVM_SIZE_H
#define SVM_SIZE_H

#include <stdbool.h>
#include <stdint.h>

/* Bytes, or an integer with K/M/G/T (powers of 1024), optionally followed by
 * "iB" or "B"; case-insensitive.  False on anything else or on overflow. */
bool svm_size_parse(const char *text, uint64_t *out);

/* "1.5 GiB", "256 MiB", "4096 B" into buf (at least 16 bytes). */
const char *svm_size_format(uint64_t bytes, char *buf, unsigned buflen);

#endif /* SVM_SIZE_H */
