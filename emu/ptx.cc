/*
 * ptx.cc - the emulated GPU's warp-wide operations, lane by lane as the PTX ISA and the CUDA C++
 * guide define them: shuffles, votes, __syncwarp, and (for the tensor-core kernels) cp.async,
 * ldmatrix and mma.sync. tests/test_cuda_warp.cu checks each against the ISA's description,
 * written down there independently (the shuffles' pseudocode, the fragment layout tables).
 *
 * A warp operation is a meeting: every lane of its mask must reach it (warp_collective, the lanes
 * that arrive first wait as fibers); the last lane computes all the lanes' results. A lane outside
 * the mask, a mask naming lanes the block does not have, a lane reading from a lane that did not
 * take part, lanes meeting with the same mask in different operations, lanes waiting for lanes
 * that never come: each is a fault naming the kernel, as is a misaligned or non-shared address
 * where the instruction needs one.
 */
#include <stdio.h>
#include <string.h>

#include "emu_exec.h"

namespace dl_emu {

static unsigned lanes_of_warp(const worker &w, int warp)
{
    const int n = w.nthreads - warp * 32;
    return n >= 32 ? 0xffffffffu : (1u << n) - 1;
}

void warp_collective(const char *op, unsigned mask, const void *in, void *out, warp_compute fn)
{
    emu_thread &t = current_thread(op);
    worker &w = *tl_worker;
    w.used_sync = true;
    const int lane = t.linear & 31, warp = t.linear >> 5;
    if (!(mask >> lane & 1))
        block_fault(w, cudaErrorLaunchFailure, "thread %d (lane %d) calls %s with mask 0x%08x, which leaves it out",
                    t.linear, lane, op, mask);
    if (mask & ~lanes_of_warp(w, warp))
        block_fault(w, cudaErrorLaunchFailure,
                    "thread %d calls %s with mask 0x%08x, naming lanes its warp does not have (a block of %d threads)",
                    t.linear, op, mask, w.nthreads);
    if (w.plain_direct) plain_sync_fault(w, op);
    warp_group *g = nullptr, *spare = nullptr;
    for (warp_group &c : w.groups[warp]) {
        if (!c.mask) {
            if (!spare) spare = &c;
        } else if (c.mask == mask) {
            g = &c;
            break;
        }
        /* other masks, even overlapping ones, are other meetings: a lane waits in one at a time,
         * and one that never completes shows as a block that can go no further */
    }
    if (!g) {
        if (!spare)
            block_fault(w, cudaErrorLaunchFailure, "warp %d has more than %d warp operations pending at once", warp,
                        (int)WARP_GROUPS);
        g = spare;
        g->mask = mask;
        g->arrived = 0;
        g->op = op;
        g->fn = fn;
    } else if (g->fn != fn) {
        block_fault(w, cudaErrorLaunchFailure,
                    "lanes of warp %d disagree: lane %d calls %s while lanes 0x%08x wait in %s", warp, lane, op,
                    g->arrived, g->op);
    }
    g->in[lane] = in;
    g->out[lane] = out;
    g->arrived |= 1u << lane;
    if (g->arrived != mask) {
        t.state = T_WARP;
        t.warp_op = op;
        t.warp_mask = mask;
        w.n_warp++;
        yield_to_scheduler(w, t);
        return;
    }
    g->fn(g->in, g->out, mask, warp);
    /* the others go on, in an order drawn from the schedule */
    const unsigned a = w.L->seed ? (unsigned)(w.rng >> 7) * 2 + 1 : 1, c = w.L->seed ? (unsigned)(w.rng >> 40) : 0;
    w.rng = w.rng * 6364136223846793005ull + 1442695040888963407ull;
    for (unsigned i = 0; i < 32; i++) {
        const unsigned l = (a * i + c) & 31;
        if (!(mask >> l & 1) || (int)l == lane) continue;
        emu_thread &o = w.threads[warp * 32 + (int)l];
        o.state = T_READY;
        w.n_warp--;
        w.push_ready(o);
    }
    g->mask = g->arrived = 0;
}

/* ------------------------------------------------------------------ shuffles */

struct shfl_in {
    unsigned long long value;
    int mode, arg, width;
};

static const char *const shfl_names[4] = {"__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync"};

/* The lane whose value lane l receives (CUDA C++ guide, "Warp Shuffle Functions"): the warp is cut
 * into segments of width lanes; up/down/xor that would leave the segment (xor: towards a later
 * one) give the lane its own value. Only the low 5 bits of the lane operand count (PTX's b[4:0]). */
static int shfl_source(int l, int mode, int arg, int width)
{
    const int seg = l & ~(width - 1);
    switch (mode) {
    case 0: return seg + (arg & (width - 1));
    case 1: {
        const int s = l - (arg & 31);
        return s < seg ? l : s;
    }
    case 2: {
        const int s = l + (arg & 31);
        return s >= seg + width ? l : s;
    }
    default: {
        const int s = l ^ (arg & 31);
        return s >= seg + width ? l : s;
    }
    }
}

static void shfl_compute(const void *const in[32], void *const out[32], unsigned mask, int warp)
{
    worker &w = *tl_worker;
    for (int l = 0; l < 32; l++) {
        if (!(mask >> l & 1)) continue;
        const shfl_in &a = *static_cast<const shfl_in *>(in[l]);
        if (a.width < 1 || a.width > 32 || (a.width & (a.width - 1)))
            block_fault(w, cudaErrorLaunchFailure, "%s in warp %d: width %d is not a power of 2 up to 32",
                        shfl_names[a.mode & 3], warp, a.width);
        const int s = shfl_source(l, a.mode, a.arg, a.width);
        if (!(mask >> s & 1))
            block_fault(
                w, cudaErrorLaunchFailure,
                "%s in warp %d: lane %d reads lane %d, which is not in the mask 0x%08x (its value is undefined)",
                shfl_names[a.mode & 3], warp, l, s, mask);
        *static_cast<unsigned long long *>(out[l]) = static_cast<const shfl_in *>(in[s])->value;
    }
}

} // namespace dl_emu

