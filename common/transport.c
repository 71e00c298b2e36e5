/*
 * Transport registry and address parsing shared by all transports.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <unistd.h>
#include <netdb.h>
#include <string.h>
#include <sys/socket.h>
#include "splitvm/transport.h"
#include "transport-int.h"

static const SvmClientTransportOps *const client_transports[] = {
    &svm_tcp_client_ops,
#ifdef SVM_HAVE_RDMA
    &svm_rdma_client_ops,
#endif
};

static const SvmServerTransportOps *const server_transports[] = {
    &svm_tcp_server_ops,
#ifdef SVM_HAVE_RDMA
    &svm_rdma_server_ops,
#endif
};

const char *svm_transport_split(const char *spec, char **transport)
{
    static const char *const names[] = { "tcp", "rdma" };

    *transport = NULL;
    for (size_t i = 0; spec && i < G_N_ELEMENTS(names); i++) {
        size_t n = strlen(names[i]);
        if (!strncmp(spec, names[i], n) && spec[n] == ':') {
            *transport = g_strdup(names[i]);
            return spec + n + 1;
        }
    }
    return spec;
}

const SvmClientTransportOps *svm_client_transport_find(const char *name)
{
    for (size_t i = 0; i < G_N_ELEMENTS(client_transports); i++) {
        if (!strcmp(client_transports[i]->name, name ? name : "tcp")) {
            return client_transports[i];
        }
    }
    return NULL;
}

const SvmServerTransportOps *svm_server_transport_find(const char *name)
{
    for (size_t i = 0; i < G_N_ELEMENTS(server_transports); i++) {
        if (!strcmp(server_transports[i]->name, name ? name : "tcp")) {
            return server_transports[i];
        }
    }
    return NULL;
}

bool svm_addr_resolve(const char *address, bool passive,
                      struct sockaddr_storage *ss, socklen_t *sslen, GError **errp)
{
    g_autofree char *host = NULL;
    const char *port;

    if (!address || !*address) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "empty address");
        return false;
    }
    if (address[0] == '[') {
        const char *end = strchr(address, ']');
        if (!end || end[1] != ':') {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "address '%s': expected [IPV6]:PORT", address);
            return false;
        }
        host = g_strndup(address + 1, end - address - 1);
        port = end + 2;
    } else {
        const char *colon = strrchr(address, ':');
        if (!colon) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "address '%s': expected HOST:PORT", address);
            return false;
        }
        host = g_strndup(address, colon - address);
        port = colon + 1;
    }
    char *endp;
    unsigned long pnum = strtoul(port, &endp, 10);
    if (!*port || *endp || pnum > 65535) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "address '%s': bad port '%s'", address, port);
        return false;
    }

    struct addrinfo hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0),
    };
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(*host ? host : NULL, port, &hints, &res);
    if (rc != 0 || !res) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "address '%s': cannot resolve '%s': %s", address, host,
                    gai_strerror(rc));
        return false;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *sslen = res->ai_addrlen;
    freeaddrinfo(res);
    return true;
}

static bool sock_is_self_connect(int fd)
{
    struct sockaddr_storage local, peer;
    socklen_t llen = sizeof(local), plen = sizeof(peer);

    if (getsockname(fd, (struct sockaddr *)&local, &llen) < 0 ||
        getpeername(fd, (struct sockaddr *)&peer, &plen) < 0) {
        return false;
    }
    return llen == plen && memcmp(&local, &peer, llen) == 0;
}

int svm_sock_connect(const char *address, unsigned timeout_ms, GError **errp)
{
    struct sockaddr_storage ss;
    socklen_t sslen;

    if (!svm_addr_resolve(address, false, &ss, &sslen, errp)) {
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(errno),
                    "%s: socket: %s", address, g_strerror(errno));
        return -1;
    }
    int rc = connect(fd, (struct sockaddr *)&ss, sslen);
    if (rc < 0 && errno == EINPROGRESS) {
        struct pollfd pfd = { .fd = fd, .events = POLLOUT };
        do {
            rc = poll(&pfd, 1, (int)timeout_ms);
        } while (rc < 0 && errno == EINTR);
        if (rc == 0) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                        "%s: connect timed out after %u ms", address, timeout_ms);
            close(fd);
            return -1;
        }
        int soerr = 0;
        socklen_t l = sizeof(soerr);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &l);
        if (soerr) {
            errno = soerr;
            rc = -1;
        } else {
            rc = 0;
        }
    }
    if (rc < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(errno),
                    "%s: connect: %s", address, g_strerror(errno));
        close(fd);
        return -1;
    }
    if (sock_is_self_connect(fd)) {
        /*
         * Reconnecting to a dead server on loopback whose port lies in the
         * ephemeral range can pick that very port as our source port: TCP's
         * simultaneous open then "connects" us to ourselves, and we hold the
         * port the restarted server needs.  Treat it as the refusal it is.
         */
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED,
                    "%s: connect: %s", address, g_strerror(ECONNREFUSED));
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

int svm_sock_listen(const char *address, int *port, GError **errp)
{
    struct sockaddr_storage ss;
    socklen_t sslen;

    if (!svm_addr_resolve(address, true, &ss, &sslen, errp)) {
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(errno),
                    "listen %s: socket: %s", address, g_strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, sslen) < 0 || listen(fd, 1024) < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(errno),
                    "listen %s: %s", address, g_strerror(errno));
        close(fd);
        return -1;
    }
    struct sockaddr_storage bound;
    socklen_t blen = sizeof(bound);
    getsockname(fd, (struct sockaddr *)&bound, &blen);
    *port = ntohs(bound.ss_family == AF_INET6 ?
                  ((struct sockaddr_in6 *)&bound)->sin6_port :
                  ((struct sockaddr_in *)&bound)->sin_port);
    return fd;
}

void svm_sock_peer_name(const struct sockaddr_storage *ss, char *buf, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";

    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &s->sin_addr, host, sizeof(host));
        g_snprintf(buf, cap, "%s:%u", host, ntohs(s->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof(host));
        g_snprintf(buf, cap, "[%s]:%u", host, ntohs(s->sin6_port));
    } else {
        g_strlcpy(buf, "?", cap);
    }
}
