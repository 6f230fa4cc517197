/*
 * dtype.c - element types of weight files and the float conversions between them.
 *
 * Half (IEEE 754 binary16): 1 sign bit, 5 exponent bits (bias 15), 10 mantissa bits.
 * bfloat16: the top 16 bits of a float32 (8 exponent bits, 7 mantissa bits).
 * Weight files are little-endian; so is every machine this code is built for (checked below),
 * which lets the readers copy tensor bytes as they are.
 */
#include <string.h>

#include "weights.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "deeplab reads little-endian weight files in place: big-endian hosts are not supported"
#endif

static const struct {
    const char *name;
    size_t size;
} dtypes[DL_DTYPE_COUNT] = {
    [DL_F32] = {"F32", 4},  [DL_F16] = {"F16", 2}, [DL_BF16] = {"BF16", 2}, [DL_F64] = {"F64", 8},
    [DL_I64] = {"I64", 8},  [DL_I32] = {"I32", 4}, [DL_I16] = {"I16", 2},   [DL_I8] = {"I8", 1},
    [DL_U64] = {"U64", 8},  [DL_U32] = {"U32", 4}, [DL_U16] = {"U16", 2},   [DL_U8] = {"U8", 1},
    [DL_BOOL] = {"BOOL", 1}, [DL_F8_E4M3] = {"F8_E4M3", 1}, [DL_F8_E5M2] = {"F8_E5M2", 1},
};

const char *dl_dtype_name(dl_dtype t)
{
    return (unsigned)t < DL_DTYPE_COUNT ? dtypes[t].name : "?";
}

int dl_dtype_from_name(const char *name, dl_dtype *t)
{
    for (int i = 0; i < DL_DTYPE_COUNT; i++) {
        if (!strcmp(name, dtypes[i].name)) {
            *t = (dl_dtype)i;
            return 0;
        }
    }
    return -1;
}

size_t dl_dtype_size(dl_dtype t)
{
    return (unsigned)t < DL_DTYPE_COUNT ? dtypes[t].size : 0;
}

static float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t bits_from_f32(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

float dl_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0x1f) /* Inf, or NaN with its payload kept */
        return f32_from_bits(sign | 0x7f800000 | mant << 13);
    if (exp == 0) {
        if (mant == 0) return f32_from_bits(sign);
        /* Subnormal: mant * 2^-24. Shift the leading 1 up to bit 10 (the implicit bit), lowering
         * the exponent once per shift; it then reads as a normal number of exponent 1 - shifts. */
        int e = 1;
        while (!(mant & 0x400)) {
            mant <<= 1;
            e--;
        }
        return f32_from_bits(sign | (uint32_t)(e + 127 - 15) << 23 | (mant & 0x3ff) << 13);
    }
    return f32_from_bits(sign | (exp + 127 - 15) << 23 | mant << 13);
}

/* Rounds m >> shift to nearest, ties to even. */
static uint32_t shift_round_even(uint32_t m, int shift)
{
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    return q + (rem > half || (rem == half && (q & 1)));
}

uint16_t dl_f32_to_f16(float f)
{
    uint32_t x = bits_from_f32(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffff;
    if (ax > 0x7f800000) /* NaN: keep it quiet and keep the payload's top bits */
        return sign | 0x7e00 | (uint16_t)((ax >> 13) & 0x3ff);
    if (ax >= 0x477ff000) /* >= 65520 = halfway between 65504 (largest half) and 2^16: Inf */
        return sign | 0x7c00;
    uint32_t e = ax >> 23, m = (ax & 0x7fffff) | 0x800000; /* value = m * 2^(e - 150) */
    if (e >= 113) /* normal half (>= 2^-14): drop 13 mantissa bits; a carry may bump the exponent */
        return sign | (uint16_t)shift_round_even(((e - 112) << 23 | (ax & 0x7fffff)), 13);
    if (e < 102) /* below 2^-25, half of the smallest subnormal: rounds to zero */
        return sign;
    /* Subnormal half: units of 2^-24, so the result is m * 2^(e - 126), shift 14..24. A result of
     * 0x400 is the smallest normal half, which is the right encoding for it. */
    return sign | (uint16_t)shift_round_even(m, (int)(126 - e));
}

float dl_bf16_to_f32(uint16_t b)
{
    return f32_from_bits((uint32_t)b << 16);
}

int64_t dl_tensor_numel(const dl_tensor_ref *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

int dl_tensor_to_f32(const dl_tensor_ref *t, float *dst)
{
    /* t->data need not be aligned (safetensors offsets are arbitrary): load through memcpy. */
    size_t n = t->nbytes / (dl_dtype_size(t->dtype) ? dl_dtype_size(t->dtype) : 1);
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case DL_F32:
        memcpy(dst, p, n * 4);
        return 0;
    case DL_F16:
    case DL_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = t->dtype == DL_F16 ? dl_f16_to_f32(h) : dl_bf16_to_f32(h);
        }
        return 0;
    case DL_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            dst[i] = (float)d;
        }
        return 0;
    default:
        return -1;
    }
}
