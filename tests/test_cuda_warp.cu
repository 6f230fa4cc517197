/*
 * test_cuda_warp.cu - the warp-level operations against the PTX ISA's own description of them,
 * written down here independently of their emulation (emu/ptx.cc): on the emulated GPU this
 * checks the emulator, on a real GPU the same test checks these tables (and so the emulator's
 * reading of the ISA) against the hardware.
 *
 *   shuffles  every mode and width of __shfl_*_sync, against the pseudocode of PTX's shfl.sync
 *             with the c operand CUDA's intrinsics pass ((32 - width) << 8, | 0x1f but for up)
 *   votes     __ballot_sync, __any_sync, __all_sync, with a full and a partial mask
 *   ldmatrix  .x1/.x2/.x4, with and without .trans, rows scattered in shared memory: every lane's
 *             registers against the ISA's figure (row r is held by lanes 4r..4r+3, lane 4r+q
 *             holding columns 2q and 2q+1)
 *   mma.sync  m16n8k16 bf16 and f16, m16n8k8 tf32, bf16 and f16: fragments built from A, B, C by
 *             the ISA's layout tables (transcribed as the ISA words them), D read back by the
 *             same tables and compared with A B + C exactly (small integers: no rounding)
 *   cp.async  16-byte copies with a full and a partial source (zero fill), two groups, wait_group
 *             1 then 0; on the emulated GPU also: a copy is not visible before its wait, and a
 *             misaligned one is a fault
 * Exit 0, 1 on a failed check, 77 without a device.
 */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cuda_kernel.h"
#include "cuda_ptx.h"
#include "testutil_kernel.h"


static void must(cudaError_t e, const char *what)
{
    if (e != cudaSuccess) {
        printf("FAIL %s: %s\n", what, cudaGetErrorString(e));
        failures++;
    }
}

/* ------------------------------------------------------------------ shuffles */

/* PTX ISA, shfl.sync: the lane j that lane `lane` reads, for operands b and c. */
static int isa_shfl_source(int mode, int lane, int b, int c)
{
    const int bval = b & 0x1f, cval = c & 0x1f, segmask = (c >> 8) & 0x1f;
    const int maxLane = (lane & segmask) | (cval & ~segmask), minLane = lane & segmask;
    int j, pval;
    switch (mode) {
    case 1: j = lane - bval, pval = j >= maxLane; break;                  /* .up */
    case 2: j = lane + bval, pval = j <= maxLane; break;                  /* .down */
    case 3: j = lane ^ bval, pval = j <= maxLane; break;                  /* .bfly */
    default: j = minLane | (bval & ~segmask), pval = j <= maxLane; break; /* .idx */
    }
    return pval ? j : lane;
}

/* The c operand the CUDA intrinsics give shfl.sync for a width. */
static int cuda_c_operand(int mode, int width) { return ((32 - width) << 8) | (mode == 1 ? 0 : 0x1f); }

static __device__ int lane_value(int t) { return 1000 + 7 * (t & 31) + 100 * (t >> 5); }

__global__ void shfl_kernel(int *out, int mode, int arg, int width)
{
    const int t = threadIdx.x, v = lane_value(t);
    int r;
    switch (mode) {
    case 1: r = __shfl_up_sync(0xffffffffu, v, (unsigned)arg, width); break;
    case 2: r = __shfl_down_sync(0xffffffffu, v, (unsigned)arg, width); break;
    case 3: r = __shfl_xor_sync(0xffffffffu, v, arg, width); break;
    default:
        r = __shfl_sync(0xffffffffu, v, (5 * (t & 31) + arg) & 63, width);
        break; /* a source per lane, past 31 too */
    }
    out[t] = r;
}

__global__ void shfl_double_kernel(double *out)
{
    const int t = threadIdx.x;
    out[t] = __shfl_xor_sync(0xffffffffu, 0.5 + t, 3);
}

