/*
 * Unit tests of the splitvm CLI's config formats: rack files, VM specs,
 * sizes, the domain XML and its metadata, qemu.conf ACL detection.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>

#include "conf-file.h"
#include "domain-xml.h"
#include "host-check.h"
#include "rack-config.h"
#include "size.h"
#include "virt.h"
#include "vm-spec.h"

static char *tmpdir;

static char *write_file(const char *name, const char *text)
{
    char *path = g_build_filename(tmpdir, name, NULL);
    g_assert_true(g_file_set_contents(path, text, -1, NULL));
    return path;
}

static const char good_rack[] =
    "# a local rack\n"
    "[rack]\n"
    "name = r1\n"
    "secrets-dir = secrets\n"
    "memserver-binary = /bin/true\n"
    "\n"
    "[host h1]\n"
    "emulator = /bin/true\n"
    "\n"
    "[memserver ms0]\n"
    "tcp = 10.213.0.2:7100\n"
    "local = true\n"
    "veth = 10.213.0.1/30\n"
    "capacity = 1G\n"
    "\n"
    "[memserver far]\n"
    "tcp = 192.0.2.10:7100\n"
    "rdma = 192.0.2.10:7200\n";

static void test_size(void)
{
    uint64_t v;
    char buf[32];

    g_assert_true(svm_size_parse("4096", &v) && v == 4096);
    g_assert_true(svm_size_parse("512M", &v) && v == 512ull << 20);
    g_assert_true(svm_size_parse("2GiB", &v) && v == 2ull << 30);
    g_assert_true(svm_size_parse("1t", &v) && v == 1ull << 40);
    g_assert_true(svm_size_parse("64KB", &v) && v == 64 << 10);
    g_assert_false(svm_size_parse("", &v));
    g_assert_false(svm_size_parse("M", &v));
    g_assert_false(svm_size_parse("1.5G", &v));
    g_assert_false(svm_size_parse("12Q", &v));
    g_assert_false(svm_size_parse("99999999999999999999", &v));
    g_assert_false(svm_size_parse("20000000T", &v));
    g_assert_cmpstr(svm_size_format(256ull << 20, buf, sizeof(buf)), ==, "256 MiB");
    g_assert_cmpstr(svm_size_format(3ull << 29, buf, sizeof(buf)), ==, "1.5 GiB");
    g_assert_cmpstr(svm_size_format(100, buf, sizeof(buf)), ==, "100 B");
}

static void test_rack_good(void)
{
    g_autofree char *path = write_file("rack.conf", good_rack);
    g_autoptr(GError) err = NULL;
    g_autoptr(SvmRack) rack = svm_rack_load(path, &err);

    g_assert_no_error(err);
    g_assert_cmpstr(rack->name, ==, "r1");
    g_autofree char *secrets = g_build_filename(tmpdir, "secrets", NULL);
    g_assert_cmpstr(rack->secrets_dir, ==, secrets);    /* relative to the file */
    g_assert_cmpstr(rack->state_dir, ==, "/run/splitvm/r1");
    g_assert_cmpuint(rack->hosts->len, ==, 1);
    SvmRackHost *h = rack->hosts->pdata[0];
    g_assert_cmpstr(h->libvirt_uri, ==, "qemu:///system");
    g_assert_cmpuint(rack->servers->len, ==, 2);
    SvmRackServer *ms0 = svm_rack_find_server(rack, "ms0");
    g_assert_true(ms0->local);
    g_assert_cmpuint(ms0->capacity, ==, 1ull << 30);
    SvmRackServer *far = svm_rack_find_server(rack, "far");
    g_assert_false(far->local);
    g_assert_cmpstr(svm_rack_server_address(far, "rdma"), ==, "192.0.2.10:7200");
    g_assert_null(svm_rack_server_address(ms0, "rdma"));
}

typedef struct BadCase {
    const char *what;
    const char *text;
    const char *expect;         /* substring of the error, after "FILE:" */
} BadCase;

