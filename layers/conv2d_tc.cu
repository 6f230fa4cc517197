/*
 * conv2d_tc.cu - convolution on the tensor cores: an implicit GEMM over NHWC activations in
 * bf16, fp16 or tf32 (tc.h), with ldmatrix + mma.sync, a 4-stage cp.async pipeline, the bias,
 * residual and ReLU in the epilogue, and the output written into a channel slice.
 *
 *     out[P x OC] = A[P x K] * W[OC x K]^T,  P = N * OH * OW pixels of all images, K = taps x Cp
 *
 * Row p of A is output pixel p's receptive field: for tap (ky, kx), the Cp channels of input pixel
 * (oy * s - pad + ky * d, ox * s - pad + kx * d), contiguous in NHWC, or zeros in the padding. A block
 * computes a BM x BN tile of out (BM pixels x BN output channels), walking K in k-blocks of 64 bytes
 * (32 elements of 16 bits, 16 of tf32). Each k-block of A and W is copied into shared memory with
 * 16-byte cp.async (zero-filled where A reads padding or rows/channels past the matrix), STAGES - 1
 * k-blocks ahead of the one being multiplied: while the tensor cores work on stage kb, stages kb + 1
 * .. kb + 3 are in flight.
 *
 * Warps. WM x WN warps; warp (wm, wn) computes rows wm * BM/WM and columns wn * BN/WN of the tile,
 * as MT x NT mma tiles of 16 x 8. Per 32-byte k-step: one ldmatrix.x4 per 16-row A fragment, one per
 * pair of 8-column B fragments, MT x NT mma.sync (m16n8k16 for 16-bit types, m16n8k8 for tf32: the
 * same addressing, because an ldmatrix 8x8 of b16 is an 8x4 of fp32, which is exactly the tf32
 * fragment layout). Fragment element -> (row, column) as the PTX ISA's tables give them; the comments
 * at the loads say which register is which.
 *
 * Shared memory. A stage is BM rows of A and BN rows of W, 64 bytes each (4 chunks of 16). ldmatrix
 * reads 8 rows at one chunk column at a time; with 64-byte rows, rows r and r + 2 would fall in the
 * same banks, so chunk c of row r is stored at chunk c ^ ((r / 2) % 4): the 8 rows of any ldmatrix
 * then touch 8 different 16-byte bank groups (no conflict), and so do the cp.async stores.
 *
 * Three ways of reading A (MODE): GENERIC computes each 16-byte chunk's tap and channel (any Cp, used
 * for the stem's 8 channels); FAST has whole k-blocks inside one tap (Cp a multiple of the k-block),
 * and skips, per tile, the taps that read only padding for every pixel of the tile (exact; most of
 * ASPP's rate-24 and rate-36 taps at the top and bottom of a 65x65 map); ONE for 1x1 stride-1
 * convolutions, a plain GEMM with no bounds to check but the last tile's rows.
 *
 * Split K. Where the tiles of a layer are too few to fill the GPU (conv2d_tc_choose), blockIdx.z
 * takes a share of the k-blocks and the epilogue writes fp32 partial sums to a workspace instead;
 * tc_reduce_kernel adds them in a fixed order (deterministic), then the bias, residual and ReLU.
 *
 * Epilogue. The accumulators go through shared memory (the pipeline's, reused) so that each thread
 * then finishes 8 consecutive channels of one pixel: 16-byte loads of the residual and stores of
 * the output where the tensors' strides allow, element by element otherwise.
 */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>

#include "cuda_index.h"
#include "cuda_kernel.h"
#include "cuda_ptx.h"
#include "tc.h"

