/*
 * test_refine.c - the edge refinement (dl_refine on the CPU) and colour decontamination.
 *
 *  1. dl_refine against a direct reference written from the definition in deeplab.h and
 *     guided_filter.h, sharing no code with it: moments summed pixel by pixel, windows summed
 *     cell by cell (O(R^2) per cell), the 3x3 systems solved by Gaussian elimination with
 *     pivoting, everything in double. Odd sizes (1x1 to 97x61), cells of 1 to 10 pixels with
 *     partial cells at the borders, with and without hints, two eps; both passes and the stretch
 *     between them. Tolerance 5e-4 in alpha (1/8 of 1/255).
 *  2. What it is for: a map smeared over 16 pixels across a colour edge comes out as a step at
 *     the edge; an erase stroke that stops 4 pixels short of an edge clears the strip it did not
 *     cover (it snaps to the edge), while the unhinted refinement leaves that strip opaque.
 *  3. dl_decontaminate on a photo composited from known colours: semi-transparent pixels move
 *     towards the true subject colour (error at least halved), opaque and transparent pixels are
 *     unchanged.
 *  4. dl_refine_auto_radius and the refiner's argument checks.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deeplab.h"
#include "testutil.h"

/* ------------------------------------------------------------------ the reference */

static void solve3(double A[3][3], double b[3], double x[3]) /* Gaussian elimination, partial pivoting */
{
    for (int c = 0; c < 3; c++) {
        int piv = c;
        for (int r = c + 1; r < 3; r++)
            if (fabs(A[r][c]) > fabs(A[piv][c])) piv = r;
        for (int k = 0; k < 3; k++) {
            double t = A[c][k];
            A[c][k] = A[piv][k];
            A[piv][k] = t;
        }
        double t = b[c];
        b[c] = b[piv];
        b[piv] = t;
        for (int r = c + 1; r < 3; r++) {
            double f = A[r][c] / A[c][c];
            for (int k = c; k < 3; k++) A[r][k] -= f * A[c][k];
            b[r] -= f * b[c];
        }
    }
    for (int r = 2; r >= 0; r--) {
        double s = b[r];
        for (int k = r + 1; k < 3; k++) s -= A[r][k] * x[k];
        x[r] = s / A[r][r];
    }
}

/* Mean over the cells within R (clipped) of planes of cw x ch doubles (np planes). */
static void ref_box(const double *in, double *out, int np, int cw, int ch, int R)
{
    for (int k = 0; k < np; k++)
        for (int cy = 0; cy < ch; cy++)
            for (int cx = 0; cx < cw; cx++) {
                double sum = 0;
                int cnt = 0;
                for (int y = cy - R; y <= cy + R; y++)
                    for (int x = cx - R; x <= cx + R; x++)
                        if (x >= 0 && y >= 0 && x < cw && y < ch) {
                            sum += in[((size_t)k * ch + y) * cw + x];
                            cnt++;
                        }
                out[((size_t)k * ch + cy) * cw + cx] = sum / cnt;
            }
}

