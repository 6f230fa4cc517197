/*
 * cudnn_backend.cu - the cudnn backend (cudnn_backend.h): the graph's convolutions through cuDNN
 * and cuBLAS, the yardstick the hand-written kernels (layers/conv2d.cu) are measured against.
 * Everything but the convolutions runs the native kernels (forward_cuda.cu).
 *
 * Two routes, chosen per convolution by its shape:
 *
 *   1x1, stride 1: one matrix product per image, through cuBLAS:
 *       out[OC x P] = W[OC x C] * in[C x P]      row-major (NCHW), P = H * W
 *     cuBLAS is column-major: the same memory read column-major is the transpose, so it computes
 *       out^T[P x OC] = in^T[P x C] * W^T[C x OC]   m = P, n = OC, k = C, lda = P, ldb = C, ldc = P
 *     as one strided-batched GEMM over the images (strides in.ldn, 0: the weights are shared,
 *     out.ldn). A channel slice of a wider output (an ASPP branch in the concatenation) keeps
 *     ldc = P: its channels are still P floats apart; only the image stride grows. Then one pass
 *     (epilogue_kernel) adds the bias and the residual and applies the ReLU.
 *
 *   every other convolution: cuDNN's legacy API, deprecated in cuDNN 9 but shipped
 *     (libcudnn_cnn). With a ReLU: cudnnConvolutionBiasActivationForward, which computes
 *       y = relu(alpha1 * conv(x) + alpha2 * z + bias)
 *     with z = the residual and alpha2 = 1 (or z = y and alpha2 = 0: no residual). Without a ReLU
 *     cuDNN fuses only with the IMPLICIT_PRECOMP_GEMM algorithm (identity activation); rather than
 *     force that algorithm, such a convolution runs cudnnConvolutionForward with the searched one
 *     and then the same epilogue pass as cuBLAS. In DeepLabV3 that is one layer: the 1x1 stride-2
 *     backbone.layer2.0.downsample.0. Channel slices are described by the output descriptor's
 *     strides (cudnnSetTensor4dDescriptorEx).
 *
 * Algorithms: cudnnFindConvolutionForwardAlgorithmEx times every algorithm on the plan's own
 * buffers, once per distinct shape (images, channels, size, kernel, stride, padding, dilation, the
 * tensors' strides and alignment, fused or not): 22 of ResNet-101's 23 layer3 blocks share their
 * three shapes, searched once. The fastest algorithm whose real call succeeds wins (cuDNN can
 * refuse to fuse with a given algorithm; then the next one is tried, and failing all, the
 * unfused call). The choices are kept for the life of the model, so a new input size searches
 * only its new shapes. The workspace is one buffer, grown for a search (to what the most demanding
 * algorithm asks for, within a quarter of the free memory and 1 GiB), then shrunk to the largest
 * the chosen algorithms need.
 *
 * Precision: fp32 is CUDNN_FMA_MATH and CUBLAS_COMPUTE_32F: no tensor cores, as the native
 * kernels (cuDNN's CUDNN_DEFAULT_MATH would let Ampere and later GPUs round fp32 convolutions to
 * TF32). tf32 is CUDNN_TENSOR_OP_MATH and CUBLAS_COMPUTE_32F_FAST_TF32; never
 * CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION, which may convert to fp16.
 *
 * Libraries: libcudnn.so.9 and libcublas.so.13 are opened with dlopen when the first cudnn model
 * is made, not linked: deeplab starts, and runs its native kernels, on machines without them (and
 * without a GPU driver), and a missing library is a one-line DL_EUNAVAILABLE naming it. Without
 * cudnn.h and cublas_v2.h at build time this file builds to stubs that say so.
 */
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_check.h"
#include "cuda_index.h"
#include "cuda_kernel.h"
#include "cudnn_backend.h"
#include "status.h"

#if defined(__has_include) && !defined(DL_EMU)
#if __has_include(<cudnn.h>) && __has_include(<cublas_v2.h>)
#define DL_HAVE_CUDNN 1
#endif
#endif

#ifndef DL_HAVE_CUDNN /* ------------------------------ built without the headers, or for the emulated GPU */

static dl_status no_cudnn(void)
{
#ifdef DL_EMU
    return dl_fail(DL_EUNAVAILABLE, "the cudnn backend cannot run on the emulated GPU: cuDNN and cuBLAS are "
                                    "NVIDIA's own compiled libraries, and only this project's kernels are emulated");
#else
    return dl_fail(DL_EUNAVAILABLE, "the cudnn backend: this deeplab was built without cuDNN's headers (cudnn.h, "
                                    "cublas_v2.h); install cuDNN 9 and rebuild, with NVCCFLAGS=-I<their folder> if "
                                    "they are outside nvcc's include path");
#endif
}

