// CUDA ball query: the first K points within the radius, in index order, with early exit after
// K hits (pytorch3d's contract); same arithmetic as the CPU path. Thread path: one thread per
// query (pytorch3d's algorithm). Warp path, for few queries over large clouds: one warp per
// query tests 32 consecutive points at a time; a ballot orders the hits, so they are written
// in index order without per-lane lists, and the warp stops after the 32-point chunk in which
// the count reaches K.
#include <cuda_runtime.h>

#include "ball_query/ball_query.h"
#include "common/cuda_utils.cuh"
#include "common/distance.h"
#include "common/warp_query.cuh"

namespace m3ad {
namespace {

constexpr int kThreads = 128;

template <typename T, int kDim>
__global__ void ball_query_kernel(BallQueryParams p, T r2) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= p.B * p.P1) return;
  const int64_t b = r / p.P1, q = r % p.P1;
  T* dists = static_cast<T*>(p.dists) + r * p.K;
  int64_t* idx = p.idx + r * p.K;
  int64_t count = 0;
  if (q < clamp_len(p.lengths1, b, p.P1)) {
    const T* query = static_cast<const T*>(p.p1) + r * p.D;
    const T* cloud = static_cast<const T*>(p.p2) + b * p.P2 * p.D;
    const int64_t n2 = clamp_len(p.lengths2, b, p.P2);
    for (int64_t j = 0; j < n2 && count < p.K; ++j) {
      const T d = point_dist<T, kDim>(cloud + j * p.D, query, p.D, 2);
      if (d < r2) {
        dists[count] = d;
        idx[count] = j;
        ++count;
      }
    }
  }
  for (int64_t s = count; s < p.K; ++s) {
    dists[s] = 0;
    idx[s] = -1;
  }
}

template <typename T, int kDim>
__global__ void ball_query_warp(BallQueryParams p, T r2) {
  WarpQuery w;
  if (!warp_query(p, w)) return;
  const int lane = w.lane;
  T* dists = static_cast<T*>(p.dists) + w.row * p.K;
  int64_t* idx = p.idx + w.row * p.K;
  int64_t count = 0;  // the same in every lane
  if (w.q < clamp_len(p.lengths1, w.b, p.P1)) {
    const T* query = static_cast<const T*>(p.p1) + w.row * p.D;
    const T* cloud = static_cast<const T*>(p.p2) + w.b * p.P2 * p.D;
    const int64_t n2 = clamp_len(p.lengths2, w.b, p.P2);
    const unsigned below = (1u << lane) - 1u;
    for (int64_t base = 0; base < n2 && count < p.K; base += 32) {
      const int64_t j = base + lane;
      T d = 0;
      bool hit = false;
      if (j < n2) {
        d = point_dist<T, kDim>(cloud + j * p.D, query, p.D, 2);
        hit = d < r2;
      }
      const unsigned hits = __ballot_sync(0xffffffffu, hit);
      const int64_t slot = count + __popc(hits & below);
      if (hit && slot < p.K) {
        dists[slot] = d;
        idx[slot] = j;
      }
      count += __popc(hits);
    }
  }
  for (int64_t s = (count < p.K ? count : p.K) + lane; s < p.K; s += 32) {
    dists[s] = 0;
    idx[s] = -1;
  }
}

}  // namespace

void ball_query_cuda(const BallQueryParams& p, const Device& dev) {
  if (p.B == 0 || p.P1 == 0 || p.K == 0) return;
  DeviceGuard guard(dev.index);
  const bool warp_path = warp_per_query_pays(p);
  const unsigned grid =
      warp_path ? warp_query_blocks(p, kThreads) : blocks_for(p.B * p.P1, kThreads, (1LL << 31) - 1);
  dispatch_float(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T r2 = static_cast<T>(p.radius2);
    if (warp_path) {
      if (p.D == 3) ball_query_warp<T, 3><<<grid, kThreads, 0, as_stream(dev)>>>(p, r2);
      else ball_query_warp<T, 0><<<grid, kThreads, 0, as_stream(dev)>>>(p, r2);
    } else {
      if (p.D == 3) ball_query_kernel<T, 3><<<grid, kThreads, 0, as_stream(dev)>>>(p, r2);
      else ball_query_kernel<T, 0><<<grid, kThreads, 0, as_stream(dev)>>>(p, r2);
    }
    return 0;
  });
  M3AD_CHECK_LAUNCH("ball_query");
}

}  // namespace m3ad