/* One pass, mapped from [lo, hi] to [0, 1]. */
static void ref_pass(const uint8_t *rgb, int W, int H, const float *prob, const uint8_t *hints, int radius,
                     double eps, double lo, double hi, double *out)
{
    const int s = radius < 4 ? 1 : radius / 4, R = radius < 4 ? radius : (radius + s / 2) / s;
    const int cw = (W + s - 1) / s, ch = (H + s - 1) / s;
    const size_t n = (size_t)cw * ch;
    double *m = calloc(14 * n, sizeof *m), *mw = calloc(14 * n, sizeof *mw);
    double *co = calloc(4 * n, sizeof *co), *cw4 = calloc(4 * n, sizeof *cw4);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            const size_t p = (size_t)y * W + x, cell = (size_t)(y / s) * cw + x / s;
            double v, c;
            if (hints && hints[p]) {
                v = hints[p] == DL_HINT_KEEP ? 1 : 0;
                c = 16;
            } else {
                v = prob[p] < 0 ? 0 : prob[p] > 1 ? 1 : prob[p];
                c = (2 * v - 1) * (2 * v - 1) + 1.0 / 64;
            }
            const double I[3] = {rgb[3 * p] / 255.0, rgb[3 * p + 1] / 255.0, rgb[3 * p + 2] / 255.0};
            double f[14] = {1, I[0], I[1], I[2], v, I[0] * I[0], I[0] * I[1], I[0] * I[2], I[1] * I[1], I[1] * I[2],
                            I[2] * I[2], I[0] * v, I[1] * v, I[2] * v};
            for (int k = 0; k < 14; k++) m[k * n + cell] += c * f[k];
        }
    ref_box(m, mw, 14, cw, ch, R);
    for (size_t i = 0; i < n; i++) {
        double M[14];
        for (int k = 0; k < 14; k++) M[k] = mw[k * n + i] / mw[i];
        const double mu[3] = {M[1], M[2], M[3]}, mv = M[4];
        double S[3][3] = {{M[5], M[6], M[7]}, {M[6], M[8], M[9]}, {M[7], M[9], M[10]}};
        double cov[3] = {M[11] - mu[0] * mv, M[12] - mu[1] * mv, M[13] - mu[2] * mv}, a[3];
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 3; c++) S[r][c] -= mu[r] * mu[c] - (r == c ? eps : 0);
        solve3(S, cov, a);
        for (int k = 0; k < 3; k++) co[k * n + i] = a[k];
        co[3 * n + i] = mv - a[0] * mu[0] - a[1] * mu[1] - a[2] * mu[2];
    }
    ref_box(co, cw4, 4, cw, ch, R);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            const size_t p = (size_t)y * W + x;
            double tx = (x + 0.5) / s - 0.5, ty = (y + 0.5) / s - 0.5;
            tx = tx < 0 ? 0 : tx, ty = ty < 0 ? 0 : ty;
            int x0 = (int)tx < cw - 1 ? (int)tx : cw - 1, y0 = (int)ty < ch - 1 ? (int)ty : ch - 1;
            int x1 = x0 + 1 < cw ? x0 + 1 : x0, y1 = y0 + 1 < ch ? y0 + 1 : y0;
            double lx = fmin(tx - x0, 1), ly = fmin(ty - y0, 1), q = 0;
            for (int k = 0; k < 4; k++) {
                const double *P = cw4 + (size_t)k * n;
                double c = (1 - ly) * ((1 - lx) * P[(size_t)y0 * cw + x0] + lx * P[(size_t)y0 * cw + x1]) +
                           ly * ((1 - lx) * P[(size_t)y1 * cw + x0] + lx * P[(size_t)y1 * cw + x1]);
                q += k < 3 ? c * rgb[3 * p + k] / 255.0 : c;
            }
            q = (q - lo) / (hi - lo);
            q = q < 0 ? 0 : q > 1 ? 1 : q;
            if (hints && hints[p]) q = hints[p] == DL_HINT_KEEP ? 1 : 0;
            out[p] = q;
        }
    free(m), free(mw), free(co), free(cw4);
}

/* dl_refine as documented: a pass of the radius stretched from [0.25, 0.75], then a pass of a
 * quarter of the radius (at least 1) on its result. */
static void ref_refine(const uint8_t *rgb, int W, int H, const float *prob, const uint8_t *hints, int radius,
                       double eps, double *out)
{
    const size_t n = (size_t)W * H;
    double *first = malloc(sizeof(double) * n);
    float *mid = malloc(sizeof(float) * n);
    ref_pass(rgb, W, H, prob, hints, radius, eps, 0.25, 0.75, first);
    for (size_t i = 0; i < n; i++) mid[i] = (float)first[i];
    ref_pass(rgb, W, H, mid, hints, radius / 4 > 1 ? radius / 4 : 1, eps, 0, 1, out);
    free(first), free(mid);
}

/* ------------------------------------------------------------------ inputs */

/* A photo of a few flat-coloured discs on a gradient, with noise; a map that is high on the
 * first disc, blurred; hints as two strokes (keep and erase) when asked. */
