/*
 * test_cuda_emu.cu - the emulated GPU checked on what it promises (emu/README.md): each check is a
 * small kernel or stream program whose correct outcome on a GPU is known, and the emulator must give it,
 * or refuse it with the error a GPU gives, or (where a GPU would silently compute garbage or hang)
 * fault with a message that names the kernel.
 *
 *   launches   block and grid limits, __launch_bounds__, dynamic shared memory over 48 KB without
 *              and with cudaFuncSetAttribute: CUDA's error codes, and a refused launch leaves the
 *              device usable (these run on a real GPU too, where they check the emulator's codes)
 *   memory     cudaMalloc and every block's shared memory start as NaN; a copy past the end of an
 *              allocation is refused
 *   barriers   one that some threads exit without, two different ones, a warp operation some lanes
 *              never reach, static shared memory over 48 KB: faults naming the kernel (sticky, until
 *              cudaDeviceReset); a barrier used by some blocks only is fine
 *   schedules  a kernel that reads shared memory another thread writes without a barrier gives
 *              different results under two seeds; with the barrier, the same
 *   streams    a non-blocking stream is not ordered after a synchronous copy (whose device write is
 *              still queued on the legacy stream), a blocking stream is; an event orders two
 *              streams, its absence does not; cudaFree synchronises the device, cudaFreeAsync does
 *              not; polling cudaEventQuery ends
 *   graphs     a captured stream runs nothing; each cudaGraphLaunch runs the recorded kernels,
 *              memsets and copies again with the data of that moment (a pinned input changed
 *              between launches shows); what CUDA refuses during a global-mode capture (cudaMalloc,
 *              a synchronisation of the stream, a copy from pageable memory, work on the legacy
 *              stream while a blocking stream captures) is refused with its code and invalidates the capture
 * Exit 0, 1 on a failed check; 77 (skip) without CUDA or a device.
 */
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_kernel.h"
#include "testutil_kernel.h"
#ifdef DL_EMU
#include "emu.h"
#endif


/* A launch's error, whether refused at once or met while running. */
static cudaError_t launched(void)
{
    const cudaError_t e = cudaGetLastError();
    return e != cudaSuccess ? e : cudaDeviceSynchronize();
}

static void expect_error(cudaError_t got, cudaError_t want, const char *what)
{
    char d[256];
    snprintf(d, sizeof d, "%s (want %s)", cudaGetErrorName(got), cudaGetErrorName(want));
    ok(got == want, what, d);
    cudaGetLastError(); /* a refused call is the last error too, as in CUDA: cleared for the next check */
}

/* ------------------------------------------------------------------ kernels */

__global__ void fill_kernel(float *out, float v, int n)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = v + (float)i;
}

__global__ void __launch_bounds__(128) bounded_kernel(float *out) { out[threadIdx.x] = 1.0f; }

/* two bounded kernels from one macro: both expand on the same line */
#define TWO_BOUNDED(a, b)                                                              \
    __global__ void __launch_bounds__(64) a(float *out) { out[threadIdx.x] = 2.0f; }   \
    __global__ void __launch_bounds__(32) b(float *out) { out[threadIdx.x] = 3.0f; }
TWO_BOUNDED(bounded64_kernel, bounded32_kernel)

__global__ void dynamic_smem_kernel(float *out, int n)
{
    DL_DYNAMIC_SHARED(float, buf);
    const int t = threadIdx.x;
    for (int i = t; i < n; i += blockDim.x) buf[i] = (float)i;
    __syncthreads();
    if (t == 0) out[blockIdx.x] = buf[n - 1];
}

__global__ void copy_kernel(const float *in, float *out, int n)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = in[i];
}

#ifdef DL_EMU

/* Every block reads its shared array before writing it, then writes its own block index: all
 * reads must be NaN (fresh memory per block, not the previous block's values). */
__global__ void smem_fresh_kernel(unsigned *out)
{
    DL_SHARED(float, s, [64]);
    const int t = threadIdx.x;
    unsigned bits;
    memcpy(&bits, &s[t], 4);
    out[blockIdx.x * 64 + t] = bits;
    s[t] = (float)blockIdx.x;
}

