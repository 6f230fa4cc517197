/*
 * exec.cc - how the emulated GPU runs a grid: blocks spread over CPU threads, a block's threads
 * as fibers (fiber.h) switched at barriers and warp operations, shared memory per block.
 *
 * Blocks. A pool of worker threads (DEEPLAB_EMU_THREADS, default: one per CPU) takes the blocks of
 * a launch one at a time; the thread that runs the launch works too. Each worker has its own
 * fiber stacks and shared memory, so blocks never share anything but global memory, as on a GPU.
 * The blocks are taken in a permuted order drawn from the schedule seed.
 *
 * Threads. Every thread of a block is a fiber with its own stack. The block's scheduler runs the
 * ready threads one after the other, each until it finishes or reaches a barrier or a warp
 * operation; the order is a permutation drawn from the seed, redrawn at every barrier. So a
 * kernel that reads what another thread writes without a barrier between them sees a different
 * value under another seed. A barrier opens when every thread of the block waits at it; one that
 * some threads have left the kernel without reaching, or threads waiting at different barriers,
 * or threads waiting for each other forever (a warp operation whose lanes are at a barrier) is a
 * fault naming the kernel, the block and the threads.
 *
 * Plain blocks. Most kernels (element-wise ones) have no barrier and no warp operation; switching
 * stacks for them would only cost time. A kernel's first block always runs as fibers; if none of
 * its threads used a barrier or a warp operation, later blocks run their threads as plain calls,
 * one after the other, except the first (still a fiber, so that a block where it does reach a
 * barrier is run as fibers after all). A barrier reached in a plain call means that threads run
 * before it left without reaching it: a fault, as above. DEEPLAB_EMU_FIBERS=1 always uses fibers.
 *
 * Shared memory. DL_SHARED declarations are placed in the block's static area on their first
 * execution in each block (so a kernel's total is known, and over 48 KB is a fault), dynamic
 * shared memory is the launch's size; both are filled with 0xff bytes (NaN as float) at the
 * start of every block. Under AddressSanitizer everything outside the declared arrays is
 * poisoned, so an out-of-bounds shared access is reported.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "emu.h"
#include "emu_internal.h"
#include "emu_exec.h"
#include "fiber.h"

#if defined(__SANITIZE_ADDRESS__)
#define DL_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DL_EMU_ASAN 1
#endif
#endif
#ifdef DL_EMU_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
enum { SMEM_REDZONE = 64 };
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
enum { SMEM_REDZONE = 0 };
#endif

__thread uint3 threadIdx;
__thread uint3 blockIdx;
__thread dim3 blockDim;
__thread dim3 gridDim;

namespace dl_emu {

__thread worker *tl_worker;

std::atomic<unsigned long long> stat_launches, stat_blocks, stat_fiber_blocks, stat_plain_blocks, stat_switches;

/* ------------------------------------------------------------------ random permutations */