using namespace dl_emu;

extern "C" unsigned long long dl_emu_shfl(unsigned int mask, unsigned long long value, int mode, int lane_or_delta,
                                          int width)
{
    shfl_in a{value, mode & 3, lane_or_delta, width};
    unsigned long long r = 0;
    warp_collective(shfl_names[mode & 3], mask, &a, &r, shfl_compute);
    return r;
}

/* ------------------------------------------------------------------ votes, __syncwarp */

static void ballot_compute(const void *const in[32], void *const out[32], unsigned mask, int)
{
    unsigned b = 0;
    for (int l = 0; l < 32; l++)
        if ((mask >> l & 1) && *static_cast<const int *>(in[l])) b |= 1u << l;
    for (int l = 0; l < 32; l++)
        if (mask >> l & 1) *static_cast<unsigned *>(out[l]) = b;
}

static unsigned ballot(const char *op, unsigned mask, int predicate)
{
    const int p = predicate != 0;
    unsigned r = 0;
    warp_collective(op, mask, &p, &r, ballot_compute);
    return r;
}

extern "C" unsigned int __ballot_sync(unsigned int mask, int predicate)
{
    return ballot("__ballot_sync", mask, predicate);
}
extern "C" int __any_sync(unsigned int mask, int predicate) { return ballot("__any_sync", mask, predicate) != 0; }
extern "C" int __all_sync(unsigned int mask, int predicate) { return ballot("__all_sync", mask, predicate) == mask; }

static void nothing_compute(const void *const *, void *const *, unsigned, int) {}

extern "C" void __syncwarp(unsigned int mask)
{
    warp_collective("__syncwarp", mask, nullptr, nullptr, nothing_compute);
}

/* The lanes executing this together: with independent thread scheduling that may be as few as
 * the caller alone, which is what the emulator answers (code that needs more must say so with a
 * mask and a _sync operation). */
extern "C" unsigned int __activemask(void) { return 1u << (current_thread("__activemask").linear & 31); }

/* ------------------------------------------------------------------ cp.async */

