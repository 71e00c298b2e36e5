/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "rack-config.h"
#include "conf-file.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

static void host_free(gpointer p)
{
    SvmRackHost *h = p;
    g_free(h->name);
    g_free(h->libvirt_uri);
    g_free(h->emulator);
    g_free(h->library_path);
    g_free(h->address);
    g_free(h->veth);
    g_free(h->dir);
    g_free(h);
}

static void server_free(gpointer p)
{
    SvmRackServer *s = p;
    g_free(s->name);
    g_free(s->tcp);
    g_free(s->rdma);
    g_free(s->veth);
    g_free(s);
}

void svm_rack_free(SvmRack *rack)
{
    if (!rack) {
        return;
    }
    g_free(rack->path);
    g_free(rack->name);
    g_free(rack->secrets_dir);
    g_free(rack->state_dir);
    g_free(rack->memserver_binary);
    g_ptr_array_unref(rack->hosts);
    g_ptr_array_unref(rack->servers);
    g_free(rack);
}

const char *svm_rack_default_path(const char *explicit_path)
{
    if (explicit_path) {
        return explicit_path;
    }
    const char *env = g_getenv("SPLITVM_RACK");
    return env && *env ? env : SVM_DEFAULT_RACK_FILE;
}

bool svm_valid_name(const char *name, unsigned maxlen)
{
    size_t n = strlen(name);

    if (n == 0 || n > maxlen || !g_ascii_isalnum(name[0])) {
        return false;
    }
    for (const char *c = name; *c; c++) {
        if (!g_ascii_isalnum(*c) && *c != '-' && *c != '_' && *c != '.') {
            return false;
        }
    }
    return true;
}

bool svm_parse_host_port(const char *text, char **host, unsigned *port)
{
    const char *colon = strrchr(text, ':');
    char *end;

    if (!colon || colon == text || strchr(text, ' ')) {
        return false;
    }
    unsigned long p = strtoul(colon + 1, &end, 10);
    if (!g_ascii_isdigit(colon[1]) || *end || p == 0 || p > 65535) {
        return false;
    }
    if (host) {
        *host = g_strndup(text, colon - text);
    }
    if (port) {
        *port = p;
    }
    return true;
}

static bool parse_cidr(const char *text, struct in_addr *addr, unsigned *prefix)
{
    g_auto(GStrv) parts = g_strsplit(text, "/", 2);
    char *end;

    if (!parts[0] || !parts[1] || inet_pton(AF_INET, parts[0], addr) != 1) {
        return false;
    }
    unsigned long p = strtoul(parts[1], &end, 10);
    if (!g_ascii_isdigit(parts[1][0]) || *end || p < 8 || p > 30) {
        return false;
    }
    *prefix = p;
    return true;
}

static bool load_rack_group(SvmRack *rack, SvmConf *conf, GError **errp)
{
    static const char *const keys[] = { "name", "secrets-dir", "state-dir",
                                        "memserver-binary", NULL };

    if (!svm_conf_check_keys(conf, "rack", keys, errp) ||
        !svm_conf_get_string(conf, "rack", "name", true, &rack->name, errp)) {
        return false;
    }
    if (!svm_valid_name(rack->name, 32)) {
        return svm_conf_error(conf, errp, "rack", "name",
                              "'%s' is not a valid rack name (1-32 letters, "
                              "digits, '-', '_', '.', starting with a letter or digit)",
                              rack->name);
    }
    rack->secrets_dir = g_strdup_printf("/var/lib/splitvm/%s/secrets", rack->name);
    rack->state_dir = g_strdup_printf("/run/splitvm/%s", rack->name);
    return svm_conf_get_path(conf, "rack", "secrets-dir", false, &rack->secrets_dir, errp) &&
           svm_conf_get_path(conf, "rack", "state-dir", false, &rack->state_dir, errp) &&
           svm_conf_get_path(conf, "rack", "memserver-binary", false,
                             &rack->memserver_binary, errp);
}

static bool subnet_has(struct in_addr net, unsigned prefix, struct in_addr a)
{
    uint32_t mask = htonl(~0u << (32 - prefix));
    return (a.s_addr & mask) == (net.s_addr & mask) && a.s_addr != net.s_addr;
}

