// CUDA normals: one thread per row, grid-stride loop; same arithmetic as the CPU path
// (shared code in normal_from_neighbors.h, nvcc with --fmad=false).
#include <cuda_runtime.h>

#include <stdexcept>

#include "common/cuda_utils.cuh"
#include "normals/normal_from_neighbors.h"

namespace m3ad {
namespace {

constexpr int kThreads = 128;

template <typename T>
__global__ void normals_kernel(NormalsParams p) {
  for_each_row(p.B * p.P, [&](int64_t r) { normal_row<T>(p, p.idx, r); });
}

}  // namespace

void normals_cuda(const NormalsParams& p, const Device& dev) {
  if (p.B == 0 || p.P == 0) return;
  if (p.idx32) throw std::invalid_argument("estimate_normals: int32 neighbour lists are CPU only");
  DeviceGuard guard(dev.index);
  const unsigned grid = blocks_for(p.B * p.P, kThreads);
  dispatch_float(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    normals_kernel<T><<<grid, kThreads, 0, as_stream(dev)>>>(p);
    return 0;
  });
  M3AD_CHECK_LAUNCH("estimate_normals");
}

}  // namespace m3ad
