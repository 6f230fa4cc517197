/*
 * cuda_kernel.h - the three spellings every .cu file of the project uses for a kernel, so that one
 * source builds for a real GPU (nvcc) and for the emulated one (the host C++ compiler with emu/,
 * make EMU=1):
 *
 *     DL_LAUNCH(kernel, grid, block, smem_bytes, stream)(args...);
 *         nvcc: kernel<<<grid, block, smem_bytes, stream>>>(args...). Emulated: the launch is
 *         checked as CUDA checks it and queued on the stream with a copy of the arguments.
 *         Errors show through cudaGetLastError() in both.
 *
 *     DL_SHARED(float, As, [16][68]);
 *         nvcc: __shared__ float As[16][68] (16-byte aligned). Emulated: a reference to the
 *         running block's copy. Why not plain __shared__: the emulator must give every block its
 *         own copy, fill it with NaN at the block's start (so a read of an element no thread
 *         wrote shows) and know its size (over 48 KB is refused, as nvcc refuses it). With
 *         `#define __shared__ static thread_local` each CPU thread running blocks gets a copy, but
 *         nothing can find those copies to fill them, nor add up their sizes. A declaration
 *         macro does all three, and reads the same in both builds.
 *
 *     DL_DYNAMIC_SHARED(float, buf);
 *         The launch's dynamic shared memory (smem_bytes) as float *buf. Over 48 KB it needs
 *         cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes)
 *         first, in both builds.
 *
 * Only in .cu files (C++). Warp-level PTX (ldmatrix, mma.sync, cp.async) is in cuda_ptx.h.
 */
#ifndef DL_CUDA_KERNEL_H
#define DL_CUDA_KERNEL_H

#include <cuda_runtime.h>

#ifdef DL_EMU

#define DL_LAUNCH(kernel, grid, block, smem, stream) \
    ::dl_emu::launch_of(kernel, #kernel, dim3(grid), dim3(block), (size_t)(smem), (cudaStream_t)(stream))

#define DL_SHARED(T, name, dims)                                                                       \
    static const char dl_shared_key_##name = 0;                                                        \
    T(&name) dims = *reinterpret_cast<T(*) dims>(                                                      \
        ::dl_emu_shared_static(&dl_shared_key_##name, sizeof(T dims), alignof(T) > 16 ? alignof(T) : 16))

#define DL_DYNAMIC_SHARED(T, name) T *name = reinterpret_cast<T *>(::dl_emu_shared_dynamic())

#else

#define DL_LAUNCH(kernel, grid, block, smem, stream) kernel<<<(grid), (block), (smem), (stream)>>>

#define DL_SHARED(T, name, dims) __shared__ __align__(16) T name dims

#define DL_DYNAMIC_SHARED(T, name)                                  \
    extern __shared__ __align__(16) unsigned char dl_dynamic_smem_[]; \
    T *name = reinterpret_cast<T *>(dl_dynamic_smem_)

#endif

#endif
