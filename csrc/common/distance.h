// Point distance in the exact order of common/kdtree.h, shared by the CUDA kernels and the
// host-device code of the sorted-tiles kNN (nvcc runs with --fmad=false, the host compiler with
// -ffp-contract=off, so both sides round the same operations the same way).
#pragma once
#include <cstdint>

#include "common/host_device.h"
#include "common/launch.h"

#if defined(__CUDACC__)
#define M3AD_UNROLL _Pragma("unroll")
#else
#define M3AD_UNROLL
#endif

namespace m3ad {

// One axis' share: |diff| for the L1 norm (norm 1), diff^2 for the squared Euclidean (norm 2).
template <typename T>
M3AD_HD T norm_term(T diff, int norm) {
  return norm == 1 ? (diff < 0 ? -diff : diff) : diff * diff;
}

// kDim > 0 unrolls a fixed dimension; kDim == 0 loops over the runtime D.
template <typename T, int kDim>
M3AD_HD T point_dist(const T* a, const T* b, int64_t D, int norm) {
  const int64_t n = kDim > 0 ? kDim : D;
  T d = norm_term(a[0] - b[0], norm);
  M3AD_UNROLL
  for (int64_t j = 1; j < (kDim > 0 ? kDim : n); ++j) d = d + norm_term(a[j] - b[j], norm);
  return d;
}

}  // namespace m3ad