static void test_shuffles(void)
{
    int *d;
    cudaMalloc(&d, 64 * sizeof(int));
    const int widths[] = {1, 2, 4, 8, 16, 32}, args[] = {0, 1, 3, 5, 16, 31};
    const char *names[] = {"__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync"};
    for (int mode = 0; mode < 4; mode++) {
        int bad = 0, runs = 0;
        for (int w : widths)
            for (int a : args) {
                DL_LAUNCH(shfl_kernel, 1, 64, 0, 0)(d, mode, a, w);
                int h[64];
                must(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost), "shuffle");
                for (int t = 0; t < 64; t++) {
                    const int b = mode == 0 ? (5 * (t & 31) + a) & 63 : a;
                    const int j = isa_shfl_source(mode, t & 31, b, cuda_c_operand(mode, w));
                    const int want = 1000 + 7 * j + 100 * (t >> 5);
                    if (h[t] != want && bad++ < 3)
                        printf("     %s width %d arg %d: thread %d got %d, the ISA says lane %d (%d)\n", names[mode], w,
                               a, t, h[t], j, want);
                }
                runs++;
            }
        char what[128];
        snprintf(what, sizeof what, "%s, widths 1-32, %d operand values, 2 warps: every lane as the ISA says",
                 names[mode], (int)(sizeof args / sizeof args[0]));
        ok(bad == 0 && runs == 36, what);
    }
    double *dd, hd[32];
    cudaMalloc(&dd, sizeof hd);
    DL_LAUNCH(shfl_double_kernel, 1, 32, 0, 0)(dd);
    must(cudaMemcpy(hd, dd, sizeof hd, cudaMemcpyDeviceToHost), "shuffle double");
    int right = 1;
    for (int t = 0; t < 32; t++) right &= hd[t] == 0.5 + (t ^ 3);
    ok(right, "__shfl_xor_sync of a double moves all 64 bits");
    cudaFree(d);
    cudaFree(dd);
}

/* ------------------------------------------------------------------ votes */

__global__ void vote_kernel(unsigned *out)
{
    const int lane = threadIdx.x & 31;
    out[0] = __ballot_sync(0xffffffffu, lane % 3 == 0 || lane == 31);
    out[1] = (unsigned)__any_sync(0xffffffffu, lane == 7);
    out[2] = (unsigned)__any_sync(0xffffffffu, 0);
    out[3] = (unsigned)__all_sync(0xffffffffu, lane < 32);
    out[4] = (unsigned)__all_sync(0xffffffffu, lane != 5);
    if (lane < 16) out[5] = __ballot_sync(0x0000ffffu, lane & 1); /* half the warp, its own mask */
    __syncwarp();
}

static void test_votes(void)
{
    unsigned *d, h[6];
    cudaMalloc(&d, sizeof h);
    DL_LAUNCH(vote_kernel, 1, 32, 0, 0)(d);
    must(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost), "votes");
    unsigned want = 0;
    for (int l = 0; l < 32; l++)
        if (l % 3 == 0 || l == 31) want |= 1u << l;
    ok(h[0] == want, "__ballot_sync: bit l set where lane l's predicate holds");
    ok(h[1] == 1 && h[2] == 0 && h[3] == 1 && h[4] == 0, "__any_sync and __all_sync");
    ok(h[5] == 0x0000aaaau, "__ballot_sync over lanes 0-15 with mask 0xffff");
    cudaFree(d);
}

/* ------------------------------------------------------------------ ldmatrix */

enum { LDM_STRIDE = 24 }; /* halves per shared row: rows 48 bytes apart, so not one block */

/* The element (row r, column c) of matrix j in the test's shared memory. */
static __host__ __device__ uint16_t ldm_elem(int j, int r, int c) { return (uint16_t)(j * 64 + r * 8 + c + 1); }

