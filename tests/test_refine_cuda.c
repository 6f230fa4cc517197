/*
 * test_refine_cuda.c - dl_refine on the GPU (engine/guided_filter.cu) against dl_refine on the
 * CPU (engine/refine.c, itself checked against a direct reference by test_refine): photos of odd
 * sizes (1x1 to 1920x1080, cells that do not divide them), radii that give cells of 1 to 25
 * pixels, with and without hints. The GPU output is poisoned (NaN) before each run, so an
 * unwritten pixel fails. Pass: max |alpha_gpu - alpha_cpu| <= 1/255 everywhere (the bar;
 * expected ~1e-6). Also a second call of another size on the same refiner (buffers regrown).
 * Every GPU run is made twice, the second under another schedule (testutil_cuda.h), and must give
 * the same bytes. On the emulated GPU also: regrowing the refiner's buffers does not wait for the
 * whole device (the network runs on its own stream, on another thread, meanwhile; cudaFree waits).
 * DL_TEST_QUICK=1 (make test SANITIZE=1) leaves out the photos over a megapixel and grows the
 * buffers the last time to 700x500 instead of 2000x1100.
 * Without a usable GPU (or in a build without CUDA) it prints SKIP and exits 77.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_device.h"
#include "deeplab.h"
#include "testutil.h"
#ifdef DL_HAVE_CUDA
#include "testutil_cuda.h"
#endif

static void make_case(int W, int H, uint8_t *rgb, float *prob, uint8_t *hints)
{
    const double cx = W * 0.45, cy = H * 0.55, r = 0.3 * (W < H ? W : H) + 1;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            const size_t p = (size_t)y * W + x;
            const double d = hypot(x - cx, y - cy) - r;
            const int inside = d < 0;
            for (int k = 0; k < 3; k++) {
                double v = (inside ? 60 + 50 * k : 200 - 30 * k) + 20 * sin((x + 2 * y) / 9.0 + k) + 8 * frand();
                rgb[3 * p + k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
            prob[p] = (float)(1 / (1 + exp((d + 3) / (2 + 0.01 * r)))) + 0.05f * frand();
            if (hints) hints[p] = (x % 97 == 5) ? DL_HINT_KEEP : (y % 89 == 7) ? DL_HINT_ERASE : DL_HINT_NONE;
        }
}

int main(void)
{
    (void)check, (void)randn;
    char why[256];
    if (dl_cuda_probe(why, sizeof why) <= 0) {
        printf("SKIP: no CUDA GPU (%s)\n", why);
        return 77;
    }
    dl_refiner *cpu, *gpu;
    if (dl_refiner_create(DL_DEVICE_CPU, &cpu) != DL_OK || dl_refiner_create(DL_DEVICE_CUDA, &gpu) != DL_OK) {
        printf("FAIL cannot create the refiners: %s\n", dl_last_error());
        return 1;
    }
    static const struct {
        int W, H, radius, hints;
    } cases[] = {{1, 1, 1, 0},      {1, 1, 33, 1},     {33, 17, 3, 1},     {97, 61, 17, 0},     {640, 480, 33, 1},
                 {1921, 1079, 9, 0}, {1920, 1080, 33, 1}, {1080, 1920, 100, 0}, {64, 48, 16, 1},
                 {2000, 1100, 40, 1} /* the largest: the buffers grow once more, after many uses */};
    const size_t ncases = sizeof cases / sizeof cases[0];
    const char *q = getenv("DL_TEST_QUICK");
    const int quick = q && *q && strcmp(q, "0") != 0;
    for (size_t c = 0; c < ncases; c++) {
        const int last = c == ncases - 1;
        const int W = quick && last ? 700 : cases[c].W, H = quick && last ? 500 : cases[c].H;
        if (quick && !last && (size_t)W * H > 1000000) continue;
        const size_t n = (size_t)W * H;
        uint8_t *rgb = malloc(3 * n), *hints = cases[c].hints ? malloc(n) : NULL;
        float *prob = malloc(sizeof(float) * n), *a_cpu = poisoned(n), *a_gpu = poisoned(n);
        make_case(W, H, rgb, prob, hints);
        dl_image photo = {W, H, 3, rgb};
        dl_refine_params p = {cases[c].radius, DL_REFINE_EPS};
        dl_status s1 = dl_refine(cpu, &photo, prob, hints, &p, a_cpu);
#ifdef DL_EMU
        dl_emu_stats before, after;
        dl_emu_get_stats(&before);
#endif
        dl_status s2 = dl_refine(gpu, &photo, prob, hints, &p, a_gpu);
#ifdef DL_EMU
        dl_emu_get_stats(&after);
        if (last) {
            const int waited = after.device_syncs != before.device_syncs;
            printf("%s regrowing the refiner's buffers does not wait for the whole device (%llu device-wide "
                   "waits)\n", waited ? "FAIL" : "ok  ", after.device_syncs - before.device_syncs);
            if (waited) failures++;
        }
#endif
#ifdef DL_HAVE_CUDA
        float *again = poisoned(n);
        gpu_schedule(1);
        const dl_status s3 = dl_refine(gpu, &photo, prob, hints, &p, again);
        gpu_schedule(0);
        char what[64];
        snprintf(what, sizeof what, "refine %dx%d", W, H);
        if (s3 == DL_OK) same_bytes(what, a_gpu, again, n * sizeof(float));
        free(again);
#endif
        double worst = 0;
        size_t wi = 0;
        for (size_t i = 0; i < n; i++) {
            const double d = fabs((double)a_gpu[i] - a_cpu[i]);
            if (!(d <= worst)) worst = d, wi = i; /* NaN: unwritten */
        }
        const int ok = s1 == DL_OK && s2 == DL_OK && worst <= 1.0 / 255;
        printf("%s refine %dx%d radius %d%s: GPU vs CPU worst |diff| %.3g at (%zu, %zu) (gpu %.6f cpu %.6f)%s%s\n",
               ok ? "ok  " : "FAIL", W, H, cases[c].radius, hints ? " hints" : "", worst, wi % W, wi / W,
               (double)a_gpu[wi], (double)a_cpu[wi], s2 != DL_OK ? ": " : "", s2 != DL_OK ? dl_last_error() : "");
        if (!ok) failures++;
        free(rgb), free(hints), free(prob), free(a_cpu), free(a_gpu);
    }
    dl_refiner_free(cpu);
    dl_refiner_free(gpu);
#ifdef DL_HAVE_CUDA
    if (schedules_verdict()) failures++;
#endif
    return finish("GPU refinement");
}
