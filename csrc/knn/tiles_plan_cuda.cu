// CUDA tiles-plan steps (tiles_plan.h): one thread per point, per tile, per super-tile.
#include <cuda_runtime.h>

#include "common/cuda_utils.cuh"
#include "knn/tiles_plan.h"

namespace m3ad {
namespace {

constexpr int kThreads = 256;
constexpr long long kMaxBlocks = (1LL << 31) - 1;

constexpr int kFrameThreads = 256;

// A block per cloud: each thread's box over a strided share of the points, then a tree of boxes.
template <typename T>
__global__ void morton_frame_kernel(FrameParams p) {
  __shared__ T box[6][kFrameThreads];
  const int64_t b = blockIdx.x;
  const T* x = static_cast<const T*>(p.points) + b * p.P * 3;
  T lo[3], hi[3];
  frame_empty(lo, hi);
  for (int64_t i = threadIdx.x, n = clamp_len(p.lengths, b, p.P); i < n; i += kFrameThreads)
    frame_grow(lo, hi, x + i * 3, x + i * 3);
  for (int j = 0; j < 3; ++j) box[j][threadIdx.x] = lo[j], box[3 + j][threadIdx.x] = hi[j];
  for (int half = kFrameThreads / 2; half > 0; half >>= 1) {
    __syncthreads();
    if (threadIdx.x < half) {
      const T olo[3] = {box[0][threadIdx.x + half], box[1][threadIdx.x + half], box[2][threadIdx.x + half]};
      const T ohi[3] = {box[3][threadIdx.x + half], box[4][threadIdx.x + half], box[5][threadIdx.x + half]};
      frame_grow(lo, hi, olo, ohi);
      for (int j = 0; j < 3; ++j) box[j][threadIdx.x] = lo[j], box[3 + j][threadIdx.x] = hi[j];
    }
  }
  if (threadIdx.x == 0) {
    for (int j = 0; j < 3; ++j) static_cast<T*>(p.lo)[b * 3 + j] = lo[j];
    static_cast<T*>(p.scale)[b] = frame_scale(lo, hi);
  }
}

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

void morton_frame_cuda(const FrameParams& p, const Device& dev) {
  if (p.B == 0) return;
  DeviceGuard guard(dev.index);
  dispatch_float(p.dtype, [&](auto tag) {
    morton_frame_kernel<decltype(tag)><<<blocks_for(p.B, 1, kMaxBlocks), kFrameThreads, 0, as_stream(dev)>>>(p);
    return 0;
  });
  M3AD_CHECK_LAUNCH("morton frame");
}

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