__global__ void ldmatrix_kernel(uint32_t *out, int num, int trans)
{
    DL_SHARED(uint16_t, m, [32 * LDM_STRIDE]);
    const int t = threadIdx.x;
    for (int i = t; i < 32 * LDM_STRIDE; i += 32) {
        const int row = i / LDM_STRIDE, c = i % LDM_STRIDE;
        m[i] = c < 8 ? ldm_elem(row / 8, row % 8, c) : 0xdead;
    }
    __syncwarp();
    /* lane 8 j + r: row r of matrix j; the rows are placed in reverse order, to scatter them */
    const void *row = &m[(31 - t) * LDM_STRIDE];
    uint32_t r[4] = {0, 0, 0, 0};
    if (num == 1 && !trans) dl_ldmatrix_x1(r, row);
    if (num == 2 && !trans) dl_ldmatrix_x2(r, row);
    if (num == 4 && !trans) dl_ldmatrix_x4(r, row);
    if (num == 1 && trans) dl_ldmatrix_x1_trans(r, row);
    if (num == 2 && trans) dl_ldmatrix_x2_trans(r, row);
    if (num == 4 && trans) dl_ldmatrix_x4_trans(r, row);
    for (int j = 0; j < 4; j++) out[t * 4 + j] = r[j];
}

static void test_ldmatrix(void)
{
    uint32_t *d, h[128];
    cudaMalloc(&d, sizeof h);
    for (int trans = 0; trans < 2; trans++)
        for (int num = 1; num <= 4; num *= 2) {
            DL_LAUNCH(ldmatrix_kernel, 1, 32, 0, 0)(d, num, trans);
            must(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost), "ldmatrix");
            /* the ISA's figure, by rows of the (transposed, with .trans) matrix: row r of it is held
             * by lanes 4r..4r+3, lane 4r+q holding its columns 2q (low half) and 2q+1 (high half).
             * Lane 8j + i supplied the address of matrix j's row i, which the kernel placed at
             * shared row 31 - (8j + i), which holds ldm_elem(3 - j, 7 - i, .). */
            int bad = 0;
            for (int j = 0; j < num; j++)
                for (int r = 0; r < 8; r++)
                    for (int q = 0; q < 4; q++) {
                        const int lane = 4 * r + q;
                        uint16_t want[2];
                        for (int h2 = 0; h2 < 2; h2++) {
                            const int c = 2 * q + h2; /* (r, c) of what the lane holds */
                            const int mrow = trans ? c : r, mcol = trans ? r : c;
                            want[h2] = ldm_elem(3 - j, 7 - mrow, mcol);
                        }
                        const uint32_t w = (uint32_t)want[0] | (uint32_t)want[1] << 16;
                        if (h[lane * 4 + j] != w && bad++ < 3)
                            printf("     x%d%s: lane %d register %d is 0x%08x, the ISA says 0x%08x\n", num,
                                   trans ? ".trans" : "", lane, j, h[lane * 4 + j], w);
                    }
            char what[96];
            snprintf(what, sizeof what, "ldmatrix.m8n8.x%d%s.b16: every lane's registers as the ISA's figure says", num,
                     trans ? ".trans" : "");
            ok(bad == 0, what);
        }
    cudaFree(d);
}

/* ------------------------------------------------------------------ mma.sync */

enum { K16_BF16, K16_F16, K8_TF32, K8_BF16, K8_F16, MMA_KINDS };
static const char *const mma_names[] = {"m16n8k16 bf16", "m16n8k16 f16", "m16n8k8 tf32", "m16n8k8 bf16", "m16n8k8 f16"};

/* The PTX ISA's fragment tables, as it words them (groupID = %laneid >> 2, threadID_in_group =
 * %laneid % 4). Element i of lane `lane`: (row, col) of A, B or C/D. */
