// CUDA tile-pruned kNN (knn_tiles.h): one thread per sorted query, so that a warp's 32 queries
// are neighbours on the Morton curve and visit mostly the same tiles. K <= 32: the list lives in
// registers (unrolled insertion, the K-th entry kept in two scalars for the pruning test); larger
// K: in the output row itself.
#include <cuda_runtime.h>

#include "common/cuda_utils.cuh"
#include "knn/knn_tiles.h"

namespace m3ad {
namespace {

constexpr int kThreads = 128;

template <typename T, int KB>
struct NnRegList {
  T dk[KB];
  int64_t ik[KB];
  int K;
  T wd = T(INFINITY);  // the K-th entry (INFINITY, -1 while the list is short)
  int64_t wi = -1;
  __device__ explicit NnRegList(int k) : K(k) {
#pragma unroll
    for (int s = 0; s < KB; ++s) {
      dk[s] = T(INFINITY);
      ik[s] = -1;
    }
  }
  __device__ T worst() const { return wd; }
  __device__ void insert(T d, int64_t i) {
    if (!nn_before(d, i, wd, wi)) return;  // also drops NaN and infinite distances
#pragma unroll
    for (int s = KB - 1; s >= 0; --s) {
      if (s > 0 && nn_before(d, i, dk[s - 1], ik[s - 1])) {
        dk[s] = dk[s - 1];
        ik[s] = ik[s - 1];
      } else if (nn_before(d, i, dk[s], ik[s])) {
        dk[s] = d;
        ik[s] = i;
      }
    }
#pragma unroll
    for (int s = 0; s < KB; ++s)
      if (s == K - 1) wd = dk[s], wi = ik[s];
  }
};

template <typename T, int KB>
__global__ void knn_tiles_registers(KnnTilesParams p) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= p.B * p.P1) return;
  const int64_t b = r / p.P1, qs = r % p.P1;
  NnRegList<T, KB> list(static_cast<int>(p.K));
  if (qs < clamp_len(p.lengths1, b, p.P1)) tiles_search<T>(p, b, qs, list);
  const int64_t out = b * p.P1 + p.order1[r];
  T* dists = static_cast<T*>(p.dists) + out * p.K;
  int64_t* idx = p.idx + out * p.K;
#pragma unroll
  for (int s = 0; s < KB; ++s) {
    if (s < p.K) {
      dists[s] = list.ik[s] < 0 ? T(0) : list.dk[s];
      idx[s] = list.ik[s];
    }
  }
}

template <typename T>
__global__ void knn_tiles_memory(KnnTilesParams p) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= p.B * p.P1) return;
  const int64_t b = r / p.P1, qs = r % p.P1;
  const int64_t out = b * p.P1 + p.order1[r];
  NnMemList<T> list(static_cast<T*>(p.dists) + out * p.K, p.idx + out * p.K, p.K);
  if (qs < clamp_len(p.lengths1, b, p.P1)) tiles_search<T>(p, b, qs, list);
  list.finish();
}

}  // namespace

void knn_tiles_cuda(const KnnTilesParams& p, const Device& dev) {
  if (p.B == 0 || p.P1 == 0 || p.K == 0) return;
  DeviceGuard guard(dev.index);
  cudaStream_t stream = as_stream(dev);
  const unsigned grid = blocks_for(p.B * p.P1, kThreads, (1LL << 31) - 1);
  dispatch_float(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    if (p.K <= 1) knn_tiles_registers<T, 1><<<grid, kThreads, 0, stream>>>(p);
    else if (p.K <= 4) knn_tiles_registers<T, 4><<<grid, kThreads, 0, stream>>>(p);
    else if (p.K <= 16) knn_tiles_registers<T, 16><<<grid, kThreads, 0, stream>>>(p);
    else if (p.K <= 32) knn_tiles_registers<T, 32><<<grid, kThreads, 0, stream>>>(p);
    else knn_tiles_memory<T><<<grid, kThreads, 0, stream>>>(p);
    return 0;
  });
  M3AD_CHECK_LAUNCH("knn (sorted tiles)");
}

}  // namespace m3ad
