/*
 * emu.h - controls and counters of the emulated GPU, callable from C and C++ (tests, tools).
 * Only emulated builds (make EMU=1, make SANITIZE=1) define these; code that may also be built
 * for a real GPU guards its calls with #ifdef DL_EMU.
 *
 * The schedule: within a block, the order in which threads run from one barrier to the next, and
 * the order in which blocks run, are permutations drawn from a seed (DEEPLAB_EMU_SEED in the
 * environment, default 1; 0 runs everything in index order). A result that changes with the seed
 * has a race in it.
 */
#ifndef DL_EMU_H
#define DL_EMU_H

#ifdef __cplusplus
extern "C" {
#endif

void dl_emu_set_seed(unsigned long long seed);
unsigned long long dl_emu_seed(void);

typedef struct dl_emu_stats {
    unsigned long long launches;     /* kernels run */
    unsigned long long blocks;       /* blocks run, and how: */
    unsigned long long fiber_blocks; /*   threads as fibers (the kernel has barriers or warp operations) */
    unsigned long long plain_blocks; /*   threads as plain calls, one after the other */
    unsigned long long switches;     /* context switches between threads */
    unsigned long long device_syncs; /* waits for the whole device: cudaDeviceSynchronize, cudaFree, ... */
    unsigned long long pending;      /* operations queued on streams and not yet run */
} dl_emu_stats;

void dl_emu_get_stats(dl_emu_stats *s);

#ifdef __cplusplus
}
#endif
#endif
