/*
 * runtime.cc - the emulated CUDA runtime: one device, its memory, streams, events and errors
 * (the kernels themselves run in exec.cc).
 *
 * Memory. cudaMalloc is the C heap under AddressSanitizer (so that it checks kernels' accesses
 * like any other); otherwise buffers of 4 MB and more are mapped on their own, in 2 MB pages
 * where the kernel allows (page faults were half the time of loading a model), ending at an
 * inaccessible page, so that a kernel running past the end faults. Everything is 256-byte
 * aligned and filled with 0xff bytes: NaN as float or double, -1 as an integer, so a read of
 * something never written shows. Every allocation is recorded, so copies and memsets are checked
 * against the allocations they touch (a copy past the end of a buffer is cudaErrorInvalidValue, as
 * on a GPU with its stricter page granularity it might not be). The device has 8 GiB by default
 * (DEEPLAB_EMU_MEMORY_MB), so running out of GPU memory can be tested. Pinned host memory
 * (cudaMallocHost) is recorded too: copies from and to it behave differently, as in CUDA.
 *
 * Streams. Nothing runs when it is queued: kernels, copies, memsets and event records wait on
 * their stream until the program reaches a point where CUDA guarantees they are done: a stream,
 * event or device synchronisation, a copy that returns only when complete (device to pageable
 * host memory), cudaFree (which synchronises the device). Then exactly what that point waits for
 * runs, in order, with what it depends on: the legacy default stream (0) waits for the blocking
 * streams and they for it, as the programming guide says, while a stream made with
 * cudaStreamNonBlocking is ordered with nothing but its own work and the events it waits for.
 * So work that a missing synchronisation leaves unordered has not happened when the program looks
 * at its result. A synchronous cudaMemcpy from pageable memory to the device returns once the
 * data is staged and leaves the device write queued on the legacy stream, as CUDA documents it.
 *
 * Graphs. cudaStreamBeginCapture makes a stream record its kernels, device copies (device or
 * pinned memory on both sides: pageable memory cannot be captured) and memsets into a graph instead
 * of queueing them; cudaGraphLaunch queues the recorded work on a stream again, each time with the
 * schedule seed of that moment. As in CUDA's global capture mode, calls that would synchronise or
 * allocate (cudaMalloc, cudaFree, cudaMallocHost, cudaFreeHost, cudaDeviceSynchronize, a
 * synchronous copy, a synchronisation or query of the capturing stream) are refused while a
 * capture is going on, and so is work on the legacy stream while a blocking stream captures; the
 * capture is then invalidated: cudaStreamEndCapture then fails with
 * cudaErrorStreamCaptureInvalidated. Events recorded into a capture are not emulated (refused).
 *
 * Errors. Launch-configuration errors are returned by the launch (and cudaGetLastError) with
 * CUDA's codes; a fault inside a kernel is sticky, as on a GPU, until cudaDeviceReset, and its
 * description (which kernel, which block and threads, what) is appended to cudaGetErrorString's
 * text for its code.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>
#include <vector>

#include "emu.h"
#include "emu_internal.h"

using namespace dl_emu;

/* ------------------------------------------------------------------ configuration */

namespace dl_emu {

static unsigned long long env_ull(const char *name, unsigned long long fallback)
{
    const char *e = getenv(name);
    if (!e || !*e) return fallback;
    char *end;
    const unsigned long long v = strtoull(e, &end, 0);
    return *end ? fallback : v;
}

static std::atomic<unsigned long long> seed_now{env_ull("DEEPLAB_EMU_SEED", 1)};

uint64_t schedule_seed() { return seed_now.load(); }

int worker_count()
{
    static const int n = [] {
        long v = (long)env_ull("DEEPLAB_EMU_THREADS", 0);
        if (v <= 0) v = sysconf(_SC_NPROCESSORS_ONLN);
        return (int)(v < 1 ? 1 : v > 256 ? 256 : v);
    }();
    return n;
}

bool verbose()
{
    static const bool v = env_ull("DEEPLAB_EMU_VERBOSE", 0) != 0;
    return v;
}

static size_t device_capacity()
{
    static const size_t cap = (size_t)env_ull("DEEPLAB_EMU_MEMORY_MB", 8192) << 20;
    return cap;
}

static double now_seconds()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

} // namespace dl_emu

/* ------------------------------------------------------------------ errors */

namespace {

struct error_text {
    cudaError_t code;
    const char *name, *text;
};
const error_text error_texts[] = {
    {cudaSuccess, "cudaSuccess", "no error"},
    {cudaErrorInvalidValue, "cudaErrorInvalidValue", "invalid argument"},
    {cudaErrorMemoryAllocation, "cudaErrorMemoryAllocation", "out of memory"},
    {cudaErrorInitializationError, "cudaErrorInitializationError", "initialization error"},
    {cudaErrorCudartUnloading, "cudaErrorCudartUnloading", "driver shutting down"},
    {cudaErrorInvalidConfiguration, "cudaErrorInvalidConfiguration", "invalid configuration argument"},
    {cudaErrorInvalidPitchValue, "cudaErrorInvalidPitchValue", "invalid pitch argument"},
    {cudaErrorInvalidSymbol, "cudaErrorInvalidSymbol", "invalid device symbol"},
    {cudaErrorInvalidHostPointer, "cudaErrorInvalidHostPointer", "invalid host pointer"},
    {cudaErrorInvalidDevicePointer, "cudaErrorInvalidDevicePointer", "invalid device pointer"},
    {cudaErrorInvalidMemcpyDirection, "cudaErrorInvalidMemcpyDirection", "invalid copy direction for memcpy"},
    {cudaErrorInsufficientDriver, "cudaErrorInsufficientDriver",
     "CUDA driver version is insufficient for CUDA runtime version"},
    {cudaErrorInvalidDeviceFunction, "cudaErrorInvalidDeviceFunction", "invalid device function"},
    {cudaErrorNoDevice, "cudaErrorNoDevice", "no CUDA-capable device is detected"},
    {cudaErrorInvalidDevice, "cudaErrorInvalidDevice", "invalid device ordinal"},
    {cudaErrorNoKernelImageForDevice, "cudaErrorNoKernelImageForDevice",
     "no kernel image is available for execution on the device"},
    {cudaErrorInvalidResourceHandle, "cudaErrorInvalidResourceHandle", "invalid resource handle"},
    {cudaErrorIllegalState, "cudaErrorIllegalState", "the operation cannot be performed in the present state"},
    {cudaErrorNotReady, "cudaErrorNotReady", "device not ready"},
    {cudaErrorIllegalAddress, "cudaErrorIllegalAddress", "an illegal memory access was encountered"},
    {cudaErrorLaunchOutOfResources, "cudaErrorLaunchOutOfResources", "too many resources requested for launch"},
    {cudaErrorAssert, "cudaErrorAssert", "device-side assert triggered"},
    {cudaErrorIllegalInstruction, "cudaErrorIllegalInstruction", "an illegal instruction was encountered"},
    {cudaErrorMisalignedAddress, "cudaErrorMisalignedAddress", "misaligned address"},
    {cudaErrorLaunchFailure, "cudaErrorLaunchFailure", "unspecified launch failure"},
    {cudaErrorNotPermitted, "cudaErrorNotPermitted", "operation not permitted"},
    {cudaErrorNotSupported, "cudaErrorNotSupported", "operation not supported"},
    {cudaErrorStreamCaptureUnsupported, "cudaErrorStreamCaptureUnsupported",
     "operation not permitted when stream is capturing"},
    {cudaErrorStreamCaptureInvalidated, "cudaErrorStreamCaptureInvalidated",
     "operation failed due to a previous error during capture"},
    {cudaErrorStreamCaptureImplicit, "cudaErrorStreamCaptureImplicit",
     "operation would make the legacy stream depend on a capturing blocking stream"},
    {cudaErrorUnknown, "cudaErrorUnknown", "unknown error"},
};

const error_text *find_error(cudaError_t e)
{
    for (const auto &t : error_texts)
        if (t.code == e) return &t;
    return nullptr;
}

thread_local cudaError_t last_error = cudaSuccess;
std::mutex fault_mu;
std::atomic<int> sticky{cudaSuccess};
char fault_text[1024]; /* "<CUDA's text> (emulated GPU: <what happened>)" for the sticky code */

cudaError_t set_error(cudaError_t e)
{
    if (e != cudaSuccess) last_error = e;
    return e;
}

} // namespace