static bool load_host(SvmRack *rack, SvmConf *conf, const char *group,
                      const char *name, GError **errp)
{
    static const char *const keys[] = { "libvirt", "emulator", "library-path", "address",
                                        "local", "veth", NULL };
    SvmRackHost *h = g_new0(SvmRackHost, 1);
    struct in_addr addr, veth;
    unsigned prefix;

    g_ptr_array_add(rack->hosts, h);
    h->name = g_strdup(name);
    h->libvirt_uri = g_strdup("qemu:///system");
    if (!svm_conf_check_keys(conf, group, keys, errp) ||
        !svm_conf_get_string(conf, group, "libvirt", false, &h->libvirt_uri, errp) ||
        !svm_conf_get_path(conf, group, "emulator", true, &h->emulator, errp) ||
        !svm_conf_get_path(conf, group, "library-path", false, &h->library_path, errp) ||
        !svm_conf_get_string(conf, group, "address", false, &h->address, errp) ||
        !svm_conf_get_bool(conf, group, "local", false, &h->local, errp)) {
        return false;
    }
    if (h->address && inet_pton(AF_INET, h->address, &addr) != 1) {
        return svm_conf_error(conf, errp, group, "address",
                              "'%s' is not an IPv4 address", h->address);
    }
    if (!h->local) {
        if (svm_conf_has_key(conf, group, "veth")) {
            return svm_conf_error(conf, errp, group, "veth",
                                  "only meaningful with local = true");
        }
        return true;
    }

    /* A local host: its own libvirtd in network namespace splitvm-RACK-host-NAME. */
    if (svm_conf_has_key(conf, group, "libvirt")) {
        return svm_conf_error(conf, errp, group, "libvirt",
                              "a local host's libvirt URI is its own libvirtd's socket "
                              "in the rack's state dir; leave it out");
    }
    if (!h->address) {
        return svm_conf_error(conf, errp, group, "address",
                              "a local host needs address = A.B.C.D, its end of the veth "
                              "pair (in the veth subnet)");
    }
    if (!svm_conf_get_string(conf, group, "veth", true, &h->veth, errp)) {
        return false;
    }
    if (!parse_cidr(h->veth, &veth, &prefix)) {
        return svm_conf_error(conf, errp, group, "veth",
                              "'%s' is not an IPv4 address with a prefix length "
                              "8..30 (e.g. 10.213.0.9/30)", h->veth);
    }
    if (!subnet_has(veth, prefix, addr)) {
        return svm_conf_error(conf, errp, group, "address",
                              "%s must be another address in the veth subnet %s",
                              h->address, h->veth);
    }
    h->dir = g_strdup_printf("%s/host-%s", rack->state_dir, h->name);
    g_free(h->libvirt_uri);
    h->libvirt_uri = g_strdup_printf("qemu+unix:///system?socket=%s/run/libvirt-sock",
                                     h->dir);
    return true;
}

static bool check_address(SvmConf *conf, const char *group, const char *key,
                          const char *addr, GError **errp)
{
    if (addr && !svm_parse_host_port(addr, NULL, NULL)) {
        return svm_conf_error(conf, errp, group, key,
                              "'%s' is not HOST:PORT (port 1-65535)", addr);
    }
    return true;
}

