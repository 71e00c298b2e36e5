/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "size.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool svm_size_parse(const char *text, uint64_t *out)
{
    char *end;
    unsigned shift = 0;

    if (!text || !isdigit((unsigned char)text[0])) {
        return false;
    }
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno) {
        return false;
    }
    switch (toupper((unsigned char)*end)) {
    case 'K': shift = 10; end++; break;
    case 'M': shift = 20; end++; break;
    case 'G': shift = 30; end++; break;
    case 'T': shift = 40; end++; break;
    case 'B': break;
    case '\0': break;
    default: return false;
    }
    if (shift && (!strcasecmp(end, "iB") || !strcasecmp(end, "B"))) {
        end += strlen(end);
    } else if (!shift && !strcasecmp(end, "B")) {
        end++;
    }
    if (*end) {
        return false;
    }
    if (shift && v > (UINT64_MAX >> shift)) {
        return false;
    }
    *out = (uint64_t)v << shift;
    return true;
}

const char *svm_size_format(uint64_t bytes, char *buf, unsigned buflen)
{
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    unsigned u = 0;
    double v = bytes;

    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u == 0) {
        snprintf(buf, buflen, "%llu B", (unsigned long long)bytes);
    } else if (v == (double)(uint64_t)v) {
        snprintf(buf, buflen, "%llu %s", (unsigned long long)v, units[u]);
    } else {
        snprintf(buf, buflen, "%.1f %s", v, units[u]);
    }
    return buf;
}