namespace dl_emu {

void fault(cudaError_t e, const char *fmt, ...)
{
    std::lock_guard<std::mutex> lk(fault_mu);
    if (sticky.load() != cudaSuccess) return; /* the first fault is the one reported */
    char what[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    const error_text *t = find_error(e);
    snprintf(fault_text, sizeof fault_text, "%s (emulated GPU: %s)", t ? t->text : "unknown error", what);
    sticky.store(e);
    if (verbose()) fprintf(stderr, "emulated GPU: fault: %s\n", fault_text);
}

cudaError_t sticky_error() { return (cudaError_t)sticky.load(); }

} // namespace dl_emu

extern "C" const char *cudaGetErrorString(cudaError_t e)
{
    if (e != cudaSuccess && e == sticky_error()) return fault_text;
    const error_text *t = find_error(e);
    return t ? t->text : "unrecognized error code";
}

extern "C" const char *cudaGetErrorName(cudaError_t e)
{
    const error_text *t = find_error(e);
    return t ? t->name : "cudaErrorUnknown";
}

extern "C" cudaError_t cudaGetLastError(void)
{
    const cudaError_t s = sticky_error();
    if (s != cudaSuccess) return s;
    const cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}

extern "C" cudaError_t cudaPeekAtLastError(void)
{
    const cudaError_t s = sticky_error();
    return s != cudaSuccess ? s : last_error;
}

/* ------------------------------------------------------------------ kernels */

namespace {

struct bounds_range {
    const char *start, *stop;
    int max_threads;
};
std::vector<bounds_range> &bounds_ranges()
{
    static std::vector<bounds_range> *r = new std::vector<bounds_range>;
    return *r;
}

std::mutex kernels_mu;
std::unordered_map<const void *, kernel_info *> &kernels()
{
    static auto *k = new std::unordered_map<const void *, kernel_info *>;
    return *k;
}

} // namespace

dl_emu::launch_bounds_reg::launch_bounds_reg(const char *start, const char *stop, int max_threads)
{
    if (start && stop) bounds_ranges().push_back(bounds_range{start, stop, max_threads});
}

namespace dl_emu {

int launch_bounds_of(const void *fn)
{
    const char *p = static_cast<const char *>(fn);
    for (const auto &r : bounds_ranges())
        if (p >= r.start && p < r.stop) return r.max_threads;
    return 0;
}

kernel_info *kernel_lookup(const void *fn, const char *name)
{
    std::lock_guard<std::mutex> lk(kernels_mu);
    kernel_info *&k = kernels()[fn];
    if (!k) {
        k = new kernel_info(fn);
        k->name = name;
        const int b = launch_bounds_of(fn);
        k->max_threads = b > 0 ? b : (int)MAX_THREADS_PER_BLOCK;
    }
    return k;
}

} // namespace dl_emu

/* ------------------------------------------------------------------ memory */

namespace {

#if defined(__SANITIZE_ADDRESS__)
#define DL_EMU_HEAP_ONLY 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DL_EMU_HEAP_ONLY 1
#endif
#endif

/* A buffer of the emulator's own: the C heap, or (4 MB and more, not under AddressSanitizer) a
 * mapping of its own in 2 MB pages with an inaccessible page after the data. */
struct mapping {
    void *base = nullptr; /* null: the heap */
    size_t length = 0;
};

void *buffer_alloc(size_t bytes, size_t align, mapping *m)
{
    *m = mapping{};
#ifndef DL_EMU_HEAP_ONLY
    const size_t huge = (size_t)2 << 20, page = 4096;
    if (bytes >= ((size_t)4 << 20)) {
        const size_t data = (bytes + page - 1) & ~(page - 1), length = data + huge + page;
        void *base = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (base == MAP_FAILED) return nullptr;
        char *start = reinterpret_cast<char *>(((uintptr_t)base + huge - 1) & ~(uintptr_t)(huge - 1));
        madvise(start, data & ~(huge - 1), MADV_HUGEPAGE);
        mprotect(start + data, page, PROT_NONE); /* the guard after the data */
        *m = mapping{base, length};
        return start;
    }
#endif
    void *p = nullptr;
    return posix_memalign(&p, align, bytes ? bytes : 1) == 0 ? p : nullptr;
}

void buffer_free(void *p, const mapping &m)
{
    if (m.base) munmap(m.base, m.length);
    else free(p);
}

struct region {
    size_t bytes;
    mapping map;
};
std::shared_mutex mem_mu;
std::map<uintptr_t, region> device_mem, pinned_mem;
size_t device_used;

/* The allocation of map holding [p, p + bytes), or null. */
const region *find_range(const std::map<uintptr_t, region> &m, const void *p, size_t bytes, uintptr_t *base)
{
    const uintptr_t a = (uintptr_t)p;
    auto it = m.upper_bound(a);
    if (it == m.begin()) return nullptr;
    --it;
    if (a < it->first || a + bytes > it->first + it->second.bytes || a + bytes < a) return nullptr;
    if (base) *base = it->first;
    return &it->second;
}

enum where { ON_DEVICE, PINNED, PAGEABLE, PARTLY_DEVICE };

/* Where [p, p + bytes) lives; PARTLY_DEVICE: it starts in a device allocation but runs past it. */
where where_is(const void *p, size_t bytes)
{
    std::shared_lock<std::shared_mutex> lk(mem_mu);
    if (find_range(device_mem, p, bytes, nullptr)) return ON_DEVICE;
    if (find_range(device_mem, p, 1, nullptr)) return PARTLY_DEVICE;
    if (find_range(pinned_mem, p, bytes, nullptr)) return PINNED;
    return PAGEABLE;
}

} // namespace

namespace dl_emu {

bool is_device_range(const void *p, size_t bytes)
{
    std::shared_lock<std::shared_mutex> lk(mem_mu);
    return find_range(device_mem, p, bytes, nullptr) != nullptr;
}

} // namespace dl_emu

static cudaError_t device_alloc(void **ptr, size_t bytes)
{
    if (!ptr) return cudaErrorInvalidValue;
    *ptr = nullptr;
    if (bytes == 0) return cudaSuccess;
    {
        std::unique_lock<std::shared_mutex> lk(mem_mu);
        if (bytes > device_capacity() - device_used) return cudaErrorMemoryAllocation;
        device_used += bytes;
    }
    mapping map;
    void *p = buffer_alloc(bytes, 256, &map);
    if (!p) {
        std::unique_lock<std::shared_mutex> lk(mem_mu);
        device_used -= bytes;
        return cudaErrorMemoryAllocation;
    }
    memset(p, 0xff, bytes); /* NaN */
    std::unique_lock<std::shared_mutex> lk(mem_mu);
    device_mem[(uintptr_t)p] = region{bytes, map};
    *ptr = p;
    return cudaSuccess;
}

/* Frees a device allocation; false if p is not the start of one. */
static bool device_release(void *p)
{
    mapping map;
    {
        std::unique_lock<std::shared_mutex> lk(mem_mu);
        auto it = device_mem.find((uintptr_t)p);
        if (it == device_mem.end()) return false;
        device_used -= it->second.bytes;
        map = it->second.map;
        device_mem.erase(it);
    }
    buffer_free(p, map);
    return true;
}

/* ------------------------------------------------------------------ streams and their work */

struct CUevent_st {
    unsigned flags = 0;
    struct CUstream_st *stream = nullptr; /* of the last record, null if never recorded */
    uint64_t seq = 0;                     /* that record's place in its stream */
    double time = 0;                      /* when the record ran */
};

namespace {

struct dep {
    std::shared_ptr<CUstream_st> stream;
    uint64_t seq;
};

enum op_kind { OP_KERNEL, OP_COPY, OP_COPY2D, OP_MEMSET, OP_RECORD, OP_WAIT, OP_FREE };

struct op {
    explicit op(op_kind k) : kind(k) {}
    op_kind kind;
    std::vector<dep> deps;
    std::unique_ptr<launch> L;
    void *dst = nullptr;
    const void *src = nullptr;
    size_t bytes = 0, dpitch = 0, spitch = 0, width = 0, height = 0;
    int value = 0;
    std::shared_ptr<char> staged; /* pageable host data, copied when the copy was queued */
    std::shared_ptr<CUevent_st> event;
};

/* One recorded operation of a graph: what an op needs to be made again at every launch. */
struct graph_node {
    op_kind kind = OP_KERNEL;
    void *dst = nullptr;
    const void *src = nullptr;
    size_t bytes = 0, dpitch = 0, spitch = 0, width = 0, height = 0;
    int value = 0;
    kernel_info *k = nullptr;
    dim3 grid, block;
    size_t smem = 0;
    std::shared_ptr<const launch_args> args;
};

} // namespace

struct CUgraph_st {
    std::vector<graph_node> nodes;
};
struct CUgraphExec_st {
    std::vector<graph_node> nodes;
};

struct CUstream_st {
    bool legacy = false, blocking = true, destroyed = false;
    std::deque<op> q;
    uint64_t enq = 0, done = 0; /* ops queued and run so far: op k (1-based) is q[k - done - 1] */
    CUgraph_st *capture = nullptr; /* being recorded into (cudaStreamBeginCapture), or null */
    bool capture_invalidated = false;
    cudaStreamCaptureMode capture_mode = cudaStreamCaptureModeGlobal;
};

namespace {

std::mutex state_mu;          /* the streams' queues, the handle tables */
std::recursive_mutex exec_mu; /* one thread runs device work at a time */
std::shared_ptr<CUstream_st> &legacy_stream()
{
    static auto *s = new std::shared_ptr<CUstream_st>(std::make_shared<CUstream_st>());
    (*s)->legacy = true;
    return *s;
}
std::unordered_map<CUstream_st *, std::shared_ptr<CUstream_st>> &streams()
{
    static auto *m = new std::unordered_map<CUstream_st *, std::shared_ptr<CUstream_st>>;
    return *m;
}
std::unordered_map<CUevent_st *, std::shared_ptr<CUevent_st>> &events()
{
    static auto *m = new std::unordered_map<CUevent_st *, std::shared_ptr<CUevent_st>>;
    return *m;
}
thread_local std::shared_ptr<CUstream_st> per_thread_stream;
std::atomic<unsigned long long> stat_device_syncs;
std::atomic<int> global_captures{0}; /* streams capturing in cudaStreamCaptureModeGlobal */
std::unordered_map<CUgraph_st *, std::unique_ptr<CUgraph_st>> &graphs()
{
    static auto *m = new std::unordered_map<CUgraph_st *, std::unique_ptr<CUgraph_st>>;
    return *m;
}
std::unordered_map<CUgraphExec_st *, std::unique_ptr<CUgraphExec_st>> &graph_execs()
{
    static auto *m = new std::unordered_map<CUgraphExec_st *, std::unique_ptr<CUgraphExec_st>>;
    return *m;
}

/* A call CUDA refuses while a stream captures in global mode (it would synchronise, allocate, or
 * make the legacy stream wait for a capturing one): every capture is invalidated and the call
 * gets e. cudaSuccess when no such capture is going on. */
cudaError_t refused_while_capturing(cudaError_t e)
{
    if (global_captures.load() == 0) return cudaSuccess;
    std::lock_guard<std::mutex> lk(state_mu);
    for (auto &kv : streams())
        if (kv.second->capture) kv.second->capture_invalidated = true;
    return e;
}

/* Work on the legacy stream while a blocking stream captures: it would wait for the capturing
 * stream's work (which is not running), so CUDA refuses it and invalidates that capture. */
cudaError_t legacy_refused_while_capturing(void)
{
    std::lock_guard<std::mutex> lk(state_mu);
    bool refused = false;
    for (auto &kv : streams())
        if (kv.second->capture && kv.second->blocking) kv.second->capture_invalidated = refused = true;
    return refused ? cudaErrorStreamCaptureImplicit : cudaSuccess;
}

/* s is capturing: the operation is refused and the capture invalidated. */
cudaError_t invalidate_capture(CUstream_st &s, cudaError_t e)
{
    s.capture_invalidated = true;
    return e;
}

std::shared_ptr<CUstream_st> stream_of(cudaStream_t h)
{
    if (h == nullptr || h == cudaStreamLegacy) return legacy_stream();
    if (h == cudaStreamPerThread) {
        if (!per_thread_stream) {
            per_thread_stream = std::make_shared<CUstream_st>();
            std::lock_guard<std::mutex> lk(state_mu);
            streams()[per_thread_stream.get()] = per_thread_stream;
        }
        return per_thread_stream;
    }
    std::lock_guard<std::mutex> lk(state_mu);
    auto it = streams().find(h);
    if (it == streams().end() || it->second->destroyed) return nullptr;
    return it->second;
}

/* Queues o on s with the implicit ordering of the legacy default stream; returns its place. */
uint64_t enqueue(const std::shared_ptr<CUstream_st> &s, op &&o)
{
    std::lock_guard<std::mutex> lk(state_mu);
    if (s->legacy) {
        for (auto &kv : streams()) {
            CUstream_st &b = *kv.second;
            if (b.blocking && b.enq > b.done) o.deps.push_back(dep{kv.second, b.enq});
        }
    } else if (s->blocking) {
        const auto &l = legacy_stream();
        if (l->enq > l->done) o.deps.push_back(dep{l, l->enq});
    }
    s->q.push_back(std::move(o));
    return ++s->enq;
}

void run_op(op &o)
{
    if (sticky_error() != cudaSuccess) return; /* the device is lost, as after a fault on a GPU */
    switch (o.kind) {
    case OP_KERNEL: run_launch(*o.L); break;
    case OP_COPY: memmove(o.dst, o.staged ? o.staged.get() : o.src, o.bytes); break;
    case OP_COPY2D: {
        const char *src = o.staged ? o.staged.get() : static_cast<const char *>(o.src);
        const size_t spitch = o.staged ? o.width : o.spitch;
        for (size_t r = 0; r < o.height; r++)
            memmove(static_cast<char *>(o.dst) + r * o.dpitch, src + r * spitch, o.width);
        break;
    }
    case OP_MEMSET: memset(o.dst, o.value, o.bytes); break;
    case OP_RECORD: o.event->time = now_seconds(); break;
    case OP_WAIT: break;
    case OP_FREE:
        device_release(o.dst);
        break;
    }
}

/* Runs s's work up to its op number upto, and first what each op waits for. */
void drain(const std::shared_ptr<CUstream_st> &s, uint64_t upto)
{
    std::lock_guard<std::recursive_mutex> ex(exec_mu);
    for (;;) {
        op *o;
        {
            std::lock_guard<std::mutex> lk(state_mu);
            if (s->done >= upto || s->q.empty()) return;
            o = &s->q.front(); /* stays valid: other threads only append */
        }
        for (const dep &d : o->deps) drain(d.stream, d.seq);
        run_op(*o);
        std::lock_guard<std::mutex> lk(state_mu);
        s->q.pop_front();
        s->done++;
    }
}

void drain_all()
{
    stat_device_syncs++;
    std::vector<std::shared_ptr<CUstream_st>> all;
    {
        std::lock_guard<std::mutex> lk(state_mu);
        all.push_back(legacy_stream());
        for (auto &kv : streams()) all.push_back(kv.second);
    }
    for (auto &s : all) drain(s, s->enq);
    /* streams destroyed while they had work go once it is done */
    std::lock_guard<std::mutex> lk(state_mu);
    for (auto it = streams().begin(); it != streams().end();)
        if (it->second->destroyed && it->second->q.empty())
            it = streams().erase(it);
        else
            ++it;
}

cudaError_t status() { return sticky_error(); }

} // namespace

/* ------------------------------------------------------------------ device */

extern "C" cudaError_t cudaGetDeviceCount(int *count)
{
    if (!count) return set_error(cudaErrorInvalidValue);
    *count = 1;
    return cudaSuccess;
}

extern "C" cudaError_t cudaSetDevice(int device) { return set_error(device == 0 ? status() : cudaErrorInvalidDevice); }

extern "C" cudaError_t cudaGetDevice(int *device)
{
    if (!device) return set_error(cudaErrorInvalidValue);
    *device = 0;
    return cudaSuccess;
}

extern "C" cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int device)
{
    if (!p) return set_error(cudaErrorInvalidValue);
    if (device != 0) return set_error(cudaErrorInvalidDevice);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "deeplab emulated GPU");
    p->totalGlobalMem = device_capacity();
    p->sharedMemPerBlock = STATIC_SMEM_LIMIT;
    p->sharedMemPerBlockOptin = OPTIN_SMEM_LIMIT;
    p->regsPerBlock = 65536;
    p->warpSize = 32;
    p->maxThreadsPerBlock = (int)MAX_THREADS_PER_BLOCK;
    p->maxThreadsDim[0] = (int)MAX_BLOCK_X, p->maxThreadsDim[1] = (int)MAX_BLOCK_Y,
    p->maxThreadsDim[2] = (int)MAX_BLOCK_Z;
    p->maxGridSize[0] = (int)MAX_GRID_X, p->maxGridSize[1] = (int)MAX_GRID_Y, p->maxGridSize[2] = (int)MAX_GRID_Z;
    p->major = CC_MAJOR;
    p->minor = CC_MINOR;
    p->multiProcessorCount = SM_COUNT;
    p->maxThreadsPerMultiProcessor = 2048;
    return cudaSuccess;
}

