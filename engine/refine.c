/*
 * refine.c - edge refinement (the guided filter of engine/guided_filter.h on the CPU, or on the
 * GPU through engine/guided_filter.cu, behind one call: dl_refine) and colour decontamination.
 * See deeplab.h for what they do and guided_filter.h for the formulas.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "cuda_device.h"
#include "deeplab.h"
#include "guided_filter.h"
#include "status.h"
#include "threadpool.h"

struct dl_refiner {
    dl_device device;
    dl_pool *pool;  /* CPU: the filter's rows, cells and planes are shared out over the cores */
    float *scratch; /* CPU: cell planes, grown as needed */
    size_t scratch_floats;
    float *first;   /* CPU: the first pass's output */
    size_t first_floats;
    gf_cuda *gpu;   /* CUDA: the GPU state */
};

int dl_refine_auto_radius(int W, int H, int net_w, int net_h)
{
    if (net_w < 1 || net_h < 1) return 2;
    const double sx = (double)W / net_w, sy = (double)H / net_h;
    const long r = lround(16.0 * (sx > sy ? sx : sy)); /* two cells of the network's output grid */
    return r < 2 ? 2 : r > 4096 ? 4096 : (int)r;
}

dl_status dl_refiner_create(dl_device device, dl_refiner **out)
{
    *out = NULL;
    if (device == DL_DEVICE_AUTO) {
        char why[256];
        device = !dl_cuda_emulated() && dl_cuda_probe(why, sizeof why) > 0 ? DL_DEVICE_CUDA : DL_DEVICE_CPU;
    }
    dl_refiner *r = dl_calloc(1, sizeof *r, "a refiner");
    if (!r) return DL_ENOMEM;
    r->device = device;
    if (device == DL_DEVICE_CPU) { /* NULL (out of memory): one thread */
        r->pool = dl_pool_create(0);
        dl_pool_set_spin(r->pool, 0); /* it runs beside the network's, in rmbg's pipeline */
    }
    if (device == DL_DEVICE_CUDA) {
        dl_status s = gf_cuda_create(&r->gpu);
        if (s != DL_OK) {
            free(r);
            return s;
        }
    }
    *out = r;
    return DL_OK;
}

void dl_refiner_free(dl_refiner *r)
{
    if (!r) return;
    gf_cuda_free(r->gpu);
    dl_pool_free(r->pool);
    free(r->scratch);
    free(r->first);
    free(r);
}

dl_device dl_refiner_device(const dl_refiner *r) { return r->device; }

/* ------------------------------------------------------------------ box means */

/* out = the mean of in over the (2R+1) x (2R+1) square around each element of a w x h plane,
 * clipped at the borders (divided by the number of elements inside). Separable running sums in
 * double: a row pass into tmp, then a column pass with one running sum per column (sums: w
 * doubles). out may be in. */
static void box_mean(const float *in, float *out, int w, int h, int R, float *tmp, double *sums)
{
    for (int y = 0; y < h; y++) {
        const float *row = in + (size_t)y * w;
        float *t = tmp + (size_t)y * w;
        double sum = 0.0;
        for (int x = 0; x <= R && x < w; x++) sum += row[x];
        for (int x = 0; x < w; x++) {
            t[x] = (float)(sum / gf_box_count(x, R, w));
            if (x + R + 1 < w) sum += row[x + R + 1];
            if (x - R >= 0) sum -= row[x - R];
        }
    }
    for (int x = 0; x < w; x++) sums[x] = 0.0;
    for (int y = 0; y <= R && y < h; y++)
        for (int x = 0; x < w; x++) sums[x] += tmp[(size_t)y * w + x];
    for (int y = 0; y < h; y++) {
        const int n = gf_box_count(y, R, h);
        float *o = out + (size_t)y * w;
        for (int x = 0; x < w; x++) o[x] = (float)(sums[x] / n);
        if (y + R + 1 < h)
            for (int x = 0; x < w; x++) sums[x] += tmp[(size_t)(y + R + 1) * w + x];
        if (y - R >= 0)
            for (int x = 0; x < w; x++) sums[x] -= tmp[(size_t)(y - R) * w + x];
    }
}

/* ------------------------------------------------------------------ guided filter, CPU */

/* One pass of the filter, its steps shared out over the refiner's threads: every element of every
 * step is computed by one task exactly as a single thread would (no sum is split between tasks),
 * so the result does not depend on the number of threads. */