static void make_case(int W, int H, uint8_t *rgb, float *prob, uint8_t *hints)
{
    double cx[3], cy[3], r[3], col[3][3];
    for (int k = 0; k < 3; k++) {
        cx[k] = (frand() + 1) / 2 * W, cy[k] = (frand() + 1) / 2 * H, r[k] = (0.15 + 0.1 * frand()) * (W + H);
        for (int c = 0; c < 3; c++) col[k][c] = 127 + 120 * frand();
    }
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            const size_t p = (size_t)y * W + x;
            double c[3] = {255.0 * x / W, 255.0 * y / H, 128};
            for (int k = 0; k < 3; k++)
                if (hypot(x - cx[k], y - cy[k]) < r[k]) memcpy(c, col[k], sizeof c);
            for (int k = 0; k < 3; k++) {
                double v = c[k] + 6 * frand();
                rgb[3 * p + k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
            const double d = hypot(x - cx[0], y - cy[0]) - r[0];
            prob[p] = (float)(1 / (1 + exp(d / 4 + 0.5 * frand())));
            if (hints) hints[p] = x == W / 3 ? DL_HINT_KEEP : y == H / 2 ? DL_HINT_ERASE : DL_HINT_NONE;
        }
}

static void test_reference(void)
{
    static const struct {
        int W, H, radius;
    } cases[] = {{1, 1, 1}, {7, 5, 2}, {33, 17, 3}, {40, 30, 5}, {64, 48, 9}, {97, 61, 17}, {50, 70, 40}, {20, 9, 30}};
    dl_refiner *r;
    if (dl_refiner_create(DL_DEVICE_CPU, &r) != DL_OK) {
        printf("FAIL cannot create a CPU refiner: %s\n", dl_last_error());
        failures++;
        return;
    }
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int with_hints = 0; with_hints < 2; with_hints++)
            for (int e = 0; e < 2; e++) {
                const int W = cases[c].W, H = cases[c].H;
                const size_t n = (size_t)W * H;
                const float eps = e ? 1e-2f : 1e-4f;
                uint8_t *rgb = malloc(3 * n), *hints = with_hints ? malloc(n) : NULL;
                float *prob = malloc(sizeof(float) * n), *got = poisoned(n);
                double *ref = malloc(sizeof(double) * n);
                make_case(W, H, rgb, prob, hints);
                dl_image photo = {W, H, 3, rgb};
                dl_refine_params p = {cases[c].radius, eps};
                dl_status s = dl_refine(r, &photo, prob, hints, &p, got);
                ref_refine(rgb, W, H, prob, hints, cases[c].radius, eps, ref);
                double worst = 0;
                size_t wi = 0;
                for (size_t i = 0; i < n; i++) {
                    const double d = fabs(got[i] - ref[i]);
                    if (!(d <= worst)) worst = d, wi = i; /* NaN (unwritten) counts as worst */
                }
                const int ok = s == DL_OK && worst <= 5e-4;
                printf("%s refine %dx%d radius %d eps %g%s: worst |alpha - reference| %.2g at (%zu, %zu)\n",
                       ok ? "ok  " : "FAIL", W, H, cases[c].radius, eps, with_hints ? " hints" : "", worst, wi % W,
                       wi / W);
                if (!ok) failures++;
                free(rgb), free(hints), free(prob), free(got), free(ref);
            }
    dl_refiner_free(r);
}

/* ------------------------------------------------------------------ behaviour */