static void isa_a(int kind, int lane, int i, int *row, int *col)
{
    const int groupID = lane >> 2, threadID_in_group = lane % 4;
    if (kind == K16_BF16 || kind == K16_F16) { /* "for ai where 0 <= i < 2 || 4 <= i < 6 ... Otherwise" */
        *row = ((0 <= i && i < 2) || (4 <= i && i < 6)) ? groupID : groupID + 8;
        *col = i < 4 ? (threadID_in_group * 2) + (i & 0x1) : (threadID_in_group * 2) + (i & 0x1) + 8;
    } else if (kind ==
               K8_TF32) { /* "groupID for a0 and a2, groupID + 8 for a1 and a3; tig for a0 and a1, +4 for a2 and a3" */
        *row = (i == 0 || i == 2) ? groupID : groupID + 8;
        *col = (i == 0 || i == 1) ? threadID_in_group : threadID_in_group + 4;
    } else { /* m16n8k8 .f16/.bf16: "groupID for a0 and a1, groupID + 8 for a2 and a3; col = tig * 2 + (i & 0x1)" */
        *row = (i == 0 || i == 1) ? groupID : groupID + 8;
        *col = threadID_in_group * 2 + (i & 0x1);
    }
}

static void isa_b(int kind, int lane, int i, int *row, int *col)
{
    const int groupID = lane >> 2, threadID_in_group = lane % 4;
    *col = groupID;
    if (kind == K16_BF16 || kind == K16_F16) /* "for bi where i < 2 ... i >= 2: + 8" */
        *row = i < 2 ? (threadID_in_group * 2) + (i & 0x1) : (threadID_in_group * 2) + (i & 0x1) + 8;
    else if (kind == K8_TF32) /* "threadID_in_group for b0, threadID_in_group + 4 for b1" */
        *row = i == 0 ? threadID_in_group : threadID_in_group + 4;
    else /* "(threadID_in_group * 2) + i for bi where i = {0, 1}" */
        *row = (threadID_in_group * 2) + i;
}

static void isa_c(int lane, int i, int *row, int *col)
{
    const int groupID = lane >> 2, threadID_in_group = lane % 4;
    *row = i < 2 ? groupID : groupID + 8; /* "groupID for c0 and c1 (ci where i < 2), groupID + 8 for c2 and c3" */
    *col = (threadID_in_group * 2) + (i & 0x1);
}

/* Exact conversions of the test's small integers. */
static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)(u >> 16);
}
static uint16_t to_f16(float f) /* integers |f| < 2048 */
{
    if (f == 0) return 0;
    const uint16_t sign = f < 0 ? 0x8000 : 0;
    float a = fabsf(f);
    int e = 0;
    while (a >= 2.0f) a /= 2, e++;
    return (uint16_t)(sign | (e + 15) << 10 | (uint16_t)lrintf((a - 1.0f) * 1024));
}

__global__ void mma_kernel(const uint32_t *fa, const uint32_t *fb, const float *fc, float *fd, int kind)
{
    const int l = threadIdx.x;
    uint32_t a[4], b[2];
    float c[4], d[4];
    for (int i = 0; i < 4; i++) a[i] = fa[l * 4 + i], c[i] = fc[l * 4 + i];
    for (int i = 0; i < 2; i++) b[i] = fb[l * 2 + i];
    switch (kind) {
    case K16_BF16: dl_mma_m16n8k16_bf16(d, a, b, c); break;
    case K16_F16: dl_mma_m16n8k16_f16(d, a, b, c); break;
    case K8_TF32: dl_mma_m16n8k8_tf32(d, a, b, c); break;
    case K8_BF16: dl_mma_m16n8k8_bf16(d, a, b, c); break;
    default: dl_mma_m16n8k8_f16(d, a, b, c); break;
    }
    for (int i = 0; i < 4; i++) fd[l * 4 + i] = d[i];
}

