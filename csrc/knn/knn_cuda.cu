// CUDA kNN: one thread per query scanning its cloud's p2 points in index order. All threads of
// a warp read the same p2 point at the same time (a broadcast load), so no shared-memory tiling
// is needed. K <= 32: the sorted top-K lives in registers (unrolled insertion); larger K: it lives
// in the output arrays themselves, so memory stays O(Q*K) and no Q x P2 matrix exists.
// Scanning in index order and inserting only strictly smaller distances yields ascending
// (distance, index) order, identical to the CPU tree search.
#include <cuda_runtime.h>

#include "common/cuda_utils.cuh"
#include "common/distance.cuh"
#include "knn/knn.h"

namespace m3ad {
namespace {

constexpr int kThreads = 128;

template <typename T, int kDim, int KB>
__global__ void knn_registers(KnnParams p) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= p.B * p.P1) return;
  const int64_t b = r / p.P1, q = r % p.P1;
  T dk[KB];
  int64_t ik[KB];
#pragma unroll
  for (int s = 0; s < KB; ++s) {
    dk[s] = INFINITY;
    ik[s] = -1;
  }
  if (q < clamp_len(p.lengths1, b, p.P1)) {
    const T* query = static_cast<const T*>(p.p1) + r * p.D;
    T qv[kDim > 0 ? kDim : 1];
    if (kDim > 0) {
#pragma unroll
      for (int j = 0; j < (kDim > 0 ? kDim : 1); ++j) qv[j] = query[j];
    }
    const T* qp = kDim > 0 ? qv : query;
    const T* cloud = static_cast<const T*>(p.p2) + b * p.P2 * p.D;
    const int64_t n2 = clamp_len(p.lengths2, b, p.P2);
    for (int64_t j = 0; j < n2; ++j) {
      const T d = point_dist<T, kDim>(cloud + j * p.D, qp, p.D, p.norm);
      if (!(d < dk[KB - 1])) continue;
#pragma unroll
      for (int s = KB - 1; s >= 0; --s) {
        if (s > 0 && dk[s - 1] > d) {
          dk[s] = dk[s - 1];
          ik[s] = ik[s - 1];
        } else if (dk[s] > d) {
          dk[s] = d;
          ik[s] = j;
        }
      }
    }
  }
  T* dists = static_cast<T*>(p.dists) + r * p.K;
  int64_t* idx = p.idx + r * p.K;
#pragma unroll
  for (int s = 0; s < KB; ++s) {
    if (s < p.K) {
      dists[s] = ik[s] < 0 ? T(0) : dk[s];
      idx[s] = ik[s];
    }
  }
}

template <typename T, int kDim>
__global__ void knn_global(KnnParams p) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= p.B * p.P1) return;
  const int64_t b = r / p.P1, q = r % p.P1;
  T* dk = static_cast<T*>(p.dists) + r * p.K;
  int64_t* ik = p.idx + r * p.K;
  for (int64_t s = 0; s < p.K; ++s) {
    dk[s] = INFINITY;
    ik[s] = -1;
  }
  int64_t count = 0;
  if (q < clamp_len(p.lengths1, b, p.P1)) {
    const T* query = static_cast<const T*>(p.p1) + r * p.D;
    const T* cloud = static_cast<const T*>(p.p2) + b * p.P2 * p.D;
    const int64_t n2 = clamp_len(p.lengths2, b, p.P2);
    T worst = INFINITY;
    for (int64_t j = 0; j < n2; ++j) {
      const T d = point_dist<T, kDim>(cloud + j * p.D, query, p.D, p.norm);
      if (!(d < worst)) continue;
      int64_t s = count < p.K ? count++ : p.K - 1;
      for (; s > 0 && dk[s - 1] > d; --s) {
        dk[s] = dk[s - 1];
        ik[s] = ik[s - 1];
      }
      dk[s] = d;
      ik[s] = j;
      if (count == p.K) worst = dk[p.K - 1];
    }
  }
  for (int64_t s = count; s < p.K; ++s) dk[s] = 0;
}

template <typename T, int kDim>
void launch(const KnnParams& p, cudaStream_t stream) {
  const unsigned grid = blocks_for(p.B * p.P1, kThreads, 1LL << 31);
  if (p.K <= 1) knn_registers<T, kDim, 1><<<grid, kThreads, 0, stream>>>(p);
  else if (p.K <= 4) knn_registers<T, kDim, 4><<<grid, kThreads, 0, stream>>>(p);
  else if (p.K <= 16) knn_registers<T, kDim, 16><<<grid, kThreads, 0, stream>>>(p);
  else if (p.K <= 32) knn_registers<T, kDim, 32><<<grid, kThreads, 0, stream>>>(p);
  else knn_global<T, kDim><<<grid, kThreads, 0, stream>>>(p);
  M3AD_CHECK_LAUNCH("knn");
}

}  // namespace

void knn_cuda(const KnnParams& p, const Device& dev) {
  if (p.B == 0 || p.P1 == 0 || p.K == 0) return;
  DeviceGuard guard(dev.index);
  dispatch_float(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    if (p.D == 3) launch<T, 3>(p, as_stream(dev));
    else launch<T, 0>(p, as_stream(dev));
    return 0;
  });
}

}  // namespace m3ad