typedef struct gf_pass {
    const dl_image *photo;
    const float *prob;
    const uint8_t *hints;
    float eps, lo, hi;
    int s, R, cw, ch;
    size_t n;
    float *M, *coef, *tmp; /* tmp: n floats per thread, for box_mean's rows */
    double *acc;           /* GF_MOMENTS x cw doubles per thread */
    const int *x0, *x1;
    const float *lx;
    float *alpha;
    enum { GF_MOMENTS_STEP, GF_BOX_MOMENTS, GF_SOLVE, GF_BOX_COEFS, GF_OUTPUT } step;
    unsigned csr;          /* the caller's floating-point mode, which every task runs in */
} gf_pass;

enum { GF_ROWS_PER_TASK = 16 };

static void gf_task(void *ctx, int task, int thread)
{
    const gf_pass *g = ctx;
    /* pool threads flush subnormals to zero; the filter runs as on the calling thread */
    const unsigned mine = dl_ftz_enable();
    dl_ftz_restore(g->csr);
    const int W = g->photo->w, H = g->photo->h, s = g->s, cw = g->cw;
    const size_t n = g->n;
    double *acc = g->acc + (size_t)thread * GF_MOMENTS * cw;
    switch (g->step) {
    case GF_MOMENTS_STEP: { /* steps 1 and 2 for cell row `task`: each pixel row adds its stretch of s
                               pixels to the cell's sums (m stays in registers) */
        const int cy = task, y1 = (cy + 1) * s < H ? (cy + 1) * s : H;
        memset(acc, 0, sizeof(double) * GF_MOMENTS * (size_t)cw);
        for (int y = cy * s; y < y1; y++) {
            const uint8_t *px = g->photo->px + (size_t)y * W * 3;
            const float *p = g->prob + (size_t)y * W;
            const uint8_t *hint = g->hints ? g->hints + (size_t)y * W : NULL;
            for (int cx = 0; cx < cw; cx++) {
                double m[GF_MOMENTS] = {0};
                const int x1 = (cx + 1) * s < W ? (cx + 1) * s : W;
                for (int x = cx * s; x < x1; x++) {
                    float v, c;
                    gf_pixel(p[x], hint ? hint[x] : DL_HINT_NONE, &v, &c);
                    gf_accumulate(m, gf_unit(px[3 * x]), gf_unit(px[3 * x + 1]), gf_unit(px[3 * x + 2]), v, c);
                }
                double *a = acc + (size_t)cx * GF_MOMENTS;
                for (int k = 0; k < GF_MOMENTS; k++) a[k] += m[k];
            }
        }
        for (int cx = 0; cx < cw; cx++)
            for (int k = 0; k < GF_MOMENTS; k++)
                g->M[k * n + (size_t)cy * cw + cx] = (float)acc[(size_t)cx * GF_MOMENTS + k];
        break;
    }
    case GF_BOX_MOMENTS: /* step 3: window means of moment `task` */
        box_mean(g->M + task * n, g->M + task * n, cw, g->ch, g->R, g->tmp + (size_t)thread * n, acc);
        break;
    case GF_SOLVE: /* step 4: the coefficients of every window of cell row `task` */
        for (size_t i = (size_t)task * cw; i < (size_t)(task + 1) * cw; i++) {
            float m[GF_MOMENTS], c[GF_COEFS];
            for (int k = 0; k < GF_MOMENTS; k++) m[k] = g->M[k * n + i];
            gf_solve(m, g->eps, c);
            for (int k = 0; k < GF_COEFS; k++) g->coef[k * n + i] = c[k];
        }
        break;
    case GF_BOX_COEFS: /* step 5, first half: coefficient `task` averaged over the windows */
        box_mean(g->coef + task * n, g->coef + task * n, cw, g->ch, g->R, g->tmp + (size_t)thread * n, acc);
        break;
    case GF_OUTPUT: /* step 5, second half: interpolated to every pixel of rows [16 task, 16 task + 16) */
        for (int y = task * GF_ROWS_PER_TASK; y < H && y < (task + 1) * GF_ROWS_PER_TASK; y++) {
            int y0, y1;
            float ly;
            gf_interp(y, s, g->ch, &y0, &y1, &ly);
            const uint8_t *px = g->photo->px + (size_t)y * W * 3;
            const uint8_t *hint = g->hints ? g->hints + (size_t)y * W : NULL;
            for (int x = 0; x < W; x++) {
                float c[GF_COEFS];
                gf_coef_at(g->coef, n, cw, g->x0[x], g->x1[x], y0, y1, g->lx[x], ly, c);
                g->alpha[(size_t)y * W + x] = gf_output(c, gf_unit(px[3 * x]), gf_unit(px[3 * x + 1]),
                                                        gf_unit(px[3 * x + 2]), hint ? hint[x] : DL_HINT_NONE,
                                                        g->lo, g->hi);
            }
        }
        break;
    }
    dl_ftz_restore(mine);
}