extern "C" cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device)
{
    if (!value) return set_error(cudaErrorInvalidValue);
    if (device != 0) return set_error(cudaErrorInvalidDevice);
    switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = (int)MAX_THREADS_PER_BLOCK; break;
    case cudaDevAttrMaxBlockDimX: *value = (int)MAX_BLOCK_X; break;
    case cudaDevAttrMaxBlockDimY: *value = (int)MAX_BLOCK_Y; break;
    case cudaDevAttrMaxBlockDimZ: *value = (int)MAX_BLOCK_Z; break;
    case cudaDevAttrMaxGridDimX: *value = (int)MAX_GRID_X; break;
    case cudaDevAttrMaxGridDimY: *value = (int)MAX_GRID_Y; break;
    case cudaDevAttrMaxGridDimZ: *value = (int)MAX_GRID_Z; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = (int)STATIC_SMEM_LIMIT; break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrMultiProcessorCount: *value = (int)SM_COUNT; break;
    case cudaDevAttrComputeCapabilityMajor: *value = (int)CC_MAJOR; break;
    case cudaDevAttrComputeCapabilityMinor: *value = (int)CC_MINOR; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = (int)OPTIN_SMEM_LIMIT; break;
    default: return set_error(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}

extern "C" cudaError_t cudaDriverGetVersion(int *v)
{
    if (!v) return set_error(cudaErrorInvalidValue);
    *v = CUDART_VERSION;
    return cudaSuccess;
}

extern "C" cudaError_t cudaRuntimeGetVersion(int *v) { return cudaDriverGetVersion(v); }

extern "C" cudaError_t cudaDeviceSynchronize(void)
{
    if (const cudaError_t c = refused_while_capturing(cudaErrorStreamCaptureUnsupported)) return set_error(c);
    drain_all();
    return set_error(status());
}

/* Drops all work and memory and clears a fault, as cudaDeviceReset destroys the context. */
extern "C" cudaError_t cudaDeviceReset(void)
{
    std::lock_guard<std::recursive_mutex> ex(exec_mu);
    {
        std::lock_guard<std::mutex> lk(state_mu);
        legacy_stream()->q.clear();
        legacy_stream()->done = legacy_stream()->enq;
        for (auto &kv : streams()) {
            kv.second->q.clear();
            kv.second->done = kv.second->enq;
        }
        streams().clear();
        events().clear();
    }
    {
        std::unique_lock<std::shared_mutex> lk(mem_mu);
        for (auto &kv : device_mem) buffer_free((void *)kv.first, kv.second.map);
        for (auto &kv : pinned_mem) free((void *)kv.first);
        device_mem.clear();
        pinned_mem.clear();
        device_used = 0;
    }
    std::lock_guard<std::mutex> lk(fault_mu);
    sticky.store(cudaSuccess);
    fault_text[0] = 0;
    last_error = cudaSuccess;
    return cudaSuccess;
}

/* ------------------------------------------------------------------ allocation */

extern "C" cudaError_t cudaMalloc(void **ptr, size_t bytes)
{
    if (status() != cudaSuccess) return set_error(status());
    if (const cudaError_t c = refused_while_capturing(cudaErrorStreamCaptureUnsupported)) return set_error(c);
    return set_error(device_alloc(ptr, bytes));
}

extern "C" cudaError_t cudaFree(void *ptr)
{
    if (!ptr) return status();
    if (const cudaError_t c = refused_while_capturing(cudaErrorStreamCaptureUnsupported)) return set_error(c);
    drain_all(); /* cudaFree synchronises the device */
    if (!device_release(ptr)) return set_error(cudaErrorInvalidValue);
    return set_error(status());
}

extern "C" cudaError_t cudaMallocAsync(void **ptr, size_t bytes, cudaStream_t stream)
{
    if (status() != cudaSuccess) return set_error(status());
    if (!stream_of(stream)) return set_error(cudaErrorInvalidResourceHandle);
    return set_error(device_alloc(ptr, bytes));
}

/* The memory goes when the stream reaches this point: no synchronisation, unlike cudaFree. */
extern "C" cudaError_t cudaFreeAsync(void *ptr, cudaStream_t stream)
{
    if (!ptr) return status();
    auto s = stream_of(stream);
    if (!s) return set_error(cudaErrorInvalidResourceHandle);
    if (s->capture) return set_error(invalidate_capture(*s, cudaErrorStreamCaptureUnsupported)); /* no memory nodes */
    if (!is_device_range(ptr, 1)) return set_error(cudaErrorInvalidValue);
    op o(OP_FREE);
    o.dst = ptr;
    enqueue(s, std::move(o));
    return status();
}

extern "C" cudaError_t cudaMallocHost(void **ptr, size_t bytes)
{
    if (!ptr) return set_error(cudaErrorInvalidValue);
    *ptr = nullptr;
    if (const cudaError_t c = refused_while_capturing(cudaErrorStreamCaptureUnsupported)) return set_error(c);
    void *p = nullptr;
    if (posix_memalign(&p, 4096, bytes ? bytes : 1) != 0) return set_error(cudaErrorMemoryAllocation);
    memset(p, 0xff, bytes);
    std::unique_lock<std::shared_mutex> lk(mem_mu);
    pinned_mem[(uintptr_t)p] = region{bytes ? bytes : 1, mapping{}};
    *ptr = p;
    return cudaSuccess;
}

extern "C" cudaError_t cudaHostAlloc(void **ptr, size_t bytes, unsigned int flags)
{
    (void)flags;
    return cudaMallocHost(ptr, bytes);
}

extern "C" cudaError_t cudaFreeHost(void *ptr)
{
    if (!ptr) return status();
    if (const cudaError_t c = refused_while_capturing(cudaErrorStreamCaptureUnsupported)) return set_error(c);
    drain_all(); /* freeing pinned memory synchronises the device too */
    {
        std::unique_lock<std::shared_mutex> lk(mem_mu);
        auto it = pinned_mem.find((uintptr_t)ptr);
        if (it == pinned_mem.end()) return set_error(cudaErrorInvalidValue);
        pinned_mem.erase(it);
    }
    free(ptr);
    return status();
}

extern "C" cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes)
{
    if (!free_bytes || !total_bytes) return set_error(cudaErrorInvalidValue);
    std::shared_lock<std::shared_mutex> lk(mem_mu);
    *total_bytes = device_capacity();
    *free_bytes = device_capacity() - device_used;
    return status();
}

