/*
 * layers_fast.h - the fast CPU path: NHWC activations, packed weights, vector micro-kernels.
 *
 * Layout NHWC: element (n, y, x, c) of a tensor is at data[n * ldn + (y * w + x) * ldp + c].
 * ldp, the distance between pixels, is the channel count of the whole tensor; a channel slice
 * (an ASPP branch writing into the concatenation) starts at data + c0 with the wide tensor's ldp.
 * The plain-C references in layers.h (NCHW) are what these are tested against.
 */
#ifndef DL_LAYERS_FAST_H
#define DL_LAYERS_FAST_H

#include "layers.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nhwc {
    float *data;
    int n, h, w, c;
    size_t ldp; /* floats between pixels */
    size_t ldn; /* floats between images */
} nhwc;

static inline nhwc nhwc_make(float *data, int n, int h, int w, int c)
{
    nhwc t = {data, n, h, w, c, (size_t)c, (size_t)h * w * c};
    return t;
}

/* The kernel a packed convolution runs. Direct: an indirect GEMM over the taps (conv2d_fast.c).
 * Winograd F(4x4, 3x3) (conv2d_winograd.c): stride-1 3x3 convolutions, dilated ones on the
 * dilation's sub-grids; 4x fewer multiplications than direct on whole tiles. The bf16 kinds
 * round the weights once and every input as it is read to bf16 and multiply with AVX512_BF16's
 * vdpbf16ps (twice the fp32 FMA rate), summing in fp32 (conv2d_bf16.c has the micro-kernel). */
typedef enum conv_kernel {
    CONV_DIRECT = 0,
    CONV_WINOGRAD,
    CONV_DIRECT_BF16,
    CONV_WINOGRAD_BF16
} conv_kernel;

/* A convolution's folded weights repacked for conv2d_fast: panels of 32 output channels. */
typedef struct conv2d_packed {
    int C, OC, KH, KW, K, panels, relu;
    conv2d_params p;
    conv_kernel kernel;
    float *w;     /* fp32 direct: panels x K x 32, K ordered (ky, kx, c), zero-padded channels;
                     fp32 Winograd: 36 x panels x Cw x 32 (the transformed 6x6 weights) */
    uint16_t *wb; /* bf16 direct: panels x K2 / 2 x 32 x 2 (k in pairs, each tap's K even);
                     bf16 Winograd: 36 x panels x Cw / 2 x 32 x 2 */
    float *bias;  /* panels x 32 */
    int K2;       /* bf16 direct: K with each tap's share rounded up to even */
    int Cw;       /* Winograd: C rounded up to 16 */
} conv2d_packed;

/* Whether kernel can run L (Winograd: 3x3, stride 1; bf16: AVX512_BF16 and the avx512 ISA). */
int conv2d_kernel_fits(const conv2d *L, conv_kernel kernel);
/* The kernel the network uses for L: Winograd for stride-1 3x3 convolutions with dilation up to
 * 12 (at 24 and 36 most taps of a 65x65 map read padding, which the direct kernel skips),
 * direct otherwise; the bf16 kinds with bf16 = 1. */
conv_kernel conv2d_choose_kernel(const conv2d *L, int bf16);
const char *conv2d_kernel_name(conv_kernel kernel); /* "direct", "winograd", "direct-bf16", ... */
/* 1 when this CPU has AVX512_BF16 and the selected ISA is avx512. */
int conv2d_bf16_available(void);
/* This core's FMA (bf16: vdpbf16ps) peak in GFLOP/s, measured on the thread's CPU clock over
 * ~30 ms; 0 without AVX-512 (AVX512_BF16). */
double conv2d_peak_gflops(int bf16);

dl_status conv2d_pack(const conv2d *L, conv2d_packed *P); /* CONV_DIRECT */
/* DL_EUSAGE when the kernel does not fit L, DL_EUNAVAILABLE without AVX512_BF16 for bf16. */
dl_status conv2d_pack_kernel(const conv2d *L, conv_kernel kernel, conv2d_packed *P);
void conv2d_packed_free(conv2d_packed *P);
/* Scratch floats conv2d_fast needs for P on n images of h x w (the input) with threads threads. */
size_t conv2d_fast_scratch_floats(const conv2d_packed *P, int n, int h, int w, int threads);
/* The instruction set the micro-kernel uses: "avx512", "avx2" or "generic" (DEEPLAB_ISA forces). */
const char *conv2d_fast_isa(void);
/* Selects the micro-kernel ("avx512", "avx2", "generic") for tests; -1 if this CPU lacks it. */
int conv2d_fast_set_isa(const char *name);

/* out = act(conv(in) + bias [+ residual]); shapes as conv2d_cpu, NHWC. scratch: 64-byte aligned,
 * conv2d_fast_scratch_floats(P, in.n, in.h, in.w, dl_pool_threads(pool)) floats. */
void conv2d_fast(const conv2d_packed *P, nhwc in, const nhwc *residual, nhwc out, float *scratch,
                 dl_pool *pool);

/* conv2d_winograd.c (conv2d_fast calls it for the Winograd kinds) */
dl_status conv2d_winograd_pack(const conv2d *L, conv2d_packed *P);
size_t conv2d_winograd_scratch_floats(const conv2d_packed *P, int n, int h, int w);
void conv2d_winograd(const conv2d_packed *P, nhwc in, const nhwc *residual, nhwc out, float *scratch,
                     dl_pool *pool);
/* For tests: the floats of transformed data one pass may hold (0: the default, 64 MB), so that
 * small inputs take several passes over chunks of tiles. */
void conv2d_winograd_set_budget(size_t floats);

void maxpool2d_nhwc(nhwc in, int k, int stride, int pad, nhwc out, dl_pool *pool);
void global_avgpool_nhwc(nhwc in, nhwc out, dl_pool *pool);
void resize_bilinear_nhwc(nhwc in, nhwc out, dl_pool *pool);

/* Layout changes: NCHW (contiguous) <-> NHWC. */
void nchw_to_nhwc(tensor in, nhwc out);
void nhwc_to_nchw(nhwc in, tensor out);

#ifdef __cplusplus
}
#endif
#endif
