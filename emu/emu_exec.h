/*
 * emu_exec.h - the executor's state (exec.cc), shared with the warp-wide instructions (ptx.cc):
 * a worker (one per CPU thread of the pool) and the threads of the block it runs.
 */
#ifndef DL_EMU_EXEC_H
#define DL_EMU_EXEC_H

#include <setjmp.h>
#include <stdint.h>

#include <vector>

#include "emu_internal.h"
#include "fiber.h"

namespace dl_emu {

enum thread_state : uint8_t { T_READY, T_BARRIER, T_WARP, T_DONE };

/* One cp.async of a thread: done when a cp.async.wait_group lets it (emu/ptx.cc). */
struct cp_async_op {
    void *dst;
    const void *src;
    unsigned bytes, src_bytes;
};

struct emu_thread {
    dl_fiber fiber{};
    uint3 tid{};
    int linear = 0;
    thread_state state = T_READY;
    /* at a barrier: where (source file and line), which kind (__syncthreads, _count, _and, _or), the predicate */
    const char *bar_file = nullptr;
    int bar_line = 0;
    int bar_kind = 0, bar_pred = 0;
    /* in a warp operation: its name and mask (for messages) */
    const char *warp_op = nullptr;
    unsigned warp_mask = 0;
    /* cp.async: copies issued, and where each committed group ends in that list */
    std::vector<cp_async_op> cp_pending;
    std::vector<size_t> cp_group_ends;
};

/* A warp operation some lanes have reached: the others of its mask are awaited. Each lane leaves
 * pointers to its operands and its result (on its own stack, alive while it waits); the last lane
 * to arrive computes every lane's result. */
typedef void (*warp_compute)(const void *const in[32], void *const out[32], unsigned mask, int warp);
struct warp_group {
    unsigned mask = 0, arrived = 0;
    const char *op = nullptr;
    warp_compute fn = nullptr;
    const void *in[32];
    void *out[32];
};
enum { WARP_GROUPS = 4 }; /* pending operations per warp at once (disjoint masks) */

/* i -> (a i + c) mod n, a coprime to n: a permutation that costs nothing to store. */
struct perm_affine {
    uint64_t a = 1, c = 0, n = 1;
    uint64_t operator()(uint64_t i) const { return (uint64_t)(((unsigned __int128)a * i + c) % n); }
    void draw(uint64_t &rng, uint64_t count);
};

struct worker {
    struct decl {
        const void *key;
        size_t offset;
    };

    int index;
    dl_fiber sched{};    /* the worker's own stack: the block's scheduler runs there */
    emu_thread *threads; /* MAX_THREADS_PER_BLOCK, stacks made on first use */
    unsigned char *smem_static, *smem_dynamic;
    std::vector<decl> decls; /* the block's DL_SHARED arrays */
    size_t static_used = 0;

    /* the block being run */
    const launch *L = nullptr;
    uint3 bid{};
    int nthreads = 0;
    emu_thread *cur = nullptr;
    int n_done = 0, n_barrier = 0, n_warp = 0;
    int bar_result = 0;
    bool failed = false, used_sync = false, fiber_block = false;
    bool plain_direct = false; /* the running thread is a plain call, not a fiber */
    int plain_ran_before = 0;
    jmp_buf plain_abort;
    uint64_t rng = 0;
    uint16_t order_of[MAX_THREADS_PER_BLOCK]; /* this phase's thread order */
    emu_thread *ready[MAX_THREADS_PER_BLOCK];
    unsigned ready_head = 0, ready_tail = 0;
    warp_group groups[MAX_THREADS_PER_BLOCK / 32][WARP_GROUPS];
    unsigned long long switches = 0;

    explicit worker(int i);
    int order(int i) const { return order_of[i]; }
    /* a new order for the threads (seed 0: index order) */
    void draw_order(bool shuffle);
    void push_ready(emu_thread &t) { ready[ready_tail++ % MAX_THREADS_PER_BLOCK] = &t; }
    void warp_reset()
    {
        const int warps = (nthreads + 31) / 32;
        for (int i = 0; i < warps; i++)
            for (auto &g : groups[i]) g.mask = g.arrived = 0;
    }
};

extern __thread worker *tl_worker;

emu_thread &current_thread(const char *what);
void yield_to_scheduler(worker &w, emu_thread &t);
void block_fault(worker &w, cudaError_t e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void plain_sync_fault(worker &w, const char *what);

/* The calling thread's part in a warp-wide operation over mask (every lane of it must call it):
 * returns when all have arrived and fn has computed every lane's result. */
void warp_collective(const char *op, unsigned mask, const void *in, void *out, warp_compute fn);

/* cp.async: completes the thread's copies except the newest keep committed groups (ptx.cc). */
void cp_async_drain(emu_thread &t, size_t keep);

} // namespace dl_emu

#endif