/* ------------------------------------------------------------------ copies and memsets */

namespace {

/* Checks a copy of bytes from src to dst as kind, and says where each side lives. */
cudaError_t check_copy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, where *wd, where *ws)
{
    *wd = where_is(dst, bytes);
    *ws = where_is(src, bytes);
    if (*wd == PARTLY_DEVICE || *ws == PARTLY_DEVICE) return cudaErrorInvalidValue; /* past an allocation's end */
    const bool dd = *wd == ON_DEVICE, sd = *ws == ON_DEVICE;
    switch (kind) {
    case cudaMemcpyHostToDevice: return dd && !sd ? cudaSuccess : cudaErrorInvalidValue;
    case cudaMemcpyDeviceToHost: return sd && !dd ? cudaSuccess : cudaErrorInvalidValue;
    case cudaMemcpyDeviceToDevice: return dd && sd ? cudaSuccess : cudaErrorInvalidValue;
    case cudaMemcpyHostToHost: return !dd && !sd ? cudaSuccess : cudaErrorInvalidValue;
    case cudaMemcpyDefault: return cudaSuccess;
    }
    return cudaErrorInvalidMemcpyDirection;
}

/* A staging buffer of bytes (freed with the copy that holds it). */
std::shared_ptr<char> staging(size_t bytes)
{
    mapping m;
    char *p = static_cast<char *>(buffer_alloc(bytes, 64, &m));
    if (!p) {
        fprintf(stderr, "emulated GPU: out of host memory staging a copy of %zu bytes\n", bytes);
        abort();
    }
    return std::shared_ptr<char>(p, [m](char *q) { buffer_free(q, m); });
}

