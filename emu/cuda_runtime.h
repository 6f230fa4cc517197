/*
 * cuda_runtime.h - the emulated GPU: what a .cu file of this project sees of CUDA when it is
 * compiled by the host C++ compiler instead of nvcc (make EMU=1; emu/README.md says how it works).
 *
 * The .cu files include <cuda_runtime.h> as usual; the emulated build puts emu/ first on the
 * include path, so they get this header: the runtime API they use (devices, memory, streams,
 * events, errors; same names, same cudaError_t values and strings) and the device language
 * (__global__, threadIdx, __syncthreads, shuffles and votes, atomics, the math they call). The
 * runtime behind it is emu/runtime.cc (memory, streams, events) and emu/exec.cc (blocks, threads
 * and barriers). Kernels are launched with DL_LAUNCH (layers/cuda_kernel.h), which nvcc turns into
 * <<<...>>> and this header into a queued launch.
 *
 * Two things are spelt differently from plain CUDA, in both builds: kernels launch through
 * DL_LAUNCH, and static shared memory is declared with DL_SHARED (layers/cuda_kernel.h says why);
 * plain __shared__ is refused here with an error naming DL_SHARED. __launch_bounds__ must be given
 * a single token (a number or a constant's name), which it pastes into a section name.
 */
#ifndef DL_EMU_CUDA_RUNTIME_H
#define DL_EMU_CUDA_RUNTIME_H

#ifndef __cplusplus
#error "the emulated CUDA runtime is C++: compile .cu files with the C++ compiler (make EMU=1)"
#endif

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

#define DL_EMU 1
#define CUDART_VERSION 13000 /* the API level emulated */

/* ------------------------------------------------------------------ errors (CUDA's values) */

enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInitializationError = 3,
    cudaErrorCudartUnloading = 4,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidPitchValue = 12,
    cudaErrorInvalidSymbol = 13,
    cudaErrorInvalidHostPointer = 16,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorInsufficientDriver = 35,
    cudaErrorInvalidDeviceFunction = 98,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorNoKernelImageForDevice = 209,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorIllegalState = 401,
    cudaErrorNotReady = 600,
    cudaErrorIllegalAddress = 700,
    cudaErrorLaunchOutOfResources = 701,
    cudaErrorAssert = 710,
    cudaErrorIllegalInstruction = 715,
    cudaErrorMisalignedAddress = 716,
    cudaErrorLaunchFailure = 719,
    cudaErrorNotPermitted = 800,
    cudaErrorNotSupported = 801,
    cudaErrorStreamCaptureUnsupported = 900,
    cudaErrorStreamCaptureInvalidated = 901,
    cudaErrorStreamCaptureImplicit = 906,
    cudaErrorUnknown = 999
};
typedef enum cudaError cudaError_t;

enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4
};

enum cudaDeviceAttr {
    cudaDevAttrMaxThreadsPerBlock = 1,
    cudaDevAttrMaxBlockDimX = 2,
    cudaDevAttrMaxBlockDimY = 3,
    cudaDevAttrMaxBlockDimZ = 4,
    cudaDevAttrMaxGridDimX = 5,
    cudaDevAttrMaxGridDimY = 6,
    cudaDevAttrMaxGridDimZ = 7,
    cudaDevAttrMaxSharedMemoryPerBlock = 8,
    cudaDevAttrWarpSize = 10,
    cudaDevAttrMultiProcessorCount = 16,
    cudaDevAttrComputeCapabilityMajor = 75,
    cudaDevAttrComputeCapabilityMinor = 76,
    cudaDevAttrMaxSharedMemoryPerBlockOptin = 97
};

enum cudaFuncAttribute {
    cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
    cudaFuncAttributePreferredSharedMemoryCarveout = 9
};

#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01
#define cudaEventDefault 0x00
#define cudaEventBlockingSync 0x01
#define cudaEventDisableTiming 0x02
#define cudaHostAllocDefault 0x00

