/*
 * cuda_ptx.h - the warp-level PTX instructions of the tensor-core kernels, as functions that read
 * the same in both builds: nvcc gets the instruction itself (inline asm), the emulated build
 * (make EMU=1) its lane-by-lane emulation (emu/ptx.cc). tests/test_cuda_warp.cu checks both
 * against the PTX ISA's fragment tables.
 *
 *   dl_ldmatrix_x{1,2,4}[_trans](r, row)   ldmatrix.sync.aligned.m8n8.x{1,2,4}{.trans}.shared.b16:
 *       lane 8 j + i gives the address of row i of matrix j (16-byte aligned, in shared memory);
 *       lane l gets, in r[j], row l / 4, columns 2 (l % 4) and 2 (l % 4) + 1 of matrix j (the
 *       first in the low half); with _trans the same of the transposed matrix.
 *   dl_mma_m16n8k16_{bf16,f16}(d, a, b, c)  mma.sync.aligned.m16n8k16.row.col.f32.T.T.f32:
 *       a: 4 registers (8 elements), b: 2 (4), c and d: 4 floats; layout: the PTX ISA's
 *       "Matrix Fragments for mma.m16n8k16 with floating point type".
 *   dl_mma_m16n8k8_tf32(d, a, b, c)         mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32:
 *       a: 4 registers of fp32 patterns (the low 13 mantissa bits are not read), b: 2.
 *   dl_mma_m16n8k8_{bf16,f16}(d, a, b, c)   a: 2 registers, b: 1.
 *   dl_cp_async_{4,8,16}(dst, src, src_bytes)  cp.async.{ca,ca,cg}.shared.global: dst (shared)
 *       gets src_bytes of src and zeros up to the size; it is complete only after a
 *       dl_cp_async_wait<n>() leaving it out of the newest n committed groups, or
 *       dl_cp_async_wait_all(); other threads see it after that and a barrier.
 *   dl_cp_async_commit()                    cp.async.commit_group
 *
 * Every lane of the warp must call the ldmatrix and mma functions together (.sync.aligned).
 * On a real GPU they need sm_80 (cp.async, bf16 and tf32 mma) or sm_75 (ldmatrix, f16 mma).
 */
#ifndef DL_CUDA_PTX_H
#define DL_CUDA_PTX_H

#include <stdint.h>

#include "cuda_kernel.h"

#ifdef DL_EMU
#define DL_PTX static inline
#else
#define DL_PTX static __device__ __forceinline__
/* shared-state-space address of a generic pointer into shared memory */
DL_PTX uint32_t dl_smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
#endif

/* ------------------------------------------------------------------ ldmatrix */

#ifdef DL_EMU
DL_PTX void dl_ldmatrix_x1(uint32_t r[1], const void *row) { dl_emu_ldmatrix(r, row, 1, 0); }
DL_PTX void dl_ldmatrix_x2(uint32_t r[2], const void *row) { dl_emu_ldmatrix(r, row, 2, 0); }
DL_PTX void dl_ldmatrix_x4(uint32_t r[4], const void *row) { dl_emu_ldmatrix(r, row, 4, 0); }
DL_PTX void dl_ldmatrix_x1_trans(uint32_t r[1], const void *row) { dl_emu_ldmatrix(r, row, 1, 1); }
DL_PTX void dl_ldmatrix_x2_trans(uint32_t r[2], const void *row) { dl_emu_ldmatrix(r, row, 2, 1); }
DL_PTX void dl_ldmatrix_x4_trans(uint32_t r[4], const void *row) { dl_emu_ldmatrix(r, row, 4, 1); }
#else
/* .trans is the transposing form's suffix, "" the plain one's */
#define DL_LDMATRIX_X1(fn, trans)                                                                                      \
    DL_PTX void fn(uint32_t r[1], const void *row)                                                                     \
    {                                                                                                                  \
        asm volatile("ldmatrix.sync.aligned.m8n8.x1" trans ".shared.b16 {%0}, [%1];\n"                                 \
                     : "=r"(r[0])                                                                                      \
                     : "r"(dl_smem_addr(row)));                                                                        \
    }
#define DL_LDMATRIX_X2(fn, trans)                                                                                      \
    DL_PTX void fn(uint32_t r[2], const void *row)                                                                     \
    {                                                                                                                  \
        asm volatile("ldmatrix.sync.aligned.m8n8.x2" trans ".shared.b16 {%0, %1}, [%2];\n"                             \
                     : "=r"(r[0]), "=r"(r[1])                                                                          \
                     : "r"(dl_smem_addr(row)));                                                                        \
    }
#define DL_LDMATRIX_X4(fn, trans)                                                                                      \
    DL_PTX void fn(uint32_t r[4], const void *row)                                                                     \
    {                                                                                                                  \
        asm volatile("ldmatrix.sync.aligned.m8n8.x4" trans ".shared.b16 {%0, %1, %2, %3}, [%4];\n"                     \
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])                                                  \
                     : "r"(dl_smem_addr(row)));                                                                        \
    }