static bool load_server(SvmRack *rack, SvmConf *conf, const char *group,
                        const char *name, GError **errp)
{
    static const char *const keys[] = { "tcp", "rdma", "local", "veth", "capacity", NULL };
    SvmRackServer *s = g_new0(SvmRackServer, 1);

    g_ptr_array_add(rack->servers, s);
    s->name = g_strdup(name);
    if (!svm_conf_check_keys(conf, group, keys, errp) ||
        !svm_conf_get_string(conf, group, "tcp", false, &s->tcp, errp) ||
        !svm_conf_get_string(conf, group, "rdma", false, &s->rdma, errp) ||
        !svm_conf_get_bool(conf, group, "local", false, &s->local, errp) ||
        !check_address(conf, group, "tcp", s->tcp, errp) ||
        !check_address(conf, group, "rdma", s->rdma, errp)) {
        return false;
    }
    if (!s->tcp && !s->rdma) {
        return svm_conf_error(conf, errp, group, NULL,
                              "a memory server needs an address: set tcp = HOST:PORT "
                              "and/or rdma = HOST:PORT");
    }
    if (!s->local) {
        if (svm_conf_has_key(conf, group, "veth")) {
            return svm_conf_error(conf, errp, group, "veth",
                                  "only meaningful with local = true");
        }
        if (svm_conf_has_key(conf, group, "capacity")) {
            return svm_conf_error(conf, errp, group, "capacity",
                                  "only meaningful with local = true (a remote "
                                  "server's capacity is set where it runs)");
        }
        return true;
    }

    /* A local server listens inside its namespace on its tcp/rdma host. */
    if (!svm_conf_get_string(conf, group, "veth", true, &s->veth, errp) ||
        !svm_conf_get_size(conf, group, "capacity", true, &s->capacity, errp)) {
        return false;
    }
    if (s->capacity < (1u << 20)) {
        return svm_conf_error(conf, errp, group, "capacity",
                              "must be at least 1M");
    }
    struct in_addr veth, srv;
    unsigned prefix;
    if (!parse_cidr(s->veth, &veth, &prefix)) {
        return svm_conf_error(conf, errp, group, "veth",
                              "'%s' is not an IPv4 address with a prefix length "
                              "8..30 (e.g. 10.213.0.1/30)", s->veth);
    }
    const char *addrs[] = { s->tcp, s->rdma };
    const char *akeys[] = { "tcp", "rdma" };
    for (int i = 0; i < 2; i++) {
        g_autofree char *host = NULL;
        if (!addrs[i]) {
            continue;
        }
        svm_parse_host_port(addrs[i], &host, NULL);
        if (inet_pton(AF_INET, host, &srv) != 1) {
            return svm_conf_error(conf, errp, group, akeys[i],
                                  "a local server needs an IPv4 address, not '%s'", host);
        }
        uint32_t mask = htonl(~0u << (32 - prefix));
        if ((srv.s_addr & mask) != (veth.s_addr & mask) || srv.s_addr == veth.s_addr) {
            return svm_conf_error(conf, errp, group, akeys[i],
                                  "%s must be another address in the veth subnet %s",
                                  host, s->veth);
        }
    }
    if (s->tcp && s->rdma) {
        g_autofree char *h1 = NULL, *h2 = NULL;
        svm_parse_host_port(s->tcp, &h1, NULL);
        svm_parse_host_port(s->rdma, &h2, NULL);
        if (strcmp(h1, h2)) {
            return svm_conf_error(conf, errp, group, "rdma",
                                  "a local server has one address: use %s here too", h1);
        }
    }
    return true;
}

/* Two local servers or hosts must not share a subnet or an address. */
static bool check_overlaps(SvmRack *rack, SvmConf *conf, GError **errp)
{
    for (guint i = 0; i < rack->hosts->len; i++) {
        SvmRackHost *a = rack->hosts->pdata[i];
        g_autofree char *group = g_strdup_printf("host %s", a->name);
        for (guint j = 0; a->local && j < rack->hosts->len; j++) {
            SvmRackHost *b = rack->hosts->pdata[j];
            if (j < i && b->local && !strcmp(a->veth, b->veth)) {
                return svm_conf_error(conf, errp, group, "veth",
                                      "same veth address as host '%s'", b->name);
            }
        }
        for (guint j = 0; a->local && j < rack->servers->len; j++) {
            SvmRackServer *s = rack->servers->pdata[j];
            if (s->local && !strcmp(a->veth, s->veth)) {
                return svm_conf_error(conf, errp, group, "veth",
                                      "same veth address as memory server '%s'", s->name);
            }
        }
    }

    for (guint i = 0; i < rack->servers->len; i++) {
        SvmRackServer *a = rack->servers->pdata[i];
        for (guint j = 0; j < i; j++) {
            SvmRackServer *b = rack->servers->pdata[j];
            g_autofree char *group = g_strdup_printf("memserver %s", a->name);
            if ((a->tcp && b->tcp && !strcmp(a->tcp, b->tcp)) ||
                (a->rdma && b->rdma && !strcmp(a->rdma, b->rdma))) {
                return svm_conf_error(conf, errp, group, a->tcp ? "tcp" : "rdma",
                                      "same address as memory server '%s'", b->name);
            }
            if (a->local && b->local && !strcmp(a->veth, b->veth)) {
                return svm_conf_error(conf, errp, group, "veth",
                                      "same veth address as memory server '%s'", b->name);
            }
        }
    }
    return true;
}