static const BadCase bad_racks[] = {
    { "no key=value", "[rack]\nname = r\njunk\n", ":3: 'junk' is not a 'key = value' line" },
    { "key before group", "name = r\n[rack]\n", ":1: key 'name' comes before any [group]" },
    { "duplicate key", "[rack]\nname = a\nname = b\n", ":3: [rack] name is set twice (first at line 2)" },
    { "duplicate group", "[rack]\nname = a\n[rack]\n", ":3: group [rack] appears twice" },
    { "bad header", "[rack\nname = a\n", ":1: malformed group header" },
    { "missing rack", "[host h]\nemulator=/bin/true\n", "missing group [rack]" },
    { "missing name", "[rack]\nsecrets-dir = /x\n", ":1: [rack]: missing required key 'name'" },
    { "bad name", "[rack]\nname = -x\n", ":2: [rack] name: '-x' is not a valid rack name" },
    { "unknown key", "[rack]\nname = r\ncolour = red\n", ":3: [rack] colour: unknown key" },
    { "unknown group", "[rack]\nname = r\n[switch s]\n", ":3: [switch s]: unknown group" },
    { "no hosts", "[rack]\nname = r\n", "no [host NAME] group" },
    { "no servers", "[rack]\nname = r\n[host h]\nemulator = /bin/true\n",
      "no [memserver NAME] group" },
    { "no emulator", "[rack]\nname = r\n[host h]\nlibvirt = qemu:///system\n",
      ":3: [host h]: missing required key 'emulator'" },
    { "bad address", "[rack]\nname = r\n[host h]\nemulator = /x\n[memserver m]\ntcp = nowhere\n",
      ":6: [memserver m] tcp: 'nowhere' is not HOST:PORT" },
    { "bad port", "[rack]\nname = r\n[host h]\nemulator = /x\n[memserver m]\ntcp = a:70000\n",
      ":6: [memserver m] tcp: 'a:70000' is not HOST:PORT" },
    { "no address", "[rack]\nname = r\n[host h]\nemulator = /x\n[memserver m]\n",
      ":5: [memserver m]: a memory server needs an address" },
    { "local without veth", "[rack]\nname = r\nmemserver-binary=/bin/true\n[host h]\n"
      "emulator = /x\n[memserver m]\ntcp = 10.0.0.2:1\nlocal = true\ncapacity = 1G\n",
      ":6: [memserver m]: missing required key 'veth'" },
    { "veth subnet", "[rack]\nname = r\nmemserver-binary=/bin/true\n[host h]\nemulator = /x\n"
      "[memserver m]\ntcp = 10.0.1.2:1\nlocal = yes\nveth = 10.0.0.1/30\ncapacity = 1G\n",
      ":7: [memserver m] tcp: 10.0.1.2 must be another address in the veth subnet" },
    { "bad bool", "[rack]\nname = r\n[host h]\nemulator = /x\n[memserver m]\ntcp = a:1\n"
      "local = maybe\n", ":7: [memserver m] local: 'maybe' is not a boolean" },
    { "bad capacity", "[rack]\nname = r\nmemserver-binary=/bin/true\n[host h]\nemulator = /x\n"
      "[memserver m]\ntcp = 10.0.0.2:1\nlocal = 1\nveth = 10.0.0.1/30\ncapacity = lots\n",
      ":10: [memserver m] capacity: 'lots' is not a size" },
    { "capacity on remote", "[rack]\nname = r\n[host h]\nemulator = /x\n[memserver m]\n"
      "tcp = a:1\ncapacity = 1G\n", ":7: [memserver m] capacity: only meaningful with local" },
    { "same address", "[rack]\nname = r\n[host h]\nemulator = /x\n[memserver a]\ntcp = h:1\n"
      "[memserver b]\ntcp = h:1\n", ":8: [memserver b] tcp: same address as memory server 'a'" },
    { "local needs binary", "[rack]\nname = r\n[host h]\nemulator = /x\n[memserver m]\n"
      "tcp = 10.0.0.2:1\nlocal = 1\nveth = 10.0.0.1/30\ncapacity = 1G\n",
      ":1: [rack]: memory server 'm' is local: set memserver-binary" },
    { "empty value", "[rack]\nname =\n", ":2: [rack] name: empty value" },
    { "local host without address", "[rack]\nname = r\n[host h]\nemulator = /x\n"
      "local = true\nveth = 10.0.0.1/30\n[memserver m]\ntcp = a:1\n",
      ":3: [host h] address: a local host needs address" },
    { "local host address subnet", "[rack]\nname = r\n[host h]\nemulator = /x\n"
      "local = true\nveth = 10.0.0.1/30\naddress = 10.0.0.9\n[memserver m]\ntcp = a:1\n",
      ":7: [host h] address: 10.0.0.9 must be another address in the veth subnet" },
    { "local host libvirt", "[rack]\nname = r\n[host h]\nemulator = /x\nlocal = true\n"
      "libvirt = qemu:///system\nveth = 10.0.0.1/30\naddress = 10.0.0.2\n"
      "[memserver m]\ntcp = a:1\n", ":6: [host h] libvirt: a local host's libvirt URI" },
    { "host veth not local", "[rack]\nname = r\n[host h]\nemulator = /x\n"
      "veth = 10.0.0.1/30\n[memserver m]\ntcp = a:1\n",
      ":5: [host h] veth: only meaningful with local = true" },
    { "host bad address", "[rack]\nname = r\n[host h]\nemulator = /x\naddress = here\n"
      "[memserver m]\ntcp = a:1\n", ":5: [host h] address: 'here' is not an IPv4 address" },
    { "host and server veth", "[rack]\nname = r\nmemserver-binary=/bin/true\n[host h]\n"
      "emulator = /x\nlocal = true\nveth = 10.0.0.1/30\naddress = 10.0.0.2\n"
      "[memserver m]\ntcp = 10.0.0.2:1\nlocal = 1\nveth = 10.0.0.1/30\ncapacity = 1G\n",
      "[host h] veth: same veth address as memory server 'm'" },
};

