/*
 * "rdma" transport: the UCX context of each role, resource discovery for
 * mode selection and error messages, and the TCP bootstrap framing.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uct/api/uct.h>
#include "splitvm/wire.h"
#include "rdma-int.h"

static pthread_mutex_t ctx_lock = PTHREAD_MUTEX_INITIALIZER;
static SvmRdmaContext *contexts[2];

uint64_t svm_rdma_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

const char *svm_rdma_mode_name(SvmRdmaMode mode)
{
    switch (mode) {
    case SVM_RDMA_MODE_NONE:        return "two-sided";
    case SVM_RDMA_MODE_EXTENT:      return "one-sided, per-extent keys";
    case SVM_RDMA_MODE_POOL:        return "one-sided, shared-memory pool";
    case SVM_RDMA_MODE_EMULATED:    return "one-sided, UCX software emulation (insecure)";
    }
    return "?";
}

bool svm_rdma_insecure_allowed(void)
{
    const char *v = getenv(SVM_RDMA_INSECURE_ENV);
    return v && !strcmp(v, "1");
}

char *svm_rdma_list_devices(void)
{
    uct_component_h *comps = NULL;
    unsigned ncomps = 0;
    GString *s = g_string_new(NULL);

    if (uct_query_components(&comps, &ncomps) != UCS_OK) {
        return g_string_free(s, FALSE);
    }
    for (unsigned i = 0; i < ncomps; i++) {
        uct_component_attr_t attr = {
            .field_mask = UCT_COMPONENT_ATTR_FIELD_NAME |
                          UCT_COMPONENT_ATTR_FIELD_MD_RESOURCE_COUNT,
        };
        if (uct_component_query(comps[i], &attr) != UCS_OK || !attr.md_resource_count) {
            continue;
        }
        g_autofree uct_md_resource_desc_t *mds =
            g_new0(uct_md_resource_desc_t, attr.md_resource_count);
        attr.field_mask = UCT_COMPONENT_ATTR_FIELD_MD_RESOURCES;
        attr.md_resources = mds;
        if (uct_component_query(comps[i], &attr) != UCS_OK) {
            continue;
        }
        for (unsigned m = 0; m < attr.md_resource_count; m++) {
            uct_md_config_t *cfg = NULL;
            uct_md_h md = NULL;
            uct_tl_resource_desc_t *res = NULL;
            unsigned nres = 0;
            if (uct_md_config_read(comps[i], NULL, NULL, &cfg) != UCS_OK) {
                continue;
            }
            if (uct_md_open(comps[i], mds[m].md_name, cfg, &md) == UCS_OK) {
                if (uct_md_query_tl_resources(md, &res, &nres) == UCS_OK) {
                    for (unsigned r = 0; r < nres; r++) {
                        g_string_append_printf(s, "%s%s/%s", s->len ? ", " : "",
                                               res[r].tl_name, res[r].dev_name);
                    }
                    uct_release_tl_resource_list(res);
                }
                uct_md_close(md);
            }
            uct_config_release(cfg);
        }
    }
    uct_release_component_list(comps);
    return g_string_free(s, FALSE);
}

/*
 * The transports a context uses, from ucp_context_print_info's
 * "resource N : md M dev D flags XX tl/dev" lines (UCX 1.13 has no query
 * call for them).
 */
static void context_resources(SvmRdmaContext *ctx, bool *has_tcp)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    GString *list = g_string_new(NULL);

    *has_tcp = false;
    if (f) {
        ucp_context_print_info(ctx->ucp, f);
        fclose(f);
    }
    g_auto(GStrv) lines = g_strsplit(buf ? buf : "", "\n", -1);
    free(buf);
    for (char **l = lines; *l; l++) {
        if (!strstr(*l, "resource") || !strstr(*l, " md ")) {
            continue;
        }
        const char *name = strrchr(*l, ' ');
        if (!name || !strchr(name, '/')) {
            continue;
        }
        name++;
        g_autofree char *tl = g_strndup(name, strchr(name, '/') - name);
        g_string_append_printf(list, "%s%s", list->len ? ", " : "", name);
        if (!strcmp(tl, "tcp")) {
            *has_tcp = true;
        } else if (!strcmp(tl, "posix") || !strcmp(tl, "sysv")) {
            ctx->has_shm_rma = true;
        } else if (g_str_has_prefix(tl, "rc") || g_str_has_prefix(tl, "dc") ||
                   !strcmp(tl, "xpmem") || !strcmp(tl, "knem")) {
            /* RDMA NICs (rc_verbs, rc_mlx5, dc_mlx5) and the kernel-assisted
             * shared-memory transports register any memory, one key each. */
            ctx->has_hw_rma = true;
        }
    }
    ctx->resources = g_string_free(list, FALSE);
}

