/*
 * The KVM fault path: a small 64-bit guest running at CPL3 through the raw
 * KVM API uses the pager-managed memfd as guest RAM.  Its accesses fault in
 * KVM's get_user_pages (kernel mode) into the pager's userfaultfd.  With a
 * memory server (SPLITVM_MEMSERVER set by the build) the region is 4x the
 * budget, so pages are evicted and refilled under the running guest.
 *
 * Exit code 77 (skip) only when /dev/kvm is absent.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "pager-test-util.h"
#include "memserver-util.h"

extern const uint8_t svm_kvm_guest_start[], svm_kvm_guest_end[];

#define SYS_SIZE        (2u << 20)      /* slot 0: page tables, code, stack */
#define PML4_GPA        0x1000
#define PDPT_GPA        0x2000
#define PD0_GPA         0x3000          /* 0 .. 1 GiB */
#define PD1_GPA         0x4000          /* 1 .. 2 GiB */
#define CODE_GPA        0x10000
#define STACK_TOP       0x1ff000
#define RAM_GPA         0x40000000ull   /* slot 1: the pager's region */
#define MMIO_GPA        0x7fe00000ull   /* in no slot: MMIO exit */
#define PTE_P_RW_US     0x7ull
#define PTE_PS          0x80ull

typedef struct Vm {
    int kvm, vm, vcpu;
    struct kvm_run *run;
    uint8_t *sys;
} Vm;

static void set_seg(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code)
{
    *s = (struct kvm_segment) {
        .base = 0, .limit = 0xffffffff, .selector = sel, .type = type,
        .present = 1, .dpl = 3, .db = code ? 0 : 1, .s = 1, .l = code ? 1 : 0,
        .g = 1,
    };
}