namespace dl_emu {

static bool in_shared(const worker &w, const void *p, size_t bytes)
{
    const unsigned char *c = static_cast<const unsigned char *>(p);
    return (c >= w.smem_static && c + bytes <= w.smem_static + STATIC_SMEM_LIMIT) ||
           (c >= w.smem_dynamic && c + bytes <= w.smem_dynamic + w.L->smem);
}

static void cp_do(const cp_async_op &c)
{
    if (c.src_bytes) memcpy(c.dst, c.src, c.src_bytes);
    if (c.src_bytes < c.bytes) memset(static_cast<char *>(c.dst) + c.src_bytes, 0, c.bytes - c.src_bytes);
}

void cp_async_drain(emu_thread &t, size_t keep)
{
    const size_t groups = t.cp_group_ends.size();
    if (groups <= keep) return;
    const size_t done_groups = groups - keep, upto = t.cp_group_ends[done_groups - 1];
    for (size_t i = 0; i < upto; i++) cp_do(t.cp_pending[i]);
    t.cp_pending.erase(t.cp_pending.begin(), t.cp_pending.begin() + (long)upto);
    t.cp_group_ends.erase(t.cp_group_ends.begin(), t.cp_group_ends.begin() + (long)done_groups);
    for (size_t &e : t.cp_group_ends) e -= upto;
}

} // namespace dl_emu

/* cp.async.ca/cg.shared.global [dst], [src], cp_size, src_size: dst gets src_size bytes of src and
 * zeros up to cp_size, but only when a later cp.async.wait_group (or wait_all) lets the copy
 * finish; until then dst keeps what it had, so a kernel that reads it early reads old data. */
extern "C" void dl_emu_cp_async(void *dst, const void *src, unsigned cp_size, unsigned src_size)
{
    emu_thread &t = current_thread("cp.async");
    worker &w = *tl_worker;
    if (cp_size != 4 && cp_size != 8 && cp_size != 16)
        block_fault(w, cudaErrorIllegalInstruction, "cp.async of %u bytes (4, 8 or 16)", cp_size);
    if (src_size > cp_size)
        block_fault(w, cudaErrorIllegalInstruction, "cp.async with a source size %u over its copy size %u", src_size,
                    cp_size);
    if (((uintptr_t)dst | (uintptr_t)src) & (cp_size - 1))
        block_fault(w, cudaErrorMisalignedAddress, "thread %d: cp.async of %u bytes from %p to %p, not %u-byte aligned",
                    t.linear, cp_size, src, dst, cp_size);
    if (!in_shared(w, dst, cp_size))
        block_fault(w, cudaErrorIllegalAddress, "thread %d: cp.async to %p, outside the block's shared memory",
                    t.linear, dst);
    if (src_size && !is_device_range(src, src_size))
        block_fault(w, cudaErrorIllegalAddress, "thread %d: cp.async from %p, outside device memory", t.linear, src);
    t.cp_pending.push_back(cp_async_op{dst, src, cp_size, src_size});
}

extern "C" void dl_emu_cp_async_commit(void)
{
    emu_thread &t = current_thread("cp.async.commit_group");
    t.cp_group_ends.push_back(t.cp_pending.size());
}

/* cp.async.wait_group n: all but the newest n committed groups are complete. */
extern "C" void dl_emu_cp_async_wait(int n)
{
    emu_thread &t = current_thread("cp.async.wait_group");
    cp_async_drain(t, n < 0 ? 0 : (size_t)n);
}

/* cp.async.wait_all: every copy of the thread is complete, committed or not. */
extern "C" void dl_emu_cp_async_wait_all(void)
{
    emu_thread &t = current_thread("cp.async.wait_all");
    dl_emu_cp_async_commit();
    cp_async_drain(t, 0);
}

/* ------------------------------------------------------------------ ldmatrix */

