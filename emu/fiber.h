/*
 * fiber.h - the emulated GPU's threads: user-space contexts on their own stacks, switched by a few
 * instructions (emu/fiber.cc), with no system call per switch (glibc's swapcontext makes one, to
 * save the signal mask, which made a first experiment 50 times slower).
 *
 *     dl_fiber_init(&f, stack, size, entry, arg, 0); // f runs entry(arg) on stack when switched to
 *     dl_fiber_switch(&from, &f);                   // save the caller in from, resume f
 *
 * entry must never return: it ends by switching away for good. A fiber is resumed only on the OS
 * thread that made it. Under AddressSanitizer every switch is announced to it (it keeps its own
 * idea of which stack is running), so that stack reports stay right.
 */
#ifndef DL_EMU_FIBER_H
#define DL_EMU_FIBER_H

#include <stddef.h>

typedef struct dl_fiber {
    void *sp;    /* the saved stack pointer (the callee-saved registers are pushed below it) */
    char *stack; /* lowest address of the stack, NULL for an OS thread's own stack */
    size_t stack_size;
    void *asan_fake; /* AddressSanitizer's fake-stack handle while switched out */
    void *ucontext;  /* the portable fallback's context (not x86-64 or arm64) */
} dl_fiber;

typedef void (*dl_fiber_entry)(void *arg);

/* Stacks: mmap'd, with an inaccessible guard page below, so that an overflow faults at once. */
char *dl_fiber_stack_alloc(size_t size);
void dl_fiber_stack_free(char *stack, size_t size);

/* color staggers where the stack starts (64-byte steps): fibers whose stacks began at the same
 * offset of a page would all compete for the same few cache sets. */
void dl_fiber_init(dl_fiber *f, char *stack, size_t size, dl_fiber_entry entry, void *arg, unsigned color);
void dl_fiber_switch(dl_fiber *from, dl_fiber *to);
/* The last switch out of a fiber whose entry is done (its stack may be reused afterwards). */
void dl_fiber_exit_to(dl_fiber *self, dl_fiber *to);

#endif
