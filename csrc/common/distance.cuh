// Device-side distance in the exact order of common/kdtree.h (nvcc runs with --fmad=false).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "common/launch.h"

namespace m3ad {

template <typename T>
__device__ __forceinline__ T axis_term_dev(T diff, int norm) {
  return norm == 1 ? (diff < 0 ? -diff : diff) : diff * diff;
}

// kDim > 0 unrolls a fixed dimension; kDim == 0 loops over the runtime D.
template <typename T, int kDim>
__device__ __forceinline__ T point_dist(const T* a, const T* b, int64_t D, int norm) {
  const int64_t n = kDim > 0 ? kDim : D;
  T d = axis_term_dev(a[0] - b[0], norm);
#pragma unroll
  for (int64_t j = 1; j < (kDim > 0 ? kDim : n); ++j) d = d + axis_term_dev(a[j] - b[j], norm);
  return d;
}


}  // namespace m3ad
