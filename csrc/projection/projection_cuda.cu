// CUDA pixel_corners: one thread per point, grid-stride (arithmetic in corners_rules.h, the
// same as the CPU twin; nvcc runs with --fmad=false so nothing is contracted differently).
#include <cuda_runtime.h>

#include "common/cuda_utils.cuh"
#include "projection/corners_rules.h"
#include "projection/projection.h"

namespace m3ad {
namespace {

template <typename T, bool Backward>
__global__ void corners_kernel(PixelCornersParams p) {
  const int64_t n = p.B * p.N, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += stride) {
    if (Backward) corners::backward<T>(p, e);
    else corners::forward<T>(p, e);
  }
}

template <bool Backward>
void launch(const PixelCornersParams& p, const Device& dev) {
  if (p.B * p.N == 0) return;
  DeviceGuard guard(dev.index);
  dispatch_float(p.dtype, [&](auto tag) {
    corners_kernel<decltype(tag), Backward><<<blocks_for(p.B * p.N, 256), 256, 0, as_stream(dev)>>>(p);
    M3AD_CHECK_LAUNCH("pixel_corners");
    return 0;
  });
}

}  // namespace

void pixel_corners_cuda(const PixelCornersParams& p, const Device& dev) { launch<false>(p, dev); }
void pixel_corners_backward_cuda(const PixelCornersParams& p, const Device& dev) { launch<true>(p, dev); }

}  // namespace m3ad