/* Photo: left of column E colour A, right colour B (noisy). */
static void two_colours(uint8_t *rgb, int W, int H, int E)
{
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            const uint8_t *c = x < E ? (const uint8_t[]){200, 60, 50} : (const uint8_t[]){40, 140, 210};
            for (int k = 0; k < 3; k++) {
                int v = c[k] + (int)(5 * frand());
                rgb[3 * ((size_t)y * W + x) + k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
}

/* Prints what and fmt (two numbers) after ok / FAIL; counts a failure. */
static void expect(const char *what, int ok, const char *fmt, double a, double b)
{
    printf("%s %s", ok ? "ok  " : "FAIL", what);
    if (fmt) {
        printf(": ");
        printf(fmt, a, b);
    }
    printf("\n");
    if (!ok) failures++;
}

static void test_behaviour(void)
{
    enum { W = 120, H = 40, E = 60 };
    const size_t n = (size_t)W * H;
    uint8_t rgb[3 * W * H], hints[W * H];
    float prob[W * H], alpha[W * H];
    dl_refiner *r;
    dl_refiner_create(DL_DEVICE_CPU, &r);
    dl_image photo = {W, H, 3, rgb};
    two_colours(rgb, W, H, E);

    /* a map smeared over ~16 pixels, centred 3 pixels off the colour edge */
    for (size_t i = 0; i < n; i++) prob[i] = (float)(1 / (1 + exp(((double)(i % W) - (E + 3)) / 4)));
    double before = 0, after = 0;
    dl_refine_params p = {8, DL_REFINE_EPS};
    dl_refine(r, &photo, prob, NULL, &p, alpha);
    for (size_t i = 0; i < n; i++) {
        const double step = (int)(i % W) < E ? 1 : 0;
        before += fabs(prob[i] - step) / n;
        after += fabs(alpha[i] - step) / n;
    }
    expect("a smeared map becomes a step at the colour edge", after < before / 4 && after < 0.01,
          "mean |alpha - step| %.4f, before %.4f", after, before);

    /* a leak: the map says 0.8 on 12 columns of B beside the edge; an erase stroke covers the
     * 8 columns farthest from it and stops 4 columns short */
    for (size_t i = 0; i < n; i++) {
        const int x = (int)(i % W);
        prob[i] = x < E ? 1.0f : x < E + 12 ? 0.8f : 0.0f;
        hints[i] = x >= E + 4 && x < E + 12 ? DL_HINT_ERASE : DL_HINT_NONE;
    }
    float plain[W * H];
    dl_refine(r, &photo, prob, NULL, &p, plain);
    dl_refine(r, &photo, prob, hints, &p, alpha);
    double strip_plain = 0, strip_hint = 0, subject = 1, erased = 0;
    for (int y = 0; y < H; y++) {
        for (int x = E; x < E + 4; x++) {
            strip_plain += plain[y * W + x] / (4.0 * H);
            strip_hint += alpha[y * W + x] / (4.0 * H);
        }
        for (int x = E - 4; x < E; x++) subject = fmin(subject, alpha[y * W + x]);
        for (int x = E + 4; x < E + 12; x++) erased = fmax(erased, alpha[y * W + x]);
    }
    expect("an erase stroke 4 px short of the edge clears the strip up to it", strip_hint < 0.15 && strip_plain > 0.5,
          "mean alpha of the strip %.3f (without the stroke %.3f)", strip_hint, strip_plain);
    expect("... the stroke itself is transparent, the subject beside it stays", erased == 0 && subject > 0.9,
          "max alpha under the stroke %.3f, min alpha of the subject's last 4 columns %.3f", erased, subject);
    dl_refiner_free(r);
}

static void test_decontaminate(void)
{
    enum { W = 240, H = 160 };
    const size_t n = (size_t)W * H;
    const double F[3] = {220, 40, 40}, B[3] = {30, 200, 60}; /* subject red, background green */
    static uint8_t rgb[3 * W * H], orig[3 * W * H];
    static float alpha[W * H];
    for (size_t i = 0; i < n; i++) {
        const int x = (int)(i % W);
        double a = x < 100 ? 1 : x >= 110 ? 0 : (110 - x) / 10.0; /* a 10-pixel soft edge */
        alpha[i] = (float)a;
        for (int k = 0; k < 3; k++) rgb[3 * i + k] = (uint8_t)lrint(a * F[k] + (1 - a) * B[k]);
    }
    memcpy(orig, rgb, sizeof rgb);
    dl_image img = {W, H, 3, rgb};
    dl_status s = dl_decontaminate(&img, alpha);
    double err_before = 0, err_after = 0, count = 0;
    int unchanged = 1;
    for (size_t i = 0; i < n; i++) {
        const long a8 = lrintf(255 * alpha[i]);
        if (a8 == 0 || a8 == 255) {
            unchanged &= !memcmp(rgb + 3 * i, orig + 3 * i, 3);
            continue;
        }
        for (int k = 0; k < 3; k++) {
            err_before += fabs(orig[3 * i + k] - F[k]);
            err_after += fabs(rgb[3 * i + k] - F[k]);
        }
        count += 3;
    }
    expect("decontamination: semi-transparent pixels take the subject's colour",
          s == DL_OK && err_after < err_before / 4, "mean |colour - subject| %.1f levels, before %.1f",
          err_after / count, err_before / count);
    expect("decontamination: opaque and transparent pixels unchanged", unchanged, NULL, 0, 0);
}

static void test_misc(void)
{
    expect("auto radius: two network cells (16 px) in photo pixels",
          dl_refine_auto_radius(1920, 1080, 924, 520) == 33 && dl_refine_auto_radius(64, 48, 64, 48) == 16 &&
              dl_refine_auto_radius(10, 10, 520, 520) == 2,
          "1920x1080 at 924x520: %.0f, 64x48 at its own size: %.0f", dl_refine_auto_radius(1920, 1080, 924, 520),
          dl_refine_auto_radius(64, 48, 64, 48));
    dl_refiner *r;
    dl_refiner_create(DL_DEVICE_CPU, &r);
    float a = 0;
    uint8_t px[4] = {0};
    dl_image gray = {1, 1, 1, px};
    expect("refine refuses a photo that is not RGB", dl_refine(r, &gray, &a, NULL, NULL, &a) == DL_EUSAGE, NULL, 0, 0);
    dl_refiner_free(r);
}

int main(void)
{
    (void)check, (void)randn; /* testutil.h's helpers this test does not need */
    test_reference();
    test_behaviour();
    test_decontaminate();
    test_misc();
    return finish("refinement");
}
