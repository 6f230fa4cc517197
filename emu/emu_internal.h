/*
 * emu_internal.h - what the emulated runtime (runtime.cc: memory, streams, events, errors) and
 * its executor (exec.cc: grids, blocks, threads, barriers; ptx.cc: warp-wide instructions)
 * share. Not for kernels or host code: they see cuda_runtime.h, layers/cuda_kernel.h and emu.h.
 */
#ifndef DL_EMU_INTERNAL_H
#define DL_EMU_INTERNAL_H

#include <atomic>
#include <memory>
#include <string>

#include "cuda_runtime.h"

namespace dl_emu {

/* The emulated device's limits: those of an sm_90 part (H100), so that what fails there fails here. */
enum : size_t {
    MAX_THREADS_PER_BLOCK = 1024,
    MAX_BLOCK_X = 1024,
    MAX_BLOCK_Y = 1024,
    MAX_BLOCK_Z = 64,
    MAX_GRID_X = 2147483647,
    MAX_GRID_Y = 65535,
    MAX_GRID_Z = 65535,
    STATIC_SMEM_LIMIT = 48 * 1024, /* static shared memory, and static + dynamic without the opt-in */
    OPTIN_SMEM_LIMIT = 232448,     /* 227 KB: what cudaFuncAttributeMaxDynamicSharedMemorySize may raise it to */
    SM_COUNT = 132,
    CC_MAJOR = 9,
    CC_MINOR = 0
};

/* How a kernel's blocks are run, learnt from its first block (exec.cc). */
enum kernel_mode { MODE_UNKNOWN, MODE_PLAIN, MODE_FIBERS };

struct kernel_info {
    const void *fn;
    std::string name;
    int max_threads; /* __launch_bounds__, else MAX_THREADS_PER_BLOCK */
    std::atomic<int> mode{MODE_UNKNOWN};
    std::atomic<size_t> static_smem{0}; /* the most static shared memory a block has used */
    std::atomic<int> max_dynamic_smem;  /* cudaFuncAttributeMaxDynamicSharedMemorySize */
    std::atomic<uint64_t> launches{0};
    explicit kernel_info(const void *f) : fn(f), max_threads(0), max_dynamic_smem((int)STATIC_SMEM_LIMIT) {}
};

/* The kernel's record, made on its first launch; name is DL_LAUNCH's spelling of it. */
kernel_info *kernel_lookup(const void *fn, const char *name);
int launch_bounds_of(const void *fn); /* 0 without __launch_bounds__ */

struct launch {
    kernel_info *k;
    dim3 grid, block;
    size_t smem;
    std::shared_ptr<const launch_args> args; /* shared: a CUDA graph launches the same arguments again */
    uint64_t seed;  /* the schedule's seed for this launch (0: threads and blocks in order) */
};

/* Runs every block of the launch (exec.cc); cudaSuccess or the fault it met (fault() was called). */
cudaError_t run_launch(const launch &L);

/* A fault met while running device work: sticky, as a fault on a GPU; the first one's detail is
 * appended to cudaGetErrorString's text for its code, so that errors name the kernel. */
void fault(cudaError_t e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
cudaError_t sticky_error();

/* The schedule seed (DEEPLAB_EMU_SEED, default 1; dl_emu_set_seed) and worker threads. */
uint64_t schedule_seed();
int worker_count();
bool verbose();

/* Is [p, p + bytes) inside one device allocation (for the warp instructions' checks)? */
bool is_device_range(const void *p, size_t bytes);

} // namespace dl_emu

#endif
