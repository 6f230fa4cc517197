/*
 * fiber.cc - user-space context switches for the emulated GPU's threads (fiber.h).
 *
 * x86-64: dl_fiber_swap_sp pushes the six callee-saved registers of the System V ABI on the
 * running stack, stores the stack pointer, loads the other one and pops its registers: about a
 * dozen instructions and no system call. The floating-point control words (MXCSR, x87) are not
 * switched: nothing in a kernel changes them. A new fiber's stack is laid out as if it had
 * switched away at the start of dl_fiber_start, which calls dl_fiber_main(fiber); its CFI marks
 * the end of the call chain, so that gdb's backtrace in a kernel stops there cleanly.
 * Elsewhere (or with -DDL_FIBER_UCONTEXT, to test that path here) the portable ucontext calls
 * are used: correct, but each switch makes a system call.
 */
#include "fiber.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#if !defined(__x86_64__) && !defined(DL_FIBER_UCONTEXT)
#define DL_FIBER_UCONTEXT 1
#endif
#ifdef DL_FIBER_UCONTEXT
#include <ucontext.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#define DL_FIBER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DL_FIBER_ASAN 1
#endif
#endif
#ifdef DL_FIBER_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

namespace {

/* What a new fiber runs, kept beside its saved context until it starts. */
struct start_info {
    dl_fiber_entry entry;
    void *arg;
};

#ifdef DL_FIBER_ASAN
/* The bounds of this OS thread's own stack, which AddressSanitizer must be told when a fiber
 * switches back to it. */
struct asan_bounds {
    const void *bottom;
    size_t size;
};
thread_local asan_bounds tl_os_stack;

const asan_bounds &os_stack()
{
    if (!tl_os_stack.bottom) {
        pthread_attr_t a;
        void *addr = nullptr;
        size_t size = 0;
        if (pthread_getattr_np(pthread_self(), &a) == 0) {
            pthread_attr_getstack(&a, &addr, &size);
            pthread_attr_destroy(&a);
        }
        tl_os_stack.bottom = addr, tl_os_stack.size = size;
    }
    return tl_os_stack;
}
#endif

} // namespace

extern "C" void dl_fiber_main(dl_fiber *f);

#ifndef DL_FIBER_UCONTEXT
extern "C" void dl_fiber_swap_sp(void **save, void *load);
extern "C" void dl_fiber_start(void);

__asm__(".text\n"
        ".globl dl_fiber_swap_sp\n"
        ".type dl_fiber_swap_sp,@function\n"
        "dl_fiber_swap_sp:\n"
        "    .cfi_startproc\n"
        "    pushq %rbp\n"
        "    pushq %rbx\n"
        "    pushq %r12\n"
        "    pushq %r13\n"
        "    pushq %r14\n"
        "    pushq %r15\n"
        "    movq %rsp, (%rdi)\n"
        "    movq %rsi, %rsp\n"
        "    popq %r15\n"
        "    popq %r14\n"
        "    popq %r13\n"
        "    popq %r12\n"
        "    popq %rbx\n"
        "    popq %rbp\n"
        "    ret\n"
        "    .cfi_endproc\n"
        ".size dl_fiber_swap_sp,.-dl_fiber_swap_sp\n"
        ".globl dl_fiber_start\n"
        ".type dl_fiber_start,@function\n"
        "dl_fiber_start:\n"
        "    .cfi_startproc\n"
        "    .cfi_undefined rip\n"
        "    movq %r12, %rdi\n"
        "    call dl_fiber_main\n"
        "    ud2\n"
        "    .cfi_endproc\n"
        ".size dl_fiber_start,.-dl_fiber_start\n"
        ".section .note.GNU-stack,\"\",@progbits\n"
        ".text\n");
#endif

extern "C" void dl_fiber_main(dl_fiber *f)
{
#ifdef DL_FIBER_ASAN
    __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
    /* the entry and its argument were left at the top of the stack by dl_fiber_init */
    start_info *info = reinterpret_cast<start_info *>(f->stack + f->stack_size) - 1;
    info->entry(info->arg);
    fprintf(stderr, "emulated GPU: a fiber's entry returned\n");
    abort();
}

