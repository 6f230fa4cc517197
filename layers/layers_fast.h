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

/* A convolution's folded weights repacked for conv2d_fast: panels of 32 output channels. */
typedef struct conv2d_packed {
    int C, OC, KH, KW, K, panels, relu;
    conv2d_params p;
    float *w;    /* panels x K x 32, K ordered (ky, kx, c), zero-padded channels */
    float *bias; /* panels x 32 */
} conv2d_packed;

dl_status conv2d_pack(const conv2d *L, conv2d_packed *P);
void conv2d_packed_free(conv2d_packed *P);
/* Scratch floats each thread needs for conv2d_fast with P. */
size_t conv2d_fast_scratch_floats(const conv2d_packed *P);
/* The instruction set the micro-kernel uses: "avx512", "avx2" or "generic" (DEEPLAB_ISA forces). */
const char *conv2d_fast_isa(void);
/* Selects the micro-kernel ("avx512", "avx2", "generic") for tests; -1 if this CPU lacks it. */
int conv2d_fast_set_isa(const char *name);

/* out = act(conv(in) + bias [+ residual]); shapes as conv2d_cpu, NHWC. */
void conv2d_fast(const conv2d_packed *P, nhwc in, const nhwc *residual, nhwc out, float *scratch,
                 dl_pool *pool);

void maxpool2d_nhwc(nhwc in, int k, int stride, int pad, nhwc out, dl_pool *pool);
void global_avgpool_nhwc(nhwc in, nhwc out);
void resize_bilinear_nhwc(nhwc in, nhwc out, dl_pool *pool);

/* Layout changes: NCHW (contiguous) <-> NHWC. */
void nchw_to_nhwc(tensor in, nhwc out);
void nhwc_to_nchw(nhwc in, tensor out);

#ifdef __cplusplus
}
#endif
#endif
