/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "memservers.h"
#include "conf-file.h"
#include "secrets.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#ifdef SVM_HAVE_MEMCLIENT
#include "splitvm/memclient.h"
#include "splitvm/wire.h"
#endif

/* Waits for FD to be ready for EVENTS until DEADLINE (monotonic us). */
static int wait_fd(int fd, short events, gint64 deadline)
{
    struct pollfd pfd = { .fd = fd, .events = events };
    gint64 left = (deadline - g_get_monotonic_time()) / 1000;
    int rc = poll(&pfd, 1, left > 0 ? (int)left : 0);
    return rc < 0 ? errno : rc == 0 ? ETIMEDOUT : 0;
}

#ifdef SVM_HAVE_MEMCLIENT
/*
 * A memory server answers HELLO with its magic.  A bare TCP connect is not
 * proof: a transparent proxy or another service may accept it.
 */
static bool hello(int fd, gint64 deadline, GError **errp)
{
    uint8_t req[64], rep[256];
    size_t len = svm_wire_enc_hello_req(req, sizeof(req), 1, SVM_WIRE_VERSION_MIN,
                                        SVM_WIRE_VERSION_MAX);
    size_t got = 0;
    SvmWireHdr h;
    SvmWireHello hi;

    if (send(fd, req, len, MSG_NOSIGNAL) != (ssize_t)len) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "send: %s", g_strerror(errno));
        return false;
    }
    for (;;) {
        SvmWirePeek pk = svm_wire_peek(rep, got, &h);
        if (pk == SVM_PEEK_FRAME) {
            break;
        }
        int err = pk == SVM_PEEK_BAD || got == sizeof(rep) ? EPROTO
                                                            : wait_fd(fd, POLLIN, deadline);
        ssize_t n = err ? -1 : recv(fd, rep + got, sizeof(rep) - got, 0);
        if (n <= 0) {
            g_set_error(errp, SVM_ORCH_ERROR, 0, "no memory-server HELLO reply (%s)",
                        err ? g_strerror(err) : n == 0 ? "connection closed"
                                                       : g_strerror(errno));
            return false;
        }
        got += n;
    }
    if (h.op != SVM_OP_HELLO || h.status != SVM_ST_OK ||
        !svm_wire_dec_hello_rep(rep + SVM_WIRE_HDR_SIZE, h.len - SVM_WIRE_HDR_SIZE, &hi) ||
        hi.magic != SVM_WIRE_MAGIC) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "something answers, but not a splitvm "
                    "memory server (bad HELLO reply)");
        return false;
    }
    return true;
}
#endif

bool svm_memserver_reachable(const char *addr, unsigned timeout_ms, GError **errp)
{
    g_autofree char *host = NULL;
    g_autofree char *port = NULL;
    unsigned p;
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
    gint64 deadline = g_get_monotonic_time() + timeout_ms * 1000ll;

    if (!svm_parse_host_port(addr, &host, &p)) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "'%s' is not HOST:PORT", addr);
        return false;
    }
    port = g_strdup_printf("%u", p);
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "cannot resolve %s: %s", host,
                    gai_strerror(rc));
        return false;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int err = fd < 0 ? errno : 0;
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        err = errno;
        if (err == EINPROGRESS) {
            socklen_t len = sizeof(err);
            err = wait_fd(fd, POLLOUT, deadline);
            if (!err && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) {
                err = errno;
            }
        }
    }
    freeaddrinfo(ai);
    if (err) {
        if (fd >= 0) {
            close(fd);
        }
        g_set_error(errp, SVM_ORCH_ERROR, 0, "%s", g_strerror(err));
        return false;
    }
    bool ok = true;
#ifdef SVM_HAVE_MEMCLIENT
    ok = hello(fd, deadline, errp);
#endif
    close(fd);
    return ok;
}

bool svm_memservers_check_reachable(GPtrArray *servers, const char *transport,
                                    unsigned timeout_ms, GError **errp)
{
    for (guint i = 0; i < servers->len; i++) {
        SvmRackServer *s = servers->pdata[i];
        const char *addr = svm_rack_server_address(s, transport);
        g_autoptr(GError) err = NULL;

        if (!svm_memserver_reachable(addr, timeout_ms, &err)) {
            g_set_error(errp, SVM_ORCH_ERROR, 0,
                        "memory server %s (%s %s) is unreachable: %s%s", s->name,
                        transport, addr, err->message,
                        s->local ? " (is the local rack up? `splitvm rack up`)" : "");
            return false;
        }
    }
    return true;
}

char *svm_memserver_secrets_file(const SvmRack *rack, const char *server)
{
    g_autofree char *file = g_strdup_printf("memserver-%s.secrets", server);
    return g_build_filename(rack->secrets_dir, file, NULL);
}

