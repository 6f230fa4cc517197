/*
 * guided_filter.cu - the edge refinement of dl_refine on the GPU: the steps of guided_filter.h,
 * one kernel each, with the same per-element functions as the CPU version (engine/refine.c).
 *
 *   gf_moments_kernel   one thread per cell: the 14 weighted moments of its s x s pixels
 *   gf_box_kernel       one thread per output element: the mean over 2R+1 elements along x
 *                       (then, in a second launch, along y), clipped at the borders
 *   gf_solve_kernel     one thread per cell: the window's coefficients (3x3 solve, in double)
 *   gf_apply_kernel     one thread per pixel: coefficients interpolated, q = a . I + b
 *
 * dl_refine's two passes (guided_filter.h) run back to back on the device: the photo and the map
 * go up once, the alpha comes down once. The box means differ from the CPU's running sums only in
 * rounding (both accumulate in double), so the two results agree to about 1e-6;
 * tests/test_refine_cuda.c holds them to 1/255.
 *
 * A gf_cuda owns a non-blocking stream, so that refinement on worker threads overlaps the
 * network's own stream, and device buffers that grow to the largest photo seen. They are
 * allocated and freed in the order of that stream (cudaMallocAsync, cudaFreeAsync): cudaFree would
 * wait for the whole device, the network's work on the other thread included.
 */
#include <cuda_runtime.h>
#include <stdlib.h>

#include "cuda_check.h"
#include "cuda_kernel.h"
#include "guided_filter.h"
#include "status.h"

#define GF_THREADS 256

struct gf_cuda {
    cudaStream_t stream;
    uint8_t *d_rgb, *d_hints;
    float *d_prob, *d_alpha, *d_planes; /* planes: moments (14), scratch (14), coefficients (4) */
    size_t pixels_cap, cells_cap;
};

static unsigned blocks_for(size_t n) { return (unsigned)((n + GF_THREADS - 1) / GF_THREADS); }

/* ------------------------------------------------------------------ kernels */

__global__ void gf_moments_kernel(const uint8_t *rgb, const float *prob, const uint8_t *hints, int W, int H, int s,
                                  int cw, int ch, float *M)
{
    const size_t n = (size_t)cw * ch;
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const int cx = (int)(i % cw), cy = (int)(i / cw);
    double m[GF_MOMENTS];
    for (int k = 0; k < GF_MOMENTS; k++) m[k] = 0.0;
    const int x1 = (cx + 1) * s < W ? (cx + 1) * s : W, y1 = (cy + 1) * s < H ? (cy + 1) * s : H;
    for (int y = cy * s; y < y1; y++)
        for (int x = cx * s; x < x1; x++) {
            const size_t p = (size_t)y * W + x;
            float v, c;
            gf_pixel(prob[p], hints ? hints[p] : (uint8_t)DL_HINT_NONE, &v, &c);
            gf_accumulate(m, gf_unit(rgb[3 * p]), gf_unit(rgb[3 * p + 1]), gf_unit(rgb[3 * p + 2]), v, c);
        }
    for (int k = 0; k < GF_MOMENTS; k++) M[k * n + i] = (float)m[k];
}

/* out = the mean of planes of w x h over 2R + 1 elements along x (dx = 1) or y (dx = 0). */
__global__ void gf_box_kernel(const float *in, float *out, int planes, int w, int h, int R, int along_x)
{
    const size_t n = (size_t)w * h;
    const size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= n * planes) return;
    const size_t i = e % n, base = e - i;
    const int x = (int)(i % w), y = (int)(i / w);
    const int pos = along_x ? x : y, len = along_x ? w : h;
    const int lo = pos - R < 0 ? 0 : pos - R, hi = pos + R > len - 1 ? len - 1 : pos + R;
    double sum = 0.0;
    for (int j = lo; j <= hi; j++) sum += in[base + (along_x ? (size_t)y * w + j : (size_t)j * w + x)];
    out[e] = (float)(sum / gf_box_count(pos, R, len));
}

