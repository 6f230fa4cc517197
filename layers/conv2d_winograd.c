/*
 * conv2d_winograd.c - 3x3 stride-1 convolutions, dilated ones included, by Winograd's minimal
 * filtering (Lavin and Gray 2015): F(4x4, 3x3) in fp32, F(2x2, 3x3) with bf16 products.
 *
 * The idea: a 4x4 block of outputs of a 3x3 filter depends on a 6x6 block of inputs. In the
 * transformed domain the 2-D convolution of that block becomes an elementwise product:
 *     Y = A^T [ (G g G^T) .* (B^T d B) ] A
 * with d the 6x6 input tile, g the 3x3 filter, and the constant matrices below (points 0, +-1,
 * +-2 and infinity). Summed over input channels, the 36 products become 36 independent matrix
 * products of (tiles x C) by (C x OC): 36 multiply-adds per tile and channel pair instead of
 * 16 x 9 = 144, a quarter of the direct kernel's work. The transforms are additions and small
 * multiples and cost a few percent.
 *
 * Dilation: a 3x3 filter at dilation d only ever combines pixels whose coordinates agree
 * modulo d, so it is an ordinary 3x3 filter on each of the d x d sub-grids (rows r, r + d,
 * r + 2d, ...). A tile here is 4x4 outputs d pixels apart, reading 6x6 inputs d pixels apart;
 * tiles cover each sub-grid, so the only waste is the partial tiles at each sub-grid's end
 * (on a 65x65 map at dilation 1, 2 or 4: 17 tiles of 4 per 65 pixels, 9% more products).
 * At dilation 12 the sub-grids are 5-6 pixels: twice as many products as outputs, still fewer
 * than the direct kernel's (tap skipping leaves 77% of 9 taps); at 24 and 36 the direct kernel,
 * which skips the taps that read only padding, does less (conv2d_choose_kernel).
 *
 * Three phases per block of tiles and of input channels, each spread over the thread pool:
 *   1. input transform: V[xi][tile][c] = (B^T d B)[xi], vectorised over 16 channels (NHWC);
 *   2. 36 GEMMs M[xi] (+)= V[xi] * U[xi] with the direct kernel's micro-kernel (U: the
 *      transformed weights, packed once at load like the direct kernel's panels);
 *   3. output transform: Y = A^T M A + bias (+ residual), ReLU, scattered to the 4x4 pixels.
 * Channels are taken 512 at a time and tiles as many as keep V and M under ~64 MB, so the
 * scratch does not grow with the channel count or the image.
 *
 * Accuracy: the weight transform is exact in double; the input transform's coefficients (up to
 * 5) and the output transform's (up to 8) add rounding of a few float ulps, measured at the
 * network's output as a few 1e-6 of the logits' range (tests/test_parity.py holds it to 1e-4).
 * bf16: V and U are rounded to bf16 as they are stored, M stays fp32. F(4x4)'s transformed
 * values are up to 100 times the inputs and cancel in the output transform, which in bf16 gave
 * errors of 5% of a layer's largest output (tests/test_layers_fast.c); F(2x2, 3x3), whose
 * transforms are sums and differences (points 0, 1, -1, infinity), keeps bf16's own ~0.5%, so
 * the bf16 kind uses it: 16 products per 4 outputs instead of 36, 2.25x fewer than direct.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "conv2d_micro.h"
#include "layers.h"
#include "layers_fast.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#else
#define _mm_prefetch(p, hint) __builtin_prefetch(p)
#endif

/* The 16-float vectors of the transforms are passed between always-inline helpers only; GCC
 * still notes at each definition that a 64-byte vector argument has an AVX-512 ABI. */
#pragma GCC diagnostic ignored "-Wpsabi"

enum {
    ALPHA = 6,            /* the largest input tile side: 4 outputs + 3 - 1 */
    XI = ALPHA * ALPHA,   /* the most transformed elements per tile */
    CB = 512,             /* input channels per block */
    CB_BF16 = 2048,       /* bf16: V is half the size, and each block more rereads all of M */
    TB = 96,              /* tiles per GEMM task (a multiple of every micro-tile height) */
    TGROUP = 8,           /* tiles per transform task */
};

/* Floats of V and M together, at most (unless one block of TB tiles needs more): 64 MB. */
static size_t budget = (size_t)16 << 20;

