// CUDA tiles-plan steps (tiles_plan.h): one thread per point, per tile, per super-tile.
#include <cuda_runtime.h>

#include "common/cuda_utils.cuh"
#include "knn/tiles_plan.h"

namespace m3ad {
namespace {

constexpr int kThreads = 256;
constexpr long long kMaxBlocks = (1LL << 31) - 1;

template <typename T>
__global__ void morton_codes_kernel(MortonParams p) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r < p.B * p.P) p.codes[r] = morton_code<T>(p, r / p.P, r % p.P);
}

template <typename T>
__global__ void tile_boxes_kernel(TileBoxParams p) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r < p.B * p.tiles) tile_box<T>(p, r / p.tiles, r % p.tiles);
}

template <typename T>
__global__ void super_boxes_kernel(TileBoxParams p) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r < p.B * p.super_tiles) super_box<T>(p, r / p.super_tiles, r % p.super_tiles);
}

}  // namespace

void morton_codes_cuda(const MortonParams& p, const Device& dev) {
  if (p.B * p.P == 0) return;
  DeviceGuard guard(dev.index);
  dispatch_float(p.dtype, [&](auto tag) {
    morton_codes_kernel<decltype(tag)><<<blocks_for(p.B * p.P, kThreads, kMaxBlocks), kThreads, 0, as_stream(dev)>>>(p);
    return 0;
  });
  M3AD_CHECK_LAUNCH("morton codes");
}

void tile_boxes_cuda(const TileBoxParams& p, const Device& dev) {
  if (p.B * p.tiles == 0) return;
  DeviceGuard guard(dev.index);
  cudaStream_t stream = as_stream(dev);
  dispatch_float(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    tile_boxes_kernel<T><<<blocks_for(p.B * p.tiles, kThreads, kMaxBlocks), kThreads, 0, stream>>>(p);
    super_boxes_kernel<T><<<blocks_for(p.B * p.super_tiles, kThreads, kMaxBlocks), kThreads, 0, stream>>>(p);
    return 0;
  });
  M3AD_CHECK_LAUNCH("tile boxes");
}

}  // namespace m3ad