extern "C" dl_status dl_dnn_create(dl_stream s, dl_precision precision, int nslots, dl_dnn **out)
{
    (void)s, (void)precision, (void)nslots;
    *out = NULL;
    return no_cudnn();
}
extern "C" void dl_dnn_free(dl_dnn *d) { (void)d; }
extern "C" dl_status dl_dnn_prepare(dl_dnn *d, int slot, const char *name, const conv2d *L, tensor in,
                                    const tensor *residual, tensor out)
{
    (void)d, (void)slot, (void)name, (void)L, (void)in, (void)residual, (void)out;
    return no_cudnn();
}
extern "C" dl_status dl_dnn_settle(dl_dnn *d)
{
    (void)d;
    return no_cudnn();
}
extern "C" dl_status dl_dnn_conv(dl_dnn *d, int slot, const conv2d *L, tensor in, const tensor *residual, tensor out)
{
    (void)d, (void)slot, (void)L, (void)in, (void)residual, (void)out;
    return no_cudnn();
}
extern "C" size_t dl_dnn_workspace_bytes(const dl_dnn *d, int peak)
{
    (void)d, (void)peak;
    return 0;
}
extern "C" const char *dl_dnn_slot_path(const dl_dnn *d, int slot)
{
    (void)d, (void)slot;
    return "none";
}
extern "C" const char *dl_dnn_versions(const dl_dnn *d)
{
    (void)d;
#ifdef DL_EMU
    return "none on the emulated GPU";
#else
    return "built without cuDNN";
#endif
}

#else /* ---------------------------------------------------------------- with cuDNN and cuBLAS */

#include <cublas_v2.h>
#include <cudnn.h>

/* ------------------------------------------------------------------ the libraries, opened at run time */

/* Every library function used, called through a pointer of the header's own type (lib::name). */
#define DNN_FUNCTIONS(X)                                                                                      \
    X(cudnnGetVersion) X(cudnnGetErrorString) X(cudnnGetLastErrorString) X(cudnnCreate) X(cudnnDestroy)       \
    X(cudnnSetStream) X(cudnnCreateTensorDescriptor) X(cudnnSetTensor4dDescriptorEx)                         \
    X(cudnnDestroyTensorDescriptor) X(cudnnCreateFilterDescriptor) X(cudnnSetFilter4dDescriptor)             \
    X(cudnnDestroyFilterDescriptor) X(cudnnCreateConvolutionDescriptor) X(cudnnSetConvolution2dDescriptor)   \
    X(cudnnSetConvolutionMathType) X(cudnnDestroyConvolutionDescriptor) X(cudnnCreateActivationDescriptor)   \
    X(cudnnSetActivationDescriptor) X(cudnnDestroyActivationDescriptor)                                      \
    X(cudnnGetConvolutionForwardAlgorithmMaxCount) X(cudnnGetConvolutionForwardWorkspaceSize)                \
    X(cudnnFindConvolutionForwardAlgorithmEx) X(cudnnConvolutionForward) X(cudnnConvolutionBiasActivationForward)
#define BLAS_FUNCTIONS(X)                                                                                     \
    X(cublasCreate_v2) X(cublasDestroy_v2) X(cublasSetStream_v2) X(cublasSetMathMode)                        \
    X(cublasGetStatusString) X(cublasGetProperty)

/* cublas_api.h overloads this one in C++ (an inline shim taking the old cudaDataType compute type):
 * the cast picks the library's own, and fails to compile if its signature ever changes. */
typedef cublasStatus_t (*gemm_strided_batched_fn)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                                                  const void *, const void *, cudaDataType, int, long long,
                                                  const void *, cudaDataType, int, long long, const void *, void *,
                                                  cudaDataType, int, long long, int, cublasComputeType_t,
                                                  cublasGemmAlgo_t);

namespace lib {
#define DL_DECLARE(f) static decltype(&::f) f;
DNN_FUNCTIONS(DL_DECLARE)
BLAS_FUNCTIONS(DL_DECLARE)
#undef DL_DECLARE
static decltype(static_cast<gemm_strided_batched_fn>(&::cublasGemmStridedBatchedEx)) cublasGemmStridedBatchedEx;
static char error[1024]; /* why opening them failed */
static char versions[96];
} // namespace lib

/* The library by its versioned name (the loader's search: LD_LIBRARY_PATH, the cache, ...), else
 * in the toolkit's usual folders. NULL with why set. */
static void *open_library(const char *soname, char *why, size_t why_len)
{
    static const char *const dirs[] = {"", "/usr/local/cuda/lib64/", "/usr/local/cuda/lib/"};
    char path[256];
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        snprintf(path, sizeof path, "%s%s", dirs[i], soname);
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (h) return h;
        if (i == 0) {
            const char *e = dlerror();
            snprintf(why, why_len, "%s", e ? e : "not found");
        }
    }
    return NULL;
}

/* Opens both libraries and resolves every function; 1 on success, else 0 with lib::error set.
 * Never closed: cuDNN does not expect to be unloaded. */