static void test_mma(void)
{
    uint32_t *d_a, *d_b;
    float *d_c, *d_d;
    cudaMalloc(&d_a, 32 * 4 * 4);
    cudaMalloc(&d_b, 32 * 2 * 4);
    cudaMalloc(&d_c, 32 * 4 * 4);
    cudaMalloc(&d_d, 32 * 4 * 4);
    for (int kind = 0; kind < MMA_KINDS; kind++) {
        const int K = kind == K16_BF16 || kind == K16_F16 ? 16 : 8;
        const int tf32 = kind == K8_TF32, f16 = kind == K16_F16 || kind == K8_F16;
        const int na = tf32 ? 4 : K / 2, nb = tf32 ? 2 : K / 4;
        /* small integers, pseudo-random (no two rows or columns alike, so that any element put in
         * the wrong place changes D), exact in every operand type and in the sums */
        float A[16][16], B[16][8], C[16][8];
        uint32_t x = 0x2545f491u * (uint32_t)(kind + 1);
        const auto small = [&x](int span) {
            x = x * 1664525u + 1013904223u;
            return (float)((int)(x >> 24) % (2 * span + 1) - span);
        };
        for (int r = 0; r < 16; r++)
            for (int k = 0; k < K; k++) A[r][k] = small(4);
        for (int k = 0; k < K; k++)
            for (int n = 0; n < 8; n++) B[k][n] = small(4);
        for (int r = 0; r < 16; r++)
            for (int n = 0; n < 8; n++) C[r][n] = small(64) * 0.5f;
        uint32_t fa[32][4] = {{0}}, fb[32][2] = {{0}};
        float fc[32][4], fd[32][4];
        for (int l = 0; l < 32; l++) {
            int row, col;
            for (int i = 0; i < na; i++) {
                isa_a(kind, l, i, &row, &col);
                if (tf32)
                    memcpy(&fa[l][i], &A[row][col], 4);
                else
                    fa[l][i / 2] |= (uint32_t)(f16 ? to_f16(A[row][col]) : to_bf16(A[row][col])) << (16 * (i & 1));
            }
            for (int i = 0; i < nb; i++) {
                isa_b(kind, l, i, &row, &col);
                if (tf32)
                    memcpy(&fb[l][i], &B[row][col], 4);
                else
                    fb[l][i / 2] |= (uint32_t)(f16 ? to_f16(B[row][col]) : to_bf16(B[row][col])) << (16 * (i & 1));
            }
            for (int i = 0; i < 4; i++) {
                isa_c(l, i, &row, &col);
                fc[l][i] = C[row][col];
            }
        }
        cudaMemcpy(d_a, fa, sizeof fa, cudaMemcpyHostToDevice);
        cudaMemcpy(d_b, fb, sizeof fb, cudaMemcpyHostToDevice);
        cudaMemcpy(d_c, fc, sizeof fc, cudaMemcpyHostToDevice);
        DL_LAUNCH(mma_kernel, 1, 32, 0, 0)(d_a, d_b, d_c, d_d, kind);
        must(cudaMemcpy(fd, d_d, sizeof fd, cudaMemcpyDeviceToHost), "mma");
        int bad = 0;
        for (int l = 0; l < 32; l++)
            for (int i = 0; i < 4; i++) {
                int row, col;
                isa_c(l, i, &row, &col);
                float want = C[row][col];
                for (int k = 0; k < K; k++) want += A[row][k] * B[k][col];
                if (fd[l][i] != want && bad++ < 3)
                    printf("     %s: lane %d d%d = D[%d][%d] is %g, A B + C gives %g\n", mma_names[kind], l, i, row,
                           col, (double)fd[l][i], (double)want);
            }
        char what[128];
        snprintf(what, sizeof what, "mma.sync.%s: D = A B + C exactly, every fragment where the ISA's tables put it",
                 mma_names[kind]);
        ok(bad == 0, what);
    }
    cudaFree(d_a), cudaFree(d_b), cudaFree(d_c), cudaFree(d_d);
}

/* ------------------------------------------------------------------ cp.async */