static inline uint64_t splitmix(uint64_t &s)
{
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t hash_name(const std::string &s)
{
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    return h;
}

static uint64_t gcd(uint64_t a, uint64_t b)
{
    while (b) {
        const uint64_t t = a % b;
        a = b, b = t;
    }
    return a;
}

/* A permutation of [0, count) that costs nothing to store: i -> (a i + c) mod n, a coprime to n. */
void perm_affine::draw(uint64_t &rng, uint64_t count)
{
    n = count ? count : 1;
    a = 1, c = 0;
    if (n < 2) return;
    a = splitmix(rng) % n | 1;
    while (gcd(a, n) != 1) a = (a + 2) % n ? (a + 2) % n : 1;
    c = splitmix(rng) % n;
}

/* ------------------------------------------------------------------ workers */

static size_t stack_bytes()
{
    static const size_t bytes = [] {
        const char *e = getenv("DEEPLAB_EMU_STACK_KB");
        long kb = e && *e ? atol(e) : 0;
#ifdef DL_EMU_ASAN
        if (kb <= 0) kb = 512;
#else
        if (kb <= 0) kb = 64;
#endif
        return (size_t)kb * 1024;
    }();
    return bytes;
}

static bool always_fibers()
{
    static const bool yes = [] {
        const char *e = getenv("DEEPLAB_EMU_FIBERS");
        return e && *e && strcmp(e, "0") != 0;
    }();
    return yes;
}

void worker::draw_order(bool shuffle)
{
    if (!shuffle) {
        for (int i = 0; i < nthreads; i++) order_of[i] = (uint16_t)i;
        return;
    }
    perm_affine p;
    p.draw(rng, (uint64_t)nthreads);
    uint64_t x = p.c;
    for (int i = 0; i < nthreads; i++) {
        order_of[i] = (uint16_t)x;
        x += p.a;
        while (x >= p.n) x -= p.n;
    }
}

worker::worker(int i) : index(i)
{
    threads = new emu_thread[MAX_THREADS_PER_BLOCK];
    smem_static = static_cast<unsigned char *>(malloc(STATIC_SMEM_LIMIT + SMEM_REDZONE * 64));
    smem_dynamic = static_cast<unsigned char *>(malloc(OPTIN_SMEM_LIMIT));
    if (!threads || !smem_static || !smem_dynamic) {
        fprintf(stderr, "emulated GPU: out of memory for a worker's shared memory\n");
        abort();
    }
    memset(&sched, 0, sizeof sched);
}

/* The fiber of thread t, with a stack (made on first use). */
static dl_fiber *fiber_of(emu_thread &t)
{
    if (!t.fiber.stack) {
        char *s = dl_fiber_stack_alloc(stack_bytes());
        if (!s) {
            fprintf(stderr, "emulated GPU: cannot map a thread stack of %zu KB\n", stack_bytes() / 1024);
            abort();
        }
        t.fiber.stack = s;
        t.fiber.stack_size = stack_bytes();
    }
    return &t.fiber;
}

static void thread_entry(void *arg);

static void start_fiber(worker &w, emu_thread &t)
{
    dl_fiber *f = fiber_of(t);
    dl_fiber_init(f, f->stack, f->stack_size, thread_entry, &t, (unsigned)t.linear);
    t.state = T_READY;
    (void)w;
}

/* Runs thread t, and from it the other ready threads, until none is ready. */
static inline void slice(worker &w, emu_thread &t)
{
    w.cur = &t;
    threadIdx = t.tid;
    w.switches++;
    dl_fiber_switch(&w.sched, &t.fiber);
    w.cur = nullptr;
}

/* The thread to run after one that waits or finishes: the next ready one, straight from fiber to
 * fiber, or the scheduler (on the worker's own stack) when none is ready, to open a barrier. */
static inline dl_fiber *next_fiber(worker &w)
{
    if (w.ready_head == w.ready_tail || w.failed) {
        w.cur = nullptr;
        return &w.sched;
    }
    emu_thread &n = *w.ready[w.ready_head++ % MAX_THREADS_PER_BLOCK];
    w.cur = &n;
    threadIdx = n.tid;
    w.switches++;
    return &n.fiber;
}

/* Called from a fiber that must wait: returns when it is resumed (the resumer set threadIdx). */
void yield_to_scheduler(worker &w, emu_thread &t) { dl_fiber_switch(&t.fiber, next_fiber(w)); }

static void finish_thread(worker &w, emu_thread &t)
{
    if (!t.cp_pending.empty()) { /* copies still in flight complete, committed or not */
        t.cp_group_ends.push_back(t.cp_pending.size());
        cp_async_drain(t, 0);
    }
    t.state = T_DONE;
    w.n_done++;
}

static void thread_entry(void *arg)
{
    emu_thread &t = *static_cast<emu_thread *>(arg);
    worker &w = *tl_worker;
    w.L->args->run_thread();
    finish_thread(w, t);
    dl_fiber_exit_to(&t.fiber, next_fiber(w));
}

/* ------------------------------------------------------------------ faults */

static void describe_thread(const worker &w, const emu_thread &t, char *buf, size_t len)
{
    snprintf(buf, len, "thread (%u,%u,%u) of block (%u,%u,%u)", t.tid.x, t.tid.y, t.tid.z, w.bid.x, w.bid.y, w.bid.z);
}

/* A fault inside a block: recorded, and the block (and the launch) stops. From a fiber it
 * switches back to the scheduler for good; from a plain call it jumps back to the block loop. */
void block_fault(worker &w, cudaError_t e, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fault(e, "%s: %s", w.L->k->name.c_str(), msg);
    w.failed = true;
    if (w.plain_direct) longjmp(w.plain_abort, 1);
    if (w.cur) {
        emu_thread &t = *w.cur;
        t.state = T_DONE;
        w.cur = nullptr;
        dl_fiber_switch(&t.fiber, &w.sched);
        abort(); /* a failed block is never resumed */
    }
}

emu_thread &current_thread(const char *what)
{
    worker *w = tl_worker;
    if (!w || !w->L || !w->cur) {
        fprintf(stderr, "emulated GPU: %s called outside a kernel\n", what);
        abort();
    }
    return *w->cur;
}

/* A barrier or warp operation reached by a thread that runs as a plain call (see the top). */
void plain_sync_fault(worker &w, const char *what)
{
    char who[96];
    describe_thread(w, *w.cur, who, sizeof who);
    if (strcmp(what, "__syncthreads()") == 0 || w.plain_ran_before == 0)
        block_fault(w, cudaErrorLaunchFailure,
                    "%s reached %s after %d thread(s) of its block had finished without reaching it", who, what,
                    w.plain_ran_before);
    block_fault(w, cudaErrorLaunchFailure,
                "%s reached %s, but the kernel's first block ran none, so its threads run as plain calls (run with "
                "DEEPLAB_EMU_FIBERS=1 for a kernel that uses warp operations in some blocks only)",
                who, what);
}

/* ------------------------------------------------------------------ barriers */

static int barrier(int kind, int predicate, const char *file, int line)
{
    emu_thread &t = current_thread("__syncthreads()");
    worker &w = *tl_worker;
    w.used_sync = true;
    if (w.plain_direct) plain_sync_fault(w, "__syncthreads()");
    t.state = T_BARRIER;
    t.bar_file = file;
    t.bar_line = line;
    t.bar_kind = kind;
    t.bar_pred = predicate != 0;
    w.n_barrier++;
    yield_to_scheduler(w, t);
    return w.bar_result;
}

} // namespace dl_emu