/* One pass of the filter: alpha = the output of steps 1 to 5, mapped from [lo, hi] to [0, 1]. */
static dl_status filter_cpu(dl_refiner *r, const dl_image *photo, const float *prob, const uint8_t *hints,
                            int radius, float eps, float lo, float hi, float *alpha)
{
    const int W = photo->w, H = photo->h, threads = dl_pool_threads(r->pool);
    gf_pass g = {.photo = photo, .prob = prob, .hints = hints, .eps = eps, .lo = lo, .hi = hi, .alpha = alpha};
    gf_geometry(radius, &g.s, &g.R);
    g.cw = gf_cells(W, g.s), g.ch = gf_cells(H, g.s);
    const size_t n = g.n = (size_t)g.cw * g.ch;
    /* planes: moments (14), coefficients (4), one per thread for box_mean's rows */
    const size_t need = n * (GF_MOMENTS + GF_COEFS + (size_t)threads);
    if (need > r->scratch_floats) {
        free(r->scratch);
        r->scratch_floats = 0;
        r->scratch = dl_alloc(sizeof(float) * need, "refinement planes");
        if (!r->scratch) return DL_ENOMEM;
        r->scratch_floats = need;
    }
    g.M = r->scratch, g.coef = g.M + n * GF_MOMENTS, g.tmp = g.coef + n * GF_COEFS;
    /* per thread: the moments of a row of cells, also box_mean's column sums (cw doubles) */
    double *acc = dl_alloc(sizeof(double) * GF_MOMENTS * (size_t)g.cw * (size_t)threads, "refinement sums");
    int *x0 = dl_alloc(sizeof(int) * 2 * (size_t)W, "refinement weights");
    float *lx = dl_alloc(sizeof(float) * (size_t)W, "refinement weights");
    if (!acc || !x0 || !lx) {
        free(acc), free(x0), free(lx);
        return DL_ENOMEM;
    }
    g.acc = acc, g.x0 = x0, g.x1 = x0 + W, g.lx = lx;
    for (int x = 0; x < W; x++) gf_interp(x, g.s, g.cw, &x0[x], &x0[W + x], &lx[x]);
    g.csr = dl_ftz_enable();
    dl_ftz_restore(g.csr);
    const struct {
        int step, tasks;
    } steps[] = {{GF_MOMENTS_STEP, g.ch}, {GF_BOX_MOMENTS, GF_MOMENTS}, {GF_SOLVE, g.ch},
                 {GF_BOX_COEFS, GF_COEFS}, {GF_OUTPUT, (H + GF_ROWS_PER_TASK - 1) / GF_ROWS_PER_TASK}};
    for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
        g.step = steps[k].step;
        dl_pool_run(r->pool, steps[k].tasks, gf_task, &g);
    }
    free(acc);
    free(x0);
    free(lx);
    return DL_OK;
}

dl_status dl_refine(dl_refiner *r, const dl_image *photo, const float *prob, const uint8_t *hints,
                    const dl_refine_params *p, float *alpha)
{
    if (!r || !photo || photo->c != 3 || photo->w < 1 || photo->h < 1 || !photo->px || !prob || !alpha)
        return dl_fail(DL_EUSAGE, "refine: expected an RGB photo, a map and an output of its size");
    const int radius = p && p->radius > 0 ? p->radius : 1;
    const float eps = p && p->eps > 0 ? p->eps : DL_REFINE_EPS;
    if (r->device == DL_DEVICE_CUDA)
        return gf_cuda_run(r->gpu, photo->px, photo->w, photo->h, prob, hints, radius, eps, alpha);
    /* the two passes of guided_filter.h, the first one stretched (its output kept for the next
     * photo: a fresh buffer of this size would be a fresh mmap to fault in) */
    const size_t n = (size_t)photo->w * photo->h;
    if (n > r->first_floats) {
        free(r->first);
        r->first_floats = 0;
        if (!(r->first = dl_alloc(sizeof(float) * n, "the first refinement pass"))) return DL_ENOMEM;
        r->first_floats = n;
    }
    dl_status s = filter_cpu(r, photo, prob, hints, radius, eps, GF_STRETCH_LO, GF_STRETCH_HI, r->first);
    if (s == DL_OK) s = filter_cpu(r, photo, r->first, hints, gf_second_radius(radius), eps, 0.0f, 1.0f, alpha);
    return s;
}

#ifndef DL_HAVE_CUDA
/* A build without CUDA (make CUDA=0): the GPU refiner does not exist. */
dl_status gf_cuda_create(gf_cuda **out)
{
    *out = NULL;
    return dl_fail(DL_EUNAVAILABLE, "this deeplab was built without CUDA");
}

void gf_cuda_free(gf_cuda *g) { (void)g; }