namespace {

enum { MODE_GENERIC = 0, MODE_FAST = 1, MODE_ONE = 2 };
enum { STAGES = 4, ROW_BYTES = 64, CHUNKS = ROW_BYTES / 16, MAX_SPLITS = 16 };

template <int BM_, int BN_, int WM_, int WN_>
struct shape {
    static constexpr int BM = BM_, BN = BN_, WM = WM_, WN = WN_;
    static constexpr int THREADS = WM * WN * 32;
    static constexpr int WTM = BM / WM, WTN = BN / WN; /* a warp's part of the tile */
    static constexpr int MT = WTM / 16, NT = WTN / 8;  /* its mma tiles */
    static constexpr int A_BYTES = BM * ROW_BYTES, STAGE_BYTES = (BM + BN) * ROW_BYTES;
    static constexpr int EPI_LD = BN + 8; /* floats per row of the epilogue tile (8 more: no bank conflicts) */
    static constexpr int PIPE_BYTES = STAGES * STAGE_BYTES, EPI_BYTES = BM * EPI_LD * 4;
    static constexpr int SMEM = PIPE_BYTES > EPI_BYTES ? PIPE_BYTES : EPI_BYTES;
    static constexpr int A_ROWS = BM * CHUNKS / THREADS, B_ROWS = BN * CHUNKS / THREADS; /* per thread */
    static_assert(NT % 2 == 0 && MT >= 1 && A_ROWS >= 1 && B_ROWS >= 1, "tile shape");
};
typedef shape<128, 128, 2, 4> shape_128x128; /* 256 threads, warp tiles 64 x 32 */
typedef shape<128, 64, 2, 2> shape_128x64;   /* 128 threads, warp tiles 64 x 32 */
typedef shape<64, 64, 2, 2> shape_64x64;     /* 128 threads, warp tiles 32 x 32 */

/* Everything a launch needs, by value. Sizes in elements of the storage type unless named. */
struct tc_args {
    const unsigned char *in, *w, *res;
    const float *bias;
    unsigned char *out;
    float *ws;
    int H, W, Cp, OH, OW, OC, KH, KW, stride, pad, dil, relu, out_f32;
    int P, Kp;
    int kblocks;  /* k-blocks of the whole K (FAST: taps x cblocks) */
    int cblocks;  /* FAST and ONE: k-blocks per tap */
    int splits;
    int m_tile0;  /* the first tile row of this launch (grids over 65535 tile rows are cut) */
    int vec_res, vec_out; /* residual / output rows may be read / written 16 bytes at a time */
    int64_t in_ldn, in_ldp, res_ldn, res_ldp, out_ldn, out_ldp, bias_ldn;
};

template <int PREC>
struct prec_traits {
    static constexpr int ESZ = PREC == TC_TF32 ? 4 : 2; /* bytes per element */
    static constexpr int EPC = 16 / ESZ;                /* elements per 16-byte chunk */
    static constexpr int BK = ROW_BYTES / ESZ;          /* elements per k-block */
};

/* Byte offset of 16-byte chunk c of row r in a stage's A or W part (the swizzle above). */
static __device__ __forceinline__ int swz(int r, int c) { return r * ROW_BYTES + ((c ^ ((r >> 1) & 3)) << 4); }

template <int PREC>
static __device__ __forceinline__ void mma(float d[4], const uint32_t a[4], const uint32_t b[2])
{
    if (PREC == TC_TF32) dl_mma_m16n8k8_tf32(d, a, b, d);
    else if (PREC == TC_FP16) dl_mma_m16n8k16_f16(d, a, b, d);
    else dl_mma_m16n8k16_bf16(d, a, b, d);
}

/* fp32 -> the storage type, as tc.h's host functions (cvt instructions on a GPU). */
template <int PREC>
static __device__ __forceinline__ uint32_t pack2(float lo, float hi)
{
#if defined(__CUDA_ARCH__)
    uint32_t r;
    if (PREC == TC_BF16) asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    else asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
#else
    if (PREC == TC_BF16) return (uint32_t)tc_round_bf16(lo) | (uint32_t)tc_round_bf16(hi) << 16;
    return (uint32_t)tc_round_f16(lo) | (uint32_t)tc_round_f16(hi) << 16;
#endif
}

static __device__ __forceinline__ float round_tf32(float x)
{
#if defined(__CUDA_ARCH__)
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return __uint_as_float(r);
#else
    return tc_round_tf32(x);
#endif
}

template <int PREC>
static __device__ __forceinline__ float load_elem(const unsigned char *p)
{
    if (PREC == TC_TF32) return *reinterpret_cast<const float *>(p);
    const uint16_t h = *reinterpret_cast<const uint16_t *>(p);
    return PREC == TC_FP16 ? tc_f16_f32(h) : tc_bf16_f32(h);
}

/* 8 values of the storage type at p (16-byte aligned for 16-bit types, 32 bytes for tf32), to fp32. */
template <int PREC>
static __device__ __forceinline__ void load8(const unsigned char *p, float v[8])
{
    if (PREC == TC_TF32) {
        const float4 a = reinterpret_cast<const float4 *>(p)[0], b = reinterpret_cast<const float4 *>(p)[1];
        v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
    } else {
        const uint4 q = *reinterpret_cast<const uint4 *>(p);
        const uint32_t u[4] = {q.x, q.y, q.z, q.w};
        for (int i = 0; i < 4; i++) {
            const uint16_t lo = (uint16_t)(u[i] & 0xffff), hi = (uint16_t)(u[i] >> 16);
            v[2 * i] = PREC == TC_FP16 ? tc_f16_f32(lo) : tc_bf16_f32(lo);
            v[2 * i + 1] = PREC == TC_FP16 ? tc_f16_f32(hi) : tc_bf16_f32(hi);
        }
    }
}

/* The end of every output element: + bias, + residual, ReLU, rounded to the storage type (or fp32
 * for the logits) and stored. Pixel p, channels oc .. oc + cnt - 1 (cnt <= 8) with sums v. */
template <int PREC>
static __device__ void finish(const tc_args &a, int p, int oc, int cnt, float v[8])
{
    typedef prec_traits<PREC> T;
    const int hw = a.OH * a.OW, n = p / hw, pix = p - n * hw;
    if (a.bias) {
        const float *b = a.bias + n * a.bias_ldn + oc;
        for (int i = 0; i < 8; i++)
            if (i < cnt) v[i] += b[i];
    }
    if (a.res) {
        const unsigned char *r = a.res + (n * a.res_ldn + pix * a.res_ldp + oc) * T::ESZ;
        if (cnt == 8 && a.vec_res) {
            float rv[8];
            load8<PREC>(r, rv);
            for (int i = 0; i < 8; i++) v[i] += rv[i];
        } else {
            for (int i = 0; i < 8; i++)
                if (i < cnt) v[i] += load_elem<PREC>(r + i * T::ESZ);
        }
    }
    if (a.relu)
        for (int i = 0; i < 8; i++) v[i] = v[i] < 0.0f ? 0.0f : v[i]; /* as conv2d_cpu: NaN stays NaN */
    const int64_t o = n * a.out_ldn + pix * a.out_ldp + oc;
    if (a.out_f32 || PREC == TC_TF32) { /* fp32 words: the fp32 output, or tf32 storage (rounded first) */
        float *d = reinterpret_cast<float *>(a.out) + o;
        if (!a.out_f32)
            for (int i = 0; i < 8; i++) v[i] = round_tf32(v[i]);
        if (cnt == 8 && a.vec_out) {
            reinterpret_cast<float4 *>(d)[0] = make_float4(v[0], v[1], v[2], v[3]);
            reinterpret_cast<float4 *>(d)[1] = make_float4(v[4], v[5], v[6], v[7]);
        } else {
            for (int i = 0; i < 8; i++)
                if (i < cnt) d[i] = v[i];
        }
    } else {
        uint16_t *d = reinterpret_cast<uint16_t *>(a.out) + o;
        if (cnt == 8 && a.vec_out) {
            *reinterpret_cast<uint4 *>(d) = make_uint4(pack2<PREC>(v[0], v[1]), pack2<PREC>(v[2], v[3]),
                                                       pack2<PREC>(v[4], v[5]), pack2<PREC>(v[6], v[7]));
        } else {
            for (int i = 0; i < 8; i++)
                if (i < cnt) d[i] = (uint16_t)(pack2<PREC>(v[i], 0.0f) & 0xffff);
        }
    }
}

/* Does some o in [o0, o1] read inside [0, L) at o * s + off? (A tap that does for no pixel of the
 * tile, in rows or in columns, reads only padding there.) */
static __device__ __forceinline__ bool reaches(int o0, int o1, int s, int off, int L)
{
    /* o * s + off >= 0  <=>  o >= ceil(-off / s);  o * s + off <= L - 1  <=>  o <= floor((L - 1 - off) / s) */
    const int lo_num = -off, hi_num = L - 1 - off;
    const int lo = lo_num <= 0 ? -((-lo_num) / s) : (lo_num + s - 1) / s;
    const int hi = hi_num >= 0 ? hi_num / s : -((-hi_num + s - 1) / s);
    return (o0 > lo ? o0 : lo) <= (o1 < hi ? o1 : hi);
}

/* The lowest set bit of mask at or after bit i (32 if none). */
static __device__ __forceinline__ int next_tap(uint32_t mask, int i)
{
    const uint32_t m = i >= 32 ? 0u : mask >> i;
    return m ? i + __ffs((int)m) - 1 : 32;
}

template <class S, int PREC, int MODE>
static __device__ void conv_tc_body(const tc_args &a)
{
    typedef prec_traits<PREC> T;
    DL_DYNAMIC_SHARED(unsigned char, smem);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp % S::WM, wn = warp / S::WM;
    const int n0 = blockIdx.x * S::BN, m0 = (a.m_tile0 + (int)blockIdx.y) * S::BM;
    const int hw = a.OH * a.OW;
    const int chunk = tid & 3; /* this thread's chunk column in every k-block it copies */

    /* ---- which k-blocks this tile runs: FAST skips taps no pixel of the tile reaches ---- */
    uint32_t taps = 0xffffffffu;
    int ntaps = a.KH * a.KW;
    if (MODE == MODE_FAST) {
        const int p_last = (m0 + S::BM < a.P ? m0 + S::BM : a.P) - 1;
        const int na = m0 / hw, nb = p_last / hw;
        int oy0 = 0, oy1 = a.OH - 1, ox0 = 0, ox1 = a.OW - 1;
        if (na == nb) {
            const int ra = m0 - na * hw, rb = p_last - nb * hw;
            oy0 = ra / a.OW, oy1 = rb / a.OW;
            if (oy0 == oy1) ox0 = ra - oy0 * a.OW, ox1 = rb - oy1 * a.OW;
        }
        taps = 0;
        for (int ky = 0; ky < a.KH; ky++) {
            if (!reaches(oy0, oy1, a.stride, ky * a.dil - a.pad, a.H)) continue;
            for (int kx = 0; kx < a.KW; kx++)
                if (reaches(ox0, ox1, a.stride, kx * a.dil - a.pad, a.W)) taps |= 1u << (ky * a.KW + kx);
        }
        ntaps = __popc(taps);
    }
    const int kb_all = MODE == MODE_GENERIC ? a.kblocks : ntaps * a.cblocks;
    const int kb_begin = (int)((int64_t)kb_all * blockIdx.z / a.splits);
    const int kb_end = (int)((int64_t)kb_all * (blockIdx.z + 1) / a.splits);
    const int nkb = kb_end - kb_begin;

    /* ---- the rows this thread copies: A (pixels) and W (output channels) ---- */
    const unsigned char *a_base[S::A_ROWS];
    int a_iy[S::A_ROWS], a_ix[S::A_ROWS];
    for (int i = 0; i < S::A_ROWS; i++) {
        const int p = m0 + (tid >> 2) + i * (S::THREADS / 4);
        a_base[i] = a.in;
        a_iy[i] = -(1 << 29); /* past the matrix: every tap reads "padding", i.e. zeros */
        a_ix[i] = 0;
        if (p < a.P) {
            const int n = p / hw, r = p - n * hw, oy = r / a.OW, ox = r - oy * a.OW;
            a_base[i] = a.in + n * a.in_ldn * T::ESZ;
            a_iy[i] = oy * a.stride - a.pad;
            a_ix[i] = ox * a.stride - a.pad;
        }
    }
    const unsigned char *b_row[S::B_ROWS];
    bool b_ok[S::B_ROWS];
    for (int i = 0; i < S::B_ROWS; i++) {
        const int oc = n0 + (tid >> 2) + i * (S::THREADS / 4);
        b_ok[i] = oc < a.OC;
        b_row[i] = a.w + (int64_t)(b_ok[i] ? oc : 0) * a.Kp * T::ESZ;
    }

    /* The loader walks the k-blocks in order: (tap, channel block) for FAST and ONE. */
    int ld_tap = 0, ld_cb = 0;
    if (MODE != MODE_GENERIC) {
        ld_tap = next_tap(taps, 0);
        for (int j = 0; j < kb_begin / a.cblocks; j++) ld_tap = next_tap(taps, ld_tap + 1);
        ld_cb = kb_begin % a.cblocks;
    }
    int ld_kb = kb_begin;

    /* Copies k-block ld_kb into stage st (or commits an empty group past the end, so that the group
     * count stays what the waits below assume), then moves the loader on. */
    auto load_stage = [&](int st) {
        if (ld_kb < kb_end) {
            unsigned char *sa = smem + st * S::STAGE_BYTES, *sb = sa + S::A_BYTES;
            int kofs; /* the k-block's first element in a weight row */
            if (MODE == MODE_GENERIC) {
                kofs = ld_kb * T::BK;
                const int k = kofs + chunk * T::EPC, taps_all = a.KH * a.KW;
                const int tap = k / a.Cp, c = k - tap * a.Cp, ky = tap / a.KW, kx = tap - ky * a.KW;
                for (int i = 0; i < S::A_ROWS; i++) {
                    const int iy = a_iy[i] + ky * a.dil, ix = a_ix[i] + kx * a.dil;
                    const bool ok = tap < taps_all && (unsigned)iy < (unsigned)a.H && (unsigned)ix < (unsigned)a.W;
                    const unsigned char *src = ok ? a_base[i] + (((int64_t)iy * a.W + ix) * a.in_ldp + c) * T::ESZ : a.in;
                    dl_cp_async_16(sa + swz((tid >> 2) + i * (S::THREADS / 4), chunk), src, ok ? 16 : 0);
                }
            } else {
                const int c0 = ld_cb * T::BK, ky = ld_tap / a.KW, kx = ld_tap - ky * a.KW;
                kofs = ld_tap * a.Cp + c0;
                for (int i = 0; i < S::A_ROWS; i++) {
                    const int iy = a_iy[i] + ky * a.dil, ix = a_ix[i] + kx * a.dil;
                    const bool ok = MODE == MODE_ONE ? a_iy[i] >= 0
                                                     : (unsigned)iy < (unsigned)a.H && (unsigned)ix < (unsigned)a.W;
                    const unsigned char *src =
                        ok ? a_base[i] + (((int64_t)iy * a.W + ix) * a.in_ldp + c0 + chunk * T::EPC) * T::ESZ : a.in;
                    dl_cp_async_16(sa + swz((tid >> 2) + i * (S::THREADS / 4), chunk), src, ok ? 16 : 0);
                }
                if (++ld_cb == a.cblocks) {
                    ld_cb = 0;
                    ld_tap = next_tap(taps, ld_tap + 1);
                }
            }
            for (int i = 0; i < S::B_ROWS; i++)
                dl_cp_async_16(sb + swz((tid >> 2) + i * (S::THREADS / 4), chunk),
                               b_row[i] + (int64_t)(kofs + chunk * T::EPC) * T::ESZ, b_ok[i] ? 16 : 0);
            ld_kb++;
        }
        dl_cp_async_commit();
    };

    float acc[S::MT][S::NT][4];
    for (int i = 0; i < S::MT; i++)
        for (int j = 0; j < S::NT; j++)
            for (int q = 0; q < 4; q++) acc[i][j][q] = 0.0f;

    for (int st = 0; st < STAGES - 1; st++) load_stage(st);
    for (int kb = 0; kb < nkb; kb++) {
        /* k-block kb has landed (all but the newest STAGES - 2 groups are complete), for every
         * thread's copies once all are past the barrier; which also means every warp is done with
         * the stage refilled next, the one read in the previous iteration */
        dl_cp_async_wait<STAGES - 2>();
        __syncthreads();
        load_stage((kb + STAGES - 1) % STAGES);
        const unsigned char *sa = smem + (kb % STAGES) * S::STAGE_BYTES, *sb = sa + S::A_BYTES;
        for (int ks = 0; ks < 2; ks++) {
            uint32_t af[S::MT][4], bf[S::NT][2];
            /* A, rows r .. r + 15 of the warp's mt-th tile: lanes 0-15 give rows 0-15 of chunk 2 ks,
             * lanes 16-31 the same rows of chunk 2 ks + 1. Registers: [0] rows 0-7 | chunk 0,
             * [1] rows 8-15 | chunk 0, [2] rows 0-7 | chunk 1, [3] rows 8-15 | chunk 1: a0..a7 of
             * m16n8k16 (a0..a3 of m16n8k8 tf32, whose chunk is 4 columns). */
            for (int mt = 0; mt < S::MT; mt++) {
                const int r = wm * S::WTM + mt * 16 + (lane & 15);
                dl_ldmatrix_x4(af[mt], sa + swz(r, 2 * ks + (lane >> 4)));
            }
            /* W, output channels c .. c + 15 (two 8-column B tiles): lanes 0-7 channels 0-7 of chunk
             * 2 ks, 8-15 the same of chunk 2 ks + 1, 16-31 likewise channels 8-15. Registers [0], [1]:
             * b0, b1 of the first B tile (k 0-7 | 8-15), [2], [3] of the second. */
            for (int np = 0; np < S::NT / 2; np++) {
                const int r = wn * S::WTN + np * 16 + ((lane >> 4) << 3) + (lane & 7);
                uint32_t q[4];
                dl_ldmatrix_x4(q, sb + swz(r, 2 * ks + ((lane >> 3) & 1)));
                bf[2 * np][0] = q[0], bf[2 * np][1] = q[1];
                bf[2 * np + 1][0] = q[2], bf[2 * np + 1][1] = q[3];
            }
            for (int mt = 0; mt < S::MT; mt++)
                for (int nt = 0; nt < S::NT; nt++) mma<PREC>(acc[mt][nt], af[mt], bf[nt]);
        }
    }
    dl_cp_async_wait_all();
    __syncthreads(); /* every warp is done with the pipeline's memory: the epilogue reuses it */

    /* C fragment: lane (g = lane / 4, t = lane % 4) holds rows g and g + 8, columns 2t and 2t + 1 */
    float *epi = reinterpret_cast<float *>(smem);
    const int g = lane >> 2, t4 = lane & 3;
    for (int mt = 0; mt < S::MT; mt++)
        for (int nt = 0; nt < S::NT; nt++) {
            const int r = wm * S::WTM + mt * 16 + g, c = wn * S::WTN + nt * 8 + 2 * t4;
            /* 8-byte stores: each half-warp's 16 then fall in 16 different bank pairs */
            *reinterpret_cast<float2 *>(&epi[r * S::EPI_LD + c]) = make_float2(acc[mt][nt][0], acc[mt][nt][1]);
            *reinterpret_cast<float2 *>(&epi[(r + 8) * S::EPI_LD + c]) = make_float2(acc[mt][nt][2], acc[mt][nt][3]);
        }
    __syncthreads();
    for (int q = tid; q < S::BM * S::BN / 8; q += S::THREADS) {
        const int r = q / (S::BN / 8), c = q % (S::BN / 8) * 8, p = m0 + r, oc = n0 + c;
        if (p >= a.P || oc >= a.OC) continue;
        const int cnt = a.OC - oc < 8 ? a.OC - oc : 8;
        const float4 lo = *reinterpret_cast<const float4 *>(&epi[r * S::EPI_LD + c]);
        const float4 hi = *reinterpret_cast<const float4 *>(&epi[r * S::EPI_LD + c + 4]);
        float v[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
        if (a.splits > 1) { /* partial sums: the reduction finishes them */
            float *d = a.ws + ((int64_t)blockIdx.z * a.P + p) * a.OC + oc;
            for (int i = 0; i < 8; i++)
                if (i < cnt) d[i] = v[i];
        } else {
            finish<PREC>(a, p, oc, cnt, v);
        }
    }
}

/* The split-K partial sums of a.splits blocks, added in split order, then finished. */
template <int PREC>
static __device__ void reduce_body(const tc_args &a)
{
    const int64_t items = (int64_t)a.P * ((a.OC + 7) / 8);
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < items; e += (int64_t)gridDim.x * blockDim.x) {
        const int p = (int)(e / ((a.OC + 7) / 8)), oc = (int)(e % ((a.OC + 7) / 8)) * 8;
        const int cnt = a.OC - oc < 8 ? a.OC - oc : 8;
        float v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int z = 0; z < a.splits; z++) {
            const float *s = a.ws + ((int64_t)z * a.P + p) * a.OC + oc;
            for (int i = 0; i < 8; i++)
                if (i < cnt) v[i] += s[i];
        }
        finish<PREC>(a, p, oc, cnt, v);
    }
}

} // namespace