/* Streams and events are the runtime's own objects; the handles are pointers to them, as in
 * CUDA (layers_cuda.h relies on cudaStream_t being struct CUstream_st *). */
struct CUstream_st;
struct CUevent_st;
typedef struct CUstream_st *cudaStream_t;
typedef struct CUevent_st *cudaEvent_t;
#define cudaStreamLegacy ((cudaStream_t)0x1)

/* CUDA graphs made by stream capture (the subset the engine uses): cudaStreamBeginCapture ..
 * cudaStreamEndCapture records a stream's kernels, copies and memsets instead of running them;
 * cudaGraphLaunch queues the recorded work again on a stream, each time. */
struct CUgraph_st;
struct CUgraphExec_st;
typedef struct CUgraph_st *cudaGraph_t;
typedef struct CUgraphExec_st *cudaGraphExec_t;
enum cudaStreamCaptureMode {
    cudaStreamCaptureModeGlobal = 0,
    cudaStreamCaptureModeThreadLocal = 1,
    cudaStreamCaptureModeRelaxed = 2
};
enum cudaStreamCaptureStatus {
    cudaStreamCaptureStatusNone = 0,
    cudaStreamCaptureStatusActive = 1,
    cudaStreamCaptureStatusInvalidated = 2
};
#define cudaStreamPerThread ((cudaStream_t)0x2)

/* ------------------------------------------------------------------ vector types */

struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};
#define DL_EMU_VEC2(T, N, A)                                                                                           \
    struct __attribute__((aligned(A))) N {                                                                             \
        T x, y;                                                                                                        \
    };
#define DL_EMU_VEC4(T, N, A)                                                                                           \
    struct __attribute__((aligned(A))) N {                                                                             \
        T x, y, z, w;                                                                                                  \
    };
DL_EMU_VEC2(float, float2, 8)
DL_EMU_VEC4(float, float4, 16)
DL_EMU_VEC2(int, int2, 8)
DL_EMU_VEC4(int, int4, 16)
DL_EMU_VEC2(unsigned int, uint2, 8)
DL_EMU_VEC4(unsigned int, uint4, 16)
DL_EMU_VEC2(double, double2, 16)
#undef DL_EMU_VEC2
#undef DL_EMU_VEC4
static inline float2 make_float2(float x, float y) { return float2{x, y}; }
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
static inline int2 make_int2(int x, int y) { return int2{x, y}; }
static inline int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }
static inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }

/* A subset of cudaDeviceProp with CUDA's field names. */
struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    size_t sharedMemPerBlock;
    size_t sharedMemPerBlockOptin;
    int regsPerBlock;
    int warpSize;
    int maxThreadsPerBlock;
    int maxThreadsDim[3];
    int maxGridSize[3];
    int major, minor;
    int multiProcessorCount;
    int maxThreadsPerMultiProcessor;
    int integrated;
};

/* ------------------------------------------------------------------ the runtime API */

extern "C" {
cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int *device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device);
cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device);
cudaError_t cudaDriverGetVersion(int *version);
cudaError_t cudaRuntimeGetVersion(int *version);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaDeviceReset(void);

cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorString(cudaError_t error);
const char *cudaGetErrorName(cudaError_t error);

cudaError_t cudaMalloc(void **ptr, size_t bytes);
cudaError_t cudaFree(void *ptr);
cudaError_t cudaMallocAsync(void **ptr, size_t bytes, cudaStream_t stream);
cudaError_t cudaFreeAsync(void *ptr, cudaStream_t stream);
cudaError_t cudaMallocHost(void **ptr, size_t bytes);
cudaError_t cudaHostAlloc(void **ptr, size_t bytes, unsigned int flags);
cudaError_t cudaFreeHost(void *ptr);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes);

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream);
cudaError_t cudaMemcpy2D(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t height,
                         cudaMemcpyKind kind);
cudaError_t cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t height,
                              cudaMemcpyKind kind, cudaStream_t stream);
cudaError_t cudaMemset(void *dst, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t stream);

