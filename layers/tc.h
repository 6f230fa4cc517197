/*
 * tc.h - the tensor-core path of the GPU (conv2d_tc.cu, nhwc_tc.cu), callable from C.
 *
 * Activations are NHWC (channels-last) in a storage type chosen by the precision, between every
 * pair of layers; products on the tensor cores, sums in fp32, the logits in fp32:
 *
 *   precision  storage          mma.sync                      rounding of what is stored
 *   TC_TF32    fp32 (4 bytes)   m16n8k8 .tf32 (10-bit mantissa) to tf32, nearest (ties away)
 *   TC_FP16    fp16 (2 bytes)   m16n8k16 .f16                 to fp16, nearest even
 *   TC_BF16    bf16 (2 bytes)   m16n8k16 .bf16                to bf16, nearest even
 *
 * Element (n, y, x, c) of a tc_tensor is at data + n * ldn + (y * w + x) * ldp + c elements; ldp >= c
 * lets a layer read or write a channel slice of a wider tensor (the ASPP branches write their
 * 256 channels of the concatenation). tf32 values are stored already rounded, so that the mma's
 * reading of 19 bits of each fp32 pattern is exact.
 *
 * Every function queues its kernels on stream s and returns cudaGetLastError() as an int (0 or a
 * CUDA error code), as layers_cuda.h's do; nothing is allocated, nothing synchronises.
 */
#ifndef DL_TC_H
#define DL_TC_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "layers.h"
#include "layers_cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tc_precision { TC_TF32 = 0, TC_FP16, TC_BF16 } tc_precision;

static inline size_t tc_elem_bytes(tc_precision p) { return p == TC_TF32 ? 4 : 2; }
static inline const char *tc_precision_name(tc_precision p) { return p == TC_TF32 ? "tf32" : p == TC_FP16 ? "fp16" : "bf16"; }

/* ------------------------------------------------------------------ storage conversions */

/* fp32 -> the storage types, bit for bit what the GPU's cvt instructions give for finite values
 * (cvt.rn.bf16x2.f32, cvt.rn.f16x2.f32, cvt.rna.tf32.f32), written out so that the host (weight
 * packing, tests) and the emulated GPU compute the same. */
static inline DL_HD uint32_t tc_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline DL_HD float tc_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline DL_HD uint16_t tc_round_bf16(float f)
{
    const uint32_t x = tc_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)0x7fff; /* NaN */
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