__global__ void early_exit_kernel(float *out)
{
    DL_SHARED(float, s, [128]);
    const int t = threadIdx.x;
    if (t < 10) return; /* the bug: these never reach the barrier */
    s[t] = 1.0f;
    __syncthreads();
    out[t] = s[127 - t];
}

__global__ void divergent_kernel(float *out)
{
    if (threadIdx.x & 1) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    out[threadIdx.x] = 1.0f;
}

__global__ void half_warp_shfl_kernel(float *out)
{
    float v = (float)threadIdx.x;
    if (threadIdx.x < 16) v = __shfl_sync(0xffffffffu, v, 0); /* lanes 16-31 never come */
    out[threadIdx.x] = v;
}

__global__ void big_static_smem_kernel(float *out)
{
    DL_SHARED(float, big, [13 * 1024]); /* 52 KB: nvcc refuses this at compile time */
    big[threadIdx.x] = 1.0f;
    out[threadIdx.x] = big[threadIdx.x];
}

/* Only some blocks use the barrier (all threads of such a block do): legal CUDA. */
__global__ void some_blocks_sync_kernel(float *out)
{
    DL_SHARED(float, s, [64]);
    const int t = threadIdx.x;
    s[t] = (float)t;
    if (blockIdx.x % 5 == 3) {
        __syncthreads();
        out[blockIdx.x * 64 + t] = s[63 - t];
    } else {
        out[blockIdx.x * 64 + t] = (float)(63 - t);
    }
}

/* Each thread writes its slot, then (after the barrier, when with_barrier) reads its neighbour's. */
__global__ void neighbour_kernel(float *out, int with_barrier)
{
    DL_SHARED(float, s, [256]);
    const int t = threadIdx.x;
    s[t] = (float)(t + 1);
    if (with_barrier) __syncthreads();
    const float v = s[(t + 1) & 255];
    out[blockIdx.x * 256 + t] = v == v ? v : -1.0f; /* NaN (not written yet) as -1 */
}

#endif

/* ------------------------------------------------------------------ launches */

static void test_launch_limits(void)
{
    float *d;
    cudaMalloc(&d, 4096 * sizeof(float));
    DL_LAUNCH(fill_kernel, 1, 1025, 0, 0)(d, 0.0f, 1025);
    expect_error(launched(), cudaErrorInvalidConfiguration, "a block of 1025 threads is refused");
    DL_LAUNCH(fill_kernel, 1, dim3(1, 1, 65), 0, 0)(d, 0.0f, 1);
    expect_error(launched(), cudaErrorInvalidConfiguration, "blockDim.z = 65 is refused");
    DL_LAUNCH(fill_kernel, dim3(1, 65536), 32, 0, 0)(d, 0.0f, 1);
    expect_error(launched(), cudaErrorInvalidConfiguration, "gridDim.y = 65536 is refused");
    DL_LAUNCH(fill_kernel, 0, 32, 0, 0)(d, 0.0f, 1);
    expect_error(launched(), cudaErrorInvalidConfiguration, "an empty grid is refused");
    DL_LAUNCH(bounded_kernel, 1, 256, 0, 0)(d);
    expect_error(launched(), cudaErrorLaunchOutOfResources, "256 threads for __launch_bounds__(128) are refused");
    DL_LAUNCH(bounded_kernel, 1, 128, 0, 0)(d);
    expect_error(launched(), cudaSuccess, "128 threads for __launch_bounds__(128) run");
    DL_LAUNCH(bounded64_kernel, 1, 65, 0, 0)(d);
    expect_error(launched(), cudaErrorLaunchOutOfResources, "two kernels bounded on one line: 65 threads for (64)");
    DL_LAUNCH(bounded32_kernel, 1, 33, 0, 0)(d);
    expect_error(launched(), cudaErrorLaunchOutOfResources, "  and 33 threads for (32) are refused");
    DL_LAUNCH(bounded32_kernel, 1, 32, 0, 0)(d);
    expect_error(launched(), cudaSuccess, "  and 32 threads for (32) run");
    DL_LAUNCH(dynamic_smem_kernel, 1, 128, 48 * 1024 + 4, 0)(d, 12289);
    expect_error(launched(), cudaErrorInvalidValue, "48 KB + 4 of dynamic shared memory without the attribute");
    expect_error(cudaFuncSetAttribute(dynamic_smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 232448 + 4),
                 cudaErrorInvalidValue, "the attribute over the 227 KB opt-in limit is refused");
    expect_error(cudaFuncSetAttribute(dynamic_smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 100 * 1024),
                 cudaSuccess, "the attribute raised to 100 KB");
    DL_LAUNCH(dynamic_smem_kernel, 2, 128, 100 * 1024, 0)(d, 25600);
    cudaError_t e = launched();
    float r[2] = {0, 0};
    cudaMemcpy(r, d, sizeof r, cudaMemcpyDeviceToHost);
    expect_error(e, cudaSuccess, "100 KB of dynamic shared memory with the attribute");
    ok(r[0] == 25599.0f && r[1] == 25599.0f, "  and every block sees its own dynamic shared memory");
    DL_LAUNCH(fill_kernel, 4, 256, 0, 0)(d, 2.0f, 1000);
    float h[1000];
    e = cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
    ok(e == cudaSuccess && h[0] == 2.0f && h[999] == 1001.0f, "after refused launches the device still works");
    cudaFree(d);
}