namespace dl_emu {

struct ldmatrix_in {
    const void *row; /* this lane's row address (lanes 8j..8j+7 give matrix j's rows 0..7) */
    int num, trans;
};

/* ldmatrix.sync.aligned.m8n8.{x1,x2,x4}{.trans}.shared.b16: matrix j is 8 rows of 8 16-bit
 * elements, row r at the address lane 8 j + r gives. Lane l receives, in its register j, two
 * elements of matrix j: row l / 4, columns 2 (l % 4) and 2 (l % 4) + 1 (the first in the low half);
 * with .trans the matrix is read by columns: column l / 4, rows 2 (l % 4) and 2 (l % 4) + 1. */
static void ldmatrix_compute(const void *const in[32], void *const out[32], unsigned mask, int warp)
{
    worker &w = *tl_worker;
    const ldmatrix_in &first = *static_cast<const ldmatrix_in *>(in[0]);
    if (mask != 0xffffffffu)
        block_fault(w, cudaErrorLaunchFailure, "ldmatrix in warp %d: every lane of the warp must execute it (.aligned)",
                    warp);
    for (int l = 1; l < 32; l++) {
        const ldmatrix_in &o = *static_cast<const ldmatrix_in *>(in[l]);
        if (o.num != first.num || o.trans != first.trans)
            block_fault(w, cudaErrorLaunchFailure, "ldmatrix in warp %d: lanes 0 and %d use different forms", warp, l);
    }
    const uint16_t *rows[4][8];
    for (int j = 0; j < first.num; j++)
        for (int r = 0; r < 8; r++) {
            const void *p = static_cast<const ldmatrix_in *>(in[8 * j + r])->row;
            if ((uintptr_t)p & 15)
                block_fault(w, cudaErrorMisalignedAddress,
                            "ldmatrix in warp %d: lane %d's row address %p is not 16-byte "
                            "aligned",
                            warp, 8 * j + r, p);
            if (!in_shared(w, p, 16))
                block_fault(w, cudaErrorIllegalAddress,
                            "ldmatrix in warp %d: lane %d's row address %p is not in the "
                            "block's shared memory",
                            warp, 8 * j + r, p);
            rows[j][r] = static_cast<const uint16_t *>(p);
        }
    for (int l = 0; l < 32; l++) {
        uint32_t *r = static_cast<uint32_t *>(out[l]);
        const int q = l / 4, e = 2 * (l % 4);
        for (int j = 0; j < first.num; j++) {
            const uint16_t lo = first.trans ? rows[j][e][q] : rows[j][q][e];
            const uint16_t hi = first.trans ? rows[j][e + 1][q] : rows[j][q][e + 1];
            r[j] = (uint32_t)lo | (uint32_t)hi << 16;
        }
    }
}

} // namespace dl_emu

extern "C" void dl_emu_ldmatrix(uint32_t *r, const void *row, int num, int trans)
{
    ldmatrix_in a{row, num, trans};
    uint32_t got[4] = {0, 0, 0, 0};
    warp_collective(trans ? "ldmatrix.trans" : "ldmatrix", 0xffffffffu, &a, got, ldmatrix_compute);
    for (int j = 0; j < num; j++) r[j] = got[j];
}

/* ------------------------------------------------------------------ mma.sync */