dl_status gf_cuda_run(gf_cuda *g, const uint8_t *rgb, int W, int H, const float *prob, const uint8_t *hints,
                      int radius, float eps, float *alpha)
{
    (void)g, (void)rgb, (void)W, (void)H, (void)prob, (void)hints, (void)radius, (void)eps, (void)alpha;
    return dl_fail(DL_EUNAVAILABLE, "this deeplab was built without CUDA");
}
#endif

/* ------------------------------------------------------------------ decontamination */

/* One blur-fusion step with box means of radius R: F, B (3 planes each, colours in [0, 1]) are
 * replaced by F' + alpha d and B' + (1 - alpha) d, where F' and B' are the alpha- and
 * (1 - alpha)-weighted local means of F and B and d = I - alpha F' - (1 - alpha) B' is what the
 * compositing equation I = alpha F + (1 - alpha) B leaves unexplained. */
static void blur_fusion(const dl_image *rgb, const float *alpha, float *F, float *B, float *aF, float *bB, float *A,
                        float *tmp, double *sums, int R)
{
    const int W = rgb->w, H = rgb->h;
    const size_t n = (size_t)W * H;
    for (size_t i = 0; i < n; i++) {
        const float a = alpha[i];
        for (int k = 0; k < 3; k++) {
            aF[k * n + i] = a * F[k * n + i];
            bB[k * n + i] = (1.0f - a) * B[k * n + i];
        }
        A[i] = a;
    }
    for (int k = 0; k < 3; k++) {
        box_mean(aF + k * n, aF + k * n, W, H, R, tmp, sums);
        box_mean(bB + k * n, bB + k * n, W, H, R, tmp, sums);
    }
    box_mean(A, A, W, H, R, tmp, sums); /* the mean of 1 - alpha is 1 - this */
    for (size_t i = 0; i < n; i++) {
        const float a = alpha[i], ma = A[i], mb = 1.0f - A[i];
        float f[3], b[3], d[3];
        for (int k = 0; k < 3; k++) {
            f[k] = ma > 1e-6f ? aF[k * n + i] / ma : F[k * n + i];
            b[k] = mb > 1e-6f ? bB[k * n + i] / mb : B[k * n + i];
            d[k] = rgb->px[3 * i + k] / 255.0f - a * f[k] - (1.0f - a) * b[k];
        }
        for (int k = 0; k < 3; k++) {
            const float fk = f[k] + a * d[k], bk = b[k] + (1.0f - a) * d[k];
            F[k * n + i] = fk < 0.0f ? 0.0f : fk > 1.0f ? 1.0f : fk;
            B[k * n + i] = bk < 0.0f ? 0.0f : bk > 1.0f ? 1.0f : bk;
        }
    }
}

dl_status dl_decontaminate(dl_image *rgb, const float *alpha)
{
    if (!rgb || rgb->c != 3 || rgb->w < 1 || rgb->h < 1 || !rgb->px || !alpha)
        return dl_fail(DL_EUSAGE, "decontaminate: expected an RGB image and its alpha");
    const int W = rgb->w, H = rgb->h;
    const size_t n = (size_t)W * H;
    size_t bytes;
    if (dl_mul_size(n, sizeof(float) * 14, &bytes)) return dl_fail(DL_ENOMEM, "decontaminate: image too large");
    float *F = dl_alloc(bytes, "decontamination planes");
    double *sums = dl_alloc(sizeof(double) * (size_t)W, "decontamination sums");
    if (!F || !sums) {
        free(F), free(sums);
        return DL_ENOMEM;
    }
    float *B = F + 3 * n, *aF = B + 3 * n, *bB = aF + 3 * n, *A = bB + 3 * n, *tmp = A + n;
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 3; k++) F[k * n + i] = B[k * n + i] = rgb->px[3 * i + k] / 255.0f;
    /* Forte and Pitie's two passes: a wide window (90 pixels on a megapixel photo) gathers the
     * colours of the subject and of the background, a narrow one (6) makes them local. */
    const int side = W < H ? W : H;
    int wide = side / 12;
    wide = wide < 3 ? 3 : wide > 90 ? 90 : wide;
    int narrow = wide / 15;
    narrow = narrow < 1 ? 1 : narrow;
    blur_fusion(rgb, alpha, F, B, aF, bB, A, tmp, sums, wide);
    blur_fusion(rgb, alpha, F, B, aF, bB, A, tmp, sums, narrow);
    for (size_t i = 0; i < n; i++) {
        const long a8 = lrintf(255.0f * alpha[i]);
        if (a8 <= 0 || a8 >= 255) continue; /* opaque and transparent pixels keep their colour */
        for (int k = 0; k < 3; k++) rgb->px[3 * i + k] = (uint8_t)lrintf(255.0f * F[k * n + i]);
    }
    free(F);
    free(sums);
    return DL_OK;
}
