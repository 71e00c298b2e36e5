/*
 * splitvm destroy VM: stop and undefine a split VM, free its pages on the
 * memory servers and remove its secret.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "conf-file.h"
#include "memservers.h"
#include "secrets.h"

/* Frees the VM's pages on every server and drops its secret; keeps going
 * after a failure so as much as possible is cleaned up. */
static bool release(const SvmRack *rack, const char *vm_id, const char *secret_file,
                    const char *transport, char **names, GError **errp)
{
    g_autoptr(GPtrArray) servers = g_ptr_array_new();
    bool ok = true;

    for (int i = 0; names[i]; i++) {
        SvmRackServer *s = svm_rack_find_server(rack, names[i]);
        if (!s) {
            svm_cli_warn("memory server %s is not in rack %s (%s): %s's pages on it "
                         "are not freed", names[i], rack->name, rack->path, vm_id);
            ok = false;
            continue;
        }
        g_autoptr(GError) err = NULL;
        if (!svm_memserver_free_vm(rack, s, svm_rack_server_transport(s, transport),
                                   vm_id, secret_file, &err)) {
            svm_cli_warn("memory server %s: could not free %s's pages: %s", s->name,
                         vm_id, err->message);
            ok = false;
            continue;
        }
        g_ptr_array_add(servers, s);
    }
    g_autoptr(GError) err = NULL;
    if (!svm_memservers_revoke_vm(rack, servers, vm_id, &err)) {
        svm_cli_warn("%s", err->message);
        ok = false;
    }
    if (!ok) {
        g_set_error(errp, SVM_ORCH_ERROR, 0,
                    "%s's pages could not be freed on every memory server; its secret "
                    "%s is kept so `splitvm destroy %s` can retry", vm_id, secret_file,
                    vm_id);
        return false;
    }
    return svm_secret_remove(secret_file, errp);
}

/* No such domain: clean up what a --dry-run or a failed launch left. */
static int destroy_leftovers(const char *name)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(SvmRack) rack = svm_cli_rack(&err);

    if (!rack) {
        g_prefix_error(&err, "no VM named '%s', and ", name);
        return svm_cli_fail(err);
    }
    g_autofree char *secret = svm_secret_path(rack, name);
    if (access(secret, F_OK) != 0) {
        g_set_error(&err, SVM_ORCH_ERROR, 0, "no VM named '%s' (see `splitvm ls`)", name);
        return svm_cli_fail(err);
    }
    g_autoptr(GPtrArray) names = g_ptr_array_new();
    for (guint i = 0; i < rack->servers->len; i++) {
        g_ptr_array_add(names, ((SvmRackServer *)rack->servers->pdata[i])->name);
    }
    g_ptr_array_add(names, NULL);
    if (!release(rack, name, secret, "tcp", (char **)names->pdata, &err)) {
        return svm_cli_fail(err);
    }
    printf("%s: not defined; freed its pages and removed its secret\n", name);
    return 0;
}

int svm_cmd_destroy(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(SvmVmInfo) info = NULL;

    if (!svm_cli_parse(&argc, &argv, "VM",
                       "Stops the split VM VM at once, undefines it, frees its pages on "
                       "the memory servers and removes its secret.",
                       "Also cleans up a VM that was only prepared (launch --dry-run)\n"
                       "or is no longer defined, from the rack's secrets directory.",
                       NULL, 1)) {
        return 2;
    }
    const char *name = argv[1];
    g_autoptr(GPtrArray) conns = svm_cli_connections(&err);
    if (!conns) {
        return svm_cli_fail(err);
    }
    virDomainPtr dom = NULL;
    for (guint i = 0; i < conns->len && !dom; i++) {
        virResetLastError();
        dom = virDomainLookupByName(conns->pdata[i], name);
    }
    if (!dom) {
        return destroy_leftovers(name);
    }
    g_autoptr(virDomain) dom_owned = dom;
    info = svm_vm_info_get(dom, &err);
    if (!info) {
        if (!err) {
            g_set_error(&err, SVM_ORCH_ERROR, 0,
                        "domain '%s' is not a split VM; use virsh for it", name);
        }
        return svm_cli_fail(err);
    }
    if (virDomainIsActive(dom) == 1 && virDomainDestroy(dom) < 0) {
        svm_virt_error(&err, "cannot stop %s", name);
        return svm_cli_fail(err);
    }
    if (virDomainIsPersistent(dom) == 1 && virDomainUndefine(dom) < 0) {
        svm_virt_error(&err, "cannot undefine %s", name);
        return svm_cli_fail(err);
    }
    /* The rack file it was launched from names its servers' secrets files. */
    g_autoptr(SvmRack) rack = svm_rack_load(info->rack_file ? info->rack_file
                                                            : svm_cli_rack_path(), &err);
    if (!rack) {
        g_prefix_error(&err, "%s is stopped and undefined, but its pages cannot be "
                       "freed: ", name);
        return svm_cli_fail(err);
    }
    if (!release(rack, info->vm_id, info->secret_file, info->transport,
                 info->server_names, &err)) {
        return svm_cli_fail(err);
    }
    printf("%s: destroyed; its pages on %u memory server%s are freed\n", name,
           g_strv_length(info->server_names),
           g_strv_length(info->server_names) == 1 ? "" : "s");
    return 0;
}
