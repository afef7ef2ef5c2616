// M3AD_HD marks small functions shared verbatim by the CPU and CUDA kernels, so that both sides
// perform the same operations in the same order (and so produce the same bits).
#pragma once

#if defined(__CUDACC__)
#define M3AD_HD __host__ __device__ __forceinline__
#else
#define M3AD_HD inline
#endif