static GKeyFile *secrets_file_load(const char *path, GError **errp)
{
    g_autoptr(GKeyFile) kf = g_key_file_new();
    g_autoptr(GError) err = NULL;

    if (!g_key_file_load_from_file(kf, path, G_KEY_FILE_KEEP_COMMENTS, &err) &&
        !g_error_matches(err, G_FILE_ERROR, G_FILE_ERROR_NOENT)) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "memory-server secrets file %s: %s", path,
                    err->message);
        return NULL;
    }
    return g_steal_pointer(&kf);
}

static bool secrets_file_save(GKeyFile *kf, const char *path, GError **errp)
{
    g_autofree char *text = g_key_file_to_data(kf, NULL, NULL);
    g_autoptr(GError) err = NULL;

    /* The server warns about (and we never want) group/other access. */
    if (!g_file_set_contents_full(path, text, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0600,
                                  &err)) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "cannot write %s: %s", path, err->message);
        return false;
    }
    return true;
}

/* Gives KF a random [admin] secret (for --stats) unless it has one. */
static bool secrets_add_admin(GKeyFile *kf, bool *added, GError **errp)
{
    unsigned char raw[32];

    *added = false;
    if (g_key_file_has_group(kf, "admin")) {
        return true;
    }
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "getrandom: %s", g_strerror(errno));
        return false;
    }
    g_autoptr(GString) hex = g_string_new(NULL);
    for (unsigned i = 0; i < sizeof(raw); i++) {
        g_string_append_printf(hex, "%02x", raw[i]);
    }
    g_key_file_set_string(kf, "admin", "secret-hex", hex->str);
    *added = true;
    return true;
}

bool svm_memserver_secrets_init(const SvmRack *rack, const SvmRackServer *s,
                                GError **errp)
{
    g_autofree char *path = svm_memserver_secrets_file(rack, s->name);
    g_autoptr(GKeyFile) kf = secrets_file_load(path, errp);
    bool added;

    if (!kf || !secrets_add_admin(kf, &added, errp)) {
        return false;
    }
    return !added || secrets_file_save(kf, path, errp);
}

bool svm_memservers_admit_vm(const SvmRack *rack, GPtrArray *servers,
                             const char *vm_id, const char *secret_file,
                             uint64_t memory, GError **errp)
{
    g_autofree char *secret = svm_secret_read(secret_file, errp);
    g_autofree char *group = g_strdup_printf("vm %s", vm_id);

    if (!secret) {
        return false;
    }
    for (guint i = 0; i < servers->len; i++) {
        SvmRackServer *s = servers->pdata[i];
        g_autofree char *path = svm_memserver_secrets_file(rack, s->name);
        g_autoptr(GKeyFile) kf = secrets_file_load(path, errp);
        bool added;
        if (!kf || !secrets_add_admin(kf, &added, errp)) {
            return false;
        }
        /* The key is the hex text itself: QEMU hands the pager that text. */
        g_key_file_set_string(kf, group, "secret", secret);
        g_autofree char *quota = g_strdup_printf("%" G_GUINT64_FORMAT, memory);
        g_key_file_set_string(kf, group, "quota", quota);
        if (!secrets_file_save(kf, path, errp)) {
            return false;
        }
    }
    return true;
}

bool svm_memservers_revoke_vm(const SvmRack *rack, GPtrArray *servers,
                              const char *vm_id, GError **errp)
{
    g_autofree char *group = g_strdup_printf("vm %s", vm_id);

    for (guint i = 0; i < servers->len; i++) {
        SvmRackServer *s = servers->pdata[i];
        g_autofree char *path = svm_memserver_secrets_file(rack, s->name);
        g_autoptr(GKeyFile) kf = secrets_file_load(path, errp);
        if (!kf) {
            return false;
        }
        if (g_key_file_has_group(kf, group)) {
            g_key_file_remove_group(kf, group, NULL);
            if (!secrets_file_save(kf, path, errp)) {
                return false;
            }
        }
    }
    return true;
}

/*
 * Runs `splitvm-memserver --stats` against S with its secrets file, as
 * admin or, with VM_ID, logged in as that VM; *out gets what it printed.
 */
static bool run_stats(const SvmRack *rack, const SvmRackServer *s, const char *transport,
                      const char *vm_id, char **out, GError **errp)
{
    g_autofree char *path = svm_memserver_secrets_file(rack, s->name);
    g_autofree char *err_text = NULL;
    g_autoptr(GError) err = NULL;
    int status;

    if (!rack->memserver_binary) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "%s: [rack] memserver-binary is not set",
                    rack->path);
        return false;
    }
    const char *argv[] = { rack->memserver_binary, "--stats",
                           svm_rack_server_address(s, transport), "--secrets", path,
                           "--timeout-ms", "3000",
                           vm_id ? "--vm" : NULL, vm_id, NULL };
    if (!g_spawn_sync(NULL, (char **)argv, NULL, 0, NULL, NULL, out, &err_text,
                      &status, &err)) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "cannot run %s: %s", argv[0], err->message);
        return false;
    }
    if (!g_spawn_check_wait_status(status, NULL)) {
        g_set_error(errp, SVM_ORCH_ERROR, 0, "%s", g_strstrip(err_text));
        return false;
    }
    return true;
}