DL_LDMATRIX_X1(dl_ldmatrix_x1, "")
DL_LDMATRIX_X2(dl_ldmatrix_x2, "")
DL_LDMATRIX_X4(dl_ldmatrix_x4, "")
DL_LDMATRIX_X1(dl_ldmatrix_x1_trans, ".trans")
DL_LDMATRIX_X2(dl_ldmatrix_x2_trans, ".trans")
DL_LDMATRIX_X4(dl_ldmatrix_x4_trans, ".trans")
#undef DL_LDMATRIX_X1
#undef DL_LDMATRIX_X2
#undef DL_LDMATRIX_X4
#endif

/* ------------------------------------------------------------------ mma.sync */

#ifdef DL_EMU
DL_PTX void dl_mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4])
{
    dl_emu_mma(0, d, a, b, c);
}
DL_PTX void dl_mma_m16n8k16_f16(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4])
{
    dl_emu_mma(1, d, a, b, c);
}
DL_PTX void dl_mma_m16n8k8_tf32(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4])
{
    dl_emu_mma(2, d, a, b, c);
}
DL_PTX void dl_mma_m16n8k8_bf16(float d[4], const uint32_t a[2], const uint32_t b[1], const float c[4])
{
    dl_emu_mma(3, d, a, b, c);
}
DL_PTX void dl_mma_m16n8k8_f16(float d[4], const uint32_t a[2], const uint32_t b[1], const float c[4])
{
    dl_emu_mma(4, d, a, b, c);
}
#else
#define DL_MMA_4_2(shape_types)                                                                                        \
    asm volatile("mma.sync.aligned." shape_types " {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "                     \
                 "{%10, %11, %12, %13};\n"                                                                             \
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])                                                      \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),  \
                   "f"(c[3]))
#define DL_MMA_2_1(shape_types)                                                                                        \
    asm volatile("mma.sync.aligned." shape_types " {%0, %1, %2, %3}, {%4, %5}, {%6}, {%7, %8, %9, %10};\n"             \
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])                                                      \
                 : "r"(a[0]), "r"(a[1]), "r"(b[0]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]))
DL_PTX void dl_mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4])
{
    DL_MMA_4_2("m16n8k16.row.col.f32.bf16.bf16.f32");
}
DL_PTX void dl_mma_m16n8k16_f16(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4])
{
    DL_MMA_4_2("m16n8k16.row.col.f32.f16.f16.f32");
}
DL_PTX void dl_mma_m16n8k8_tf32(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4])
{
    DL_MMA_4_2("m16n8k8.row.col.f32.tf32.tf32.f32");
}
DL_PTX void dl_mma_m16n8k8_bf16(float d[4], const uint32_t a[2], const uint32_t b[1], const float c[4])
{
    DL_MMA_2_1("m16n8k8.row.col.f32.bf16.bf16.f32");
}
DL_PTX void dl_mma_m16n8k8_f16(float d[4], const uint32_t a[2], const uint32_t b[1], const float c[4])
{
    DL_MMA_2_1("m16n8k8.row.col.f32.f16.f16.f32");
}
#undef DL_MMA_4_2
#undef DL_MMA_2_1
#endif

/* ------------------------------------------------------------------ cp.async */

#ifdef DL_EMU
DL_PTX void dl_cp_async_4(void *dst, const void *src, int src_bytes)
{
    dl_emu_cp_async(dst, src, 4, (unsigned)src_bytes);
}
DL_PTX void dl_cp_async_8(void *dst, const void *src, int src_bytes)
{
    dl_emu_cp_async(dst, src, 8, (unsigned)src_bytes);
}
DL_PTX void dl_cp_async_16(void *dst, const void *src, int src_bytes)
{
    dl_emu_cp_async(dst, src, 16, (unsigned)src_bytes);
}
DL_PTX void dl_cp_async_commit(void) { dl_emu_cp_async_commit(); }
template <int N>
DL_PTX void dl_cp_async_wait(void)
{
    dl_emu_cp_async_wait(N);
}
DL_PTX void dl_cp_async_wait_all(void) { dl_emu_cp_async_wait_all(); }
#else
DL_PTX void dl_cp_async_4(void *dst, const void *src, int src_bytes)
{
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dl_smem_addr(dst)), "l"(src), "r"(src_bytes));
}
DL_PTX void dl_cp_async_8(void *dst, const void *src, int src_bytes)
{
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(dl_smem_addr(dst)), "l"(src), "r"(src_bytes));
}
DL_PTX void dl_cp_async_16(void *dst, const void *src, int src_bytes)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dl_smem_addr(dst)), "l"(src), "r"(src_bytes));
}
DL_PTX void dl_cp_async_commit(void) { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
DL_PTX void dl_cp_async_wait(void)
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}
DL_PTX void dl_cp_async_wait_all(void) { asm volatile("cp.async.wait_all;\n" ::); }
#endif

#undef DL_PTX
#endif