std::shared_ptr<char> stage(const void *src, size_t bytes)
{
    std::shared_ptr<char> b = staging(bytes);
    memcpy(b.get(), src, bytes);
    return b;
}

/* The copy on stream s, as CUDA times it (runtime.cc's header, and the API's synchronisation
 * behaviour notes): sync says whether the caller is cudaMemcpy (true) or cudaMemcpyAsync. */
cudaError_t copy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, const std::shared_ptr<CUstream_st> &s,
                 bool sync)
{
    if (status() != cudaSuccess) return status();
    if (!dst || !src) return cudaErrorInvalidValue;
    if (bytes == 0) return cudaSuccess;
    where wd, ws;
    const cudaError_t e = check_copy(dst, src, bytes, kind, &wd, &ws);
    if (e != cudaSuccess) return e;
    const bool to_dev = wd == ON_DEVICE, from_dev = ws == ON_DEVICE;
    if (sync)
        if (const cudaError_t c = refused_while_capturing(cudaErrorStreamCaptureUnsupported)) return c;
    if (s->legacy)
        if (const cudaError_t c = legacy_refused_while_capturing()) return c;
    if (s->capture) { /* recorded: both sides must be device or pinned memory */
        if (wd == PAGEABLE || ws == PAGEABLE) return invalidate_capture(*s, cudaErrorStreamCaptureUnsupported);
        graph_node g;
        g.kind = OP_COPY, g.dst = dst, g.src = src, g.bytes = bytes;
        s->capture->nodes.push_back(g);
        return status();
    }
    if (!to_dev && !from_dev) { /* host to host: done now */
        if (sync) drain(s, s->enq);
        memmove(dst, src, bytes);
        return status();
    }
    op o(OP_COPY);
    o.dst = dst;
    o.src = src;
    o.bytes = bytes;
    if (!from_dev && ws == PAGEABLE) {
        if (sync) drain(s, s->enq);   /* "a stream sync is performed before the copy is initiated" */
        o.staged = stage(src, bytes); /* returns once staged; the device write lands later */
        enqueue(s, std::move(o));
        return status();
    }
    const uint64_t at = enqueue(s, std::move(o));
    /* complete before returning: synchronous copies from pinned memory or to the host, and
     * asynchronous ones into pageable host memory */
    if ((sync && (!to_dev || !from_dev)) || (!to_dev && wd == PAGEABLE)) drain(s, at);
    return status();
}

} // namespace