SvmRack *svm_rack_load(const char *path, GError **errp)
{
    g_autoptr(SvmConf) conf = svm_conf_load(path, errp);
    g_autoptr(SvmRack) rack = NULL;
    guint ngroups;

    if (!conf) {
        return NULL;
    }
    rack = g_new0(SvmRack, 1);
    rack->path = g_canonicalize_filename(path, NULL);
    rack->hosts = g_ptr_array_new_with_free_func(host_free);
    rack->servers = g_ptr_array_new_with_free_func(server_free);

    if (!load_rack_group(rack, conf, errp)) {
        return NULL;
    }
    const char *const *groups = svm_conf_groups(conf, &ngroups);
    for (guint i = 0; i < ngroups; i++) {
        const char *g = groups[i];
        bool ok = true;

        if (!strcmp(g, "rack")) {
            continue;
        } else if (g_str_has_prefix(g, "host ") || g_str_has_prefix(g, "memserver ")) {
            const char *name = strchr(g, ' ') + 1;
            bool is_host = g[0] == 'h';
            if (!svm_valid_name(name, 32)) {
                svm_conf_error(conf, errp, g, NULL,
                               "'%s' is not a valid name (1-32 letters, digits, "
                               "'-', '_', '.')", name);
                return NULL;
            }
            if (is_host ? svm_rack_find_host(rack, name) != NULL
                        : svm_rack_find_server(rack, name) != NULL) {
                svm_conf_error(conf, errp, g, NULL, "defined twice");
                return NULL;
            }
            ok = is_host ? load_host(rack, conf, g, name, errp)
                         : load_server(rack, conf, g, name, errp);
        } else {
            svm_conf_error(conf, errp, g, NULL,
                           "unknown group (expected [rack], [host NAME] or "
                           "[memserver NAME])");
            return NULL;
        }
        if (!ok) {
            return NULL;
        }
    }
    if (rack->hosts->len == 0) {
        svm_conf_error(conf, errp, NULL, NULL,
                       "no [host NAME] group: a rack needs at least one host");
        return NULL;
    }
    if (rack->servers->len == 0) {
        svm_conf_error(conf, errp, NULL, NULL,
                       "no [memserver NAME] group: a rack needs at least one memory server");
        return NULL;
    }
    if (!check_overlaps(rack, conf, errp)) {
        return NULL;
    }
    for (guint i = 0; i < rack->servers->len; i++) {
        SvmRackServer *s = rack->servers->pdata[i];
        if (s->local && !rack->memserver_binary) {
            svm_conf_error(conf, errp, "rack", NULL,
                           "memory server '%s' is local: set memserver-binary = "
                           "PATH of splitvm-memserver", s->name);
            return NULL;
        }
    }
    return g_steal_pointer(&rack);
}

SvmRackHost *svm_rack_find_host(const SvmRack *rack, const char *name)
{
    for (guint i = 0; i < rack->hosts->len; i++) {
        SvmRackHost *h = rack->hosts->pdata[i];
        if (!strcmp(h->name, name)) {
            return h;
        }
    }
    return NULL;
}

SvmRackServer *svm_rack_find_server(const SvmRack *rack, const char *name)
{
    for (guint i = 0; i < rack->servers->len; i++) {
        SvmRackServer *s = rack->servers->pdata[i];
        if (!strcmp(s->name, name)) {
            return s;
        }
    }
    return NULL;
}

const char *svm_rack_server_transport(const SvmRackServer *s, const char *preferred)
{
    if (!strcmp(preferred, "rdma")) {
        return s->rdma ? "rdma" : "tcp";
    }
    return s->tcp ? "tcp" : "rdma";
}

const char *svm_rack_server_address(const SvmRackServer *s, const char *transport)
{
    if (!strcmp(transport, "rdma")) {
        return s->rdma;
    }
    return s->tcp;
}