namespace dl_emu {

/* The operand types, as 16- or 32-bit patterns to float. */
static float from_bf16(uint32_t h) { return __uint_as_float(h << 16); }

static float from_f16(uint32_t h)
{
    const uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return __uint_as_float(sign | 0x7f800000u | man << 13); /* inf, NaN */
    if (exp) return __uint_as_float(sign | (exp + 112) << 23 | man << 13);   /* normal */
    return (sign ? -1.0f : 1.0f) * (float)man * 0x1p-24f;                    /* subnormal, zero */
}

/* tf32: an fp32 pattern of which the instruction reads sign, exponent and 10 mantissa bits. */
static float from_tf32(uint32_t x) { return __uint_as_float(x & 0xffffe000u); }

enum { MMA_M16N8K16_BF16, MMA_M16N8K16_F16, MMA_M16N8K8_TF32, MMA_M16N8K8_BF16, MMA_M16N8K8_F16 };

struct mma_in {
    uint32_t a[4], b[2];
    float c[4];
    int kind;
};

/* The element (row, col) of A, B or C/D that fragment element i of lane l holds (PTX ISA,
 * "Matrix Fragments for mma.m16n8k16 / mma.m16n8k8 with floating point type"). */
static void frag_a(int kind, int l, int i, int *row, int *col)
{
    const int g = l >> 2, t = l & 3;
    if (kind == MMA_M16N8K8_TF32) {
        *row = g + 8 * (i & 1);
        *col = t + 4 * (i >> 1);
    } else {
        *row = g + 8 * ((i >> 1) & 1);
        *col = 2 * t + (i & 1) + 8 * (i >> 2);
    }
}

static void frag_b(int kind, int l, int i, int *row, int *col)
{
    const int g = l >> 2, t = l & 3;
    *col = g;
    *row = kind == MMA_M16N8K8_TF32 ? t + 4 * i : 2 * t + (i & 1) + 8 * (i >> 1);
}

static void frag_c(int l, int i, int *row, int *col)
{
    *row = (l >> 2) + 8 * (i >> 1);
    *col = 2 * (l & 3) + (i & 1);
}

/* D = A B + C for a warp. The products of the 16-bit and tf32 operands are exact in fp32; they
 * are added to C one by one, k ascending, in fp32. (The hardware's order and internal precision
 * of that sum are not specified by PTX: tests should allow for rounding there.) */
static void mma_compute(const void *const in[32], void *const out[32], unsigned mask, int warp)
{
    worker &w = *tl_worker;
    const int kind = static_cast<const mma_in *>(in[0])->kind;
    if (mask != 0xffffffffu)
        block_fault(w, cudaErrorLaunchFailure, "mma.sync in warp %d: every lane of the warp must execute it (.aligned)",
                    warp);
    const int K = kind == MMA_M16N8K16_BF16 || kind == MMA_M16N8K16_F16 ? 16 : 8;
    const int na = kind == MMA_M16N8K8_TF32 ? 4 : K / 2, nb = kind == MMA_M16N8K8_TF32 ? 2 : K / 4;
    float A[16][16], B[16][8], C[16][8];
    for (int l = 0; l < 32; l++) {
        const mma_in &m = *static_cast<const mma_in *>(in[l]);
        if (m.kind != kind)
            block_fault(w, cudaErrorLaunchFailure, "mma.sync in warp %d: lanes 0 and %d use different shapes or types",
                        warp, l);
        int row, col;
        for (int i = 0; i < na; i++) {
            frag_a(kind, l, i, &row, &col);
            if (kind == MMA_M16N8K8_TF32)
                A[row][col] = from_tf32(m.a[i]);
            else {
                const uint32_t h = m.a[i / 2] >> (16 * (i & 1)) & 0xffff;
                A[row][col] = kind == MMA_M16N8K16_F16 || kind == MMA_M16N8K8_F16 ? from_f16(h) : from_bf16(h);
            }
        }
        for (int i = 0; i < nb; i++) {
            frag_b(kind, l, i, &row, &col);
            if (kind == MMA_M16N8K8_TF32)
                B[row][col] = from_tf32(m.b[i]);
            else {
                const uint32_t h = m.b[i / 2] >> (16 * (i & 1)) & 0xffff;
                B[row][col] = kind == MMA_M16N8K16_F16 || kind == MMA_M16N8K8_F16 ? from_f16(h) : from_bf16(h);
            }
        }
        for (int i = 0; i < 4; i++) {
            frag_c(l, i, &row, &col);
            C[row][col] = m.c[i];
        }
    }
    for (int l = 0; l < 32; l++) {
        float *d = static_cast<float *>(out[l]);
        for (int i = 0; i < 4; i++) {
            int row, col;
            frag_c(l, i, &row, &col);
            float s = C[row][col];
            for (int k = 0; k < K; k++) s += A[row][k] * B[k][col];
            d[i] = s;
        }
    }
}

static const char *const mma_names[] = {"mma.sync.m16n8k16.bf16", "mma.sync.m16n8k16.f16", "mma.sync.m16n8k8.tf32",
                                        "mma.sync.m16n8k8.bf16", "mma.sync.m16n8k8.f16"};

} // namespace dl_emu

extern "C" void dl_emu_mma(int kind, float *d, const uint32_t *a, const uint32_t *b, const float *c)
{
    mma_in m{};
    const int na = kind == MMA_M16N8K8_TF32 || kind == MMA_M16N8K16_BF16 || kind == MMA_M16N8K16_F16 ? 4 : 2;
    const int nb = kind == MMA_M16N8K8_TF32 || kind == MMA_M16N8K16_BF16 || kind == MMA_M16N8K16_F16 ? 2 : 1;
    for (int i = 0; i < na; i++) m.a[i] = a[i];
    for (int i = 0; i < nb; i++) m.b[i] = b[i];
    for (int i = 0; i < 4; i++) m.c[i] = c[i];
    m.kind = kind;
    float r[4];
    warp_collective(mma_names[kind < 0 || kind > 4 ? 0 : kind], 0xffffffffu, &m, r, mma_compute);
    for (int i = 0; i < 4; i++) d[i] = r[i];
}