static void test_rack_bad(gconstpointer data)
{
    const BadCase *c = data;
    g_autofree char *path = write_file("bad-rack.conf", c->text);
    g_autoptr(GError) err = NULL;
    g_autoptr(SvmRack) rack = svm_rack_load(path, &err);

    g_assert_null(rack);
    g_assert_nonnull(err);
    if (!strstr(err->message, c->expect) || !g_str_has_prefix(err->message, path)) {
        g_error("%s: error '%s' does not start with the file and contain '%s'",
                c->what, err->message, c->expect);
    }
}

static char *spec_text(const char *vm_extra, const char *rest)
{
    g_autofree char *kernel = write_file("vmlinuz", "kernel");
    g_autofree char *initrd = write_file("initrd", "initrd");
    return g_strdup_printf("[vm]\nname = v1\nmemory = 1G\nlocal-budget = 25%%\n%s"
                           "[boot]\nkernel = vmlinuz\ninitrd = initrd\n"
                           "cmdline = console=ttyS0 splitvm.run=\"memverify --mib 8\"\n%s",
                           vm_extra, rest);
}

static void test_spec_good(void)
{
    g_autofree char *text = spec_text("vcpus = 2\ntype = qemu\n",
                                      "[memory]\nservers = ms0, far\nprefetch = off\n"
                                      "service-nice = 0\n"
                                      "[devices]\nnetworks = default\n");
    g_autofree char *path = write_file("vm.conf", text);
    g_autoptr(GError) err = NULL;
    g_autoptr(SvmVmSpec) spec = svm_vm_spec_load(path, &err);

    g_assert_no_error(err);
    g_assert_cmpstr(spec->name, ==, "v1");
    g_assert_cmpuint(spec->vcpus, ==, 2);
    g_assert_cmpuint(spec->memory, ==, 1ull << 30);
    g_assert_cmpuint(spec->budget, ==, 256ull << 20);
    g_assert_cmpint(spec->type, ==, SVM_VIRT_QEMU);
    g_assert_cmpstr(spec->machine, ==, "pc");
    g_assert_false(spec->prefetch);
    g_assert_cmpint(spec->service_nice, ==, 0);
    g_assert_cmpstr(spec->transport, ==, "tcp");
    g_assert_cmpuint(g_strv_length(spec->servers), ==, 2);
    g_autofree char *kernel = g_build_filename(tmpdir, "vmlinuz", NULL);
    g_assert_cmpstr(spec->kernel, ==, kernel);
    g_assert_cmpstr(spec->console_log, ==, "/var/log/splitvm/v1.console");

    g_autofree char *rpath = write_file("rack.conf", good_rack);
    g_autoptr(SvmRack) rack = svm_rack_load(rpath, &err);
    g_assert_no_error(err);
    g_autoptr(GPtrArray) servers = svm_vm_spec_servers(spec, rack, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(servers->len, ==, 2);

    /* The XML carries everything; the secret value never appears in it. */
    SvmDomainParams p = {
        .spec = spec, .rack = rack, .host = rack->hosts->pdata[0], .emulator = "/bin/true",
        .servers = servers,
        .type = SVM_VIRT_QEMU, .secret_file = "/s/vm-v1.key",
    };
    g_autofree char *xml = svm_domain_xml(&p);
    g_assert_nonnull(strstr(xml, "<domain type='qemu'"));
    g_assert_nonnull(strstr(xml, "<emulator>/bin/true</emulator>"));
    g_assert_nonnull(strstr(xml, "secret,id=svm-secret,file=/s/vm-v1.key,format=raw"));
    g_assert_nonnull(strstr(xml, "&quot;qom-type&quot;:&quot;memory-backend-remote&quot;"));
    g_assert_nonnull(strstr(xml, "&quot;servers&quot;:[&quot;tcp:10.213.0.2:7100&quot;,"
                                 "&quot;tcp:192.0.2.10:7100&quot;]"));
    g_assert_nonnull(strstr(xml, "&quot;size&quot;:1073741824"));
    g_assert_nonnull(strstr(xml, "&quot;budget&quot;:268435456"));
    g_assert_nonnull(strstr(xml, "&quot;prefetch&quot;:false"));
    g_assert_nonnull(strstr(xml, "&quot;service-nice&quot;:0"));
    g_assert_nonnull(strstr(xml, "&quot;secret&quot;:&quot;svm-secret&quot;"));
    g_assert_nonnull(strstr(xml, "<qemu:arg value='memory-backend=svm-ram'/>"));
    g_assert_nonnull(strstr(xml, "splitvm.run=&quot;memverify --mib 8&quot;"));
    g_assert_nonnull(strstr(xml, "<source network='default'/>"));
    g_assert_null(strstr(xml, "<cpu"));
    p.type = SVM_VIRT_KVM;
    g_autofree char *kvm = svm_domain_xml(&p);
    g_assert_nonnull(strstr(kvm, "<domain type='kvm'"));
    g_assert_nonnull(strstr(kvm, "<cpu mode='host-passthrough'/>"));
    /* not given in the spec: QEMU's default applies, the XML does not say one */
    spec->service_nice = -1;
    g_autofree char *dflt = svm_domain_xml(&p);
    g_assert_null(strstr(dflt, "service-nice"));

    g_autoptr(SvmVmInfo) info = svm_vm_info_parse(xml, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(info->name, ==, "v1");
    g_assert_cmpstr(info->vm_id, ==, "v1");
    g_assert_cmpstr(info->rack, ==, "r1");
    g_assert_cmpstr(info->rack_file, ==, rpath);
    g_assert_cmpstr(info->backend, ==, SVM_BACKEND_ID);
    g_assert_cmpstr(info->secret_file, ==, "/s/vm-v1.key");
    g_assert_cmpuint(info->memory, ==, 1ull << 30);
    g_assert_cmpuint(info->budget, ==, 256ull << 20);
    g_assert_cmpstr(info->server_names[1], ==, "far");
    g_assert_cmpstr(info->server_addrs[1], ==, "192.0.2.10:7100");
}

static void test_spec_any(void)
{
    g_autofree char *text = spec_text("", "[memory]\nservers = any\ntransport = rdma\n");
    g_autofree char *path = write_file("vm-any.conf", text);
    g_autofree char *rpath = write_file("rack.conf", good_rack);
    g_autoptr(GError) err = NULL;
    g_autoptr(SvmVmSpec) spec = svm_vm_spec_load(path, &err);
    g_autoptr(SvmRack) rack = svm_rack_load(rpath, &err);

    g_assert_no_error(err);
    g_assert_null(spec->servers);
    g_assert_cmpint(spec->type, ==, SVM_VIRT_AUTO);
    g_assert_cmpint(spec->service_nice, ==, -1);
    /* Only "far" has an rdma address. */
    g_autoptr(GPtrArray) servers = svm_vm_spec_servers(spec, rack, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(servers->len, ==, 1);
    g_assert_cmpstr(((SvmRackServer *)servers->pdata[0])->name, ==, "far");

    g_autofree char *t2 = spec_text("", "[memory]\nservers = ms0, nope\n");
    g_autofree char *p2 = write_file("vm-nope.conf", t2);
    g_autoptr(SvmVmSpec) s2 = svm_vm_spec_load(p2, &err);
    g_assert_no_error(err);
    g_autoptr(GPtrArray) none = svm_vm_spec_servers(s2, rack, &err);
    g_assert_null(none);
    g_assert_nonnull(strstr(err->message, "has no memory server 'nope'"));
}

static const BadCase bad_specs[] = {
    { "budget > memory", "[vm]\nname = v\nmemory = 1G\nlocal-budget = 2G\n",
      ":4: [vm] local-budget: 2G is more than the VM's memory" },
    { "budget pct", "[vm]\nname = v\nmemory = 1G\nlocal-budget = 150%\n",
      ":4: [vm] local-budget: '150%' is not a percentage" },
    { "budget junk", "[vm]\nname = v\nmemory = 1G\nlocal-budget = half\n",
      ":4: [vm] local-budget: 'half' is neither a size" },
    { "budget tiny", "[vm]\nname = v\nmemory = 1G\nlocal-budget = 1M\n",
      ":4: [vm] local-budget: 1M is below the minimum of 16M" },
    { "memory odd", "[vm]\nname = v\nmemory = 65M\nlocal-budget = 32M\n",
      ":3: [vm] memory: must be a multiple of 2M" },
    { "vcpus", "[vm]\nname = v\nmemory = 1G\nlocal-budget = 25%\nvcpus = 0\n",
      ":5: [vm] vcpus: 0 is out of range (1..255)" },
    { "vcpus text", "[vm]\nname = v\nmemory = 1G\nlocal-budget = 25%\nvcpus = two\n",
      ":5: [vm] vcpus: 'two' is not a number" },
    { "type", "[vm]\nname = v\nmemory = 1G\nlocal-budget = 25%\ntype = xen\n",
      ":5: [vm] type: 'xen' is not one of auto, kvm, qemu" },
    { "name", "[vm]\nname = a b\nmemory = 1G\nlocal-budget = 25%\n",
      ":2: [vm] name: 'a b' is not a valid VM name" },
    { "no boot", "[vm]\nname = v\nmemory = 1G\nlocal-budget = 25%\n",
      "missing group [boot]" },
    { "both", "[vm]\nname = v\nmemory = 1G\nlocal-budget = 25%\n[boot]\nkernel = /bin/true\n"
      "image = /bin/true\n", ":7: [boot] image: give either kernel" },
    { "nothing", "[vm]\nname = v\nmemory = 1G\nlocal-budget = 25%\n[boot]\n",
      ":5: [boot]: nothing to boot" },
    { "kernel missing", "[vm]\nname = v\nmemory = 1G\nlocal-budget = 25%\n[boot]\n"
      "kernel = /nonexistent/vmlinuz\n", ":6: [boot] kernel: cannot read /nonexistent/vmlinuz" },
    { "transport", "[vm]\nname = v\nmemory = 1G\nlocal-budget = 25%\n[boot]\nkernel = /bin/true\n"
      "[memory]\ntransport = carrier-pigeon\n", ":8: [memory] transport: 'carrier-pigeon'" },
    { "any+names", "[vm]\nname = v\nmemory = 1G\nlocal-budget = 25%\n[boot]\nkernel = /bin/true\n"
      "[memory]\nservers = any, ms0\n", ":8: [memory] servers: 'any' cannot be combined" },
    { "service-nice", "[vm]\nname = v\nmemory = 1G\nlocal-budget = 25%\n[boot]\nkernel = /bin/true\n"
      "[memory]\nservice-nice = 20\n", ":8: [memory] service-nice: 20 is out of range (0..19)" },
    { "dup server", "[vm]\nname = v\nmemory = 1G\nlocal-budget = 25%\n[boot]\nkernel = /bin/true\n"
      "[memory]\nservers = a,a\n", ":8: [memory] servers: 'a' is listed twice" },
    { "empty item", "[vm]\nname = v\nmemory = 1G\nlocal-budget = 25%\n[boot]\nkernel = /bin/true\n"
      "[memory]\nservers = a,,b\n", ":8: [memory] servers: empty item" },
    { "unknown group", "[vm]\nname = v\n[network]\n", ":3: [network]: unknown group" },
    { "unknown key", "[vm]\nname = v\nram = 1G\n", ":3: [vm] ram: unknown key" },
    { "missing memory", "[vm]\nname = v\nlocal-budget = 1G\n", ":1: [vm]: missing required key 'memory'" },
    { "disk missing", "[vm]\nname = v\nmemory = 1G\nlocal-budget = 25%\n[boot]\nkernel = /bin/true\n"
      "[devices]\ndisks = /nonexistent.qcow2\n", ":8: [devices] disks: cannot read /nonexistent.qcow2" },
};

static void test_spec_bad(gconstpointer data)
{
    const BadCase *c = data;
    g_autofree char *path = write_file("bad-vm.conf", c->text);
    g_autoptr(GError) err = NULL;
    g_autoptr(SvmVmSpec) spec = svm_vm_spec_load(path, &err);

    g_assert_null(spec);
    g_assert_nonnull(err);
    if (!strstr(err->message, c->expect) || !g_str_has_prefix(err->message, path)) {
        g_error("%s: error '%s' does not start with the file and contain '%s'",
                c->what, err->message, c->expect);
    }
}

/* The example in orchestration/examples/ that docs/config.md points to parses. */
static void test_example_rack(void)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(SvmRack) rack = svm_rack_load(SVM_EXAMPLES_DIR "/rack-local.conf", &err);

    g_assert_no_error(err);
    g_assert_cmpuint(rack->servers->len, ==, 2);
    g_assert_nonnull(((SvmRackHost *)rack->hosts->pdata[0])->library_path);
    /* A second host in its own namespace, for `splitvm migrate`. */
    SvmRackHost *h1 = svm_rack_find_host(rack, "h1");
    g_assert_nonnull(h1);
    g_assert_true(h1->local);
    g_assert_cmpstr(h1->libvirt_uri, ==,
                    "qemu+unix:///system?socket=/run/splitvm/local/host-h1/run/libvirt-sock");
}

static void test_missing_file(void)
{
    g_autoptr(GError) err = NULL;
    g_assert_null(svm_vm_spec_load("/nonexistent/vm.conf", &err));
    g_assert_nonnull(strstr(err->message, "/nonexistent/vm.conf"));
}

static void test_qemu_conf_acl(void)
{
    g_assert_false(svm_qemu_conf_acl_has("#cgroup_device_acl = [ \"/dev/userfaultfd\" ]\n",
                                         "/dev/userfaultfd"));
    g_assert_true(svm_qemu_conf_acl_has("cgroup_device_acl = [\n  \"/dev/null\",\n"
                                        "  \"/dev/userfaultfd\"\n]\n", "/dev/userfaultfd"));
    g_assert_false(svm_qemu_conf_acl_has("cgroup_device_acl = [ \"/dev/null\" ]\n"
                                         "x = \"/dev/userfaultfd\"\n", "/dev/userfaultfd"));
    /* The last setting wins. */
    g_assert_false(svm_qemu_conf_acl_has("cgroup_device_acl = [ \"/dev/userfaultfd\" ]\n"
                                         "cgroup_device_acl = [ \"/dev/null\" ]\n",
                                         "/dev/userfaultfd"));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    tmpdir = g_dir_make_tmp("svm-orch-XXXXXX", NULL);

    g_test_add_func("/orch/size", test_size);
    g_test_add_func("/orch/rack/good", test_rack_good);
    for (size_t i = 0; i < G_N_ELEMENTS(bad_racks); i++) {
        g_autofree char *name = g_strdup_printf("/orch/rack/bad/%s", bad_racks[i].what);
        g_test_add_data_func(name, &bad_racks[i], test_rack_bad);
    }
    g_test_add_func("/orch/spec/good", test_spec_good);
    g_test_add_func("/orch/spec/any", test_spec_any);
    for (size_t i = 0; i < G_N_ELEMENTS(bad_specs); i++) {
        g_autofree char *name = g_strdup_printf("/orch/spec/bad/%s", bad_specs[i].what);
        g_test_add_data_func(name, &bad_specs[i], test_spec_bad);
    }
    g_test_add_func("/orch/spec/missing-file", test_missing_file);
    g_test_add_func("/orch/rack/example", test_example_rack);
    g_test_add_func("/orch/qemu-conf-acl", test_qemu_conf_acl);
    int rc = g_test_run();

    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", tmpdir);
    (void)!system(cmd);
    return rc;
}