cudaError_t cudaStreamCreate(cudaStream_t *stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaStreamQuery(cudaStream_t stream);
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags = 0);

cudaError_t cudaEventCreate(cudaEvent_t *event);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventQuery(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end);

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *graph);
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus *status);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);

cudaError_t dl_emu_func_set_attribute(const void *func, cudaFuncAttribute attr, int value);
}

/* The typed overloads of CUDA's C++ API. */
template <class T>
static inline cudaError_t cudaMalloc(T **ptr, size_t bytes)
{
    return cudaMalloc(reinterpret_cast<void **>(ptr), bytes);
}
template <class T>
static inline cudaError_t cudaMallocAsync(T **ptr, size_t bytes, cudaStream_t stream)
{
    return cudaMallocAsync(reinterpret_cast<void **>(ptr), bytes, stream);
}
template <class T>
static inline cudaError_t cudaMallocHost(T **ptr, size_t bytes)
{
    return cudaMallocHost(reinterpret_cast<void **>(ptr), bytes);
}
template <class F>
static inline cudaError_t cudaFuncSetAttribute(F *func, cudaFuncAttribute attr, int value)
{
    return dl_emu_func_set_attribute(reinterpret_cast<const void *>(func), attr, value);
}

/* ------------------------------------------------------------------ the device language */

#define __host__
#define __device__
#define __global__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __align__(n) __attribute__((aligned(n)))
/* Static shared memory must be declared with DL_SHARED (layers/cuda_kernel.h): a plain
 * __shared__ stops the build here. */
#define __shared__ __shared__is_not_emulated__declare_shared_memory_with_DL_SHARED
#define __constant__ __constant__is_not_emulated
#define __CUDA_EMU_STR2(x) #x
#define __CUDA_EMU_STR(x) __CUDA_EMU_STR2(x)
#define __CUDA_EMU_CAT2(a, b) a##b
#define __CUDA_EMU_CAT(a, b) __CUDA_EMU_CAT2(a, b)

/*
 * __launch_bounds__(N): the kernel that follows is placed in a linker section named after N,
 * and a registration made at start-up records that section's address range with the value of
 * N (emu/exec.cc looks a launched kernel's address up in those ranges). The expansion closes the
 * declaration it sits in (`__global__ void` becomes the harmless `void dl_emu_lb_...();`), adds
 * the registration, and reopens it with `void` and the section attribute. So N must be one token:
 * 256 or CONV_THREADS, not 2 * 128. The optional second and third arguments are ignored. The
 * names it declares are numbered with __COUNTER__, so one macro may define several bounded kernels
 * (they all expand on the line of its use).
 */
