/*
 * Stats client of splitvm-memserver (see statscli.h).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdio.h>
#include "splitvm/clientproto.h"
#include "config.h"
#include "statscli.h"

/* Upper bound (ns) of the histogram bucket holding quantile q. */
static uint64_t hist_quantile(const uint64_t *hist, double q)
{
    uint64_t total = 0, acc = 0;
    for (unsigned i = 0; i < SVM_WIRE_HIST_BUCKETS; i++) {
        total += hist[i];
    }
    if (!total) {
        return 0;
    }
    for (unsigned i = 0; i < SVM_WIRE_HIST_BUCKETS; i++) {
        acc += hist[i];
        if ((double)acc >= q * (double)total) {
            return UINT64_C(2) << i;
        }
    }
    return UINT64_C(2) << (SVM_WIRE_HIST_BUCKETS - 1);
}

bool svm_statscli_run(const char *address, const char *secrets_path, const char *vm_id,
                      unsigned timeout_ms, GError **errp)
{
    g_autoptr(SvmSecrets) secrets = svm_secrets_load(secrets_path, errp);
    g_autofree char *tname = NULL;
    const char *addr = svm_transport_split(address, &tname);     /* [tcp:|rdma:]HOST:PORT */
    const SvmClientTransportOps *ops = svm_client_transport_find(tname ? tname : "tcp");
    SvmProtoLogin login = { .address = addr, .timeout_ms = timeout_ms };

    if (!secrets) {
        return false;
    }
    if (!ops) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "%s: transport '%s' is not built in", address, tname);
        return false;
    }
    if (vm_id) {
        const SvmVmSecret *v = svm_secrets_lookup(secrets, vm_id);
        if (!v) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                        "%s: no [vm %s] group", secrets_path, vm_id);
            return false;
        }
        login.role = SVM_ROLE_VM;
        login.id = vm_id;
        login.secret = v->secret;
        login.secret_len = v->secret_len;
    } else {
        if (!secrets->admin_secret) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                        "%s: no [admin] group (or pass --vm ID to see one VM's stats)",
                        secrets_path);
            return false;
        }
        login.role = SVM_ROLE_ADMIN;
        login.id = "admin";
        login.secret = secrets->admin_secret;
        login.secret_len = secrets->admin_secret_len;
    }
    SvmClientConn *conn = svm_proto_login(ops, &login, NULL, errp);
    if (!conn) {
        return false;
    }
    uint8_t req[64];
    g_autofree uint8_t *rep = g_malloc(SVM_WIRE_MAX_FRAME);
    size_t len = svm_wire_enc_stats_req(req, sizeof(req), 1,
                                        vm_id ? 0 : SVM_STATS_F_NAMESPACES);
    len = svm_proto_call(ops, conn, req, len, rep, SVM_WIRE_MAX_FRAME, timeout_ms, errp);
    ops->close(conn);
    SvmWireStats st;
    if (!len) {
        return false;
    }
    if (!svm_wire_dec_stats_rep(rep + SVM_WIRE_HDR_SIZE, len - SVM_WIRE_HDR_SIZE, &st)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "%s: malformed STATS reply", address);
        return false;
    }
    const uint64_t *f = st.field;
    printf("server.address %s\n", address);
    printf("server.uptime_s %.1f\n", f[SVM_SF_UPTIME_MS] / 1000.0);
    printf("server.capacity_pages %" G_GUINT64_FORMAT "\n", f[SVM_SF_SERVER_CAPACITY_PAGES]);
    printf("server.pages_stored %" G_GUINT64_FORMAT "\n", f[SVM_SF_SERVER_PAGES_STORED]);
    printf("server.namespaces %" G_GUINT64_FORMAT "\n", f[SVM_SF_NAMESPACES]);
    printf("server.connections %" G_GUINT64_FORMAT "\n", f[SVM_SF_CONNECTIONS]);
    printf("server.requests %" G_GUINT64_FORMAT "\n", f[SVM_SF_REQUESTS]);
    printf("server.errors %" G_GUINT64_FORMAT "\n", f[SVM_SF_ERRORS]);
    printf("server.bytes_in %" G_GUINT64_FORMAT "\n", f[SVM_SF_BYTES_IN]);
    printf("server.bytes_out %" G_GUINT64_FORMAT "\n", f[SVM_SF_BYTES_OUT]);
    printf("server.metadata_bytes %" G_GUINT64_FORMAT "\n", f[SVM_SF_METADATA_BYTES]);
    if (f[SVM_SF_SERVER_PAGES_STORED]) {
        printf("server.metadata_ratio %.5f\n", (double)f[SVM_SF_METADATA_BYTES] /
               ((double)f[SVM_SF_SERVER_PAGES_STORED] * SVM_WIRE_PAGE_SIZE));
    }
    printf("latency.service_p50_us_max %.3f\n", hist_quantile(st.hist, 0.5) / 1000.0);
    printf("latency.service_p99_us_max %.3f\n", hist_quantile(st.hist, 0.99) / 1000.0);
    for (unsigned i = 0; i < SVM_WIRE_HIST_BUCKETS; i++) {
        if (st.hist[i]) {
            printf("latency.hist_ns[%" G_GUINT64_FORMAT ",%" G_GUINT64_FORMAT ") %"
                   G_GUINT64_FORMAT "\n", UINT64_C(1) << i, UINT64_C(2) << i, st.hist[i]);
        }
    }
    if (vm_id) {
        printf("vm.%s.npages %" G_GUINT64_FORMAT "\n", vm_id, f[SVM_SF_NS_NPAGES]);
        printf("vm.%s.pages_stored %" G_GUINT64_FORMAT "\n", vm_id, f[SVM_SF_NS_PAGES_STORED]);
        printf("vm.%s.quota_pages %" G_GUINT64_FORMAT "\n", vm_id, f[SVM_SF_NS_QUOTA_PAGES]);
    }
    for (uint32_t i = 0; i < st.nns; i++) {
        SvmWireStatsNs ns;
        svm_wire_stats_ns_at(&st, i, &ns);
        printf("vm.%s.npages %" G_GUINT64_FORMAT "\n", ns.id, ns.npages);
        printf("vm.%s.pages_stored %" G_GUINT64_FORMAT "\n", ns.id, ns.pages_stored);
        printf("vm.%s.quota_pages %" G_GUINT64_FORMAT "\n", ns.id, ns.quota_pages);
        printf("vm.%s.requests %" G_GUINT64_FORMAT "\n", ns.id, ns.requests);
    }
    fflush(stdout);
    return true;
}