static void vm_create(Vm *v, TestRam *ram, uint64_t npages, uint64_t passes)
{
    struct kvm_userspace_memory_region slot;
    struct kvm_sregs sregs;
    struct kvm_regs regs;
    uint64_t *pml4, *pdpt, *pd0, *pd1;
    int run_size;

    v->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    g_assert_cmpint(v->kvm, >=, 0);
    g_assert_cmpint(ioctl(v->kvm, KVM_GET_API_VERSION, 0), ==, KVM_API_VERSION);
    v->vm = ioctl(v->kvm, KVM_CREATE_VM, 0);
    g_assert_cmpint(v->vm, >=, 0);

    v->sys = mmap(NULL, SYS_SIZE, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    g_assert_true(v->sys != MAP_FAILED);
    pml4 = (uint64_t *)(v->sys + PML4_GPA);
    pdpt = (uint64_t *)(v->sys + PDPT_GPA);
    pd0 = (uint64_t *)(v->sys + PD0_GPA);
    pd1 = (uint64_t *)(v->sys + PD1_GPA);
    /* identity map 0..2 GiB with 2 MiB pages, user-accessible at every level */
    pml4[0] = PDPT_GPA | PTE_P_RW_US;
    pdpt[0] = PD0_GPA | PTE_P_RW_US;
    pdpt[1] = PD1_GPA | PTE_P_RW_US;
    for (unsigned i = 0; i < 512; i++) {
        pd0[i] = ((uint64_t)i << 21) | PTE_P_RW_US | PTE_PS;
        pd1[i] = ((1ull << 30) + ((uint64_t)i << 21)) | PTE_P_RW_US | PTE_PS;
    }
    memcpy(v->sys + CODE_GPA, svm_kvm_guest_start,
           svm_kvm_guest_end - svm_kvm_guest_start);

    slot = (struct kvm_userspace_memory_region) {
        .slot = 0, .guest_phys_addr = 0, .memory_size = SYS_SIZE,
        .userspace_addr = (uintptr_t)v->sys,
    };
    g_assert_cmpint(ioctl(v->vm, KVM_SET_USER_MEMORY_REGION, &slot), ==, 0);
    /* registering the slot touches no page of the pager's region */
    slot = (struct kvm_userspace_memory_region) {
        .slot = 1, .guest_phys_addr = RAM_GPA, .memory_size = ram->size,
        .userspace_addr = (uintptr_t)ram->host,
    };
    g_assert_cmpint(ioctl(v->vm, KVM_SET_USER_MEMORY_REGION, &slot), ==, 0);

    v->vcpu = ioctl(v->vm, KVM_CREATE_VCPU, 0);
    g_assert_cmpint(v->vcpu, >=, 0);
    run_size = ioctl(v->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    g_assert_cmpint(run_size, >, 0);
    v->run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->vcpu, 0);
    g_assert_true(v->run != MAP_FAILED);

    g_assert_cmpint(ioctl(v->vcpu, KVM_GET_SREGS, &sregs), ==, 0);
    /* long mode straight away; CS/SS with DPL 3 so the guest runs at CPL3 */
    sregs.cr3 = PML4_GPA;
    sregs.cr4 = 1u << 5;                            /* PAE */
    sregs.cr0 = 0x80000000u | 0x10000u | 0x20u | 0x10u | 0x2u | 0x1u;
    sregs.efer = 0x500;                             /* LME | LMA */
    set_seg(&sregs.cs, 0x1b, 11, true);
    set_seg(&sregs.ss, 0x23, 3, false);
    set_seg(&sregs.ds, 0x23, 3, false);
    set_seg(&sregs.es, 0x23, 3, false);
    set_seg(&sregs.fs, 0x23, 3, false);
    set_seg(&sregs.gs, 0x23, 3, false);
    sregs.tr = (struct kvm_segment) {
        .base = 0, .limit = 0x67, .selector = 0x28, .type = 11, .present = 1,
    };
    g_assert_cmpint(ioctl(v->vcpu, KVM_SET_SREGS, &sregs), ==, 0);

    regs = (struct kvm_regs) {
        .rip = CODE_GPA, .rsp = STACK_TOP, .rflags = 0x2,
        .rdi = RAM_GPA, .rsi = npages, .rdx = passes,
    };
    g_assert_cmpint(ioctl(v->vcpu, KVM_SET_REGS, &regs), ==, 0);
}

static void vm_destroy(Vm *v)
{
    close(v->vcpu);
    close(v->vm);
    close(v->kvm);
    munmap(v->sys, SYS_SIZE);
}

/* Runs the guest to its MMIO report; fails the test on anything else. */
static void vm_run_to_end(Vm *v)
{
    for (;;) {
        int ret = ioctl(v->vcpu, KVM_RUN, 0);

        if (ret < 0 && errno == EINTR) {
            continue;
        }
        g_assert_cmpint(ret, ==, 0);
        switch (v->run->exit_reason) {
        case KVM_EXIT_MMIO: {
            uint64_t val = 0;

            g_assert_true(v->run->mmio.is_write);
            memcpy(&val, v->run->mmio.data, v->run->mmio.len);
            if (v->run->mmio.phys_addr == MMIO_GPA && val == 0x600d) {
                return;
            }
            if (v->run->mmio.phys_addr == MMIO_GPA + 16) {
                g_test_message("guest found 0x%" G_GINT64_MODIFIER "x", val);
                continue;   /* the page index follows */
            }
            g_error("guest reported a mismatch: MMIO write 0x%" G_GINT64_MODIFIER
                    "x at 0x%llx (page index at +8)", val,
                    (unsigned long long)v->run->mmio.phys_addr);
        }
        case KVM_EXIT_SHUTDOWN:
            g_error("guest shut down (triple fault)");
        case KVM_EXIT_INTERNAL_ERROR:
            g_error("KVM internal error, suberror %u", v->run->internal.suberror);
        case KVM_EXIT_FAIL_ENTRY:
            g_error("KVM entry failed: 0x%llx",
                    (unsigned long long)v->run->fail_entry.hardware_entry_failure_reason);
        default:
            g_error("unexpected KVM exit %u", v->run->exit_reason);
        }
    }
}

static void check_ram(TestRam *ram, uint64_t npages, uint64_t passes)
{
    for (uint64_t pg = 0; pg < npages; pg++) {
        uint64_t want = ((passes - 1) << 32) | pg;
        uint64_t *w = (uint64_t *)(ram->host + pg * PG);

        g_assert_cmphex(w[0], ==, want);
        g_assert_cmphex(w[511], ==, want);
    }
}

static void run_guest(SvmPagerConfig *cfg, TestRam *ram, uint64_t passes,
                      bool expect_evictions)
{
    g_autoptr(GError) err = NULL;
    uint64_t npages = ram->size / PG;
    SvmPagerStats st;
    SvmPager *p;
    Vm v;

    p = svm_pager_start(cfg, &err);
    g_assert_no_error(err);
    vm_create(&v, ram, npages, passes);
    vm_run_to_end(&v);
    st = test_stats(p);
    test_print_stats(p);
    /* every page was faulted in by the guest through KVM's GUP */
    g_assert_cmpuint(st.fills_zero, ==, npages);
    g_assert_cmpuint(st.faults_missing, >=, npages);
    if (!expect_evictions) {
        /*
         * The guest writes every page: GUP's write faults fill them
         * writable and dirty (no WP fault follows), so all are dirty.
         */
        g_assert_cmpuint(st.dirty_pages, ==, npages);
    }
    g_assert_cmpuint(st.resident_pages, <=, cfg->budget ? cfg->budget / PG : npages);
    if (expect_evictions) {
        g_assert_cmpuint(st.evictions, >, npages);
        g_assert_cmpuint(st.writebacks, >, npages);
        g_assert_cmpuint(st.fills_remote, >, 0);
    }
    vm_destroy(&v);
    /* and the host sees what the guest wrote last (through the pager) */
    check_ram(ram, npages, passes);
    svm_pager_stop(p);
}

static void test_kvm_local(void)
{
    TestRam ram;
    SvmPagerConfig cfg;

    test_ram_init(&ram, 4u << 20);
    cfg = test_config(&ram, 0);
    run_guest(&cfg, &ram, 3, false);
    test_ram_destroy(&ram);
}

static void test_kvm_evicting(void)
{
    g_autoptr(SvmTestServer) srv = NULL;
    const char *servers[1];
    TestRam ram;
    SvmPagerConfig cfg;

    srv = svm_test_server_start(NULL);
    if (!srv) {
        g_test_skip("splitvm-memserver not available");
        return;
    }
    test_ram_init(&ram, 4u << 20);
    servers[0] = srv->address;
    cfg = test_config(&ram, 1u << 20);           /* region is 4x the budget */
    svm_test_server_config(srv, &cfg, servers, 1);
    run_guest(&cfg, &ram, 3, true);
    test_ram_destroy(&ram);
}

int main(int argc, char **argv)
{
    if (access("/dev/kvm", F_OK) != 0) {
        printf("SKIP: /dev/kvm is absent\n");
        return 77;
    }
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/pager/kvm/cpl3-guest-local", test_kvm_local);
    g_test_add_func("/pager/kvm/cpl3-guest-evicting", test_kvm_evicting);
    return g_test_run();
}
