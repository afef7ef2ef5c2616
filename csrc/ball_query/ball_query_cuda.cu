// CUDA ball query: one thread per query, index-order scan with early exit after K hits
// (pytorch3d's algorithm); same arithmetic as the CPU path.
#include <cuda_runtime.h>

#include "ball_query/ball_query.h"
#include "common/cuda_utils.cuh"
#include "common/distance.cuh"

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

}  // namespace

void ball_query_cuda(const BallQueryParams& p, const Device& dev) {
  if (p.B == 0 || p.P1 == 0 || p.K == 0) return;
  DeviceGuard guard(dev.index);
  const unsigned grid = blocks_for(p.B * p.P1, kThreads, 1LL << 31);
  dispatch_float(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T r2 = static_cast<T>(p.radius2);
    if (p.D == 3) ball_query_kernel<T, 3><<<grid, kThreads, 0, as_stream(dev)>>>(p, r2);
    else ball_query_kernel<T, 0><<<grid, kThreads, 0, as_stream(dev)>>>(p, r2);
    return 0;
  });
  M3AD_CHECK_LAUNCH("ball_query");
}

}  // namespace m3ad