#ifdef DL_EMU

/* ------------------------------------------------------------------ memory */

static void test_memory(void)
{
    unsigned *d;
    cudaMalloc(&d, 64 * 7 * sizeof(unsigned));
    unsigned h[64 * 7];
    cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
    int all = 1;
    for (unsigned v : h) all &= v == 0xffffffffu;
    ok(all, "cudaMalloc'd memory starts as 0xff bytes (NaN as float)");
    DL_LAUNCH(smem_fresh_kernel, 7, 64, 0, 0)(d);
    cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
    all = 1;
    for (unsigned v : h) all &= v == 0xffffffffu;
    ok(all, "every block's shared memory starts as NaN, not as the last block left it");
    char host[16];
    expect_error(cudaMemcpy(reinterpret_cast<char *>(d) + sizeof h - 8, host, 16, cudaMemcpyHostToDevice),
                 cudaErrorInvalidValue, "a copy past the end of an allocation is refused");
    expect_error(cudaMemcpy(host, d, 16, cudaMemcpyHostToDevice), cudaErrorInvalidValue,
                 "a host-to-device copy into host memory is refused");
    cudaFree(d);
}

/* ------------------------------------------------------------------ faults */

static void expect_fault(const char *what, const char *kernel, const char *words)
{
    const cudaError_t e = launched();
    const char *msg = cudaGetErrorString(e);
    char d[600];
    snprintf(d, sizeof d, "%s: \"%s\"", cudaGetErrorName(e), msg);
    ok(e != cudaSuccess && strstr(msg, kernel) && strstr(msg, words), what, d);
    float *p = nullptr;
    ok(cudaMalloc(&p, 16) == e, "  the fault is sticky: the next call returns it too");
    cudaDeviceReset();
    ok(cudaMalloc(&p, 16) == cudaSuccess, "  cudaDeviceReset clears it");
    cudaFree(p);
}

static void test_faults(void)
{
    float *d;
    cudaMalloc(&d, 1024 * sizeof(float));
    DL_LAUNCH(early_exit_kernel, 3, 128, 0, 0)(d);
    expect_fault("a barrier that threads exit without is a fault", "early_exit_kernel", "not reached by every thread");
    cudaMalloc(&d, 1024 * sizeof(float));
    DL_LAUNCH(divergent_kernel, 1, 64, 0, 0)(d);
    expect_fault("threads waiting at two different barriers are a fault", "divergent_kernel", "divergent");
    cudaMalloc(&d, 1024 * sizeof(float));
    DL_LAUNCH(half_warp_shfl_kernel, 1, 32, 0, 0)(d);
    expect_fault("a shuffle half the warp never reaches is a fault", "half_warp_shfl_kernel", "__shfl_sync");
    cudaMalloc(&d, 1024 * sizeof(float));
    DL_LAUNCH(big_static_smem_kernel, 1, 32, 0, 0)(d);
    expect_fault("static shared memory over 48 KB is a fault", "big_static_smem_kernel", "48 KB");

    cudaMalloc(&d, 20 * 64 * sizeof(float));
    DL_LAUNCH(some_blocks_sync_kernel, 20, 64, 0, 0)(d);
    const cudaError_t e = launched();
    float h[20 * 64];
    cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
    int right = 1;
    for (int b = 0; b < 20; b++)
        for (int t = 0; t < 64; t++) right &= h[b * 64 + t] == (float)(63 - t);
    ok(e == cudaSuccess && right, "a barrier used by some blocks only (all their threads) runs correctly");
    cudaFree(d);
}

