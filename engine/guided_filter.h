/*
 * guided_filter.h - the arithmetic of the edge refinement (dl_refine, deeplab.h), shared by the
 * CPU version (engine/refine.c) and the CUDA kernels (engine/guided_filter.cu): compiled by nvcc
 * the functions below are __host__ __device__, so both run the same formulas.
 *
 * The filter: He, Sun and Tang's guided filter (ECCV 2010, PAMI 2013) with a colour guide,
 * weighted by confidence, computed on cells ("fast guided filter", He and Sun 2015).
 *
 *   input   photo I (RGB in [0, 1]), map p (W x H, the network's probability upsampled),
 *           optional hints (keep / erase per pixel)
 *   1. every pixel gets a value v and a weight c (gf_pixel): v = p and c = (2p - 1)^2 + 1/64,
 *      so that confident pixels (p near 0 or 1) count 65 times more than the uncertain band the
 *      upsampling smeared; a hinted pixel gets v = 1 (keep) or 0 (erase) and c = 16.
 *   2. the photo is cut into cells of s x s pixels; every cell sums the 14 weighted moments
 *      c, cI (3), cv, cI I^T (6 of the symmetric 3x3), cIv (3) of its pixels (gf_accumulate).
 *   3. window means: every cell averages the cells within R of it (a (2R+1) x (2R+1) square,
 *      clipped at the border), so a window spans about (2R+1) s pixels.
 *   4. per window k (gf_solve): weighted means mu (3), m = mean v, covariance S (3x3), and
 *      a_k = (S + eps U)^-1 cov(I, v), b_k = m - a_k . mu: the weighted least-squares fit of
 *      v by a_k . I + b_k, with eps keeping a away from noise where the colour hardly varies.
 *   5. a and b are averaged over the windows around each cell (another box of radius R), then
 *      interpolated bilinearly from the cell centres to every pixel, and the output is
 *      q = a . I + b, clamped to [0, 1]; hinted pixels are then set to 1 or 0 (gf_output).
 * The result follows the photo's edges at full resolution, because step 5 uses each pixel's own
 * colour, while the statistics cost (W x H) / s^2.
 *
 * dl_refine runs the filter twice. The first pass (radius r) moves the map's edges onto the
 * photo's, but where a window holds only one colour the output is the window's mean of the map,
 * so the smeared band leaves plateaus (alpha 0.2 to 0.3 beside the subject, 0.7 to 0.8 inside).
 * Its output is therefore stretched, (q - 0.25) / 0.5 clamped to [0, 1], which removes them,
 * and a second pass (radius r / 4) gives the hard steps back the photo's soft transitions
 * (hair, motion blur). On synthetic photos (a subject with hair strands, maps smeared and
 * shifted as the network's are) this leaves about a third of the error of a single pass.
 *
 * Layout: cell planes are float, channel-major: plane k, cell (cy, cx) at (k * ch + cy) * cw + cx.
 */
#ifndef DL_GUIDED_FILTER_H
#define DL_GUIDED_FILTER_H

#include <stddef.h>
#include <stdint.h>

#include "deeplab.h"

#if defined(__CUDACC__)
#define GF_FN static __forceinline__ __host__ __device__
#else
#define GF_FN static inline
#endif