void conv2d_winograd_set_budget(size_t floats) { budget = floats ? floats : (size_t)16 << 20; }

/* Outputs per tile side: 4 for fp32, 2 for bf16 (see above). */
static int tile_m(const conv2d_packed *P) { return P->kernel == CONV_WINOGRAD ? 4 : 2; }

/* ------------------------------------------------------------------ weights: U = G g G^T */

static void transform_filter(int m, const double g[3][3], double u[ALPHA][ALPHA])
{
    static const double G4[ALPHA][3] = {
        {1.0 / 4, 0, 0},
        {-1.0 / 6, -1.0 / 6, -1.0 / 6},
        {-1.0 / 6, 1.0 / 6, -1.0 / 6},
        {1.0 / 24, 1.0 / 12, 1.0 / 6},
        {1.0 / 24, -1.0 / 12, 1.0 / 6},
        {0, 0, 1},
    };
    static const double G2[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
    const double (*G)[3] = m == 4 ? G4 : G2;
    const int al = m + 2;
    double t[ALPHA][3];
    for (int i = 0; i < al; i++)
        for (int j = 0; j < 3; j++) t[i][j] = G[i][0] * g[0][j] + G[i][1] * g[1][j] + G[i][2] * g[2][j];
    for (int i = 0; i < al; i++)
        for (int j = 0; j < al; j++) u[i][j] = t[i][0] * G[j][0] + t[i][1] * G[j][1] + t[i][2] * G[j][2];
}

/* P's shape fields and bias are set (conv2d_pack_kernel); fills w or wb:
 * U[xi][panel][c][32] (bf16: [xi][panel][c / 2][32][2]), c zero-padded to Cw. */
dl_status conv2d_winograd_pack(const conv2d *L, conv2d_packed *P)
{
    const int bf16 = P->kernel == CONV_WINOGRAD_BF16, m = tile_m(P), al = m + 2;
    P->Cw = (L->C + 15) & ~15;
    const size_t n = (size_t)al * al * P->panels * P->Cw * NR;
    void *w = dl_alloc_aligned(n * (bf16 ? sizeof(uint16_t) : sizeof(float)), "Winograd weights");
    if (!w) return DL_ENOMEM;
    memset(w, 0, n * (bf16 ? sizeof(uint16_t) : sizeof(float)));
    if (bf16) P->wb = w;
    else P->w = w;
    for (int oc = 0; oc < L->OC; oc++)
        for (int c = 0; c < L->C; c++) {
            double g[3][3], u[ALPHA][ALPHA];
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++) g[ky][kx] = L->weight[(((size_t)oc * L->C + c) * 3 + ky) * 3 + kx];
            transform_filter(m, g, u);
            for (int xi = 0; xi < al * al; xi++) {
                const size_t panel = (size_t)xi * P->panels + oc / NR;
                const float v = (float)u[xi / al][xi % al];
                if (bf16) P->wb[(panel * P->Cw + c / 2 * 2) * NR + (size_t)(oc % NR) * 2 + c % 2] = bf16_of(v);
                else P->w[(panel * P->Cw + c) * NR + oc % NR] = v;
            }
        }
    return DL_OK;
}

/* ------------------------------------------------------------------ tiles and scratch */

/* Tiles of one image: per sub-grid (ry, rx), ceil(rows / m) x ceil(cols / m) of them. */
static int tiles_per_image(int OH, int OW, int d, int m)
{
    int ty = 0, tx = 0;
    for (int r = 0; r < d && r < OH; r++) ty += ((OH - r + d - 1) / d + m - 1) / m;
    for (int r = 0; r < d && r < OW; r++) tx += ((OW - r + d - 1) / d + m - 1) / m;
    return ty * tx;
}

typedef struct plan {
    int T;        /* tiles in all */
    int Tc;       /* tiles per chunk (a multiple of TB unless one chunk holds all) */
    int cbw;      /* channels per block, a multiple of 16 */
    size_t v_floats, m_floats, table_floats;
} plan;

static int round_up(int v, int m) { return (v + m - 1) / m * m; }