/* ------------------------------------------------------------------ schedules */

static void neighbours(int with_barrier, unsigned long long seed, float *h)
{
    float *d;
    cudaMalloc(&d, 4 * 256 * sizeof(float));
    dl_emu_set_seed(seed);
    DL_LAUNCH(neighbour_kernel, 4, 256, 0, 0)(d, with_barrier);
    cudaMemcpy(h, d, 4 * 256 * sizeof(float), cudaMemcpyDeviceToHost);
    cudaFree(d);
}

static void test_schedules(void)
{
    const unsigned long long seed0 = dl_emu_seed();
    static float a[1024], b[1024], c[1024];
    neighbours(0, 1, a);
    neighbours(0, 2, b);
    neighbours(0, 0, c);
    int missing = 0, differ = 0;
    for (int i = 0; i < 1024; i++) missing += a[i] < 0, differ += memcmp(&a[i], &b[i], 4) != 0;
    char d[128];
    snprintf(d, sizeof d, "%d of 1024 reads differ between seeds 1 and 2, %d read an unwritten slot", differ, missing);
    ok(differ > 0 && missing > 0, "a read of another thread's write without a barrier depends on the schedule", d);
    int in_order = 1;
    for (int i = 0; i < 1024; i++) in_order &= (i % 256 == 255) ? c[i] == 1.0f : c[i] == -1.0f;
    ok(in_order, "seed 0 runs the threads in index order (each reads its next, not yet written)");
    neighbours(1, 1, a);
    neighbours(1, 2, b);
    int right = 1;
    for (int i = 0; i < 1024; i++) right &= a[i] == (float)(((i + 1) & 255) + 1) && a[i] == b[i];
    ok(right, "with the barrier: the same result under both seeds, the right one");
    dl_emu_set_seed(seed0);
}

/* ------------------------------------------------------------------ streams */

