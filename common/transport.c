/*
 * Transport registry and address parsing shared by all transports.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
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