#ifdef __cplusplus
extern "C" {
#endif

enum {
    GF_MOMENTS = 14, /* c, cR, cG, cB, cv, cRR, cRG, cRB, cGG, cGB, cBB, cRv, cGv, cBv */
    GF_COEFS = 4,    /* aR, aG, aB, b */
    GF_CELL_RADIUS = 4 /* R for radius >= 4 pixels: cells of s = radius / 4 pixels */
};

#define GF_WEIGHT_FLOOR (1.0f / 64.0f)
#define GF_HINT_WEIGHT 16.0f

/* The cell size s and the window radius R in cells for a radius in pixels: R = 4 cells of
 * radius / 4 pixels (a smaller radius is used as is, s = 1). */
GF_FN void gf_geometry(int radius, int *s, int *R)
{
    if (radius < 1) radius = 1;
    if (radius < GF_CELL_RADIUS) {
        *s = 1;
        *R = radius;
    } else {
        *s = radius / GF_CELL_RADIUS;
        *R = (radius + *s / 2) / *s; /* 4 .. 7 */
    }
}

GF_FN int gf_cells(int n, int s) { return (n + s - 1) / s; }

/* A colour sample in [0, 1]. */
GF_FN float gf_unit(uint8_t v) { return (float)v * (1.0f / 255.0f); }

/* Step 1: the value and weight of one pixel. hint: DL_HINT_NONE, _KEEP or _ERASE. */
GF_FN void gf_pixel(float p, uint8_t hint, float *v, float *c)
{
    if (hint == DL_HINT_KEEP || hint == DL_HINT_ERASE) {
        *v = hint == DL_HINT_KEEP ? 1.0f : 0.0f;
        *c = GF_HINT_WEIGHT;
        return;
    }
    p = p < 0.0f ? 0.0f : p > 1.0f ? 1.0f : p;
    const float d = 2.0f * p - 1.0f;
    *v = p;
    *c = d * d + GF_WEIGHT_FLOOR;
}

/* Step 2: adds one pixel (colour r, g, b in [0, 1], value v, weight c) to the moments m[14]. */
GF_FN void gf_accumulate(double *m, float r, float g, float b, float v, float c)
{
    const double cr = (double)c * r, cg = (double)c * g, cb = (double)c * b;
    m[0] += c;
    m[1] += cr, m[2] += cg, m[3] += cb;
    m[4] += (double)c * v;
    m[5] += cr * r, m[6] += cr * g, m[7] += cr * b;
    m[8] += cg * g, m[9] += cg * b, m[10] += cb * b;
    m[11] += cr * v, m[12] += cg * v, m[13] += cb * v;
}

/* Step 4: the coefficients (aR, aG, aB, b) of one window from its moments M[14] (sums or means:
 * only ratios to M[0] matter). The 3x3 system is solved by its adjugate, in double. */
GF_FN void gf_solve(const float *M, float eps, float *coef)
{
    const double n = M[0] > 0.0f ? M[0] : 1.0;
    const double mr = M[1] / n, mg = M[2] / n, mb = M[3] / n, mv = M[4] / n;
    /* S + eps U, symmetric: [a b c; b d e; c e f] */
    const double a = M[5] / n - mr * mr + eps, b = M[6] / n - mr * mg, c = M[7] / n - mr * mb;
    const double d = M[8] / n - mg * mg + eps, e = M[9] / n - mg * mb, f = M[10] / n - mb * mb + eps;
    const double xr = M[11] / n - mr * mv, xg = M[12] / n - mg * mv, xb = M[13] / n - mb * mv;
    /* adjugate (symmetric too) and determinant */
    const double A = d * f - e * e, B = c * e - b * f, C = b * e - c * d;
    const double D = a * f - c * c, E = b * c - a * e, F = a * d - b * b;
    const double det = a * A + b * B + c * C;
    double ar = 0.0, ag = 0.0, ab = 0.0;
    if (det > 0.0) { /* S is positive semi-definite, so S + eps U is definite: always, up to rounding */
        ar = (A * xr + B * xg + C * xb) / det;
        ag = (B * xr + D * xg + E * xb) / det;
        ab = (C * xr + E * xg + F * xb) / det;
    }
    coef[0] = (float)ar;
    coef[1] = (float)ag;
    coef[2] = (float)ab;
    coef[3] = (float)(mv - ar * mr - ag * mg - ab * mb);
}

/* Step 5: where pixel x lies between cell centres along an axis of cells of s pixels
 * (n cells): coefficients are taken from cells i0 and i1 with weights 1 - l and l. */
GF_FN void gf_interp(int x, int s, int n, int *i0, int *i1, float *l)
{
    float t = ((float)x + 0.5f) / (float)s - 0.5f;
    if (t < 0.0f) t = 0.0f;
    int lo = (int)t;
    if (lo > n - 1) lo = n - 1;
    *i0 = lo;
    *i1 = lo < n - 1 ? lo + 1 : lo;
    float w = t - (float)lo;
    *l = w > 1.0f ? 1.0f : w;
}

/* Step 5: the coefficients at a pixel, bilinear between cells (x0 or x1, y0 or y1) of the
 * coefficient planes (n cells each, cw per row). */
GF_FN void gf_coef_at(const float *coef, size_t n, int cw, int x0, int x1, int y0, int y1, float lx, float ly,
                      float *c)
{
    for (int k = 0; k < GF_COEFS; k++) {
        const float *p = coef + k * n;
        const float top = (1.0f - lx) * p[(size_t)y0 * cw + x0] + lx * p[(size_t)y0 * cw + x1];
        const float bottom = (1.0f - lx) * p[(size_t)y1 * cw + x0] + lx * p[(size_t)y1 * cw + x1];
        c[k] = (1.0f - ly) * top + ly * bottom;
    }
}

/* The two passes of dl_refine: the first with the radius asked for, then stretched from
 * [GF_STRETCH_LO, GF_STRETCH_HI] to [0, 1]; the second with a quarter of the radius. */
#define GF_STRETCH_LO 0.25f
#define GF_STRETCH_HI 0.75f
GF_FN int gf_second_radius(int radius) { return radius / 4 > 1 ? radius / 4 : 1; }

/* Step 5: the output of one pixel from its interpolated coefficients, mapped from [lo, hi] to
 * [0, 1] and clamped (lo = 0, hi = 1: no stretch); hinted pixels are 1 or 0. */
GF_FN float gf_output(const float *coef, float r, float g, float b, uint8_t hint, float lo, float hi)
{
    if (hint == DL_HINT_KEEP) return 1.0f;
    if (hint == DL_HINT_ERASE) return 0.0f;
    float q = coef[0] * r + coef[1] * g + coef[2] * b + coef[3];
    q = (q - lo) / (hi - lo);
    return q < 0.0f ? 0.0f : q > 1.0f ? 1.0f : q;
}

/* Number of cells a box of radius R around cell i covers on an axis of n cells. */
GF_FN int gf_box_count(int i, int R, int n)
{
    const int lo = i - R < 0 ? 0 : i - R, hi = i + R > n - 1 ? n - 1 : i + R;
    return hi - lo + 1;
}

/* ------------------------------------------------------------------ the CUDA version */

/* GPU state: its own stream and device buffers, kept from call to call (guided_filter.cu).
 * Without CUDA (make CUDA=0) gf_cuda_create fails with DL_EUNAVAILABLE (engine/refine.c). */
typedef struct gf_cuda gf_cuda;
dl_status gf_cuda_create(gf_cuda **out);
void gf_cuda_free(gf_cuda *g);
/* dl_refine's two passes on the GPU: rgb (W x H x 3 bytes), prob (W x H), hints (W x H bytes or
 * NULL) in host memory; alpha (W x H) written in host memory. */
dl_status gf_cuda_run(gf_cuda *g, const uint8_t *rgb, int W, int H, const float *prob, const uint8_t *hints,
                      int radius, float eps, float *alpha);

#ifdef __cplusplus
}
#endif
#endif
