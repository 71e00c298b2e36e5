/*
 * splitvm set-budget VM SIZE: change how much of a running VM's RAM stays
 * resident on its host (QMP x-remote-memory-set-budget through libvirt).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "conf-file.h"
#include "domain-xml.h"
#include "size.h"
#include "vmstats.h"

int svm_cmd_set_budget(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(SvmVmInfo) info = NULL;
    uint64_t budget;
    char b1[32], b2[32];

    if (!svm_cli_parse(&argc, &argv, "VM SIZE",
                       "Sets the resident budget of the running split VM VM to SIZE.",
                       "SIZE is a size (512M, 1G) or a percentage of the VM's memory\n"
                       "(25%).  A lower budget evicts pages to the memory servers before\n"
                       "the command returns.  The change is live only: a restarted VM gets\n"
                       "the budget it was launched with.", NULL, 2)) {
        return 2;
    }
    g_autoptr(GPtrArray) conns = svm_cli_connections(&err);
    if (!conns) {
        return svm_cli_fail(err);
    }
    g_autoptr(virDomain) dom = svm_cli_find_vm(conns, argv[1], &info, &err);
    if (!dom) {
        return svm_cli_fail(err);
    }
    const char *arg = argv[2];
    if (g_str_has_suffix(arg, "%")) {
        char *end;
        double pct = g_ascii_strtod(arg, &end);
        if (end != arg + strlen(arg) - 1 || !(pct > 0 && pct <= 100)) {
            g_set_error(&err, SVM_ORCH_ERROR, 0, "'%s' is not a percentage in (0, 100]",
                        arg);
            return svm_cli_fail(err);
        }
        budget = (uint64_t)(info->memory * pct / 100.0) / (1 << 20) * (1 << 20);
    } else if (!svm_size_parse(arg, &budget)) {
        g_set_error(&err, SVM_ORCH_ERROR, 0,
                    "'%s' is neither a size (512M) nor a percentage (25%%)", arg);
        return svm_cli_fail(err);
    }
    if (budget < (16u << 20) || (info->memory && budget > info->memory)) {
        g_set_error(&err, SVM_ORCH_ERROR, 0,
                    "budget %s is outside 16 MiB..%s (the VM's memory)",
                    svm_size_format(budget, b1, sizeof(b1)),
                    svm_size_format(info->memory, b2, sizeof(b2)));
        return svm_cli_fail(err);
    }
    if (virDomainIsActive(dom) != 1) {
        g_set_error(&err, SVM_ORCH_ERROR, 0, "VM %s is not running", info->name);
        return svm_cli_fail(err);
    }
    g_autoptr(JsonObject) args = json_object_new();
    json_object_set_string_member(args, "id", info->backend);
    json_object_set_int_member(args, "budget", budget);
    g_autoptr(JsonNode) ret = svm_qmp(dom, "x-remote-memory-set-budget", args, &err);
    if (!ret) {
        return svm_cli_fail(err);
    }

    /* Keep the live <metadata> in step; the persistent definition keeps the
     * budget it was launched with (it is also on QEMU's command line). */
    g_autofree char *md = virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT,
                                               SVM_XMLNS, 0);
    g_autoptr(GRegex) re = g_regex_new("(<[A-Za-z0-9_]*:?budget>)[0-9]+<", 0, 0, NULL);
    g_autofree char *repl = g_strdup_printf("\\g<1>%" PRIu64 "<", budget);
    g_autofree char *updated = md ? g_regex_replace(re, md, -1, 0, repl, 0, NULL) : NULL;
    if (!updated ||
        virDomainSetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, updated, SVM_XMLNS_PREFIX,
                             SVM_XMLNS, VIR_DOMAIN_AFFECT_LIVE) < 0) {
        svm_cli_warn("budget changed, but updating the metadata failed: %s",
                     virGetLastErrorMessage());
    }
    info->budget = budget;
    g_autoptr(SvmVmSample) s = svm_vm_sample(dom, info);
    printf("%s: budget %s, resident %s\n", info->name,
           svm_size_format(s->raw ? s->budget : budget, b1, sizeof(b1)),
           s->raw ? svm_size_format(s->resident, b2, sizeof(b2)) : "?");
    return 0;
}
