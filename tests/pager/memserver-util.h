/*
 * Start/stop real splitvm-memserver processes on loopback for the pager's
 * integration tests.  The build passes the daemon's path in
 * SPLITVM_MEMSERVER; without it these tests skip (memserver not built).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef MEMSERVER_UTIL_H
#define MEMSERVER_UTIL_H

#include <arpa/inet.h>
#include <errno.h>
#include <glib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "splitvm/pager.h"

#define TEST_VM_ID "pager-test-vm"
#define TEST_SECRET "pager-test-secret-0123456789"

typedef struct SvmTestServer {
    GPid pid;
    int port;
    char *address;          /* "tcp:127.0.0.1:PORT" */
    char *backing;          /* file backing, or NULL for anonymous memory */
    char *secrets_file;
} SvmTestServer;

/*
 * A free port below the ephemeral range (32768+ on Linux): a client that
 * keeps reconnecting to a dead server on an ephemeral port can connect to
 * itself and steal the port before the restarted server binds it.
 */
static inline int svm_test_free_port(void)
{
    static unsigned seq;
    int base = 20000 + (getpid() * 61 + (int)seq++ * 127) % 12000;

    for (int k = 0; k < 12000; k++) {
        int port = 20000 + (base - 20000 + k) % 12000;
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        bool ok;

        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        close(fd);
        if (ok) {
            return port;
        }
    }
    g_error("no free TCP port in 20000..31999");
}

static inline bool svm_test_port_open(int port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;

    close(fd);
    return ok;
}

static inline uint64_t svm_test_now_ms(void)
{
    return (uint64_t)(g_get_monotonic_time() / 1000);
}

/* The daemon dies with the test, even when the test crashes. */
static void svm_test_child_setup(gpointer unused)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
}

/* Spawn (or respawn) the daemon on srv->port; waits until it accepts. */
static inline bool svm_test_server_spawn(SvmTestServer *srv)
{
    const char *bin = g_getenv("SPLITVM_MEMSERVER");
    g_autofree char *listen = g_strdup_printf("127.0.0.1:%d", srv->port);
    GPtrArray *argv = g_ptr_array_new();
    g_autoptr(GError) err = NULL;
    uint64_t deadline;
    bool ok;

    g_ptr_array_add(argv, (char *)bin);
    g_ptr_array_add(argv, "--listen");
    g_ptr_array_add(argv, listen);
    g_ptr_array_add(argv, "--secrets");
    g_ptr_array_add(argv, srv->secrets_file);
    g_ptr_array_add(argv, "--capacity");
    g_ptr_array_add(argv, "256M");
    g_ptr_array_add(argv, "--workers");
    g_ptr_array_add(argv, "1");
    g_ptr_array_add(argv, "--quiet");
    if (srv->backing) {
        g_ptr_array_add(argv, "--backing");
        g_ptr_array_add(argv, srv->backing);
    }
    g_ptr_array_add(argv, NULL);
    ok = g_spawn_async(NULL, (char **)argv->pdata, NULL,
                       G_SPAWN_DO_NOT_REAP_CHILD, svm_test_child_setup, NULL,
                       &srv->pid, &err);
    g_ptr_array_free(argv, TRUE);
    g_assert_no_error(err);
    deadline = svm_test_now_ms() + 10000;
    for (;;) {
        int status;

        if (waitpid(srv->pid, &status, WNOHANG) == srv->pid) {
            g_error("splitvm-memserver exited early (status 0x%x)", status);
        }
        if (svm_test_port_open(srv->port)) {
            break;
        }
        g_assert_cmpuint(svm_test_now_ms(), <, deadline);
        g_usleep(10000);    /* polling a condition with a deadline */
    }
    return ok;
}

static inline SvmTestServer *svm_test_server_start(const char *backing)
{
    const char *bin = g_getenv("SPLITVM_MEMSERVER");
    SvmTestServer *srv;
    g_autoptr(GError) err = NULL;
    g_autofree char *contents = NULL;
    int fd;

    if (!bin || !*bin) {
        return NULL;
    }
    srv = g_new0(SvmTestServer, 1);
    srv->port = svm_test_free_port();
    srv->address = g_strdup_printf("tcp:127.0.0.1:%d", srv->port);
    srv->backing = g_strdup(backing);
    fd = g_file_open_tmp("svm-pager-secrets-XXXXXX", &srv->secrets_file, &err);
    g_assert_no_error(err);
    close(fd);
    contents = g_strdup_printf("[vm %s]\nsecret=%s\n", TEST_VM_ID, TEST_SECRET);
    g_assert_true(g_file_set_contents(srv->secrets_file, contents, -1, NULL));
    g_assert_cmpint(chmod(srv->secrets_file, 0600), ==, 0);
    svm_test_server_spawn(srv);
    return srv;
}

/* Stop the daemon with `sig` (SIGTERM: it answers what it has read first). */
static inline void svm_test_server_signal(SvmTestServer *srv, int sig)
{
    if (srv->pid > 0) {
        kill(srv->pid, sig);
        waitpid(srv->pid, NULL, 0);
        g_spawn_close_pid(srv->pid);
        srv->pid = 0;
    }
}

static inline void svm_test_server_kill(SvmTestServer *srv)
{
    svm_test_server_signal(srv, SIGKILL);
}

static inline void svm_test_server_free(SvmTestServer *srv)
{
    svm_test_server_kill(srv);
    unlink(srv->secrets_file);
    g_free(srv->secrets_file);
    g_free(srv->address);
    g_free(srv->backing);
    g_free(srv);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SvmTestServer, svm_test_server_free)

static inline void svm_test_server_config(SvmTestServer *srv, SvmPagerConfig *cfg,
                                          const char **servers, unsigned n)
{
    cfg->servers = servers;
    cfg->nservers = n;
    cfg->vm_id = TEST_VM_ID;
    cfg->secret = TEST_SECRET;
    cfg->secret_len = strlen(TEST_SECRET);
}

#endif