__global__ void gf_solve_kernel(const float *M, size_t n, float eps, float *coef)
{
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float m[GF_MOMENTS], c[GF_COEFS];
    for (int k = 0; k < GF_MOMENTS; k++) m[k] = M[k * n + i];
    gf_solve(m, eps, c);
    for (int k = 0; k < GF_COEFS; k++) coef[k * n + i] = c[k];
}

__global__ void gf_apply_kernel(const uint8_t *rgb, const uint8_t *hints, const float *coef, int W, int H, int s,
                                int cw, int ch, float lo, float hi, float *alpha)
{
    const size_t p = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= (size_t)W * H) return;
    const int x = (int)(p % W), y = (int)(p / W);
    int x0, x1, y0, y1;
    float lx, ly, c[GF_COEFS];
    gf_interp(x, s, cw, &x0, &x1, &lx);
    gf_interp(y, s, ch, &y0, &y1, &ly);
    gf_coef_at(coef, (size_t)cw * ch, cw, x0, x1, y0, y1, lx, ly, c);
    alpha[p] = gf_output(c, gf_unit(rgb[3 * p]), gf_unit(rgb[3 * p + 1]), gf_unit(rgb[3 * p + 2]),
                         hints ? hints[p] : (uint8_t)DL_HINT_NONE, lo, hi);
}

/* ------------------------------------------------------------------ host side */

extern "C" dl_status gf_cuda_create(gf_cuda **out)
{
    *out = NULL;
    gf_cuda *g = (gf_cuda *)calloc(1, sizeof *g);
    if (!g) return dl_fail(DL_ENOMEM, "out of memory for the GPU refiner");
    const cudaError_t e = cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        free(g);
        return dl_cuda_check_failed(e, "cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking)", __FILE__,
                                    __LINE__);
    }
    *out = g;
    return DL_OK;
}

/* The buffers go once the work queued on the refiner's stream before this is done. */
static void release_buffers(gf_cuda *g)
{
    (void)cudaFreeAsync(g->d_rgb, g->stream);
    (void)cudaFreeAsync(g->d_hints, g->stream);
    (void)cudaFreeAsync(g->d_prob, g->stream);
    (void)cudaFreeAsync(g->d_alpha, g->stream);
    (void)cudaFreeAsync(g->d_planes, g->stream);
    g->d_rgb = g->d_hints = NULL;
    g->d_prob = g->d_alpha = g->d_planes = NULL;
    g->pixels_cap = g->cells_cap = 0;
}

extern "C" void gf_cuda_free(gf_cuda *g)
{
    if (!g) return;
    release_buffers(g);
    (void)cudaStreamSynchronize(g->stream);
    (void)cudaStreamDestroy(g->stream);
    free(g);
}

/* Device buffers for `pixels` pixels and `cells` cells, grown (never shrunk) as needed, in the
 * stream's order: the old ones go after the work that used them, without waiting for anything. */
static dl_status reserve(gf_cuda *g, size_t pixels, size_t cells)
{
    if (pixels <= g->pixels_cap && cells <= g->cells_cap) return DL_OK;
    if (pixels < g->pixels_cap) pixels = g->pixels_cap;
    if (cells < g->cells_cap) cells = g->cells_cap;
    release_buffers(g);
    const size_t planes = (size_t)(2 * GF_MOMENTS + GF_COEFS) * cells;
    cudaStream_t s = g->stream;
    if (cudaMallocAsync(&g->d_rgb, 3 * pixels, s) != cudaSuccess ||
        cudaMallocAsync(&g->d_hints, pixels, s) != cudaSuccess ||
        cudaMallocAsync(&g->d_prob, sizeof(float) * pixels, s) != cudaSuccess ||
        cudaMallocAsync(&g->d_alpha, sizeof(float) * pixels, s) != cudaSuccess ||
        cudaMallocAsync(&g->d_planes, sizeof(float) * planes, s) != cudaSuccess) {
        (void)cudaGetLastError();
        release_buffers(g);
        return dl_fail(DL_ENOMEM, "out of GPU memory refining a photo of %.1f megapixels", (double)pixels / 1e6);
    }
    g->pixels_cap = pixels;
    g->cells_cap = cells;
    return DL_OK;
}