static SvmRdmaContext *context_create(SvmRdmaRole role, GError **errp)
{
    SvmRdmaContext *ctx = g_new0(SvmRdmaContext, 1);
    ucp_config_t *cfg = NULL;
    const char *tls = getenv("UCX_TLS");
    const char *who = role == SVM_RDMA_SERVER ? "server" : "client";
    ucs_status_t st;

    ctx->role = role;
    ctx->insecure = svm_rdma_insecure_allowed();
    st = ucp_config_read(NULL, NULL, &cfg);
    if (st != UCS_OK) {
        g_autofree char *devs = svm_rdma_list_devices();
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "rdma %s: cannot read the UCX configuration: %s (UCX devices on this "
                    "host: %s)", who, ucs_status_string(st), *devs ? devs : "none");
        g_free(ctx);
        return NULL;
    }
    if (!tls && !ctx->insecure) {
        /* UCX's tcp transport would accept raw PUTs to any address of this
         * process from anyone who reaches its port: never by default. */
        ucp_config_modify(cfg, "TLS", "^tcp");
    }
    if (role == SVM_RDMA_SERVER) {
        /* The pool, when UCX allocates it, must be shared memory the
         * clients can map (never a private fallback). */
        ucp_config_modify(cfg, "ALLOC_PRIO", "md:sysv,md:posix");
    }

    ucp_params_t params = {
        .field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED |
                      UCP_PARAM_FIELD_NAME,
        .features = UCP_FEATURE_STREAM | UCP_FEATURE_AM | UCP_FEATURE_WAKEUP,
        .mt_workers_shared = 1,
        .name = role == SVM_RDMA_SERVER ? "splitvm-memserver" : "splitvm-client",
    };
    /*
     * The server only ever is the target of one-sided access: without
     * UCP_FEATURE_RMA its workers install no handlers for UCX's software
     * RMA emulation, which writes wherever a peer says, rkey or not.
     */
    if (role == SVM_RDMA_CLIENT || ctx->insecure) {
        params.features |= UCP_FEATURE_RMA;
    }
    st = ucp_init(&params, cfg, &ctx->ucp);
    ucp_config_release(cfg);
    if (st != UCS_OK) {
        g_autofree char *devs = svm_rdma_list_devices();
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "rdma %s: UCX cannot start with UCX_TLS=%s: %s (UCX devices on this "
                    "host: %s)", who, tls ? tls : "(unset: all but tcp)",
                    ucs_status_string(st), *devs ? devs : "none");
        g_free(ctx);
        return NULL;
    }
    bool has_tcp;
    context_resources(ctx, &has_tcp);
    if (has_tcp && !ctx->insecure) {
        g_autofree char *devs = svm_rdma_list_devices();
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                    "rdma %s: UCX_TLS=%s selects UCX's tcp transport, which lets any host "
                    "that reaches it write to arbitrary memory of this process; use the "
                    "'tcp' transport on Ethernet, or set %s=1 on a trusted test network "
                    "(UCX devices on this host: %s)", who, tls ? tls : "?",
                    SVM_RDMA_INSECURE_ENV, *devs ? devs : "none");
        ucp_cleanup(ctx->ucp);
        g_free(ctx->resources);
        g_free(ctx);
        return NULL;
    }
    if (!*ctx->resources) {
        g_autofree char *devs = svm_rdma_list_devices();
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "rdma %s: UCX found no usable transport with UCX_TLS=%s (UCX devices "
                    "on this host: %s)", who, tls ? tls : "(unset: all but tcp)",
                    *devs ? devs : "none");
        ucp_cleanup(ctx->ucp);
        g_free(ctx->resources);
        g_free(ctx);
        return NULL;
    }
    return ctx;
}

SvmRdmaContext *svm_rdma_context_new(SvmRdmaRole role, GError **errp)
{
    return context_create(role, errp);
}

void svm_rdma_context_free(SvmRdmaContext *ctx)
{
    if (ctx) {
        ucp_cleanup(ctx->ucp);
        g_free(ctx->resources);
        g_free(ctx);
    }
}

SvmRdmaContext *svm_rdma_context_get(SvmRdmaRole role, GError **errp)
{
    pthread_mutex_lock(&ctx_lock);
    SvmRdmaContext *ctx = contexts[role];
    if (!ctx) {
        ctx = context_create(role, errp);
        contexts[role] = ctx;
    }
    if (ctx) {
        ctx->refs++;
    }
    pthread_mutex_unlock(&ctx_lock);
    return ctx;
}

