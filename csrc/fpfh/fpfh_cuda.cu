// CUDA FPFH: two kernels on the caller's stream (SPFH, then the aggregation that reads the
// neighbours' SPFH), one thread per row, grid-stride loops; arithmetic shared with the CPU
// path (pair_features.h, nvcc with --fmad=false). atan2 may differ from glibc's in the last
// ulp, which can move a pair across a bin edge only when its angle lies within ~1e-16 of it.
#include <cuda_runtime.h>

#include <stdexcept>

#include "common/cuda_utils.cuh"
#include "fpfh/pair_features.h"

namespace m3ad {
namespace {

constexpr int kThreads = 128;

template <typename T>
__global__ void spfh_kernel(FpfhParams p) {
  for_each_row(p.B * p.P, [&](int64_t r) { spfh_row<T>(p, r); });
}

template <typename T>
__global__ void fpfh_kernel(FpfhParams p) {
  for_each_row(p.B * p.P, [&](int64_t r) { fpfh_row<T>(p, r); });
}

}  // namespace

void fpfh_cuda(const FpfhParams& p, const Device& dev) {
  if (p.idx32) throw std::invalid_argument("fpfh: int32 neighbour lists are CPU only");
  if (p.B == 0 || p.P == 0) return;
  DeviceGuard guard(dev.index);
  const unsigned grid = blocks_for(p.B * p.P, kThreads);
  dispatch_float(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    spfh_kernel<T><<<grid, kThreads, 0, as_stream(dev)>>>(p);
    M3AD_CHECK_LAUNCH("fpfh (spfh pass)");
    fpfh_kernel<T><<<grid, kThreads, 0, as_stream(dev)>>>(p);
    M3AD_CHECK_LAUNCH("fpfh (aggregation pass)");
    return 0;
  });
}

}  // namespace m3ad
