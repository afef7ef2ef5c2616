// The second pass of knn_overflow.h on CUDA: one thread per row. A row whose K-th slot is filled
// (nearly every row) costs one read; only rows short of K whose cloud has points left over scan
// it again, serially, which needs coordinates above ~1e19 (float32) or NaN with checks off.
#include <cuda_runtime.h>

#include "common/cuda_utils.cuh"
#include "knn/knn_overflow.h"

namespace m3ad {
namespace {

constexpr int kThreads = 128;

template <typename T, int kDim>
__global__ void knn_fill_overflowed(KnnParams p, const int64_t* order1, const int64_t* order2) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= p.B * p.P1) return;
  const int64_t b = r / p.P1;
  if (r - b * p.P1 >= clamp_len(p.lengths1, b, p.P1)) return;
  const int64_t out = order1 ? b * p.P1 + order1[r] : r;
  int64_t* ik = p.idx + out * p.K;
  if (ik[p.K - 1] >= 0) return;
  const int64_t count = filled_slots(ik, p.K), n2 = clamp_len(p.lengths2, b, p.P2);
  if (!may_miss_overflowed(count, p.K, n2)) return;
  append_overflowed<T, kDim>(static_cast<const T*>(p.p2) + b * p.P2 * p.D, order2 ? order2 + b * p.P2 : nullptr, n2,
                             p.D, static_cast<const T*>(p.p1) + r * p.D, p.norm, static_cast<T*>(p.dists) + out * p.K,
                             ik, count, p.K);
}

}  // namespace

void knn_fill_overflowed_cuda(const KnnParams& p, const int64_t* order1, const int64_t* order2, const Device& dev) {
  if (p.B == 0 || p.P1 == 0 || p.K == 0) return;
  DeviceGuard guard(dev.index);
  const unsigned grid = blocks_for(p.B * p.P1, kThreads, (1LL << 31) - 1);
  dispatch_float(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    if (p.D == 3) knn_fill_overflowed<T, 3><<<grid, kThreads, 0, as_stream(dev)>>>(p, order1, order2);
    else knn_fill_overflowed<T, 0><<<grid, kThreads, 0, as_stream(dev)>>>(p, order1, order2);
    return 0;
  });
  M3AD_CHECK_LAUNCH("knn (infinite distances)");
}

}  // namespace m3ad