void svm_rdma_context_put(SvmRdmaContext *ctx)
{
    if (!ctx) {
        return;
    }
    pthread_mutex_lock(&ctx_lock);
    if (--ctx->refs == 0) {
        contexts[ctx->role] = NULL;
        svm_rdma_context_free(ctx);
    }
    pthread_mutex_unlock(&ctx_lock);
}

ucp_worker_h svm_rdma_worker_create(SvmRdmaContext *ctx, ucs_thread_mode_t mode,
                                    int *efd, GError **errp)
{
    ucp_worker_params_t wp = {
        .field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
        .thread_mode = mode,
    };
    ucp_worker_h w = NULL;
    ucs_status_t st = ucp_worker_create(ctx->ucp, &wp, &w);

    if (st == UCS_OK) {
        st = ucp_worker_get_efd(w, efd);
        if (st != UCS_OK) {
            ucp_worker_destroy(w);
            w = NULL;
        }
    }
    if (st != UCS_OK) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "rdma: cannot create a UCX worker over %s: %s", ctx->resources,
                    ucs_status_string(st));
        return NULL;
    }
    return w;
}

/* ---- bootstrap framing ---- */

void svm_rdma_boot_hdr_put(uint8_t *hdr, uint16_t status, uint32_t len)
{
    memcpy(hdr, SVM_RDMA_BOOT_MAGIC, 8);
    svm_put_le16(hdr + 8, SVM_RDMA_BOOT_VERSION);
    svm_put_le16(hdr + 10, status);
    svm_put_le32(hdr + 12, len);
}

bool svm_rdma_boot_hdr_parse(const uint8_t *hdr, uint16_t *status, uint32_t *len)
{
    if (memcmp(hdr, SVM_RDMA_BOOT_MAGIC, 8) ||
        svm_get_le16(hdr + 8) != SVM_RDMA_BOOT_VERSION) {
        return false;
    }
    *status = svm_get_le16(hdr + 10);
    *len = svm_get_le32(hdr + 12);
    return *len <= SVM_RDMA_BOOT_MAX_ADDR;
}

/* Wait until fd is ready for `events` or the deadline passes. */
static int wait_fd(int fd, short events, uint64_t deadline_ns)
{
    for (;;) {
        uint64_t now = svm_rdma_now_ns();
        if (now >= deadline_ns) {
            return -ETIMEDOUT;
        }
        struct pollfd pfd = { .fd = fd, .events = events };
        int rc = poll(&pfd, 1, (int)((deadline_ns - now + 999999) / 1000000));
        if (rc > 0) {
            return 0;
        }
        if (rc < 0 && errno != EINTR) {
            return -errno;
        }
    }
}

static int io_all(int fd, void *buf, size_t len, bool out, uint64_t deadline_ns)
{
    size_t done = 0;

    while (done < len) {
        ssize_t r = out ? send(fd, (char *)buf + done, len - done, MSG_NOSIGNAL | MSG_DONTWAIT)
                        : recv(fd, (char *)buf + done, len - done, MSG_DONTWAIT);
        if (r > 0) {
            done += (size_t)r;
            continue;
        }
        if (r == 0) {
            return -ECONNRESET;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno != EAGAIN) {
            return -errno;
        }
        int rc = wait_fd(fd, out ? POLLOUT : POLLIN, deadline_ns);
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

bool svm_rdma_boot_send(int fd, uint16_t status, const void *body, uint32_t len,
                        unsigned timeout_ms, GError **errp)
{
    uint8_t hdr[SVM_RDMA_BOOT_HDR];
    uint64_t deadline = svm_rdma_now_ns() + (uint64_t)timeout_ms * 1000000;

    svm_rdma_boot_hdr_put(hdr, status, len);
    int rc = io_all(fd, hdr, sizeof(hdr), true, deadline);
    if (rc == 0) {
        rc = io_all(fd, (void *)body, len, true, deadline);
    }
    if (rc < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-rc),
                    "rdma bootstrap: sending: %s", g_strerror(-rc));
        return false;
    }
    return true;
}