static inline DL_HD uint16_t tc_round_f16(float f)
{
    const uint32_t x = tc_f32_bits(f), sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (uint16_t)0x7fff;              /* NaN */
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);   /* 65520 and up round to inf */
    if (ax < 0x38800000u) {                                     /* under 2^-14: a subnormal */
        /* |f| / 2^-24 is exact and under 1024; nearest-even to an integer (1024 = the smallest
         * normal, whose encoding is that same integer) */
        const float v = tc_bits_f32(ax) * 16777216.0f;
        uint32_t q = (uint32_t)v;
        const float rest = v - (float)q;
        if (rest > 0.5f || (rest == 0.5f && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    return (uint16_t)(sign | ((ax + 0xfffu + ((ax >> 13) & 1u) - 0x38000000u) >> 13));
}

static inline DL_HD float tc_round_tf32(float f)
{
    const uint32_t x = tc_f32_bits(f);
    if ((x & 0x7f800000u) == 0x7f800000u) return f; /* inf, NaN */
    return tc_bits_f32((x + 0x1000u) & 0xffffe000u);  /* nearest, ties away from zero */
}

static inline DL_HD float tc_bf16_f32(uint16_t h) { return tc_bits_f32((uint32_t)h << 16); }

static inline DL_HD float tc_f16_f32(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1f) return tc_bits_f32(sign | 0x7f800000u | m << 13);
    if (e) return tc_bits_f32(sign | (e + 112) << 23 | m << 13);
    const float v = (float)m * 5.9604644775390625e-8f; /* m x 2^-24 */
    return sign ? -v : v;
}

/* One value of precision p at element i of a storage array, to fp32 (host and tests). */
static inline DL_HD float tc_load(tc_precision p, const void *data, size_t i)
{
    if (p == TC_TF32) return ((const float *)data)[i];
    const uint16_t h = ((const uint16_t *)data)[i];
    return p == TC_FP16 ? tc_f16_f32(h) : tc_bf16_f32(h);
}

/* fp32 -> element i of a storage array, rounded as the GPU rounds. */
static inline DL_HD void tc_store(tc_precision p, void *data, size_t i, float v)
{
    if (p == TC_TF32) ((float *)data)[i] = tc_round_tf32(v);
    else ((uint16_t *)data)[i] = p == TC_FP16 ? tc_round_f16(v) : tc_round_bf16(v);
}

/* ------------------------------------------------------------------ tensors */

typedef struct tc_tensor {
    void *data;        /* device memory, in the storage type (or fp32 where a function says so) */
    int n, h, w, c;
    size_t ldp, ldn;   /* elements between pixels and between images */
} tc_tensor;

static inline tc_tensor tc_tensor_make(void *data, int n, int h, int w, int c)
{
    tc_tensor t = {data, n, h, w, c, (size_t)c, (size_t)h * w * c};
    return t;
}

/* ------------------------------------------------------------------ convolution */

/*
 * A convolution packed for the tensor cores (conv2d_tc_pack): weights as OC rows of Kp elements,
 * row oc = taps (ky, kx) in order, each Cp channels (C rounded up to 8, zeros past C), then zeros
 * up to Kp (a multiple of 32). The GEMM: out[P x OC] = im2col(in)[P x K] * W^T, P = N * OH * OW
 * pixels of all the images at once.
 */
typedef struct conv_tc {
    int C, OC, KH, KW;
    conv2d_params p;
    int relu;
    int Cp, Kp;         /* channels per tap and elements per weight row, padded */
    const void *weight; /* device: OC x Kp, storage type */
    const float *bias;  /* device: OC floats, or NULL */
} conv_tc;

/* The padded sizes of a convolution of C input channels. */
static inline int conv_tc_cp(int C) { return (C + 7) / 8 * 8; }
static inline int conv_tc_kp(int C, int KH, int KW) { return (KH * KW * conv_tc_cp(C) + 31) / 32 * 32; }

/* Host: packs input channels [c_from, c_from + c_take) of L's fp32 weights (OC x C x KH x KW) as
 * conv_tc's layout for c_take channels, rounded to p's storage type, into dst
 * (OC x conv_tc_kp(c_take, ...) elements). */
void conv2d_tc_pack(const conv2d *L, int c_from, int c_take, tc_precision p, void *dst);

/* The tile shapes (conv2d_tc.cu says which warps compute what). */
typedef enum tc_tile { TC_TILE_128x128 = 0, TC_TILE_128x64, TC_TILE_64x64, TC_TILES } tc_tile;

/* How one convolution is run: the tile and the split of K over blocks (splits > 1: partial sums
 * in the workspace, then a reduction that adds the bias and residual). */
typedef struct tc_config {
    tc_tile tile;
    int splits;
} tc_config;

/* The configuration for P output pixels on a GPU of sms multiprocessors: the largest tile that
 * gives enough blocks, and a K split where even that leaves the GPU short of a full wave. */
tc_config conv2d_tc_choose(const conv_tc *L, int P, int sms);

/* Allows every tensor-core kernel the shared memory it uses (over 48 KB needs the opt-in): once,
 * before the first launch and outside any stream capture. Returns 0 or a CUDA error code. */
int conv2d_tc_init(void);

/* Workspace floats the configuration needs (0 without a split). */
size_t conv2d_tc_workspace_floats(tc_config cfg, int P, int OC);

/* "tc128x128" or "tc64x64/split3", with the precision: "tc128x128 bf16". */
void conv2d_tc_name(tc_config cfg, tc_precision p, char *buf, size_t len);

/* The convolution: out = act(conv(in) + bias [+ residual]) with in, residual and out NHWC in p's
 * storage type (out_f32: out is fp32 instead, unrounded, for the logits). in.c == L->Cp.
 * bias: OC floats per image, image n's at bias + n * bias_ldn (bias_ldn 0: the same for every
 * image; NULL: L->bias). workspace: conv2d_tc_workspace_floats(cfg, ...) floats, or NULL without
 * a split. Channel counts, strides and slices of any size (16-byte vector stores where the
 * output allows them). */
int conv2d_tc_cuda(const conv_tc *L, tc_precision p, tc_config cfg, tc_tensor in, const tc_tensor *residual,
                   tc_tensor out, int out_f32, const float *bias, size_t bias_ldn, float *workspace, dl_stream s);

/* ------------------------------------------------------------------ the other layers (nhwc_tc.cu) */

/* NCHW fp32 (the network input) -> NHWC in p's storage type with out.c channels (>= in.c, the
 * extra ones 0: the stem reads 8 channels). */
int nchw_to_tc_cuda(tensor in, tc_precision p, tc_tensor out, dl_stream s);

/* Max pooling (padding never wins, NaN wins), in p's storage type. */
int maxpool2d_tc_cuda(tc_precision p, tc_tensor in, int k, int stride, int pad, tc_tensor out, dl_stream s);

/* out (N x C floats, image n at out + n * C) = the mean of every channel over the map, in two
 * passes through workspace (global_avgpool_tc_workspace_floats of the input's n, h, w, c). */
size_t global_avgpool_tc_workspace_floats(int n, int h, int w, int c);
int global_avgpool_tc_cuda(tc_precision p, tc_tensor in, float *out, float *workspace, dl_stream s);

/* out[n][o] = b[o] + sum_i W[o][i] * x[n][i] (then ReLU if relu), fp32: W is O x I, row o at
 * W + o * ldw; x is N x I; out N x O. The image-pooling branch, and its fold into a bias. */
int matvec_f32_cuda(const float *W, size_t ldw, const float *b, const float *x, int N, int I, int O, int relu,
                    float *out, dl_stream s);

/* What the caller wants from the logits (fp32 NHWC, N x h x w x C, as the last convolution writes
 * them), each at the input size H x W: the logits themselves as NCHW fp32 (resized bilinearly,
 * align_corners=False, as resize_bilinear_cpu), and/or the softmax mass of the classes flagged in
 * keep (C bytes on the device; NULL: all but class 0) as N x H x W floats, and/or the arg-max
 * class of every pixel as N x H x W bytes; NULL outputs are not made. The mass and the arg-max
 * are those of the resized logits, pixel for pixel (layers.h's class_mass_pixel, argmax_pixel). */
int tc_outputs_cuda(tc_tensor logits, int H, int W, float *nchw, float *mass, const uint8_t *keep, uint8_t *labels,
                    dl_stream s);

/* The same from NCHW fp32 logits already at the output size (the fp32 path): mass and labels. */
int class_outputs_cuda(tensor logits, float *mass, const uint8_t *keep, uint8_t *labels, dl_stream s);

/* ------------------------------------------------------------------ the peak */

/* Queues `blocks` blocks of chained mma.sync of precision p (or, with fp32 = 1, FFMA chains),
 * `iters` iterations each, and returns the multiply-adds issued; out gets one float per block
 * (to keep the work). The measured rate is what `deeplab bench --layers` calls the peak. */
double mma_peak_launch(tc_precision p, int fp32, int blocks, int iters, float *out, dl_stream s);

#ifdef __cplusplus
}
#endif
#endif