static plan make_plan(const conv2d_packed *P, int n, int h, int w)
{
    plan s;
    const int OH = conv_out_size(h, 3, 1, P->p.pad, P->p.dilation), OW = conv_out_size(w, 3, 1, P->p.pad, P->p.dilation);
    const int m = tile_m(P), xis = (m + 2) * (m + 2);
    s.T = OH > 0 && OW > 0 ? n * tiles_per_image(OH, OW, P->p.dilation, m) : 0;
    const int bf16 = P->kernel == CONV_WINOGRAD_BF16, cb = bf16 ? CB_BF16 : CB;
    s.cbw = P->Cw < cb ? P->Cw : cb;
    /* floats per tile row: V (half for bf16) and M */
    const size_t per_tile = (size_t)xis * ((bf16 ? s.cbw / 2 : s.cbw) + (size_t)P->panels * NR);
    size_t fit = budget / per_tile;
    fit = fit < TB ? TB : fit / TB * TB;
    s.Tc = (size_t)s.T <= fit ? round_up(s.T, MR_MAX) : (int)fit;
    s.v_floats = (size_t)xis * s.Tc * (bf16 ? s.cbw / 2 : s.cbw);
    s.m_floats = (size_t)xis * s.Tc * P->panels * NR;
    s.table_floats = (size_t)3 * s.T;
    return s;
}

static size_t align16(size_t v) { return (v + 15) & ~(size_t)15; }

size_t conv2d_winograd_scratch_floats(const conv2d_packed *P, int n, int h, int w)
{
    const plan s = make_plan(P, n, h, w);
    return align16(s.table_floats) + align16(s.v_floats) + align16(s.m_floats);
}

/* ------------------------------------------------------------------ transforms */

/* 16 channels at a time. GCC's vector extension compiles these to one zmm operation each in the
 * AVX-512 instantiation, and to two ymm or four xmm operations in the others. */
typedef float v16 __attribute__((vector_size(64)));
typedef uint32_t u32x16 __attribute__((vector_size(64)));
typedef uint16_t u16x16 __attribute__((vector_size(32)));
typedef int32_t i32x16 __attribute__((vector_size(64)));

#define INLINE static inline __attribute__((always_inline))