void *svm_rdma_boot_recv(int fd, uint16_t *status, uint32_t *len, unsigned timeout_ms,
                         GError **errp)
{
    uint8_t hdr[SVM_RDMA_BOOT_HDR];
    uint64_t deadline = svm_rdma_now_ns() + (uint64_t)timeout_ms * 1000000;

    int rc = io_all(fd, hdr, sizeof(hdr), false, deadline);
    if (rc < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-rc),
                    "rdma bootstrap: %s", rc == -ECONNRESET ?
                    "the peer closed the connection (is it an rdma memory server?)" :
                    g_strerror(-rc));
        return NULL;
    }
    if (!svm_rdma_boot_hdr_parse(hdr, status, len)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "rdma bootstrap: the peer does not speak the splitvm rdma bootstrap "
                    "(a tcp-transport memory server on that port?)");
        return NULL;
    }
    void *body = g_malloc(*len + 1);
    rc = io_all(fd, body, *len, false, deadline);
    if (rc < 0) {
        g_free(body);
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-rc),
                    "rdma bootstrap: %s", g_strerror(-rc));
        return NULL;
    }
    ((char *)body)[*len] = '\0';
    return body;
}

ucs_status_t svm_rdma_ep_create(SvmRdmaContext *ctx, ucp_worker_h w, const void *peer_addr,
                                void *user_data, ucp_err_handler_cb_t on_error, ucp_ep_h *ep,
                                bool *peer_mode)
{
    ucp_ep_params_t p = {
        .field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS |
                      UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE | UCP_EP_PARAM_FIELD_USER_DATA |
                      UCP_EP_PARAM_FIELD_ERR_HANDLER,
        .address = peer_addr,
        .err_mode = UCP_ERR_HANDLING_MODE_PEER,
        .err_handler = { .cb = on_error, .arg = user_data },
        .user_data = user_data,
    };
    ucs_status_t st = UCS_ERR_UNSUPPORTED;
    bool want_peer = ctx->has_hw_rma || (ctx->insecure && !ctx->has_shm_rma);
    if (want_peer) {
        st = ucp_ep_create(w, &p, ep);
    }
    *peer_mode = st == UCS_OK;
    if (st != UCS_OK) {
        p.err_mode = UCP_ERR_HANDLING_MODE_NONE;
        p.field_mask &= ~UCP_EP_PARAM_FIELD_ERR_HANDLER;
        st = ucp_ep_create(w, &p, ep);
    }
    return st;
}

void svm_rdma_ep_close(ucp_worker_h w, int efd, ucp_ep_h ep, bool peer_mode, bool force)
{
    ucp_request_param_t p = { 0 };

    if (force && peer_mode) {
        p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
        p.flags = UCP_EP_CLOSE_FLAG_FORCE;
    }
    ucs_status_t st = svm_rdma_wait(w, efd, ucp_ep_close_nbx(ep, &p),
                                    svm_rdma_now_ns() + 1000000000ull);
    if (st == UCS_ERR_TIMED_OUT && peer_mode && !force) {
        p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
        p.flags = UCP_EP_CLOSE_FLAG_FORCE;
        svm_rdma_wait(w, efd, ucp_ep_close_nbx(ep, &p), svm_rdma_now_ns() + 1000000000ull);
    }
    /* Otherwise (a flush that cannot finish without a dead peer, on a
     * transport without peer failure handling) the worker reclaims the
     * endpoint when it is destroyed. */
}

bool svm_rdma_idle(ucp_worker_h w, int efd, uint64_t spin_end_ns, uint64_t deadline_ns)
{
    if (ucp_worker_progress(w)) {
        return true;
    }
    uint64_t now = svm_rdma_now_ns();
    if (now >= deadline_ns) {
        return false;
    }
    if (now < spin_end_ns || efd < 0 || ucp_worker_arm(w) == UCS_ERR_BUSY) {
        return true;
    }
    struct pollfd pfd = { .fd = efd, .events = POLLIN };
    uint64_t ms = (deadline_ns - now) / 1000000 + 1;
    poll(&pfd, 1, (int)MIN(ms, 10));
    return true;
}

ucs_status_t svm_rdma_wait(ucp_worker_h w, int efd, void *req, uint64_t deadline_ns)
{
    if (req == NULL) {
        return UCS_OK;
    }
    if (UCS_PTR_IS_ERR(req)) {
        return UCS_PTR_STATUS(req);
    }
    uint64_t spin_end = svm_rdma_now_ns() + SVM_RDMA_SPIN_NS;
    ucs_status_t st;
    while ((st = ucp_request_check_status(req)) == UCS_INPROGRESS) {
        if (!svm_rdma_idle(w, efd, spin_end, deadline_ns)) {
            /* The caller gives up on the endpoint; the request is freed
             * when UCX completes it with an error. */
            ucp_request_free(req);
            return UCS_ERR_TIMED_OUT;
        }
    }
    ucp_request_free(req);
    return st;
}