static void test_streams(void)
{
    enum { N = 1000 };
    static float host[N], back[N];
    for (int i = 0; i < N; i++) host[i] = (float)i;
    float *d_in, *d_out;
    cudaMalloc(&d_in, N * sizeof(float));
    cudaMalloc(&d_out, N * sizeof(float));

    /* a synchronous copy from pageable memory, then work on a non-blocking stream: not ordered */
    cudaStream_t nb, blocking, other;
    cudaStreamCreateWithFlags(&nb, cudaStreamNonBlocking);
    cudaStreamCreate(&blocking);
    cudaStreamCreateWithFlags(&other, cudaStreamNonBlocking);
    cudaMemcpy(d_in, host, sizeof host, cudaMemcpyHostToDevice);
    DL_LAUNCH(copy_kernel, 4, 256, 0, nb)(d_in, d_out, N);
    cudaMemcpyAsync(back, d_out, sizeof back, cudaMemcpyDeviceToHost, nb);
    cudaStreamSynchronize(nb);
    ok(back[0] != back[0] && back[N - 1] != back[N - 1],
       "a non-blocking stream does not wait for cudaMemcpy's queued device write (it reads NaN)");
    cudaDeviceSynchronize();

    /* the same with a blocking stream: the legacy stream orders it */
    cudaMemset(d_out, 0xff, sizeof back);
    cudaMemcpy(d_in, host, sizeof host, cudaMemcpyHostToDevice);
    DL_LAUNCH(copy_kernel, 4, 256, 0, blocking)(d_in, d_out, N);
    cudaMemcpyAsync(back, d_out, sizeof back, cudaMemcpyDeviceToHost, blocking);
    cudaStreamSynchronize(blocking);
    ok(back[0] == 0.0f && back[N - 1] == (float)(N - 1), "a blocking stream is ordered after it");

    /* an event orders two non-blocking streams; without it they are not ordered */
    cudaEvent_t ev;
    cudaEventCreate(&ev);
    cudaMemset(d_out, 0xff, sizeof back);
    cudaDeviceSynchronize();
    DL_LAUNCH(fill_kernel, 4, 256, 0, nb)(d_in, 5.0f, N);
    cudaEventRecord(ev, nb);
    cudaStreamWaitEvent(other, ev, 0);
    DL_LAUNCH(copy_kernel, 4, 256, 0, other)(d_in, d_out, N);
    cudaMemcpyAsync(back, d_out, sizeof back, cudaMemcpyDeviceToHost, other);
    cudaStreamSynchronize(other);
    ok(back[0] == 5.0f && back[N - 1] == 5.0f + (N - 1), "cudaStreamWaitEvent orders the other stream after the event");
    DL_LAUNCH(fill_kernel, 4, 256, 0, nb)(d_in, 7.0f, N);
    DL_LAUNCH(copy_kernel, 4, 256, 0, other)(d_in, d_out, N);
    cudaMemcpyAsync(back, d_out, sizeof back, cudaMemcpyDeviceToHost, other);
    cudaStreamSynchronize(other);
    ok(back[0] == 5.0f, "without the event, the other stream runs before the work it did not wait for");
    cudaDeviceSynchronize();

    /* cudaFree waits for the whole device; cudaFreeAsync for nothing */
    float *scratch;
    cudaMalloc(&scratch, 64);
    DL_LAUNCH(fill_kernel, 4, 256, 0, nb)(d_in, 1.0f, N);
    dl_emu_stats st;
    dl_emu_get_stats(&st);
    const unsigned long long queued = st.pending;
    cudaFree(scratch);
    dl_emu_get_stats(&st);
    ok(queued > 0 && st.pending == 0, "cudaFree runs the work queued on every stream (it synchronises the device)");
    cudaMallocAsync(&scratch, 64, other);
    DL_LAUNCH(fill_kernel, 4, 256, 0, nb)(d_in, 1.0f, N);
    cudaFreeAsync(scratch, other);
    dl_emu_get_stats(&st);
    ok(st.pending >= 2, "cudaFreeAsync synchronises nothing (its stream's work and the other's stay queued)");

    /* a host thread polling an event sees it complete */
    DL_LAUNCH(fill_kernel, 4, 256, 0, nb)(d_in, 3.0f, N);
    cudaEventRecord(ev, nb);
    int polls = 0;
    while (cudaEventQuery(ev) == cudaErrorNotReady && polls < 1000) polls++;
    cudaMemcpy(back, d_in, sizeof back, cudaMemcpyDeviceToHost);
    ok(polls < 1000 && back[1] == 4.0f, "polling cudaEventQuery ends, and the work is done");

    cudaEventDestroy(ev);
    cudaStreamDestroy(nb);
    cudaStreamDestroy(blocking);
    cudaStreamDestroy(other);
    cudaFree(d_in);
    cudaFree(d_out);
}

/* ------------------------------------------------------------------ graphs */

__global__ void scale_kernel(const float *in, float *out, float a, int n)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = a * in[i];
}