extern "C" cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind)
{
    return set_error(copy(dst, src, bytes, kind, legacy_stream(), true));
}

extern "C" cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                                       cudaStream_t stream)
{
    auto s = stream_of(stream);
    if (!s) return set_error(cudaErrorInvalidResourceHandle);
    return set_error(copy(dst, src, bytes, kind, s, false));
}

static cudaError_t copy2d(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t height,
                          cudaMemcpyKind kind, const std::shared_ptr<CUstream_st> &s, bool sync)
{
    if (status() != cudaSuccess) return status();
    if (width > dpitch || width > spitch) return cudaErrorInvalidPitchValue;
    if (!dst || !src) return cudaErrorInvalidValue;
    if (width == 0 || height == 0) return cudaSuccess;
    const size_t dspan = dpitch * (height - 1) + width, sspan = spitch * (height - 1) + width;
    where wd, ws;
    cudaError_t e = check_copy(dst, src, 1, kind, &wd, &ws);
    if (e == cudaSuccess) {
        /* the whole extent of each side must lie where its first byte does */
        if ((wd == ON_DEVICE && where_is(dst, dspan) != ON_DEVICE) ||
            (ws == ON_DEVICE && where_is(src, sspan) != ON_DEVICE))
            e = cudaErrorInvalidValue;
    }
    if (e != cudaSuccess) return e;
    if (sync)
        if (const cudaError_t c = refused_while_capturing(cudaErrorStreamCaptureUnsupported)) return c;
    if (s->legacy)
        if (const cudaError_t c = legacy_refused_while_capturing()) return c;
    if (s->capture) return invalidate_capture(*s, cudaErrorStreamCaptureUnsupported); /* not emulated */
    op o(OP_COPY2D);
    o.dst = dst, o.src = src, o.dpitch = dpitch, o.spitch = spitch, o.width = width, o.height = height;
    const bool to_dev = wd == ON_DEVICE, from_dev = ws == ON_DEVICE;
    if (!from_dev && ws == PAGEABLE) {
        if (sync) drain(s, s->enq);
        o.staged = staging(width * height);
        for (size_t r = 0; r < height; r++)
            memcpy(o.staged.get() + r * width, static_cast<const char *>(src) + r * spitch, width);
    }
    const uint64_t at = enqueue(s, std::move(o));
    if ((sync && !to_dev) || (!to_dev && wd == PAGEABLE) || (!to_dev && !from_dev)) drain(s, at);
    return status();
}

extern "C" cudaError_t cudaMemcpy2D(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                                    size_t height, cudaMemcpyKind kind)
{
    return set_error(copy2d(dst, dpitch, src, spitch, width, height, kind, legacy_stream(), true));
}

extern "C" cudaError_t cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                                         size_t height, cudaMemcpyKind kind, cudaStream_t stream)
{
    auto s = stream_of(stream);
    if (!s) return set_error(cudaErrorInvalidResourceHandle);
    return set_error(copy2d(dst, dpitch, src, spitch, width, height, kind, s, false));
}

static cudaError_t memset_on(void *dst, int value, size_t bytes, const std::shared_ptr<CUstream_st> &s)
{
    if (status() != cudaSuccess) return status();
    if (bytes == 0) return cudaSuccess;
    if (!dst || where_is(dst, bytes) != ON_DEVICE) return cudaErrorInvalidValue;
    if (s->legacy)
        if (const cudaError_t c = legacy_refused_while_capturing()) return c;
    if (s->capture) {
        graph_node g;
        g.kind = OP_MEMSET, g.dst = dst, g.value = value, g.bytes = bytes;
        s->capture->nodes.push_back(g);
        return status();
    }
    op o(OP_MEMSET);
    o.dst = dst, o.value = value, o.bytes = bytes;
    enqueue(s, std::move(o)); /* asynchronous for device memory, even cudaMemset */
    return status();
}

extern "C" cudaError_t cudaMemset(void *dst, int value, size_t bytes)
{
    return set_error(memset_on(dst, value, bytes, legacy_stream()));
}

extern "C" cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t stream)
{
    auto s = stream_of(stream);
    if (!s) return set_error(cudaErrorInvalidResourceHandle);
    return set_error(memset_on(dst, value, bytes, s));
}

/* ------------------------------------------------------------------ streams */

extern "C" cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int flags)
{
    if (!stream || (flags & ~1u)) return set_error(cudaErrorInvalidValue);
    auto s = std::make_shared<CUstream_st>();
    s->blocking = !(flags & cudaStreamNonBlocking);
    std::lock_guard<std::mutex> lk(state_mu);
    streams()[s.get()] = s;
    *stream = s.get();
    return cudaSuccess;
}

extern "C" cudaError_t cudaStreamCreate(cudaStream_t *stream) { return cudaStreamCreateWithFlags(stream, 0); }

/* Work still queued runs when something waits for it (or the device); the handle is gone now. */
extern "C" cudaError_t cudaStreamDestroy(cudaStream_t stream)
{
    if (stream == nullptr || stream == cudaStreamLegacy || stream == cudaStreamPerThread)
        return set_error(cudaErrorInvalidResourceHandle);
    std::lock_guard<std::mutex> lk(state_mu);
    auto it = streams().find(stream);
    if (it == streams().end() || it->second->destroyed) return set_error(cudaErrorInvalidResourceHandle);
    if (it->second->q.empty())
        streams().erase(it);
    else
        it->second->destroyed = true;
    return cudaSuccess;
}