GHashTable *svm_memserver_admin_stats(const SvmRack *rack, const SvmRackServer *s,
                                      const char *transport, GError **errp)
{
    g_autofree char *out = NULL;

    if (!run_stats(rack, s, transport, NULL, &out, errp)) {
        g_prefix_error(errp, "memory server %s: ", s->name);
        return NULL;
    }
    GHashTable *kv = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    g_auto(GStrv) lines = g_strsplit(out, "\n", -1);
    for (int i = 0; lines[i]; i++) {
        char *sp = strchr(lines[i], ' ');
        if (sp) {
            g_hash_table_insert(kv, g_strndup(lines[i], sp - lines[i]), g_strdup(sp + 1));
        }
    }
    return kv;
}

char **svm_memserver_local_args(const SvmRack *rack, const SvmRackServer *s,
                                GError **errp)
{
    g_autofree char *secrets = svm_memserver_secrets_file(rack, s->name);
    GPtrArray *a = g_ptr_array_new();

    if (!svm_memserver_secrets_init(rack, s, errp)) {
        g_ptr_array_free(a, TRUE);
        return NULL;
    }
    if (s->tcp) {
        g_ptr_array_add(a, g_strdup("--listen"));
        g_ptr_array_add(a, g_strdup(s->tcp));
    } else if (s->rdma) {
        /* One process serves one transport (docs/rdma.md). */
        g_ptr_array_add(a, g_strdup("--listen"));
        g_ptr_array_add(a, g_strdup(s->rdma));
        g_ptr_array_add(a, g_strdup("--transport"));
        g_ptr_array_add(a, g_strdup("rdma"));
    }
    g_ptr_array_add(a, g_strdup("--capacity"));
    g_ptr_array_add(a, g_strdup_printf("%" G_GUINT64_FORMAT, s->capacity));
    g_ptr_array_add(a, g_strdup("--secrets"));
    g_ptr_array_add(a, g_steal_pointer(&secrets));
    g_ptr_array_add(a, NULL);
    return (char **)g_ptr_array_free(a, FALSE);
}

bool svm_memserver_vm_pages(const SvmRack *rack, const SvmRackServer *s,
                            const char *transport, const char *vm_id, bool *exists,
                            uint64_t *npages, uint64_t *stored, GError **errp)
{
    g_autoptr(GHashTable) kv = svm_memserver_admin_stats(rack, s, transport, errp);
    g_autofree char *k_npages = g_strdup_printf("vm.%s.npages", vm_id);
    g_autofree char *k_stored = g_strdup_printf("vm.%s.pages_stored", vm_id);

    if (!kv) {
        return false;
    }
    const char *n = g_hash_table_lookup(kv, k_npages);
    const char *st = g_hash_table_lookup(kv, k_stored);
    *exists = n != NULL;
    *npages = n ? g_ascii_strtoull(n, NULL, 10) : 0;
    *stored = st ? g_ascii_strtoull(st, NULL, 10) : 0;
    return true;
}

bool svm_memserver_check_vm(const SvmRack *rack, const SvmRackServer *s,
                            const char *transport, const char *vm_id, GError **errp)
{
    g_autofree char *out = NULL;

    /* Logs in as the VM with the secret we gave the server: no attach, no pages. */
    return run_stats(rack, s, transport, vm_id, &out, errp);
}

#ifdef SVM_HAVE_MEMCLIENT
bool svm_memserver_free_vm(const SvmRack *rack, const SvmRackServer *s,
                           const char *transport, const char *vm_id,
                           const char *secret_file, GError **errp)
{
    bool exists;
    uint64_t npages, stored;

    if (!svm_memserver_vm_pages(rack, s, transport, vm_id, &exists, &npages, &stored,
                                errp)) {
        return false;
    }
    if (!exists) {
        return true;            /* nothing was ever stored there */
    }
    g_autofree char *secret = svm_secret_read(secret_file, errp);
    if (!secret) {
        return false;
    }
    SvmMemClientConfig cfg = {
        .address = svm_rack_server_address(s, transport),
        .transport = transport,
        .vm_id = vm_id,
        .secret = secret,
        .secret_len = strlen(secret),
        .npages = npages,       /* the namespace's own size: attach never shrinks */
        .timeout_ms = 3000,
        .reconnect_ms = 1000,
    };
    SvmMemClient *c = svm_memclient_connect(&cfg, errp);
    if (!c) {
        return false;
    }
    bool ok = svm_memclient_free_namespace(c, errp);
    svm_memclient_close(c);
    return ok;
}
#else
bool svm_memserver_free_vm(const SvmRack *rack, const SvmRackServer *s,
                           const char *transport, const char *vm_id,
                           const char *secret_file, GError **errp)
{
    g_set_error(errp, SVM_ORCH_ERROR, 0,
                "built without the memory-server client library (common/): "
                "cannot free %s's pages on %s", vm_id, s->name);
    return false;
}
#endif