/* The kernels, one per tile shape, precision and way of reading A (the names say which: that is
 * what profiles and `deeplab bench --layers` show). __launch_bounds__ with 2 (4) blocks per
 * multiprocessor caps the registers at 128, so two 256-thread blocks fit. */
#define TC_KERNEL(name, S, threads, blocks, prec, mode)                                           \
    __global__ void __launch_bounds__(threads, blocks) name(tc_args a) { conv_tc_body<S, prec, mode>(a); }
#define TC_KERNELS(prec, p)                                                                         \
    TC_KERNEL(conv_tc_128x128_##p##_fast_kernel, shape_128x128, 256, 2, prec, MODE_FAST)           \
    TC_KERNEL(conv_tc_128x128_##p##_1x1_kernel, shape_128x128, 256, 2, prec, MODE_ONE)             \
    TC_KERNEL(conv_tc_128x64_##p##_fast_kernel, shape_128x64, 128, 4, prec, MODE_FAST)             \
    TC_KERNEL(conv_tc_128x64_##p##_1x1_kernel, shape_128x64, 128, 4, prec, MODE_ONE)               \
    TC_KERNEL(conv_tc_64x64_##p##_fast_kernel, shape_64x64, 128, 4, prec, MODE_FAST)               \
    TC_KERNEL(conv_tc_64x64_##p##_1x1_kernel, shape_64x64, 128, 4, prec, MODE_ONE)                 \
    TC_KERNEL(conv_tc_64x64_##p##_generic_kernel, shape_64x64, 128, 4, prec, MODE_GENERIC)          \
    __global__ void tc_reduce_##p##_kernel(tc_args a) { reduce_body<prec>(a); }

TC_KERNELS(TC_TF32, tf32)
TC_KERNELS(TC_FP16, fp16)
TC_KERNELS(TC_BF16, bf16)

namespace {

typedef void (*tc_kernel_fn)(tc_args);

struct kernel_entry {
    tc_kernel_fn fn;
    const char *name;
    int threads, smem;
    bool attr_set;
};

#define TC_ENTRY(S, name) {name, #name, S::THREADS, S::SMEM, false}
#define TC_ENTRIES(p)                                                                                      \
    {{TC_ENTRY(shape_128x128, conv_tc_128x128_##p##_fast_kernel), TC_ENTRY(shape_128x128, conv_tc_128x128_##p##_1x1_kernel), \
      {nullptr, nullptr, 0, 0, false}},                                                                    \
     {TC_ENTRY(shape_128x64, conv_tc_128x64_##p##_fast_kernel), TC_ENTRY(shape_128x64, conv_tc_128x64_##p##_1x1_kernel), \
      {nullptr, nullptr, 0, 0, false}},                                                                    \
     {TC_ENTRY(shape_64x64, conv_tc_64x64_##p##_fast_kernel), TC_ENTRY(shape_64x64, conv_tc_64x64_##p##_1x1_kernel),   \
      TC_ENTRY(shape_64x64, conv_tc_64x64_##p##_generic_kernel)}}

/* [precision][tile][FAST, ONE, GENERIC] */
kernel_entry kernels[3][TC_TILES][3] = {TC_ENTRIES(tf32), TC_ENTRIES(fp16), TC_ENTRIES(bf16)};
const tc_kernel_fn reducers[3] = {tc_reduce_tf32_kernel, tc_reduce_fp16_kernel, tc_reduce_bf16_kernel};
const int tile_bm[TC_TILES] = {128, 128, 64}, tile_bn[TC_TILES] = {128, 64, 64};
const char *const tile_names[TC_TILES] = {"128x128", "128x64", "64x64"};

/* How a convolution reads A: FAST needs whole k-blocks per tap (and at most 32 taps for the mask). */
int mode_of(const conv_tc *L, tc_precision p)
{
    const int bk = ROW_BYTES / (int)tc_elem_bytes(p);
    if (L->Cp % bk != 0 || L->KH * L->KW > 32) return MODE_GENERIC;
    if (L->KH == 1 && L->KW == 1 && L->p.stride == 1 && L->p.pad == 0) return MODE_ONE;
    return MODE_FAST;
}

int kblocks_of(const conv_tc *L, tc_precision p)
{
    const int bk = ROW_BYTES / (int)tc_elem_bytes(p);
    return mode_of(L, p) == MODE_GENERIC ? L->Kp / bk : L->KH * L->KW * (L->Cp / bk);
}

bool aligned16(const void *ptr, int64_t ldp, int64_t ldn, int esz)
{
    return ((uintptr_t)ptr & 15) == 0 && (ldp * esz) % 16 == 0 && (ldn * esz) % 16 == 0;
}

} // namespace

extern "C" void conv2d_tc_pack(const conv2d *L, int c_from, int c_take, tc_precision p, void *dst)
{
    const int Cp = conv_tc_cp(c_take), Kp = conv_tc_kp(c_take, L->KH, L->KW), taps = L->KH * L->KW;
    for (int oc = 0; oc < L->OC; oc++)
        for (int k = 0; k < Kp; k++) {
            const int tap = k / Cp, c = k - tap * Cp;
            float v = 0.0f;
            if (tap < taps && c < c_take) v = L->weight[((size_t)oc * L->C + c_from + c) * taps + tap];
            tc_store(p, dst, (size_t)oc * Kp + k, v);
        }
}

/*
 * The choice. Time on the GPU is modelled as the busiest multiprocessor's share of the tiles, each
 * tile costing its multiply-adds at the tile's efficiency (smaller tiles load more per mma), plus,
 * for a split, the workspace traffic: partial sums written and read back in fp32. Units: one
 * multiprocessor's multiply-adds. At ~2e12 multiply-adds/s per multiprocessor (16-bit mma.sync,
 * about 55% of an H100's peak) against ~3 TB/s of DRAM for the whole GPU, a byte spread over the
 * GPU costs 2e12 x sms / 3e12 multiply-adds of one multiprocessor; the workspace of one layer (at
 * most a few tens of MB, written and read back at once) mostly stays in the 50 MB L2, which is
 * taken as 3 times faster (splits whose workspace passes 32 MB are not taken). bench/predict_tc.py
 * ports this to predict whole forward passes.
 */
extern "C" tc_config conv2d_tc_choose(const conv_tc *L, int P, int sms)
{
    tc_config best = {TC_TILE_64x64, 1};
    if (P < 1 || sms < 1) return best;
    /* GENERIC and tf32 vs 16-bit differ only in the k-block; the choice takes the 16-bit one */
    if (mode_of(L, TC_BF16) == MODE_GENERIC) return best;
    const double eff[TC_TILES] = {1.0, 0.85, 0.7};
    const double byte_macs = 2e12 * sms / 3e12 / 3.0;
    const int kb = kblocks_of(L, TC_BF16);
    double best_cost = 1e300;
    for (int t = 0; t < TC_TILES; t++) {
        const double tiles = (double)((P + tile_bm[t] - 1) / tile_bm[t]) * ((L->OC + tile_bn[t] - 1) / tile_bn[t]);
        for (int s = 1; s <= MAX_SPLITS && s * 4 <= kb; s = s < 4 ? s + 1 : s * 2) {
            if (s > 1 && tiles >= sms) break; /* splitting pays only where the tiles leave SMs idle */
            if (s > 1 && 4.0 * s * P * L->OC > 32e6) break; /* a workspace that would not stay in L2 */
            const double per_sm = ceil(tiles * s / sms);
            double cost = per_sm * tile_bm[t] * tile_bn[t] * (32.0 * kb / s) / eff[t];
            if (s > 1) cost += byte_macs * 4.0 * 2.0 * s * (double)P * L->OC / sms;
            if (cost < best_cost * 0.98) { /* a clear gain, or the larger tile and fewer splits */
                best_cost = cost;
                best.tile = (tc_tile)t;
                best.splits = s;
            }
        }
    }
    return best;
}

extern "C" int conv2d_tc_init(void)
{
    for (auto &by_prec : kernels)
        for (auto &by_tile : by_prec)
            for (kernel_entry &k : by_tile) {
                if (!k.fn || k.attr_set) continue;
                const cudaError_t e = cudaFuncSetAttribute(k.fn, cudaFuncAttributeMaxDynamicSharedMemorySize, k.smem);
                if (e != cudaSuccess) return (int)e;
                k.attr_set = true;
            }
    return 0;
}

extern "C" size_t conv2d_tc_workspace_floats(tc_config cfg, int P, int OC)
{
    return cfg.splits > 1 ? (size_t)cfg.splits * P * OC : 0;
}

extern "C" void conv2d_tc_name(tc_config cfg, tc_precision p, char *buf, size_t len)
{
    if (cfg.splits > 1) snprintf(buf, len, "tc%s/split%d %s", tile_names[cfg.tile], cfg.splits, tc_precision_name(p));
    else snprintf(buf, len, "tc%s %s", tile_names[cfg.tile], tc_precision_name(p));
}

extern "C" int conv2d_tc_cuda(const conv_tc *L, tc_precision p, tc_config cfg, tc_tensor in, const tc_tensor *res,
                              tc_tensor out, int out_f32, const float *bias, size_t bias_ldn, float *workspace,
                              dl_stream s)
{
    const int OH = conv_out_size(in.h, L->KH, L->p.stride, L->p.pad, L->p.dilation);
    const int OW = conv_out_size(in.w, L->KW, L->p.stride, L->p.pad, L->p.dilation);
    const int esz = (int)tc_elem_bytes(p), mode = mode_of(L, p);
    const int64_t P = (int64_t)in.n * OH * OW;
    if ((unsigned)p > TC_BF16 || (unsigned)cfg.tile >= TC_TILES || cfg.splits < 1 || cfg.splits > MAX_SPLITS ||
        in.c != L->Cp || L->Cp % 8 || L->Kp % 32 || L->Kp < L->KH * L->KW * L->Cp || OH < 1 || OW < 1 ||
        out.n != in.n || out.h != OH || out.w != OW || out.c != L->OC || P > INT32_MAX - 128 ||
        (mode == MODE_GENERIC && cfg.tile != TC_TILE_64x64) || !aligned16(in.data, (int64_t)in.ldp, (int64_t)in.ldn, esz) ||
        ((uintptr_t)L->weight & 15) || (cfg.splits > 1 && !workspace) ||
        (res && (res->n != in.n || res->h != OH || res->w != OW || res->c != L->OC)))
        return (int)cudaErrorInvalidValue;
    if (P == 0) return (int)cudaSuccess;
    tc_args a = {};
    a.in = static_cast<const unsigned char *>(in.data);
    a.w = static_cast<const unsigned char *>(L->weight);
    a.res = res ? static_cast<const unsigned char *>(res->data) : nullptr;
    a.bias = bias ? bias : L->bias;
    a.out = static_cast<unsigned char *>(out.data);
    a.ws = workspace;
    a.H = in.h, a.W = in.w, a.Cp = L->Cp, a.OH = OH, a.OW = OW, a.OC = L->OC, a.KH = L->KH, a.KW = L->KW;
    a.stride = L->p.stride, a.pad = L->p.pad, a.dil = L->p.dilation, a.relu = L->relu, a.out_f32 = out_f32;
    a.P = (int)P, a.Kp = L->Kp;
    a.kblocks = kblocks_of(L, p);
    a.cblocks = mode == MODE_GENERIC ? 0 : L->Cp / (ROW_BYTES / esz);
    a.splits = cfg.splits < a.kblocks ? cfg.splits : a.kblocks > 0 ? a.kblocks : 1;
    a.in_ldn = (int64_t)in.ldn, a.in_ldp = (int64_t)in.ldp;
    a.res_ldn = res ? (int64_t)res->ldn : 0, a.res_ldp = res ? (int64_t)res->ldp : 0;
    a.out_ldn = (int64_t)out.ldn, a.out_ldp = (int64_t)out.ldp;
    a.bias_ldn = (int64_t)bias_ldn;
    a.vec_res = res && aligned16(res->data, a.res_ldp, a.res_ldn, esz) && L->OC % 8 == 0;
    a.vec_out = aligned16(out.data, a.out_ldp, a.out_ldn, out_f32 ? 4 : esz) && L->OC % 8 == 0;
    kernel_entry &k = kernels[p][cfg.tile][mode == MODE_FAST ? 0 : mode == MODE_ONE ? 1 : 2];
    if (!k.attr_set) { /* over 48 KB of dynamic shared memory needs the opt-in, once per kernel */
        const cudaError_t e = cudaFuncSetAttribute(k.fn, cudaFuncAttributeMaxDynamicSharedMemorySize, k.smem);
        if (e != cudaSuccess) return (int)e;
        k.attr_set = true;
    }
    const int bm = tile_bm[cfg.tile], bn = tile_bn[cfg.tile];
    const int m_tiles = (int)((P + bm - 1) / bm);
    /* x: output-channel tiles (neighbouring blocks share their pixels' A), y: pixel tiles, z: splits */
    for (int m = 0; m < m_tiles; m += 65535) {
        a.m_tile0 = m;
        const dim3 grid((unsigned)((L->OC + bn - 1) / bn), (unsigned)(m_tiles - m < 65535 ? m_tiles - m : 65535),
                        (unsigned)a.splits);
        tc_kernel_fn fn = k.fn;
        DL_LAUNCH(fn, grid, k.threads, k.smem, s)(a);
    }
    if (a.splits > 1) {
        tc_kernel_fn red = reducers[p];
        const int64_t items = P * ((L->OC + 7) / 8);
        DL_LAUNCH(red, grid_blocks(items, 256), 256, 0, s)(a);
    }
    return (int)cudaGetLastError();
}