__global__ void cp_async_kernel(const float *src, float *out, int *early)
{
    DL_SHARED(float, s1, [256]);
    DL_SHARED(float, s2, [256]);
    const int t = threadIdx.x;                                 /* 64 threads, 4 floats each */
    dl_cp_async_16(&s1[4 * t], src + 4 * t, (t & 1) ? 8 : 16); /* odd threads: half the source, zeros after */
    dl_cp_async_commit();
    dl_cp_async_16(&s2[4 * t], src + 256 + 4 * t, 16);
    dl_cp_async_commit();
#ifdef DL_EMU
    const int before = s1[4 * t] == s1[4 * t]; /* not NaN: the copy showed before its wait */
#endif
    dl_cp_async_wait<1>(); /* the first group is complete, the second may not be */
#ifdef DL_EMU
    early[t] = before + 2 * (s2[4 * t] == s2[4 * t]);
#else
    early[t] = 0;
#endif
    __syncthreads();
    for (int i = 0; i < 4; i++) out[4 * t + i] = s1[(4 * t + 4 * 17 + i) % 256]; /* another thread's copy */
    dl_cp_async_wait<0>();
    __syncthreads();
    for (int i = 0; i < 4; i++) out[256 + 4 * t + i] = s2[(4 * t + 4 * 5 + i) % 256];
}

#ifdef DL_EMU
__global__ void cp_async_misaligned_kernel(const float *src, float *out)
{
    DL_SHARED(float, s, [64]);
    dl_cp_async_16(&s[1], src, 16);
    dl_cp_async_wait_all();
    out[0] = s[1];
}
#endif

static void test_cp_async(void)
{
    float *d_src, *d_out, h_src[512], h_out[512];
    int *d_early, early[64];
    for (int i = 0; i < 512; i++) h_src[i] = (float)i;
    cudaMalloc(&d_src, sizeof h_src);
    cudaMalloc(&d_out, sizeof h_out);
    cudaMalloc(&d_early, sizeof early);
    cudaMemcpy(d_src, h_src, sizeof h_src, cudaMemcpyHostToDevice);
    DL_LAUNCH(cp_async_kernel, 1, 64, 0, 0)(d_src, d_out, d_early);
    must(cudaMemcpy(h_out, d_out, sizeof h_out, cudaMemcpyDeviceToHost), "cp.async");
    cudaMemcpy(early, d_early, sizeof early, cudaMemcpyDeviceToHost);
    int right = 1;
    for (int t = 0; t < 64; t++)
        for (int i = 0; i < 4; i++) {
            const int e = (4 * t + 68 + i) % 256, owner = e / 4;
            right &= h_out[4 * t + i] == ((owner & 1) && e % 4 >= 2 ? 0.0f : (float)e);
            right &= h_out[256 + 4 * t + i] == (float)(256 + (4 * t + 20 + i) % 256);
        }
    ok(right, "cp.async 16-byte copies, full and half source (zeros after), in two groups waited for in turn");
#ifdef DL_EMU
    int shown = 0;
    for (int t = 0; t < 64; t++) shown += early[t] != 0;
    ok(shown == 0, "emulated: a copy is not in shared memory before its wait_group (first group) nor after "
                   "wait_group 1 (second group)");
    DL_LAUNCH(cp_async_misaligned_kernel, 1, 32, 0, 0)(d_src, d_out);
    const cudaError_t e = cudaDeviceSynchronize();
    ok(e == cudaErrorMisalignedAddress && strstr(cudaGetErrorString(e), "cp_async_misaligned_kernel"),
       "emulated: a cp.async to a misaligned address is cudaErrorMisalignedAddress, naming the kernel");
    cudaDeviceReset();
#else
    (void)early;
#endif
}

int main(void)
{
    if (!have_device()) return 77;
    test_shuffles();
    test_votes();
    test_ldmatrix();
    test_mma();
    test_cp_async();
    return finish("warp-level");
}
