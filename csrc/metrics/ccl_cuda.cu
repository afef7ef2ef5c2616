// CUDA 8-connected component labelling: union-find over pixels (Playne & Hawick, "A New
// Algorithm for Parallel Connected-Component Labelling on GPUs", 2018). Every defect pixel
// starts as its own root; each pixel unites with its defect neighbours W, NW, N, NE (the other
// four are covered by symmetry); a union links the larger root below the smaller one with
// atomicMin, retrying when another thread got there first. Labels only ever decrease and always
// point to a pixel of the same component, so concurrent finds terminate; after the merge kernel
// every root is the component's smallest in-map index, i.e. its first pixel in raster order
// (the numbering scipy.ndimage.label uses). Labels are in-map indices (H * W < 2^31).
#include <cuda_runtime.h>

#include "common/cuda_utils.cuh"
#include "metrics/ccl.h"

namespace m3ad {
namespace metrics {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ int32_t find_root(const volatile int32_t* L, int32_t x) {
  int32_t p = L[x];
  while (p != x) {
    x = p;
    p = L[x];
  }
  return x;
}

__device__ __forceinline__ void unite(int32_t* L, int32_t a, int32_t b) {
  bool done;
  do {
    a = find_root(L, a);
    b = find_root(L, b);
    if (a < b) {
      const int32_t old = atomicMin(L + b, a);
      done = old == b;
      b = old;
    } else if (b < a) {
      const int32_t old = atomicMin(L + a, b);
      done = old == a;
      a = old;
    } else {
      done = true;
    }
  } while (!done);
}

__global__ void ccl_init(const uint8_t* __restrict__ masks, int64_t n, int64_t HW, int32_t* __restrict__ labels) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    labels[i] = masks[i] ? static_cast<int32_t>(i % HW) : -1;
}

__global__ void ccl_merge(const uint8_t* __restrict__ masks, int64_t n, int64_t H, int64_t W, int32_t* labels) {
  const int64_t HW = H * W;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    if (!masks[i]) continue;
    const int64_t base = i - i % HW;
    const int32_t loc = static_cast<int32_t>(i - base);
    const int64_t y = loc / W, x = loc % W;
    const uint8_t* mk = masks + base;
    int32_t* L = labels + base;
    if (x > 0 && mk[loc - 1]) unite(L, loc, loc - 1);
    if (y > 0) {
      const int32_t up = loc - static_cast<int32_t>(W);
      if (x > 0 && mk[up - 1]) unite(L, loc, up - 1);
      if (mk[up]) unite(L, loc, up);
      if (x + 1 < W && mk[up + 1]) unite(L, loc, up + 1);
    }
  }
}

// Final labels (roots), component sizes at the root's slot, and the number of components.
__global__ void ccl_finish(int64_t n, int64_t HW, int32_t* labels, uint32_t* sizes, unsigned long long* n_regions) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const int32_t l = labels[i];
    if (l < 0) continue;
    const int64_t base = i - i % HW;
    const int32_t root = find_root(labels + base, static_cast<int32_t>(i - base));
    atomicAdd(sizes + base + root, 1u);
    if (root == static_cast<int32_t>(i - base)) atomicAdd(n_regions, 1ull);
  }
}

// After ccl_finish every pixel can point straight at its root (find_root reads only roots now).
__global__ void ccl_flatten(int64_t n, int64_t HW, int32_t* labels) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const int32_t l = labels[i];
    if (l < 0) continue;
    const int64_t base = i - i % HW;
    labels[i] = find_root(labels + base, static_cast<int32_t>(i - base));
  }
}

}  // namespace

void label_maps_cuda(const uint8_t* masks, int64_t N, int64_t H, int64_t W, int32_t* labels, uint32_t* sizes,
                     unsigned long long* n_regions, void* stream_ptr) {
  const int64_t HW = H * W, n = N * HW;
  if (n == 0) return;
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  const unsigned blocks = blocks_for(n, kThreads);
  ccl_init<<<blocks, kThreads, 0, stream>>>(masks, n, HW, labels);
  ccl_merge<<<blocks, kThreads, 0, stream>>>(masks, n, H, W, labels);
  ccl_finish<<<blocks, kThreads, 0, stream>>>(n, HW, labels, sizes, n_regions);
  ccl_flatten<<<blocks, kThreads, 0, stream>>>(n, HW, labels);
  M3AD_CHECK_LAUNCH("label_maps_cuda");
}

}  // namespace metrics
}  // namespace m3ad