extern "C" cudaError_t cudaStreamSynchronize(cudaStream_t stream)
{
    auto s = stream_of(stream);
    if (!s) return set_error(cudaErrorInvalidResourceHandle);
    if (s->capture) return set_error(invalidate_capture(*s, cudaErrorStreamCaptureUnsupported));
    drain(s, s->enq);
    return set_error(status());
}

/* Whether the stream's work is done. A program that polls this must see it finish, so queued
 * work is run by the query, which still answers "not ready" that once. */
extern "C" cudaError_t cudaStreamQuery(cudaStream_t stream)
{
    auto s = stream_of(stream);
    if (!s) return set_error(cudaErrorInvalidResourceHandle);
    if (s->capture) return set_error(invalidate_capture(*s, cudaErrorStreamCaptureUnsupported));
    if (status() != cudaSuccess) return status();
    if (s->done >= s->enq) return cudaSuccess;
    drain(s, s->enq);
    return status() != cudaSuccess ? status() : cudaErrorNotReady;
}

namespace {

/* The stream of event's last record (null if never recorded); state_mu held. */
std::shared_ptr<CUstream_st> event_stream(CUevent_st *ev)
{
    if (!ev->stream) return nullptr;
    if (ev->stream == legacy_stream().get()) return legacy_stream();
    auto it = streams().find(ev->stream);
    return it == streams().end() ? nullptr : it->second;
}

std::shared_ptr<CUevent_st> event_of(cudaEvent_t event)
{
    std::lock_guard<std::mutex> lk(state_mu);
    auto it = events().find(event);
    return it == events().end() ? nullptr : it->second;
}

bool event_done(CUevent_st *ev)
{
    std::lock_guard<std::mutex> lk(state_mu);
    auto s = event_stream(ev);
    return !ev->stream || !s || s->done >= ev->seq;
}

} // namespace

extern "C" cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags)
{
    (void)flags;
    auto s = stream_of(stream);
    auto ev = event_of(event);
    if (!s || !ev) return set_error(cudaErrorInvalidResourceHandle);
    if (s->capture) return set_error(invalidate_capture(*s, cudaErrorStreamCaptureUnsupported)); /* not emulated */
    op o(OP_WAIT);
    {
        std::lock_guard<std::mutex> lk(state_mu);
        if (auto from = event_stream(ev.get())) o.deps.push_back(dep{from, ev->seq});
    }
    enqueue(s, std::move(o));
    return status();
}

/* ------------------------------------------------------------------ events */

extern "C" cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags)
{
    if (!event || (flags & ~7u)) return set_error(cudaErrorInvalidValue);
    auto e = std::make_shared<CUevent_st>();
    e->flags = flags;
    std::lock_guard<std::mutex> lk(state_mu);
    events()[e.get()] = e;
    *event = e.get();
    return cudaSuccess;
}

extern "C" cudaError_t cudaEventCreate(cudaEvent_t *event) { return cudaEventCreateWithFlags(event, 0); }

extern "C" cudaError_t cudaEventDestroy(cudaEvent_t event)
{
    std::lock_guard<std::mutex> lk(state_mu);
    if (!events().erase(event)) return set_error(cudaErrorInvalidResourceHandle);
    return cudaSuccess;
}

extern "C" cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream)
{
    auto s = stream_of(stream);
    auto ev = event_of(event);
    if (!s || !ev) return set_error(cudaErrorInvalidResourceHandle);
    if (s->capture) return set_error(invalidate_capture(*s, cudaErrorStreamCaptureUnsupported)); /* not emulated */
    op o(OP_RECORD);
    o.event = ev;
    const uint64_t at = enqueue(s, std::move(o));
    std::lock_guard<std::mutex> lk(state_mu);
    ev->stream = s.get();
    ev->seq = at;
    return status();
}

extern "C" cudaError_t cudaEventSynchronize(cudaEvent_t event)
{
    auto ev = event_of(event);
    if (!ev) return set_error(cudaErrorInvalidResourceHandle);
    std::shared_ptr<CUstream_st> s;
    {
        std::lock_guard<std::mutex> lk(state_mu);
        s = event_stream(ev.get());
    }
    if (s) drain(s, ev->seq);
    return set_error(status());
}

extern "C" cudaError_t cudaEventQuery(cudaEvent_t event)
{
    auto ev = event_of(event);
    if (!ev) return set_error(cudaErrorInvalidResourceHandle);
    if (status() != cudaSuccess) return status();
    if (event_done(ev.get())) return cudaSuccess;
    cudaEventSynchronize(event); /* so that polling ends; this answer is still "not ready" */
    return status() != cudaSuccess ? status() : cudaErrorNotReady;
}

extern "C" cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end)
{
    auto a = event_of(start), b = event_of(end);
    if (!ms || !a || !b) return set_error(!ms ? cudaErrorInvalidValue : cudaErrorInvalidResourceHandle);
    if ((a->flags | b->flags) & cudaEventDisableTiming) return set_error(cudaErrorInvalidResourceHandle);
    if (!a->stream || !b->stream) return set_error(cudaErrorInvalidResourceHandle);
    if (!event_done(a.get()) || !event_done(b.get())) return set_error(cudaErrorNotReady);
    *ms = (float)((b->time - a->time) * 1e3);
    return status();
}

/* ------------------------------------------------------------------ launches */

extern "C" cudaError_t dl_emu_func_set_attribute(const void *func, cudaFuncAttribute attr, int value)
{
    kernel_info *k = kernel_lookup(func, "(a kernel not launched yet)");
    if (attr == cudaFuncAttributePreferredSharedMemoryCarveout) return cudaSuccess;
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return set_error(cudaErrorInvalidValue);
    if (value < 0 || (size_t)value + k->static_smem.load() > OPTIN_SMEM_LIMIT) return set_error(cudaErrorInvalidValue);
    k->max_dynamic_smem.store(value);
    return cudaSuccess;
}

