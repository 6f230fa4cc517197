/*
 * conv2d_micro.h - what the CPU convolution kernels share (internal to layers/): the register
 * micro-kernels of conv2d_fast.c (fp32) and conv2d_bf16.c (bf16 products, fp32 sums), the
 * instruction set they were picked for, and bf16 rounding.
 *
 * A micro-kernel computes C[MR x 32] (rows ldc apart) (=|+=) A[MR x kc] * B[kc x 32], where row
 * r of A is rows[r][0 .. kc) and B is a packed weight panel (32 output channels per k; for bf16
 * the k come in pairs: B[k / 2][32][2], as vdpbf16ps multiplies pairs). Full tiles only.
 */
#ifndef DL_CONV2D_MICRO_H
#define DL_CONV2D_MICRO_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum {
    NR = 32,     /* output channels per weight panel and per micro-tile */
    MR_MAX = 12, /* the most rows of a micro-tile (AVX-512) */
    KC = 256,     /* K values per block: a micro-tile's MR rows of them (12 KB) stay in L1 */
    KC_BF16 = 512 /* the same for bf16 rows (12 KB), in the direct kernel and the Winograd GEMMs */
};

/* What a micro-kernel does around the product. The first K block of a tile starts from the
 * bias instead of loading C; the last one adds the residual rows (when res is set: the caller
 * sets it on the last block only) and applies the ReLU as it stores. Each output is thus
 * written once per K block and never read or written by a separate pass. */
typedef struct epilogue {
    const float *bias; /* first: the panel's 32 starting values */
    const float *res;  /* the residual rows of the tile (ldr apart), added before the ReLU, or NULL */
    size_t ldr;
    int first, relu;
} epilogue;

typedef void (*micro_fn)(int kc, const float *const *rows, const float *B, float *C, size_t ldc,
                         const epilogue *e);
/* kc even; rows and B hold bf16 values. */
typedef void (*micro_bf16_fn)(int kc, const uint16_t *const *rows, const uint16_t *B, float *C, size_t ldc,
                              const epilogue *e);

typedef struct conv_isa {
    const char *name;
    int mr;                   /* rows per micro-tile */
    micro_fn micro;
    micro_bf16_fn micro_bf16; /* NULL where the CPU has no AVX512_BF16 (or a lesser ISA is forced) */
} conv_isa;

/* The instruction set conv2d_fast_set_isa / DEEPLAB_ISA selected (picked on first use). */
conv_isa conv2d_current_isa(void);

/* conv2d_bf16.c: the AVX512_BF16 micro-kernel (NULL without it), and fp32 -> bf16 rounding
 * (to nearest, ties to even: what vcvtneps2bf16 does) of n values, dst zero-padded to even n. */
micro_bf16_fn conv2d_bf16_micro(void);
void bf16_round_row(const float *src, int n, uint16_t *dst);

static inline uint16_t bf16_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN stays NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float float_of_bf16(uint16_t h)
{
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The zero rows that padding pixels point at. */
extern const float conv2d_zeros[KC];
extern const uint16_t conv2d_zeros_bf16[KC_BF16];

#endif