namespace dl_emu {
struct launch_bounds_reg {
    launch_bounds_reg(const char *start, const char *stop, int max_threads);
};
} // namespace dl_emu
#define __launch_bounds__(n, ...)                                                                                      \
    __attribute__((unused)) __CUDA_EMU_CAT(dl_emu_lb_decl_, __COUNTER__)();                                               \
    extern "C" char __start_dl_emu_lb_##n[] __attribute__((weak, visibility("hidden")));                               \
    extern "C" char __stop_dl_emu_lb_##n[] __attribute__((weak, visibility("hidden")));                                \
    static const ::dl_emu::launch_bounds_reg __CUDA_EMU_CAT(dl_emu_lb_reg_, __COUNTER__)(__start_dl_emu_lb_##n,           \
                                                                                      __stop_dl_emu_lb_##n, (n));      \
    void __attribute__((section("dl_emu_lb_" #n), noinline))

/* The coordinates of the running thread: per OS thread, set by the scheduler at every switch, so
 * gdb can print them (`print threadIdx`) and condition breakpoints on them. */
extern __thread uint3 threadIdx;
extern __thread uint3 blockIdx;
extern __thread dim3 blockDim;
extern __thread dim3 gridDim;
enum { warpSize = 32 };

/* Barriers are macros so that each knows its place in the source: threads waiting at different
 * ones are a fault that names both places (a kind: 0 plain, 1 count, 2 and, 3 or). */
extern "C" int dl_emu_barrier(int kind, int predicate, const char *file, int line);
#define __syncthreads() ((void)dl_emu_barrier(0, 0, __FILE__, __LINE__))
#define __syncthreads_count(predicate) dl_emu_barrier(1, (predicate), __FILE__, __LINE__)
#define __syncthreads_and(predicate) dl_emu_barrier(2, (predicate), __FILE__, __LINE__)
#define __syncthreads_or(predicate) dl_emu_barrier(3, (predicate), __FILE__, __LINE__)

extern "C" {
void __syncwarp(unsigned int mask = 0xffffffffu);
unsigned int __ballot_sync(unsigned int mask, int predicate);
int __any_sync(unsigned int mask, int predicate);
int __all_sync(unsigned int mask, int predicate);
unsigned int __activemask(void);
void __threadfence(void);
void __threadfence_block(void);
/* The shuffles on a 64-bit payload; the typed templates below call them. mode: 0 idx, 1 up,
 * 2 down, 3 xor (emu/exec.cc, as the CUDA C++ guide defines the intrinsics). */
unsigned long long dl_emu_shfl(unsigned int mask, unsigned long long value, int mode, int lane_or_delta, int width);
}

template <class T>
static inline T dl_emu_shfl_t(unsigned int mask, T v, int mode, int arg, int width)
{
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffles move up to 8 bytes");
    unsigned long long bits = 0;
    memcpy(&bits, &v, sizeof v);
    bits = dl_emu_shfl(mask, bits, mode, arg, width);
    T r;
    memcpy(&r, &bits, sizeof r);
    return r;
}
template <class T>
static inline T __shfl_sync(unsigned int mask, T var, int src_lane, int width = warpSize)
{
    return dl_emu_shfl_t(mask, var, 0, src_lane, width);
}
template <class T>
static inline T __shfl_up_sync(unsigned int mask, T var, unsigned int delta, int width = warpSize)
{
    return dl_emu_shfl_t(mask, var, 1, (int)delta, width);
}
template <class T>
static inline T __shfl_down_sync(unsigned int mask, T var, unsigned int delta, int width = warpSize)
{
    return dl_emu_shfl_t(mask, var, 2, (int)delta, width);
}
template <class T>
static inline T __shfl_xor_sync(unsigned int mask, T var, int lane_mask, int width = warpSize)
{
    return dl_emu_shfl_t(mask, var, 3, lane_mask, width);
}

/* Atomics: blocks run on several OS threads at once, so these are real atomic operations. */
template <class T>
static inline T dl_emu_atomic_rmw(T *p, T v, int op)
{
    T old = __atomic_load_n(p, __ATOMIC_RELAXED), want;
    do {
        switch (op) {
        case 0: want = old + v; break;
        case 1: want = old < v ? v : old; break;
        case 2: want = old < v ? old : v; break;
        default: want = v; break;
        }
    } while (!__atomic_compare_exchange(p, &old, &want, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
    return old;
}
template <class T>
static inline T atomicAdd(T *p, T v)
{
    return dl_emu_atomic_rmw(p, v, 0);
}
template <class T>
static inline T atomicMax(T *p, T v)
{
    return dl_emu_atomic_rmw(p, v, 1);
}
template <class T>
static inline T atomicMin(T *p, T v)
{
    return dl_emu_atomic_rmw(p, v, 2);
}
template <class T>
static inline T atomicExch(T *p, T v)
{
    return dl_emu_atomic_rmw(p, v, 3);
}
template <class T>
static inline T atomicCAS(T *p, T compare, T v)
{
    __atomic_compare_exchange(p, &compare, &v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return compare;
}

/* What kernels call of CUDA's device math and intrinsics (the host's libm does the rest). */
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned int min(unsigned int a, unsigned int b) { return a < b ? a : b; }
static inline unsigned int max(unsigned int a, unsigned int b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
static inline double min(double a, double b) { return fmin(a, b); }
static inline double max(double a, double b) { return fmax(a, b); }
template <class T>
static inline T __ldg(const T *p)
{
    return *p;
}
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }
static inline float __fdividef(float a, float b) { return a / b; }
/* __expf: glibc declares it, with the same meaning */
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline int __float_as_int(float f)
{
    int i;
    memcpy(&i, &f, 4);
    return i;
}
static inline float __int_as_float(int i)
{
    float f;
    memcpy(&f, &i, 4);
    return f;
}
static inline unsigned int __float_as_uint(float f)
{
    unsigned int i;
    memcpy(&i, &f, 4);
    return i;
}
static inline float __uint_as_float(unsigned int i)
{
    float f;
    memcpy(&f, &i, 4);
    return f;
}
static inline int __popc(unsigned int x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline unsigned int __brev(unsigned int x)
{
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    x = ((x >> 8) & 0x00ff00ffu) | ((x & 0x00ff00ffu) << 8);
    return (x >> 16) | (x << 16);
}

/* ------------------------------------------------------------------ PTX instructions */

/* What layers/cuda_ptx.h's wrappers call in the emulated build (emu/ptx.cc): each as the PTX ISA
 * defines it, lane by lane. kind for dl_emu_mma: 0 m16n8k16 bf16, 1 m16n8k16 f16, 2 m16n8k8 tf32,
 * 3 m16n8k8 bf16, 4 m16n8k8 f16 (all .row.col, f32 accumulators). */
extern "C" {
void dl_emu_ldmatrix(uint32_t *r, const void *row, int num, int trans);
void dl_emu_mma(int kind, float *d, const uint32_t *a, const uint32_t *b, const float *c);
void dl_emu_cp_async(void *dst, const void *src, unsigned cp_size, unsigned src_size);
void dl_emu_cp_async_commit(void);
void dl_emu_cp_async_wait(int n);
void dl_emu_cp_async_wait_all(void);
}

/* ------------------------------------------------------------------ shared memory */

extern "C" {
/* The running block's copy of the static shared array whose declaration is identified by key
 * (DL_SHARED's function-local static): placed on the first call in each block, NaN-filled. */
void *dl_emu_shared_static(const void *key, size_t bytes, size_t align);
/* The running block's dynamic shared memory (the launch's smem bytes, NaN-filled). */
void *dl_emu_shared_dynamic(void);
}

/* ------------------------------------------------------------------ launches */

namespace dl_emu {

/* A launch's kernel and arguments, copied when the launch is queued; every thread of the grid
 * calls run_thread, which passes each thread its own copy of the arguments, as CUDA does. */
struct launch_args {
    virtual ~launch_args() = default;
    virtual void run_thread() const = 0;
};
template <class... P>
struct launch_args_of final : launch_args {
    void (*fn)(P...);
    std::tuple<P...> args;
    template <class... A>
    explicit launch_args_of(void (*f)(P...), A &&...a) : fn(f), args(std::forward<A>(a)...)
    {
    }
    void run_thread() const override { std::apply(fn, args); }
};

cudaError_t enqueue_launch(const void *fn, const char *name, dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                           std::shared_ptr<const launch_args> args);

template <class... P>
struct launcher {
    void (*fn)(P...);
    const char *name;
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
    template <class... A>
    void operator()(A &&...a) const
    {
        static_assert(sizeof...(A) == sizeof...(P), "DL_LAUNCH: wrong number of kernel arguments");
        std::shared_ptr<const launch_args> args(new launch_args_of<std::decay_t<P>...>(fn, std::forward<A>(a)...));
        enqueue_launch(reinterpret_cast<const void *>(fn), name, grid, block, smem, stream, std::move(args));
    }
};

template <class... P>
static inline launcher<P...> launch_of(void (*fn)(P...), const char *name, dim3 grid, dim3 block, size_t smem,
                                       cudaStream_t stream)
{
    return launcher<P...>{fn, name, grid, block, smem, stream};
}

} // namespace dl_emu

#endif