static void test_graphs(void)
{
    enum { N = 300 };
    float *pinned_in, *pinned_out, *d_a, *d_b;
    static float pageable[N];
    cudaMallocHost(&pinned_in, N * sizeof(float));
    cudaMallocHost(&pinned_out, N * sizeof(float));
    cudaMalloc(&d_a, N * sizeof(float));
    cudaMalloc(&d_b, N * sizeof(float));
    cudaStream_t s, blocking;
    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    cudaStreamCreate(&blocking);
    for (int i = 0; i < N; i++) pinned_in[i] = (float)i;

    /* input up, a memset, two kernels, output down: all recorded, nothing run */
    dl_emu_stats st0, st1;
    dl_emu_get_stats(&st0);
    cudaError_t e = cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal);
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    cudaStreamIsCapturing(s, &cs);
    cudaMemcpyAsync(d_a, pinned_in, N * sizeof(float), cudaMemcpyHostToDevice, s);
    cudaMemsetAsync(d_b, 0, N * sizeof(float), s);
    DL_LAUNCH(scale_kernel, 2, 256, 0, s)(d_a, d_b, 2.0f, N - 1); /* leaves the last element 0 */
    DL_LAUNCH(scale_kernel, 2, 256, 0, s)(d_b, d_a, 3.0f, N);
    cudaMemcpyAsync(pinned_out, d_a, N * sizeof(float), cudaMemcpyDeviceToHost, s);
    cudaGraph_t g = nullptr;
    const cudaError_t end = cudaStreamEndCapture(s, &g);
    dl_emu_get_stats(&st1);
    ok(e == cudaSuccess && cs == cudaStreamCaptureStatusActive && end == cudaSuccess && g &&
           st1.launches == st0.launches && st1.pending == st0.pending,
       "a captured stream records its work and runs none of it");
    cudaGraphExec_t x = nullptr;
    e = cudaGraphInstantiate(&x, g, 0);
    for (int i = 0; i < N; i++) pinned_out[i] = -1.0f;
    cudaGraphLaunch(x, s);
    cudaStreamSynchronize(s);
    ok(e == cudaSuccess && pinned_out[5] == 30.0f && pinned_out[N - 1] == 0.0f,
       "cudaGraphLaunch runs the copies, the memset and the kernels in order");
    for (int i = 0; i < N; i++) pinned_in[i] = (float)(2 * i);
    cudaGraphLaunch(x, s);
    cudaGraphLaunch(x, s);
    cudaStreamSynchronize(s);
    ok(pinned_out[5] == 60.0f, "each launch runs it again, reading the pinned input as it is then");
    cudaGraphExecDestroy(x);
    cudaGraphDestroy(g);

    /* refused while capturing, and the capture is then invalidated */
    struct refusal {
        const char *what;
        cudaError_t want;
    } refusals[] = {{"cudaMalloc", cudaErrorStreamCaptureUnsupported},
                    {"cudaStreamSynchronize of the capturing stream", cudaErrorStreamCaptureUnsupported},
                    {"cudaMemcpyAsync from pageable memory", cudaErrorStreamCaptureUnsupported},
                    {"a kernel on the legacy stream (a blocking stream captures)", cudaErrorStreamCaptureImplicit},
                    {"a launch with a bad configuration", cudaErrorInvalidConfiguration}};
    for (int r = 0; r < 5; r++) {
        cudaStream_t c = r == 3 ? blocking : s;
        cudaStreamBeginCapture(c, cudaStreamCaptureModeGlobal);
        DL_LAUNCH(scale_kernel, 2, 256, 0, c)(d_a, d_b, 2.0f, N);
        float *p = nullptr;
        switch (r) {
        case 0: e = cudaMalloc(&p, 64); break;
        case 1: e = cudaStreamSynchronize(s); break;
        case 2: e = cudaMemcpyAsync(d_a, pageable, sizeof pageable, cudaMemcpyHostToDevice, s); break;
        case 3: DL_LAUNCH(scale_kernel, 2, 256, 0, 0)(d_a, d_b, 2.0f, N); e = cudaGetLastError(); break;
        default: DL_LAUNCH(scale_kernel, 2, 2048, 0, s)(d_a, d_b, 2.0f, N); e = cudaGetLastError(); break;
        }
        cudaGetLastError();
        char what[160];
        snprintf(what, sizeof what, "during a capture, %s is refused", refusals[r].what);
        expect_error(e, refusals[r].want, what);
        g = nullptr;
        e = cudaStreamEndCapture(c, &g);
        snprintf(what, sizeof what, "... and the capture is invalidated (no graph)%s", g ? " but a graph came back" : "");
        expect_error(e, cudaErrorStreamCaptureInvalidated, what);
        if (p) cudaFree(p);
    }
    e = cudaStreamEndCapture(s, &g);
    expect_error(e, cudaErrorIllegalState, "cudaStreamEndCapture without a capture");
    DL_LAUNCH(scale_kernel, 2, 256, 0, 0)(d_a, d_b, 2.0f, N);
    expect_error(cudaGetLastError(), cudaSuccess, "after the capture, the legacy stream takes work again");
    cudaStreamDestroy(s);
    cudaStreamDestroy(blocking);
    cudaFreeHost(pinned_in);
    cudaFreeHost(pinned_out);
    cudaFree(d_a);
    cudaFree(d_b);
}

#endif

int main(void)
{
    if (!have_device()) return 77;
    test_launch_limits();
#ifdef DL_EMU
    test_memory();
    test_faults();
    test_schedules();
    test_streams();
    test_graphs();
#else
    printf("(on a GPU only the launch checks run: the rest checks the emulator itself)\n");
#endif
    return finish("emulated-GPU");
}