using namespace dl_emu;

extern "C" int dl_emu_barrier(int kind, int predicate, const char *file, int line)
{
    return barrier(kind, predicate, file, line);
}
extern "C" void __threadfence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
extern "C" void __threadfence_block(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

namespace dl_emu {

/* Every thread still running waits at a barrier: open it, or fault if it cannot open. */
static void open_barrier(worker &w)
{
    emu_thread *first = nullptr, *gone = nullptr;
    int count = 0, all = 1, any = 0;
    for (int i = 0; i < w.nthreads; i++) {
        emu_thread &t = w.threads[i];
        if (t.state == T_DONE) {
            if (!gone) gone = &t;
            continue;
        }
        if (!first) first = &t;
        if (t.bar_line != first->bar_line || t.bar_kind != first->bar_kind ||
            (t.bar_file != first->bar_file && strcmp(t.bar_file, first->bar_file) != 0)) {
            char a[96], b[96];
            describe_thread(w, *first, a, sizeof a);
            describe_thread(w, t, b, sizeof b);
            block_fault(w, cudaErrorLaunchFailure,
                        "%s waits at the barrier of %s:%d and %s at the one of %s:%d: a barrier in divergent code", a,
                        first->bar_file, first->bar_line, b, t.bar_file, t.bar_line);
            return;
        }
        count += t.bar_pred;
        all &= t.bar_pred;
        any |= t.bar_pred;
    }
    if (gone) {
        char a[96], b[96];
        describe_thread(w, *gone, a, sizeof a);
        describe_thread(w, *first, b, sizeof b);
        block_fault(w, cudaErrorLaunchFailure,
                    "the barrier of %s:%d is not reached by every thread: %s finished without it while %d thread(s), "
                    "%s first, wait at it",
                    first->bar_file, first->bar_line, a, w.n_barrier, b);
        return;
    }
    w.bar_result = first->bar_kind == 1 ? count : first->bar_kind == 2 ? all : first->bar_kind == 3 ? any : 0;
    /* release in a fresh order */
    w.n_barrier = 0;
    for (int i = 0; i < w.nthreads; i++) {
        emu_thread &t = w.threads[w.order(i)];
        if (t.state == T_BARRIER) {
            t.state = T_READY;
            w.push_ready(t);
        }
    }
}

/* Nothing can run and the block has not finished: a fault that says who waits for what. */
static void deadlock(worker &w)
{
    char desc[512] = "";
    size_t at = 0;
    int shown = 0;
    for (int i = 0; i < w.nthreads && shown < 4; i++) {
        const emu_thread &t = w.threads[i];
        if (t.state != T_WARP) continue;
        at += (size_t)snprintf(desc + at, sizeof desc - at, "%sthread %d waits in %s (mask 0x%08x)", shown ? "; " : "",
                               t.linear, t.warp_op ? t.warp_op : "a warp operation", t.warp_mask);
        if (at >= sizeof desc) break;
        shown++;
    }
    block_fault(w, cudaErrorLaunchFailure,
                "block (%u,%u,%u) can go no further: %d thread(s) finished, %d wait at __syncthreads(), %d in warp "
                "operations whose lanes never all arrive: %s",
                w.bid.x, w.bid.y, w.bid.z, w.n_done, w.n_barrier, w.n_warp, desc);
}

/* ------------------------------------------------------------------ running a block */

static void reset_block(worker &w, const launch &L, uint64_t linear_block)
{
    w.L = &L;
    w.failed = false;
    w.used_sync = false;
    w.plain_direct = false;
    w.n_done = w.n_barrier = w.n_warp = 0;
    w.bar_result = 0;
    w.ready_head = w.ready_tail = 0;
    const uint64_t gx = L.grid.x, gy = L.grid.y;
    w.bid.x = (unsigned)(linear_block % gx);
    w.bid.y = (unsigned)(linear_block / gx % gy);
    w.bid.z = (unsigned)(linear_block / gx / gy);
    blockIdx = w.bid;
    blockDim = L.block;
    gridDim = L.grid;
    w.nthreads = (int)(L.block.x * L.block.y * L.block.z);
    for (int i = 0; i < w.nthreads; i++) {
        emu_thread &t = w.threads[i];
        t.linear = i;
        t.tid.x = (unsigned)(i % L.block.x);
        t.tid.y = (unsigned)(i / L.block.x % L.block.y);
        t.tid.z = (unsigned)(i / L.block.x / L.block.y);
        t.state = T_READY;
        t.warp_op = nullptr;
        t.cp_pending.clear();
        t.cp_group_ends.clear();
    }
    w.warp_reset();
    w.rng = L.seed ^ (0xd1b54a32d192ed03ull * (linear_block + 1));
    w.draw_order(L.seed != 0);
    /* shared memory: NaN everywhere, declarations placed as they are met */
    w.decls.clear();
    w.static_used = 0;
    POISON(w.smem_static, STATIC_SMEM_LIMIT + SMEM_REDZONE * 64);
    POISON(w.smem_dynamic, OPTIN_SMEM_LIMIT);
    if (L.smem) {
        UNPOISON(w.smem_dynamic, L.smem);
        memset(w.smem_dynamic, 0xff, L.smem);
    }
}

/* Runs the ready threads, opening barriers, until the block finishes or faults. */
static void schedule(worker &w)
{
    for (;;) {
        while (w.ready_head != w.ready_tail) {
            emu_thread &t = *w.ready[w.ready_head++ % MAX_THREADS_PER_BLOCK];
            slice(w, t);
            if (w.failed) return;
        }
        if (w.n_done == w.nthreads) return;
        if (w.n_barrier > 0 && w.n_warp == 0 && w.n_barrier + w.n_done == w.nthreads) {
            open_barrier(w);
            if (w.failed) return;
            if (w.L->seed) w.draw_order(true); /* the next phase's order */
            continue;
        }
        deadlock(w);
        return;
    }
}

static void run_block_fibers(worker &w, int already_started)
{
    for (int i = 0; i < w.nthreads; i++) {
        emu_thread &t = w.threads[w.order(i)];
        if (t.linear == already_started) continue;
        start_fiber(w, t);
        w.push_ready(t);
    }
    schedule(w);
}

/* A kernel learnt to have no barrier or warp operation: threads one after the other. */
static void run_block_plain(worker &w)
{
    const launch &L = *w.L;
    emu_thread &first = w.threads[w.order(0)];
    start_fiber(w, first);
    slice(w, first);
    if (w.failed) return;
    if (first.state != T_DONE) { /* it reached a barrier or warp operation after all */
        L.k->mode.store(MODE_FIBERS);
        w.fiber_block = true;
        run_block_fibers(w, first.linear);
        return;
    }
    w.plain_ran_before = 1;
    if (setjmp(w.plain_abort)) return; /* a fault in a plain call (block_fault) */
    w.plain_direct = true;
    for (int i = 1; i < w.nthreads; i++) {
        emu_thread &t = w.threads[w.order(i)];
        w.cur = &t;
        threadIdx = t.tid;
        L.args->run_thread();
        finish_thread(w, t);
        w.plain_ran_before++;
    }
    w.plain_direct = false;
    w.cur = nullptr;
}

static void run_block(worker &w, const launch &L, uint64_t linear_block)
{
    reset_block(w, L, linear_block);
    const int mode = always_fibers() ? MODE_FIBERS : L.k->mode.load(std::memory_order_relaxed);
    w.fiber_block = mode != MODE_PLAIN;
    w.plain_ran_before = 0;
    if (mode == MODE_PLAIN)
        run_block_plain(w);
    else
        run_block_fibers(w, -1);
    if (!w.failed && mode == MODE_UNKNOWN) {
        int expect = MODE_UNKNOWN;
        L.k->mode.compare_exchange_strong(expect, w.used_sync ? MODE_FIBERS : MODE_PLAIN);
    }
    if (w.static_used) {
        size_t seen = L.k->static_smem.load();
        while (w.static_used > seen && !L.k->static_smem.compare_exchange_weak(seen, w.static_used)) {
        }
    }
    w.L = nullptr;
}

/* ------------------------------------------------------------------ the pool */

namespace {

struct pool {
    std::mutex mu;
    std::condition_variable start_cv, done_cv;
    std::vector<worker *> workers; /* [0]: the thread that runs the launch */
    std::vector<std::thread> threads;
    uint64_t generation = 0;
    const launch *job = nullptr;
    uint64_t nblocks = 0;
    perm_affine block_order;
    std::atomic<uint64_t> next{0};
    std::atomic<bool> failed{false};
    int busy = 0;

    void work(worker &w)
    {
        const launch &L = *job;
        for (;;) {
            const uint64_t i = next.fetch_add(1);
            if (i >= nblocks || failed.load(std::memory_order_relaxed)) break;
            tl_worker = &w;
            run_block(w, L, block_order(i));
            tl_worker = nullptr;
            if (w.failed) failed.store(true);
            stat_blocks++;
            (w.fiber_block ? stat_fiber_blocks : stat_plain_blocks)++;
        }
        stat_switches += w.switches;
        w.switches = 0;
    }

    void loop(worker *w)
    {
        uint64_t seen = 0;
        std::unique_lock<std::mutex> lk(mu);
        for (;;) {
            start_cv.wait(lk, [&] { return generation != seen; });
            seen = generation;
            lk.unlock();
            work(*w);
            lk.lock();
            if (--busy == 0) done_cv.notify_all();
        }
    }

    void ensure_started()
    {
        if (!workers.empty()) return;
        const int n = worker_count();
        for (int i = 0; i < n; i++) workers.push_back(new worker(i));
        for (int i = 1; i < n; i++) {
            threads.emplace_back(&pool::loop, this, workers[(size_t)i]);
            threads.back().detach();
        }
    }
};

pool &the_pool()
{
    static pool *p = new pool; /* never destroyed: detached workers may outlive static destructors */
    return *p;
}

} // namespace

/* Only one launch runs at a time (runtime.cc holds its execution lock around this). */
cudaError_t run_launch(const launch &L)
{
    pool &p = the_pool();
    p.ensure_started();
    const uint64_t nblocks = (uint64_t)L.grid.x * L.grid.y * L.grid.z;
    stat_launches++;
    L.k->launches++;
    uint64_t rng = L.seed ^ hash_name(L.k->name) ^ (0x632be59bd9b4e019ull * L.k->launches.load());
    p.job = &L;
    p.nblocks = nblocks;
    p.next = 0;
    p.failed = false;
    if (L.seed)
        p.block_order.draw(rng, nblocks);
    else
        p.block_order = perm_affine{1, 0, nblocks ? nblocks : 1};
    const int helpers = (int)p.workers.size() - 1;
    const bool parallel = helpers > 0 && nblocks > 1;
    if (parallel) {
        std::lock_guard<std::mutex> lk(p.mu);
        p.busy = helpers;
        p.generation++;
        p.start_cv.notify_all();
    }
    p.work(*p.workers[0]);
    if (parallel) {
        std::unique_lock<std::mutex> lk(p.mu);
        p.done_cv.wait(lk, [&] { return p.busy == 0; });
    }
    p.job = nullptr;
    return p.failed ? sticky_error() : cudaSuccess;
}

} // namespace dl_emu

/* ------------------------------------------------------------------ shared memory */

extern "C" void *dl_emu_shared_static(const void *key, size_t bytes, size_t align)
{
    worker *w = tl_worker;
    if (!w || !w->L) {
        fprintf(stderr, "emulated GPU: a DL_SHARED declaration executed outside a kernel\n");
        abort();
    }
    for (const auto &d : w->decls)
        if (d.key == key) return w->smem_static + d.offset;
    if (align < 16) align = 16;
    size_t off = (w->static_used + SMEM_REDZONE + align - 1) & ~(align - 1);
    if (off + bytes > STATIC_SMEM_LIMIT) {
        block_fault(*w, cudaErrorInvalidValue,
                    "static shared memory of %zu bytes or more, over the 48 KB a block may declare statically "
                    "(nvcc refuses such a kernel; dynamic shared memory and cudaFuncSetAttribute go further)",
                    off + bytes);
        return nullptr;
    }
    w->decls.push_back(worker::decl{key, off});
    w->static_used = off + bytes;
    UNPOISON(w->smem_static + off, bytes);
    memset(w->smem_static + off, 0xff, bytes);
    return w->smem_static + off;
}

extern "C" void *dl_emu_shared_dynamic(void)
{
    worker *w = tl_worker;
    if (!w || !w->L) {
        fprintf(stderr, "emulated GPU: DL_DYNAMIC_SHARED executed outside a kernel\n");
        abort();
    }
    return w->smem_dynamic;
}

extern "C" void dl_emu_get_exec_stats(unsigned long long *launches, unsigned long long *blocks,
                                      unsigned long long *fiber_blocks, unsigned long long *plain_blocks,
                                      unsigned long long *switches)
{
    *launches = stat_launches;
    *blocks = stat_blocks;
    *fiber_blocks = stat_fiber_blocks;
    *plain_blocks = stat_plain_blocks;
    *switches = stat_switches;
}