static int open_libraries(void)
{
    char dnn_so[32], blas_so[32], why[512] = "";
    snprintf(dnn_so, sizeof dnn_so, "libcudnn.so.%d", CUDNN_MAJOR);
    snprintf(blas_so, sizeof blas_so, "libcublas.so.%d", CUBLAS_VER_MAJOR);
    void *dnn = open_library(dnn_so, why, sizeof why);
    void *blas = dnn ? open_library(blas_so, why, sizeof why) : NULL;
    if (!dnn || !blas) {
        snprintf(lib::error, sizeof lib::error,
                 "the cudnn backend needs %s (%s; also looked in /usr/local/cuda/lib64): install %s for CUDA %d, "
                 "or add the folder that holds it to LD_LIBRARY_PATH (pip's NVIDIA packages: under "
                 "site-packages/nvidia/)",
                 dnn ? blas_so : dnn_so, why, dnn ? "cuBLAS" : "cuDNN 9", CUDART_VERSION / 1000);
        return 0;
    }
    const char *missing = NULL;
#define DL_RESOLVE(handle, f)                                                               \
    if (!(lib::f = reinterpret_cast<decltype(lib::f)>(dlsym(handle, #f))) && !missing) missing = #f;
#define DL_RESOLVE_DNN(f) DL_RESOLVE(dnn, f)
#define DL_RESOLVE_BLAS(f) DL_RESOLVE(blas, f)
    DNN_FUNCTIONS(DL_RESOLVE_DNN)
    BLAS_FUNCTIONS(DL_RESOLVE_BLAS)
    DL_RESOLVE_BLAS(cublasGemmStridedBatchedEx)
#undef DL_RESOLVE_BLAS
#undef DL_RESOLVE_DNN
#undef DL_RESOLVE
    if (missing) {
        snprintf(lib::error, sizeof lib::error, "the cudnn backend: %s or %s has no %s (an older cuDNN 9 or cuBLAS?)",
                 dnn_so, blas_so, missing);
        return 0;
    }
    const size_t v = lib::cudnnGetVersion();
    int bmaj = 0, bmin = 0, bpatch = 0;
    lib::cublasGetProperty(MAJOR_VERSION, &bmaj);
    lib::cublasGetProperty(MINOR_VERSION, &bmin);
    lib::cublasGetProperty(PATCH_LEVEL, &bpatch);
    if (v / 10000 != CUDNN_MAJOR) {
        snprintf(lib::error, sizeof lib::error, "the cudnn backend: %s is cuDNN version %zu, built for %d", dnn_so, v,
                 CUDNN_VERSION);
        return 0;
    }
    snprintf(lib::versions, sizeof lib::versions, "cuDNN %zu.%zu.%zu, cuBLAS %d.%d.%d", v / 10000, v % 10000 / 100,
             v % 100, bmaj, bmin, bpatch);
    return 1;
}

static dl_status load_libraries(void)
{
    static const int opened = open_libraries(); /* once per process (C++ makes it thread-safe) */
    return opened ? DL_OK : dl_fail(DL_EUNAVAILABLE, "%s", lib::error);
}

/* ------------------------------------------------------------------ errors */

static dl_status dnn_failed(const char *layer, cudnnStatus_t e, const char *stmt, const char *file, int line)
{
    char detail[160] = "";
    lib::cudnnGetLastErrorString(detail, sizeof detail); /* this thread's last message, if any */
    char *nl = strchr(detail, '\n');
    if (nl) *nl = '\0';
    const dl_status s = e == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED ||
                                e == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED
                            ? DL_ENOMEM
                            : DL_EINTERNAL;
    return dl_fail(s, "cuDNN error in %s: %s%s%s%s in %s (%s:%d)", layer, lib::cudnnGetErrorString(e),
                   detail[0] ? " (" : "", detail, detail[0] ? ")" : "", stmt, file, line);
}

static dl_status blas_failed(const char *layer, cublasStatus_t e, const char *stmt, const char *file, int line)
{
    return dl_fail(e == CUBLAS_STATUS_ALLOC_FAILED ? DL_ENOMEM : DL_EINTERNAL, "cuBLAS error in %s: %s in %s (%s:%d)",
                   layer, lib::cublasGetStatusString(e), stmt, file, line);
}

/* CUDNN_CHECK(layer, call) / CUBLAS_CHECK(layer, call): on failure, return a dl_status whose
 * message names the layer, the library's reason, the statement, the file and the line. */
#define CUDNN_CHECK(layer, call)                                                                   \
    do {                                                                                           \
        const cudnnStatus_t cudnn_check_e_ = (call);                                               \
        if (cudnn_check_e_ != CUDNN_STATUS_SUCCESS)                                                \
            return dnn_failed(layer, cudnn_check_e_, #call, __FILE__, __LINE__);                   \
    } while (0)
#define CUBLAS_CHECK(layer, call)                                                                  \
    do {                                                                                           \
        const cublasStatus_t cublas_check_e_ = (call);                                             \
        if (cublas_check_e_ != CUBLAS_STATUS_SUCCESS)                                              \
            return blas_failed(layer, cublas_check_e_, #call, __FILE__, __LINE__);                 \
    } while (0)

/* ------------------------------------------------------------------ state */

enum route {
    ROUTE_NONE = 0, /* not prepared */
    ROUTE_GEMM,     /* cuBLAS, then the epilogue */
    ROUTE_FUSED,    /* cudnnConvolutionBiasActivationForward */
    ROUTE_CONV      /* cudnnConvolutionForward, then the epilogue */
};

/* Everything a convolution's algorithm choice depends on (zeroed first: compared with memcmp). */
typedef struct dnn_key {
    int n, c, h, w, oc, kh, kw, stride, pad, dilation;
    int relu, bias, residual;
    int aligned; /* bit i: pointer i of in, out, residual, weight, bias is 16-byte aligned */
    int64_t in_ldn, out_ldn, res_ldn;
} dnn_key;

typedef struct dnn_choice {
    dnn_key key;
    int route;
    cudnnConvolutionFwdAlgo_t algo;
    cudnnMathType_t math;
    size_t workspace;
    float ms; /* the search's time for the plain convolution */
} dnn_choice;

typedef struct dnn_slot {
    char name[64];
    dnn_key key;
    dnn_choice how; /* route NONE: not prepared */
    int P;          /* OH * OW */
    cudnnTensorDescriptor_t x, y, z, b;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    char path[96];
} dnn_slot;

struct dl_dnn {
    cudaStream_t stream;
    dl_precision precision;
    cudnnHandle_t dnn;
    cublasHandle_t blas;
    cudnnActivationDescriptor_t relu;
    dnn_slot *slots;
    int nslots;
    dnn_choice *cache; /* every shape searched so far */
    int ncache, cache_cap;
    void *d_ws; /* the workspace */
    size_t ws_bytes, ws_peak;
};

static const char *algo_name(cudnnConvolutionFwdAlgo_t a)
{
    static const char *const names[] = {"IMPLICIT_GEMM", "IMPLICIT_PRECOMP_GEMM", "GEMM", "DIRECT",
                                        "FFT", "FFT_TILING", "WINOGRAD", "WINOGRAD_NONFUSED"};
    return (unsigned)a < sizeof names / sizeof names[0] ? names[a] : "?";
}

/* ------------------------------------------------------------------ the epilogue */

enum { EPILOGUE_THREADS = 256 };

/* out = act(out + bias [+ residual]) over N images of OC x P values (grid-stride), in the order
 * of the native kernel's epilogue (conv_store): bias, then residual, then ReLU. */
__global__ void epilogue_kernel(float *__restrict__ d_out, int64_t out_ldn, const float *__restrict__ d_bias,
                                const float *__restrict__ d_res, int64_t res_ldn, int OC, int64_t P, int64_t total,
                                int relu)
{
    const int64_t per_image = (int64_t)OC * P;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t n = e / per_image, i = e - n * per_image;
        float v = d_out[n * out_ldn + i];
        if (d_bias) v += d_bias[i / P];
        if (d_res) v += d_res[n * res_ldn + i];
        if (relu && v < 0.0f) v = 0.0f;
        d_out[n * out_ldn + i] = v;
    }
}

static dl_status epilogue(const dl_dnn *d, const dnn_slot *s, const conv2d *L, const tensor *res, tensor out)
{
    if (!L->bias && !res && !L->relu) return DL_OK;
    const int64_t total = (int64_t)out.n * out.c * s->P;
    DL_LAUNCH(epilogue_kernel, grid_blocks(total, EPILOGUE_THREADS), EPILOGUE_THREADS, 0, d->stream)(
        out.data, (int64_t)out.ldn, L->bias, res ? res->data : nullptr, res ? (int64_t)res->ldn : 0, out.c, s->P, total,
        L->relu);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return dl_fail(dl_cuda_status(e), "CUDA error in %s: %s (bias/residual/ReLU pass)", s->name,
                                         cudaGetErrorString(e));
    return DL_OK;
}

/* ------------------------------------------------------------------ create, free */

extern "C" dl_status dl_dnn_create(dl_stream stream, dl_precision precision, int nslots, dl_dnn **out)
{
    *out = NULL;
    dl_status st = load_libraries();
    if (st != DL_OK) return st;
    dl_dnn *d = (dl_dnn *)calloc(1, sizeof *d);
    if (d) d->slots = (dnn_slot *)calloc(nslots > 0 ? (size_t)nslots : 1, sizeof *d->slots);
    if (!d || !d->slots) {
        free(d);
        return dl_fail(DL_ENOMEM, "out of memory starting the cudnn backend");
    }
    *out = d; /* from here on the caller frees it after any failure */
    d->stream = stream;
    d->precision = precision;
    d->nslots = nslots;
    const char *what = "the cudnn backend";
    CUDNN_CHECK(what, lib::cudnnCreate(&d->dnn));
    CUDNN_CHECK(what, lib::cudnnSetStream(d->dnn, d->stream));
    CUBLAS_CHECK(what, lib::cublasCreate_v2(&d->blas));
    CUBLAS_CHECK(what, lib::cublasSetStream_v2(d->blas, d->stream));
    /* The math mode matters to cuBLAS's other routines; the GEMM names its compute type itself. */
    CUBLAS_CHECK(what, lib::cublasSetMathMode(d->blas, precision == DL_PRECISION_TF32 ? CUBLAS_TF32_TENSOR_OP_MATH
                                                                                       : CUBLAS_DEFAULT_MATH));
    CUDNN_CHECK(what, lib::cudnnCreateActivationDescriptor(&d->relu));
    /* NaN passes through, as in the native epilogue (v < 0 is false for NaN) and PyTorch */
    CUDNN_CHECK(what, lib::cudnnSetActivationDescriptor(d->relu, CUDNN_ACTIVATION_RELU, CUDNN_PROPAGATE_NAN, 0.0));
    return DL_OK;
}

extern "C" void dl_dnn_free(dl_dnn *d)
{
    if (!d) return;
    /* Teardown: errors have nowhere to go, and the caller has drained the stream. */
    for (int i = 0; i < d->nslots; i++) {
        dnn_slot *s = &d->slots[i];
        if (s->x) lib::cudnnDestroyTensorDescriptor(s->x);
        if (s->y) lib::cudnnDestroyTensorDescriptor(s->y);
        if (s->z) lib::cudnnDestroyTensorDescriptor(s->z);
        if (s->b) lib::cudnnDestroyTensorDescriptor(s->b);
        if (s->w) lib::cudnnDestroyFilterDescriptor(s->w);
        if (s->conv) lib::cudnnDestroyConvolutionDescriptor(s->conv);
    }
    if (d->relu) lib::cudnnDestroyActivationDescriptor(d->relu);
    if (d->blas) lib::cublasDestroy_v2(d->blas);
    if (d->dnn) lib::cudnnDestroy(d->dnn);
    (void)cudaFree(d->d_ws);
    free(d->cache);
    free(d->slots);
    free(d);
}

/* ------------------------------------------------------------------ the workspace */

/* Grows the workspace to at least bytes (the old one is freed once the stream is idle). */
static dl_status reserve_workspace(dl_dnn *d, size_t bytes, const char *layer)
{
    if (bytes <= d->ws_bytes) return DL_OK;
    CUDA_CHECK(cudaStreamSynchronize(d->stream));
    (void)cudaFree(d->d_ws);
    d->d_ws = NULL;
    d->ws_bytes = 0;
    const cudaError_t e = cudaMalloc(&d->d_ws, bytes);
    if (e != cudaSuccess) {
        cudaGetLastError();
        d->d_ws = NULL;
        return dl_fail(dl_cuda_status(e), "%s: CUDA error allocating cuDNN's workspace of %.1f MB: %s", layer,
                       (double)bytes / (1 << 20), cudaGetErrorString(e));
    }
    d->ws_bytes = bytes;
    if (bytes > d->ws_peak) d->ws_peak = bytes;
    return DL_OK;
}

extern "C" dl_status dl_dnn_settle(dl_dnn *d)
{
    size_t need = 0;
    for (int i = 0; i < d->nslots; i++)
        if (d->slots[i].how.route != ROUTE_NONE && d->slots[i].how.workspace > need) need = d->slots[i].how.workspace;
    if (need >= d->ws_bytes) return DL_OK;
    CUDA_CHECK(cudaStreamSynchronize(d->stream));
    (void)cudaFree(d->d_ws);
    d->d_ws = NULL;
    d->ws_bytes = 0;
    return reserve_workspace(d, need, "the cudnn backend");
}

extern "C" size_t dl_dnn_workspace_bytes(const dl_dnn *d, int peak)
{
    return d ? (peak ? d->ws_peak : d->ws_bytes) : 0;
}

/* ------------------------------------------------------------------ one convolution */

static int aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

/* The key of conv(L, in [+ res]) -> out; -1 when the shapes do not fit together. */
static int make_key(dnn_key *k, const conv2d *L, tensor in, const tensor *res, tensor out)
{
    const int OH = conv_out_size(in.h, L->KH, L->p.stride, L->p.pad, L->p.dilation);
    const int OW = conv_out_size(in.w, L->KW, L->p.stride, L->p.pad, L->p.dilation);
    if (in.c != L->C || out.c != L->OC || out.n != in.n || out.h != OH || out.w != OW || OH < 1 || OW < 1 ||
        in.n < 1 || L->KH != L->KW || L->p.stride < 1 || L->p.dilation < 1 || L->p.pad < 0 ||
        (res && (res->n != in.n || res->c != L->OC || res->h != OH || res->w != OW)))
        return -1;
    memset(k, 0, sizeof *k);
    k->n = in.n;
    k->c = in.c;
    k->h = in.h;
    k->w = in.w;
    k->oc = L->OC;
    k->kh = L->KH;
    k->kw = L->KW;
    k->stride = L->p.stride;
    k->pad = L->p.pad;
    k->dilation = L->p.dilation;
    k->relu = L->relu != 0;
    k->bias = L->bias != NULL;
    k->residual = res != NULL;
    k->aligned = aligned16(in.data) | aligned16(out.data) << 1 | (res ? aligned16(res->data) : 1) << 2 |
                 aligned16(L->weight) << 3 | (L->bias ? aligned16(L->bias) : 1) << 4;
    k->in_ldn = (int64_t)in.ldn;
    k->out_ldn = (int64_t)out.ldn;
    k->res_ldn = res ? (int64_t)res->ldn : 0;
    return 0;
}

/* cuDNN describes tensors with int sizes and strides, and its kernels index with 32 bits. */
static int fits_int32(const tensor *t)
{
    return t->ldn <= (size_t)INT32_MAX && (int64_t)t->n * (int64_t)t->ldn <= INT32_MAX;
}

static cudnnStatus_t set_tensor(cudnnTensorDescriptor_t t, int n, int c, int h, int w, size_t ldn)
{
    return lib::cudnnSetTensor4dDescriptorEx(t, CUDNN_DATA_FLOAT, n, c, h, w, (int)ldn, h * w, w, 1);
}

/* Queues the cuDNN call of route r with algorithm a on slot s; the library's status. */
static cudnnStatus_t run_cudnn(const dl_dnn *d, const dnn_slot *s, int r, cudnnConvolutionFwdAlgo_t a,
                               size_t ws, const conv2d *L, tensor in, const tensor *res, tensor out)
{
    const float one = 1.0f, zero = 0.0f;
    if (r == ROUTE_FUSED) /* z: the residual (alpha2 = 1), or y itself, unread with alpha2 = 0 */
        return lib::cudnnConvolutionBiasActivationForward(
            d->dnn, &one, s->x, in.data, s->w, L->weight, s->conv, a, d->d_ws, ws, res ? &one : &zero,
            res ? s->z : s->y, res ? res->data : out.data, s->b, L->bias, d->relu, s->y, out.data);
    return lib::cudnnConvolutionForward(d->dnn, &one, s->x, in.data, s->w, L->weight, s->conv, a, d->d_ws, ws, &zero,
                                        s->y, out.data);
}

static const char *route_call(int r)
{
    return r == ROUTE_FUSED ? "cudnnConvolutionBiasActivationForward" : "cudnnConvolutionForward";
}

/* Is this status cuDNN refusing the combination (then another algorithm may do), not a fault? */
static int refused(cudnnStatus_t e)
{
    return CUDNN_STATUS_CATEGORY(e) == CUDNN_STATUS_NOT_SUPPORTED || CUDNN_STATUS_CATEGORY(e) == CUDNN_STATUS_BAD_PARAM;
}

/* Times every algorithm on slot s's buffers and fills s->how: the fastest whose real call runs. */
static dl_status search(dl_dnn *d, dnn_slot *s, const conv2d *L, tensor in, const tensor *res, tensor out)
{
    const int tf32 = d->precision == DL_PRECISION_TF32;
    const cudnnMathType_t math = tf32 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH;
    CUDNN_CHECK(s->name, lib::cudnnSetConvolutionMathType(s->conv, math));

    /* The workspace for the search: what the most demanding algorithm asks for, within limits. */
    size_t free_b = 0, total_b = 0, want = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) cudaGetLastError();
    const size_t cap = free_b / 4 < ((size_t)1 << 30) ? free_b / 4 : ((size_t)1 << 30);
    for (int a = 0; a < CUDNN_CONVOLUTION_FWD_ALGO_COUNT; a++) {
        size_t b = 0;
        if (lib::cudnnGetConvolutionForwardWorkspaceSize(d->dnn, s->x, s->w, s->conv, s->y, (cudnnConvolutionFwdAlgo_t)a,
                                                         &b) == CUDNN_STATUS_SUCCESS &&
            b > want && b <= cap)
            want = b;
    }
    /* Short of memory, the search goes on with the algorithms that fit in what there is (the
     * failed allocation left none: those that need no workspace). */
    (void)reserve_workspace(d, want, s->name);

    int max = 0;
    CUDNN_CHECK(s->name, lib::cudnnGetConvolutionForwardAlgorithmMaxCount(d->dnn, &max));
    if (max < 1) max = CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
    CUDA_CHECK(cudaStreamSynchronize(d->stream)); /* the search is host-blocking: start from an idle stream */
    cudnnConvolutionFwdAlgoPerf_t *perf = (cudnnConvolutionFwdAlgoPerf_t *)calloc((size_t)max, sizeof *perf);
    if (!perf) return dl_fail(DL_ENOMEM, "out of memory searching cuDNN's algorithms");
    int count = 0;
    const cudnnStatus_t fe = lib::cudnnFindConvolutionForwardAlgorithmEx(
        d->dnn, s->x, in.data, s->w, L->weight, s->conv, s->y, out.data, max, &count, perf, d->d_ws, d->ws_bytes);
    if (fe != CUDNN_STATUS_SUCCESS) {
        free(perf);
        return dnn_failed(s->name, fe, "cudnnFindConvolutionForwardAlgorithmEx", __FILE__, __LINE__);
    }

    /* Fused when there is a ReLU and a bias; if no algorithm fuses, the plain call + epilogue. */
    const int first = L->relu && L->bias ? ROUTE_FUSED : ROUTE_CONV;
    dl_status st = DL_OK;
    s->how.route = ROUTE_NONE;
    for (int r = first; r <= ROUTE_CONV && s->how.route == ROUTE_NONE && st == DL_OK; r++) {
        for (int i = 0; i < count && st == DL_OK; i++) {
            const cudnnConvolutionFwdAlgoPerf_t *p = &perf[i]; /* fastest first */
            if (p->status != CUDNN_STATUS_SUCCESS || p->memory > d->ws_bytes ||
                p->mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION || (!tf32 && p->mathType == CUDNN_TENSOR_OP_MATH))
                continue;
            /* fp32 keeps FMA math whatever the result says; tf32 takes the math it was timed with */
            const cudnnMathType_t m = tf32 ? p->mathType : CUDNN_FMA_MATH;
            CUDNN_CHECK(s->name, lib::cudnnSetConvolutionMathType(s->conv, m));
            size_t ws = 0;
            if (lib::cudnnGetConvolutionForwardWorkspaceSize(d->dnn, s->x, s->w, s->conv, s->y, p->algo, &ws) !=
                    CUDNN_STATUS_SUCCESS ||
                ws > d->ws_bytes)
                continue;
            const cudnnStatus_t e = run_cudnn(d, s, r, p->algo, ws, L, in, res, out);
            if (e == CUDNN_STATUS_SUCCESS) {
                const cudaError_t ce = cudaStreamSynchronize(d->stream);
                if (ce != cudaSuccess) {
                    cudaGetLastError();
                    st = dl_fail(dl_cuda_status(ce), "CUDA error in %s: %s (running cuDNN's %s)", s->name,
                                 cudaGetErrorString(ce), algo_name(p->algo));
                    break;
                }
                const dnn_choice c = {s->key, r, p->algo, m, ws, p->time};
                s->how = c;
                break;
            }
            if (!refused(e)) st = dnn_failed(s->name, e, route_call(r), __FILE__, __LINE__);
        }
    }
    free(perf);
    if (st != DL_OK) return st;
    if (s->how.route == ROUTE_NONE)
        return dl_fail(DL_EINTERNAL, "%s: cuDNN offers no algorithm for this convolution (%d timed, none usable in %s)",
                       s->name, count, tf32 ? "tf32" : "fp32 (FMA math)");
    return DL_OK;
}

static void describe(dnn_slot *s)
{
    if (s->how.route == ROUTE_GEMM)
        snprintf(s->path, sizeof s->path, "cublas gemm");
    else
        snprintf(s->path, sizeof s->path, "cudnn %s%s%s, %.3f ms searched, workspace %.1f MB",
                 algo_name(s->how.algo), s->how.route == ROUTE_FUSED ? " fused" : " + epilogue",
                 s->how.math == CUDNN_TENSOR_OP_MATH ? " tensor-op" : "", (double)s->how.ms,
                 (double)s->how.workspace / (1 << 20));
}

static dl_status check_slot(const dl_dnn *d, int slot)
{
    if (!d || slot < 0 || slot >= d->nslots)
        return dl_fail(DL_EINTERNAL, "the cudnn backend: slot %d of %d", slot, d ? d->nslots : 0);
    return DL_OK;
}

extern "C" dl_status dl_dnn_prepare(dl_dnn *d, int slot, const char *name, const conv2d *L, tensor in,
                                    const tensor *res, tensor out)
{
    dl_status st = check_slot(d, slot);
    if (st != DL_OK) return st;
    dnn_slot *s = &d->slots[slot];
    snprintf(s->name, sizeof s->name, "%s", name ? name : "a convolution");
    s->how.route = ROUTE_NONE;
    if (make_key(&s->key, L, in, res, out) != 0)
        return dl_fail(DL_EINTERNAL, "%s: the tensors' shapes do not fit the convolution", s->name);
    const int64_t P = (int64_t)out.h * out.w;
    if (P > INT32_MAX || (int64_t)in.h * in.w > INT32_MAX)
        return dl_fail(DL_EUSAGE, "%s: a %dx%d map is past what the cudnn backend indexes (32 bits); use the native "
                                  "backend or a smaller --size", s->name, out.w, out.h);
    s->P = (int)P;

    if (L->KH == 1 && L->KW == 1 && L->p.stride == 1 && L->p.pad == 0) { /* a matrix product */
        const dnn_choice c = {s->key, ROUTE_GEMM, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, CUDNN_DEFAULT_MATH, 0, 0.0f};
        s->how = c;
        describe(s);
        return DL_OK;
    }

    if (!fits_int32(&in) || !fits_int32(&out) || (res && !fits_int32(res)))
        return dl_fail(DL_EUSAGE, "%s: a tensor of more than 2^31 floats is past cuDNN's 32-bit indexing; use the "
                                  "native backend, or a smaller --size or --batch", s->name);
    if (!s->x) {
        CUDNN_CHECK(s->name, lib::cudnnCreateTensorDescriptor(&s->x));
        CUDNN_CHECK(s->name, lib::cudnnCreateTensorDescriptor(&s->y));
        CUDNN_CHECK(s->name, lib::cudnnCreateTensorDescriptor(&s->z));
        CUDNN_CHECK(s->name, lib::cudnnCreateTensorDescriptor(&s->b));
        CUDNN_CHECK(s->name, lib::cudnnCreateFilterDescriptor(&s->w));
        CUDNN_CHECK(s->name, lib::cudnnCreateConvolutionDescriptor(&s->conv));
    }
    CUDNN_CHECK(s->name, set_tensor(s->x, in.n, in.c, in.h, in.w, in.ldn));
    CUDNN_CHECK(s->name, set_tensor(s->y, out.n, out.c, out.h, out.w, out.ldn));
    if (res) CUDNN_CHECK(s->name, set_tensor(s->z, res->n, res->c, res->h, res->w, res->ldn));
    CUDNN_CHECK(s->name, lib::cudnnSetTensor4dDescriptorEx(s->b, CUDNN_DATA_FLOAT, 1, L->OC, 1, 1, L->OC, 1, 1, 1));
    CUDNN_CHECK(s->name, lib::cudnnSetFilter4dDescriptor(s->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, L->OC, L->C,
                                                          L->KH, L->KW));
    CUDNN_CHECK(s->name, lib::cudnnSetConvolution2dDescriptor(s->conv, L->p.pad, L->p.pad, L->p.stride, L->p.stride,
                                                               L->p.dilation, L->p.dilation,
                                                               CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));

    for (int i = 0; i < d->ncache; i++) /* a shape searched before */
        if (!memcmp(&d->cache[i].key, &s->key, sizeof s->key)) {
            s->how = d->cache[i];
            CUDNN_CHECK(s->name, lib::cudnnSetConvolutionMathType(s->conv, s->how.math));
            st = reserve_workspace(d, s->how.workspace, s->name);
            if (st == DL_OK) describe(s);
            else s->how.route = ROUTE_NONE;
            return st;
        }
    if ((st = search(d, s, L, in, res, out)) != DL_OK) {
        s->how.route = ROUTE_NONE;
        return st;
    }
    if (d->ncache == d->cache_cap) {
        const int cap = d->cache_cap ? 2 * d->cache_cap : 32;
        dnn_choice *c = (dnn_choice *)realloc(d->cache, sizeof *c * (size_t)cap);
        if (!c) return dl_fail(DL_ENOMEM, "out of memory for cuDNN's algorithm choices");
        d->cache = c;
        d->cache_cap = cap;
    }
    d->cache[d->ncache++] = s->how;
    describe(s);
    return DL_OK;
}

extern "C" dl_status dl_dnn_conv(dl_dnn *d, int slot, const conv2d *L, tensor in, const tensor *res, tensor out)
{
    dl_status st = check_slot(d, slot);
    if (st != DL_OK) return st;
    const dnn_slot *s = &d->slots[slot];
    dnn_key k;
    if (s->how.route == ROUTE_NONE || make_key(&k, L, in, res, out) != 0 || memcmp(&k, &s->key, sizeof k) != 0)
        return dl_fail(DL_EINTERNAL, "%s: the cudnn backend was prepared for other shapes", s->name);
    if (s->how.route == ROUTE_GEMM) {
        const float one = 1.0f, zero = 0.0f;
        const cublasComputeType_t compute =
            d->precision == DL_PRECISION_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
        /* column-major: out^T[P x OC] = in^T[P x C] * W^T[C x OC], per image (see the top) */
        CUBLAS_CHECK(s->name, lib::cublasGemmStridedBatchedEx(
                                  d->blas, CUBLAS_OP_N, CUBLAS_OP_N, s->P, L->OC, L->C, &one, in.data, CUDA_R_32F,
                                  s->P, (long long)in.ldn, L->weight, CUDA_R_32F, L->C, 0, &zero, out.data, CUDA_R_32F,
                                  s->P, (long long)out.ldn, in.n, compute, CUBLAS_GEMM_DEFAULT));
        return epilogue(d, s, L, res, out);
    }
    const cudnnStatus_t e = run_cudnn(d, s, s->how.route, s->how.algo, s->how.workspace, L, in, res, out);
    if (e != CUDNN_STATUS_SUCCESS) return dnn_failed(s->name, e, route_call(s->how.route), __FILE__, __LINE__);
    return s->how.route == ROUTE_FUSED ? DL_OK : epilogue(d, s, L, res, out);
}

extern "C" const char *dl_dnn_slot_path(const dl_dnn *d, int slot)
{
    return d && slot >= 0 && slot < d->nslots && d->slots[slot].how.route != ROUTE_NONE ? d->slots[slot].path
                                                                                         : "not prepared";
}

extern "C" const char *dl_dnn_versions(const dl_dnn *d)
{
    (void)d;
    return lib::versions;
}

#endif