char *dl_fiber_stack_alloc(size_t size)
{
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void *p = mmap(nullptr, size + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    mprotect(p, page, PROT_NONE); /* the guard page: an overflowing kernel faults here */
    return static_cast<char *>(p) + page;
}

void dl_fiber_stack_free(char *stack, size_t size)
{
    if (!stack) return;
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    munmap(stack - page, size + page);
}

#ifdef DL_FIBER_UCONTEXT
static void ucontext_entry(unsigned hi, unsigned lo)
{
    dl_fiber_main(reinterpret_cast<dl_fiber *>(((uintptr_t)hi << 32) | lo));
}
#endif

void dl_fiber_init(dl_fiber *f, char *stack, size_t size, dl_fiber_entry entry, void *arg, unsigned color)
{
    f->stack = stack;
    f->stack_size = size;
    f->asan_fake = nullptr;
#ifdef DL_FIBER_ASAN
    /* a fiber abandoned in the middle of a kernel left its frames' redzones poisoned */
    __asan_unpoison_memory_region(stack, size);
#endif
    start_info *info = reinterpret_cast<start_info *>(stack + size) - 1;
    info->entry = entry;
    info->arg = arg;
    const uintptr_t top = ((uintptr_t)info - (uintptr_t)(color % 61) * 64) & ~(uintptr_t)15;
#ifndef DL_FIBER_UCONTEXT
    /* [r15 r14 r13 r12 rbx rbp] then the return address: dl_fiber_start, with r12 = f.
     * After the pops and the ret the stack pointer is top, 16-byte aligned, as the call in
     * dl_fiber_start needs. */
    uintptr_t *sp = reinterpret_cast<uintptr_t *>(top);
    *--sp = (uintptr_t)&dl_fiber_start;
    *--sp = 0;            /* rbp: the end of the frame chain */
    *--sp = 0;            /* rbx */
    *--sp = (uintptr_t)f; /* r12 */
    *--sp = 0;            /* r13 */
    *--sp = 0;            /* r14 */
    *--sp = 0;            /* r15 */
    f->sp = sp;
    f->ucontext = nullptr;
#else
    ucontext_t *uc = static_cast<ucontext_t *>(f->ucontext);
    if (!uc) f->ucontext = uc = static_cast<ucontext_t *>(calloc(1, sizeof *uc));
    getcontext(uc);
    uc->uc_stack.ss_sp = stack;
    uc->uc_stack.ss_size = top - (uintptr_t)stack;
    uc->uc_link = nullptr;
    makecontext(uc, (void (*)())ucontext_entry, 2, (unsigned)((uintptr_t)f >> 32), (unsigned)(uintptr_t)f);
#endif
}

static inline void swap_to(dl_fiber *from, dl_fiber *to)
{
#ifndef DL_FIBER_UCONTEXT
    dl_fiber_swap_sp(&from->sp, to->sp);
#else
    if (!from->ucontext) from->ucontext = calloc(1, sizeof(ucontext_t));
    swapcontext(static_cast<ucontext_t *>(from->ucontext), static_cast<ucontext_t *>(to->ucontext));
#endif
}

void dl_fiber_switch(dl_fiber *from, dl_fiber *to)
{
#ifdef DL_FIBER_ASAN
    const void *bottom = to->stack ? to->stack : os_stack().bottom;
    const size_t size = to->stack ? to->stack_size : os_stack().size;
    __sanitizer_start_switch_fiber(&from->asan_fake, bottom, size);
#endif
    swap_to(from, to);
#ifdef DL_FIBER_ASAN
    __sanitizer_finish_switch_fiber(from->asan_fake, nullptr, nullptr);
#endif
}

void dl_fiber_exit_to(dl_fiber *self, dl_fiber *to)
{
#ifdef DL_FIBER_ASAN
    const void *bottom = to->stack ? to->stack : os_stack().bottom;
    const size_t size = to->stack ? to->stack_size : os_stack().size;
    __sanitizer_start_switch_fiber(nullptr, bottom, size); /* nullptr: this fiber's fake stack goes */
#endif
    swap_to(self, to);
    abort(); /* nothing resumes a finished fiber */
}