INLINE v16 load16(const float *p)
{
    v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

INLINE void store16(float *p, v16 v) { memcpy(p, &v, sizeof v); }

/* fp32 -> bf16, to nearest even, 16 at a time (bf16_of without the NaN case: inputs are finite) */
INLINE void store16_bf16(uint16_t *p, v16 v)
{
    u32x16 u;
    memcpy(&u, &v, sizeof u);
    u += 0x7fffu + ((u >> 16) & 1u);
    const u16x16 h = __builtin_convertvector(u >> 16, u16x16);
    memcpy(p, &h, sizeof h);
}

/* B^T x for one line of 6: the input transform's rows (points 0, 1, -1, 2, -2, infinity). */
INLINE void bt6(const v16 x[ALPHA], v16 r[ALPHA])
{
    r[0] = 4 * x[0] - 5 * x[2] + x[4];
    r[1] = -4 * (x[1] + x[2]) + x[3] + x[4];
    r[2] = 4 * (x[1] - x[2]) - x[3] + x[4];
    r[3] = 2 * (x[3] - x[1]) - x[2] + x[4];
    r[4] = 2 * (x[1] - x[3]) - x[2] + x[4];
    r[5] = 4 * x[1] - 5 * x[3] + x[5];
}

/* F(2x2, 3x3): B^T x for one line of 4 (points 0, 1, -1, infinity), and A^T m: 2 outputs. */
INLINE void bt4(const v16 x[4], v16 r[4])
{
    r[0] = x[0] - x[2];
    r[1] = x[1] + x[2];
    r[2] = x[2] - x[1];
    r[3] = x[1] - x[3];
}

INLINE void at4(const v16 m[4], v16 y[2])
{
    y[0] = m[0] + m[1] + m[2];
    y[1] = m[1] - m[2] - m[3];
}

/* A^T m for one line of 6: 4 outputs. */
INLINE void at6(const v16 m[ALPHA], v16 y[4])
{
    const v16 s12 = m[1] + m[2], d12 = m[1] - m[2], s34 = m[3] + m[4], d34 = m[3] - m[4];
    y[0] = m[0] + s12 + s34;
    y[1] = d12 + 2 * d34;
    y[2] = s12 + 4 * s34;
    y[3] = d12 + 8 * d34 + m[5];
}

typedef struct wino_job {
    const conv2d_packed *P;
    nhwc in, out;
    const nhwc *res;
    int OH, OW, bf16;
    const int *tiles; /* per tile: image, first output row, first output column */
    int t0, T, Tp;    /* this chunk: tiles [t0, t0 + T), Tp = T rounded up to whole micro-tiles */
    int c0, cbw;      /* this channel block: [c0, c0 + cbw) of the Cw */
    float *V, *M;     /* V: XI x Tp x cbw (bf16 in place of floats: half as many), M: XI x Tp x OCp */
    conv_isa isa;
    int blocks, oc_tasks, panels_per_task; /* GEMM tasks: XI x blocks x oc_tasks */
} wino_job;

/* One line of the input transform (B^T x) and of the output transform (A^T m), for tiles of
 * m x m outputs; m is a constant wherever these are inlined. */
INLINE void bt(int m, const v16 *x, v16 *r)
{
    if (m == 4) bt6(x, r);
    else bt4(x, r);
}

INLINE void at(int m, const v16 *x, v16 *y)
{
    if (m == 4) at6(x, y);
    else at4(x, y);
}

/* Input transform of tiles [TGROUP * task, ...) of the chunk, channels [c0, c0 + cbw). */
INLINE void input_body(const wino_job *J, int task, const int m)
{
    const conv2d_packed *P = J->P;
    const int d = P->p.dilation, C = P->C, al = m + 2;
    const size_t ldv = (size_t)J->Tp * J->cbw; /* V elements between two xi */
    for (int t = task * TGROUP; t < (task + 1) * TGROUP && t < J->Tp; t++) {
        const int *tile = J->tiles + 3 * (size_t)(J->t0 + t);
        /* The next tile's input pixels, fetched a vector of channels at a time while this tile
         * is transformed: their rows are C floats apart, too many streams for the prefetchers. */
        const float *ahead[ALPHA * ALPHA];
        int nahead = 0;
        if (t + 1 < J->T) {
            const int *nt = tile + 3;
            for (int a = 0; a < al; a++)
                for (int b = 0; b < al; b++) {
                    const int iy = nt[1] - P->p.pad + d * a, ix = nt[2] - P->p.pad + d * b;
                    if (iy >= 0 && iy < J->in.h && ix >= 0 && ix < J->in.w)
                        ahead[nahead++] = J->in.data + nt[0] * J->in.ldn + ((size_t)iy * J->in.w + ix) * J->in.ldp + J->c0;
                }
        }
        for (int c = 0; c < J->cbw; c += 16) {
            v16 x[ALPHA][ALPHA], r[ALPHA][ALPHA];
            const int cg = J->c0 + c; /* first channel of this vector */
            for (int i = 0; i < nahead; i++) _mm_prefetch((const char *)(ahead[i] + c), _MM_HINT_T0);
            for (int a = 0; a < al; a++)
                for (int b = 0; b < al; b++) {
                    const int iy = t < J->T ? tile[1] - P->p.pad + d * a : -1, ix = t < J->T ? tile[2] - P->p.pad + d * b : -1;
                    if (iy < 0 || iy >= J->in.h || ix < 0 || ix >= J->in.w || cg >= C) {
                        x[a][b] = (v16){0};
                        continue;
                    }
                    const float *src = J->in.data + tile[0] * J->in.ldn + ((size_t)iy * J->in.w + ix) * J->in.ldp + cg;
                    if (cg + 16 <= C) {
                        x[a][b] = load16(src);
                    } else { /* the last, partial vector of channels */
                        float tmp[16] = {0};
                        memcpy(tmp, src, sizeof(float) * (size_t)(C - cg));
                        x[a][b] = load16(tmp);
                    }
                }
            /* rows: r = B^T x (per column), then columns: V = r B */
            for (int b = 0; b < al; b++) {
                v16 col[ALPHA], out[ALPHA];
                for (int a = 0; a < al; a++) col[a] = x[a][b];
                bt(m, col, out);
                for (int a = 0; a < al; a++) r[a][b] = out[a];
            }
            for (int a = 0; a < al; a++) {
                v16 out[ALPHA];
                bt(m, r[a], out);
                for (int b = 0; b < al; b++) {
                    const size_t at = (size_t)(a * al + b) * ldv + (size_t)t * J->cbw + c;
                    if (J->bf16) store16_bf16((uint16_t *)(void *)J->V + at, out[b]);
                    else store16(J->V + at, out[b]);
                }
            }
        }
    }
}

/* Output transform of tiles [TGROUP * task, ...) of the chunk: bias, residual, ReLU, store. */
INLINE void output_body(const wino_job *J, int task, const int m)
{
    const conv2d_packed *P = J->P;
    const int d = P->p.dilation, OCp = P->panels * NR, al = m + 2;
    const size_t ldm = (size_t)J->Tp * OCp;
    for (int t = task * TGROUP; t < (task + 1) * TGROUP && t < J->T; t++) {
        const int *tile = J->tiles + 3 * (size_t)(J->t0 + t);
        for (int oc = 0; oc < P->OC; oc += 16) {
            v16 mm[ALPHA][ALPHA], s[4][ALPHA], y[4][4];
            for (int xi = 0; xi < al * al; xi++) mm[xi / al][xi % al] = load16(J->M + xi * ldm + (size_t)t * OCp + oc);
            for (int b = 0; b < al; b++) { /* s = A^T mm (per column) */
                v16 col[ALPHA], out[4];
                for (int a = 0; a < al; a++) col[a] = mm[a][b];
                at(m, col, out);
                for (int i = 0; i < m; i++) s[i][b] = out[i];
            }
            for (int i = 0; i < m; i++) at(m, s[i], y[i]); /* y = s A */
            const v16 bias = load16(P->bias + oc);
            const int nc = P->OC - oc < 16 ? P->OC - oc : 16;
            for (int i = 0; i < m; i++)
                for (int j = 0; j < m; j++) {
                    const int oy = tile[1] + d * i, ox = tile[2] + d * j;
                    if (oy >= J->OH || ox >= J->OW) continue;
                    const size_t px = (size_t)oy * J->OW + ox;
                    v16 v = y[i][j] + bias;
                    float lane[16];
                    if (J->res) {
                        const float *r = J->res->data + tile[0] * J->res->ldn + px * J->res->ldp + oc;
                        if (nc == 16) v += load16(r);
                        else {
                            memset(lane, 0, sizeof lane);
                            memcpy(lane, r, sizeof(float) * (size_t)nc);
                            v += load16(lane);
                        }
                    }
                    if (P->relu) v = (v16)((i32x16)v & (v > 0)); /* the mask of v > 0 is all ones or zero */
                    float *o = J->out.data + tile[0] * J->out.ldn + px * J->out.ldp + oc;
                    if (nc == 16) store16(o, v);
                    else {
                        store16(lane, v);
                        memcpy(o, lane, sizeof(float) * (size_t)nc);
                    }
                }
        }
    }
}

/* The transforms for each tile size, in an AVX-512 and a portable instantiation. */
#define WINO_TASK(name, body, m, target)                                \
    target static void name(void *ctx, int task, int thread)            \
    {                                                                   \
        (void)thread;                                                   \
        body(ctx, task, m);                                             \
    }
#define AVX512 __attribute__((target("avx512f")))
WINO_TASK(input4_avx512, input_body, 4, AVX512)
WINO_TASK(input2_avx512, input_body, 2, AVX512)
WINO_TASK(output4_avx512, output_body, 4, AVX512)
WINO_TASK(output2_avx512, output_body, 2, AVX512)
WINO_TASK(input4_generic, input_body, 4, )
WINO_TASK(input2_generic, input_body, 2, )
WINO_TASK(output4_generic, output_body, 4, )
WINO_TASK(output2_generic, output_body, 2, )

/* ------------------------------------------------------------------ the 36 (or 16) products */

/* M[xi] (+)= V[xi] * U[xi] for one xi, TB tiles, up to 8 panels; the first channel block
 * starts M from zero. (For bf16, V and U hold bf16 values where the comments say floats.) */
static void gemm_task(void *ctx, int task, int thread)
{
    (void)thread;
    const wino_job *J = ctx;
    const conv2d_packed *P = J->P;
    const int xi = task / (J->blocks * J->oc_tasks), blk = task / J->oc_tasks % J->blocks, ot = task % J->oc_tasks;
    const int mr = J->isa.mr, OCp = P->panels * NR;
    const int t0 = blk * TB, t1 = t0 + TB < J->Tp ? t0 + TB : J->Tp;
    const int p0 = ot * J->panels_per_task, p1 = p0 + J->panels_per_task < P->panels ? p0 + J->panels_per_task : P->panels;
    const int kcb = J->bf16 ? KC_BF16 : KC;
    for (int k0 = 0; k0 < J->cbw; k0 += kcb) {
        const int kb = J->cbw - k0 < kcb ? J->cbw - k0 : kcb;
        const epilogue e = {conv2d_zeros, NULL, 0, J->c0 == 0 && k0 == 0, 0};
        for (int t = t0; t < t1; t += mr) { /* a micro-tile's rows stay in L1 across the panels */
            const size_t row0 = ((size_t)xi * J->Tp + t) * J->cbw + k0;
            for (int panel = p0; panel < p1; panel++) {
                const size_t b_at = (((size_t)xi * P->panels + panel) * P->Cw + J->c0 + k0) * NR;
                float *C = J->M + ((size_t)xi * J->Tp + t) * OCp + panel * NR;
                if (J->bf16) {
                    const uint16_t *rows[MR_MAX];
                    for (int r = 0; r < mr; r++) rows[r] = (const uint16_t *)(const void *)J->V + row0 + (size_t)r * J->cbw;
                    J->isa.micro_bf16(kb, rows, P->wb + b_at, C, (size_t)OCp, &e);
                } else {
                    const float *rows[MR_MAX];
                    for (int r = 0; r < mr; r++) rows[r] = J->V + row0 + (size_t)r * J->cbw;
                    J->isa.micro(kb, rows, P->w + b_at, C, (size_t)OCp, &e);
                }
            }
        }
    }
}

void conv2d_winograd(const conv2d_packed *P, nhwc in, const nhwc *residual, nhwc out, float *scratch,
                     dl_pool *pool)
{
    const plan s = make_plan(P, in.n, in.h, in.w);
    const int d = P->p.dilation, m = tile_m(P), xis = (m + 2) * (m + 2);
    wino_job J = {.P = P, .in = in, .out = out, .res = residual, .OH = out.h, .OW = out.w,
                  .bf16 = P->kernel == CONV_WINOGRAD_BF16, .cbw = s.cbw, .isa = conv2d_current_isa()};
    int *tiles = (int *)(void *)scratch;
    J.tiles = tiles;
    J.V = scratch + align16(s.table_floats);
    J.M = J.V + align16(s.v_floats);
    /* the tile table: image, sub-grid, then tiles in raster order on the sub-grid */
    size_t k = 0;
    for (int n = 0; n < in.n; n++)
        for (int ry = 0; ry < d && ry < out.h; ry++)
            for (int rx = 0; rx < d && rx < out.w; rx++) {
                const int rows = (out.h - ry + d - 1) / d, cols = (out.w - rx + d - 1) / d;
                for (int ty = 0; ty < rows; ty += m)
                    for (int tx = 0; tx < cols; tx += m) {
                        tiles[k++] = n;
                        tiles[k++] = ry + d * ty;
                        tiles[k++] = rx + d * tx;
                    }
            }
    const int avx512 = !strcmp(J.isa.name, "avx512");
    const dl_task_fn input = avx512 ? (m == 4 ? input4_avx512 : input2_avx512) : (m == 4 ? input4_generic : input2_generic);
    const dl_task_fn output = avx512 ? (m == 4 ? output4_avx512 : output2_avx512)
                                     : (m == 4 ? output4_generic : output2_generic);
    J.oc_tasks = (P->panels + 7) / 8;
    J.panels_per_task = (P->panels + J.oc_tasks - 1) / J.oc_tasks;
    for (J.t0 = 0; J.t0 < s.T; J.t0 += s.Tc) {
        J.T = s.T - J.t0 < s.Tc ? s.T - J.t0 : s.Tc;
        J.Tp = round_up(J.T, MR_MAX);
        J.blocks = (J.Tp + TB - 1) / TB;
        for (J.c0 = 0; J.c0 < P->Cw; J.c0 += s.cbw) {
            J.cbw = P->Cw - J.c0 < s.cbw ? P->Cw - J.c0 : s.cbw;
            dl_pool_run(pool, (J.Tp + TGROUP - 1) / TGROUP, input, &J);
            dl_pool_run(pool, xis * J.blocks * J.oc_tasks, gemm_task, &J);
        }
        dl_pool_run(pool, (J.T + TGROUP - 1) / TGROUP, output, &J);
    }
}