cudaError_t dl_emu::enqueue_launch(const void *fn, const char *name, dim3 grid, dim3 block, size_t smem,
                                   cudaStream_t stream, std::shared_ptr<const launch_args> args)
{
    if (status() != cudaSuccess) return set_error(status());
    kernel_info *k = kernel_lookup(fn, name);
    const uint64_t threads = (uint64_t)block.x * block.y * block.z;
    if (block.x < 1 || block.y < 1 || block.z < 1 || block.x > MAX_BLOCK_X || block.y > MAX_BLOCK_Y ||
        block.z > MAX_BLOCK_Z || threads > MAX_THREADS_PER_BLOCK || grid.x < 1 || grid.y < 1 || grid.z < 1 ||
        grid.x > MAX_GRID_X || grid.y > MAX_GRID_Y || grid.z > MAX_GRID_Z) {
        auto s = stream_of(stream);
        if (s && s->capture) invalidate_capture(*s, cudaErrorInvalidConfiguration);
        return set_error(cudaErrorInvalidConfiguration);
    }
    auto s = stream_of(stream);
    cudaError_t e = cudaSuccess;
    if (threads > (uint64_t)k->max_threads) e = cudaErrorLaunchOutOfResources; /* __launch_bounds__ */
    const size_t stat = k->static_smem.load();
    const int attr = k->max_dynamic_smem.load();
    const size_t dyn_limit = attr != (int)STATIC_SMEM_LIMIT
                                 ? (size_t)attr
                                 : STATIC_SMEM_LIMIT - (stat < STATIC_SMEM_LIMIT ? stat : STATIC_SMEM_LIMIT);
    if (e == cudaSuccess && (smem > dyn_limit || stat + smem > OPTIN_SMEM_LIMIT)) e = cudaErrorInvalidValue;
    if (e == cudaSuccess && !s) e = cudaErrorInvalidResourceHandle;
    if (e == cudaSuccess && s->legacy) e = legacy_refused_while_capturing();
    if (e != cudaSuccess) {
        if (s && s->capture) invalidate_capture(*s, e); /* a refused launch ends the capture too */
        return set_error(e);
    }
    if (s->capture) {
        graph_node g;
        g.kind = OP_KERNEL, g.k = k, g.grid = grid, g.block = block, g.smem = smem, g.args = std::move(args);
        s->capture->nodes.push_back(std::move(g));
        return cudaSuccess;
    }
    op o(OP_KERNEL);
    o.L.reset(new launch{k, grid, block, smem, std::move(args), schedule_seed()});
    if (verbose())
        fprintf(stderr, "emulated GPU: queue %s grid (%u,%u,%u) block (%u,%u,%u) smem %zu on stream %p\n", name, grid.x,
                grid.y, grid.z, block.x, block.y, block.z, smem, (void *)stream);
    enqueue(s, std::move(o));
    return cudaSuccess;
}

/* ------------------------------------------------------------------ graphs */

extern "C" cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode)
{
    auto s = stream_of(stream);
    if (!s) return set_error(cudaErrorInvalidResourceHandle);
    if (s->legacy) return set_error(cudaErrorStreamCaptureUnsupported); /* the legacy stream cannot be captured */
    if (mode < cudaStreamCaptureModeGlobal || mode > cudaStreamCaptureModeRelaxed) return set_error(cudaErrorInvalidValue);
    if (s->capture) return set_error(cudaErrorIllegalState);
    auto g = std::make_unique<CUgraph_st>();
    std::lock_guard<std::mutex> lk(state_mu);
    s->capture = g.get();
    s->capture_invalidated = false;
    s->capture_mode = mode;
    graphs()[g.get()] = std::move(g);
    if (mode == cudaStreamCaptureModeGlobal) global_captures++;
    return status();
}

extern "C" cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *graph)
{
    auto s = stream_of(stream);
    if (!s || !graph) return set_error(!s ? cudaErrorInvalidResourceHandle : cudaErrorInvalidValue);
    *graph = nullptr;
    if (!s->capture) return set_error(cudaErrorIllegalState);
    std::lock_guard<std::mutex> lk(state_mu);
    CUgraph_st *g = s->capture;
    s->capture = nullptr;
    if (s->capture_mode == cudaStreamCaptureModeGlobal) global_captures--;
    if (s->capture_invalidated) {
        graphs().erase(g);
        return set_error(cudaErrorStreamCaptureInvalidated);
    }
    *graph = g;
    return status();
}

extern "C" cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus *st)
{
    auto s = stream_of(stream);
    if (!s || !st) return set_error(!s ? cudaErrorInvalidResourceHandle : cudaErrorInvalidValue);
    *st = !s->capture ? cudaStreamCaptureStatusNone
          : s->capture_invalidated ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive;
    return cudaSuccess;
}

extern "C" cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags)
{
    (void)flags;
    if (!exec) return set_error(cudaErrorInvalidValue);
    *exec = nullptr;
    std::lock_guard<std::mutex> lk(state_mu);
    auto it = graphs().find(graph);
    if (it == graphs().end()) return set_error(cudaErrorInvalidResourceHandle);
    auto x = std::make_unique<CUgraphExec_st>();
    x->nodes = it->second->nodes;
    *exec = x.get();
    graph_execs()[x.get()] = std::move(x);
    return status();
}

/* The recorded work, queued on stream as if it were issued now, in the recorded order. */
extern "C" cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream)
{
    auto s = stream_of(stream);
    if (!s) return set_error(cudaErrorInvalidResourceHandle);
    if (s->capture) return set_error(invalidate_capture(*s, cudaErrorStreamCaptureUnsupported)); /* not emulated */
    if (status() != cudaSuccess) return set_error(status());
    if (s->legacy)
        if (const cudaError_t c = legacy_refused_while_capturing()) return set_error(c);
    std::vector<graph_node> nodes;
    {
        std::lock_guard<std::mutex> lk(state_mu);
        auto it = graph_execs().find(exec);
        if (it == graph_execs().end()) return set_error(cudaErrorInvalidResourceHandle);
        nodes = it->second->nodes;
    }
    for (graph_node &g : nodes) {
        op o(g.kind);
        o.dst = g.dst, o.src = g.src, o.bytes = g.bytes, o.value = g.value;
        if (g.kind == OP_KERNEL) o.L.reset(new launch{g.k, g.grid, g.block, g.smem, g.args, schedule_seed()});
        enqueue(s, std::move(o));
    }
    return status();
}

extern "C" cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec)
{
    std::lock_guard<std::mutex> lk(state_mu);
    return graph_execs().erase(exec) ? cudaSuccess : set_error(cudaErrorInvalidResourceHandle);
}

extern "C" cudaError_t cudaGraphDestroy(cudaGraph_t graph)
{
    std::lock_guard<std::mutex> lk(state_mu);
    return graphs().erase(graph) ? cudaSuccess : set_error(cudaErrorInvalidResourceHandle);
}

/* ------------------------------------------------------------------ emu.h */

extern "C" void dl_emu_get_exec_stats(unsigned long long *launches, unsigned long long *blocks,
                                      unsigned long long *fiber_blocks, unsigned long long *plain_blocks,
                                      unsigned long long *switches);

extern "C" void dl_emu_set_seed(unsigned long long seed) { seed_now.store(seed); }
extern "C" unsigned long long dl_emu_seed(void) { return seed_now.load(); }

extern "C" void dl_emu_get_stats(dl_emu_stats *st)
{
    memset(st, 0, sizeof *st);
    dl_emu_get_exec_stats(&st->launches, &st->blocks, &st->fiber_blocks, &st->plain_blocks, &st->switches);
    st->device_syncs = stat_device_syncs.load();
    std::lock_guard<std::mutex> lk(state_mu);
    st->pending = legacy_stream()->enq - legacy_stream()->done;
    for (auto &kv : streams()) st->pending += kv.second->enq - kv.second->done;
}
