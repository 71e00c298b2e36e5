/*
 * CPL3 guest for test-pager-kvm: writes a pattern into every page of the
 * pager-managed region, reads it back, for several passes, then reports
 * through an MMIO write (no I/O privilege needed at CPL3).
 *   rdi = region base (guest physical = virtual), rsi = pages, rdx = passes
 * Success: writes 0x600d to MMIO_BASE.  Mismatch: writes the page index to
 * MMIO_BASE + 8 and the value found to MMIO_BASE + 16.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define MMIO_BASE 0x7fe00000

    .section .rodata
    .globl svm_kvm_guest_start
    .globl svm_kvm_guest_end
    .code64
svm_kvm_guest_start:
    mov     %rdx, %r10              /* passes */
    xor     %r8, %r8                /* pass */
1:  xor     %rcx, %rcx              /* write pass */
2:  mov     %rcx, %rax
    shl     $12, %rax
    lea     (%rdi,%rax), %r9
    mov     %r8, %rax
    shl     $32, %rax
    or      %rcx, %rax
    mov     %rax, (%r9)
    mov     %rax, 4088(%r9)
    inc     %rcx
    cmp     %rsi, %rcx
    jb      2b
    xor     %rcx, %rcx              /* verify pass */
3:  mov     %rcx, %rax
    shl     $12, %rax
    lea     (%rdi,%rax), %r9
    mov     %r8, %rax
    shl     $32, %rax
    or      %rcx, %rax
    mov     (%r9), %rdx
    cmp     %rdx, %rax
    jne     9f
    mov     4088(%r9), %rdx
    cmp     %rdx, %rax
    jne     9f
    inc     %rcx
    cmp     %rsi, %rcx
    jb      3b
    inc     %r8
    cmp     %r10, %r8
    jb      1b
    movabs  $MMIO_BASE, %rax
    movq    $0x600d, (%rax)
8:  jmp     8b
9:  movabs  $MMIO_BASE, %rax
    mov     %rdx, 16(%rax)
    mov     %rcx, 8(%rax)
    jmp     8b
svm_kvm_guest_end:
    .section .note.GNU-stack,"",@progbits