/* The two passes of a box mean over `planes` planes of w x h, in place through scratch. */
static void box_mean(gf_cuda *g, float *planes_data, float *scratch, int planes, int w, int h, int R)
{
    const size_t total = (size_t)planes * w * h;
    DL_LAUNCH(gf_box_kernel, blocks_for(total), GF_THREADS, 0, g->stream)(planes_data, scratch, planes, w, h, R, 1);
    DL_LAUNCH(gf_box_kernel, blocks_for(total), GF_THREADS, 0, g->stream)(scratch, planes_data, planes, w, h, R, 0);
}

/* One pass (steps 1 to 5) on the stream: d_out = the filter of d_in, mapped from [lo, hi]. */
static void filter_pass(gf_cuda *g, int W, int H, const float *d_in, const uint8_t *d_hints, int radius, float eps,
                        float lo, float hi, float *d_out)
{
    int s, R;
    gf_geometry(radius, &s, &R);
    const int cw = gf_cells(W, s), ch = gf_cells(H, s);
    const size_t pixels = (size_t)W * H, cells = (size_t)cw * ch;
    float *d_M = g->d_planes, *d_scratch = d_M + GF_MOMENTS * cells, *d_coef = d_scratch + GF_MOMENTS * cells;
    DL_LAUNCH(gf_moments_kernel, blocks_for(cells), GF_THREADS, 0, g->stream)(g->d_rgb, d_in, d_hints, W, H, s, cw, ch,
                                                                             d_M);
    box_mean(g, d_M, d_scratch, GF_MOMENTS, cw, ch, R);
    DL_LAUNCH(gf_solve_kernel, blocks_for(cells), GF_THREADS, 0, g->stream)(d_M, cells, eps, d_coef);
    box_mean(g, d_coef, d_scratch, GF_COEFS, cw, ch, R);
    DL_LAUNCH(gf_apply_kernel, blocks_for(pixels), GF_THREADS, 0, g->stream)(g->d_rgb, d_hints, d_coef, W, H, s, cw,
                                                                            ch, lo, hi, d_out);
}

extern "C" dl_status gf_cuda_run(gf_cuda *g, const uint8_t *rgb, int W, int H, const float *prob,
                                 const uint8_t *hints, int radius, float eps, float *alpha)
{
    /* the first pass has the larger radius, hence the fewer (larger) cells: reserve for the second */
    int s, R;
    gf_geometry(gf_second_radius(radius), &s, &R);
    const size_t pixels = (size_t)W * H, cells = (size_t)gf_cells(W, s) * gf_cells(H, s);
    dl_status st = reserve(g, pixels, cells);
    if (st != DL_OK) return st;

    CUDA_CHECK(cudaMemcpyAsync(g->d_rgb, rgb, 3 * pixels, cudaMemcpyHostToDevice, g->stream));
    CUDA_CHECK(cudaMemcpyAsync(g->d_prob, prob, sizeof(float) * pixels, cudaMemcpyHostToDevice, g->stream));
    if (hints) CUDA_CHECK(cudaMemcpyAsync(g->d_hints, hints, pixels, cudaMemcpyHostToDevice, g->stream));
    const uint8_t *d_hints = hints ? g->d_hints : NULL;
    /* the two passes of guided_filter.h: prob -> alpha (stretched) -> prob */
    filter_pass(g, W, H, g->d_prob, d_hints, radius, eps, GF_STRETCH_LO, GF_STRETCH_HI, g->d_alpha);
    filter_pass(g, W, H, g->d_alpha, d_hints, gf_second_radius(radius), eps, 0.0f, 1.0f, g->d_prob);
    CUDA_CHECK(cudaGetLastError()); /* a launch refused (bad configuration) */
    CUDA_CHECK(cudaMemcpyAsync(alpha, g->d_prob, sizeof(float) * pixels, cudaMemcpyDeviceToHost, g->stream));
    const cudaError_t e = cudaStreamSynchronize(g->stream); /* faults inside the kernels show here */
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return dl_fail(dl_cuda_status(e), "CUDA error in the edge refinement (%dx%d, radius %d): %s", W, H, radius,
                       cudaGetErrorString(e));
    }
    return DL_OK;
}
