// CUDA rerank of the float32 filter (knn_rerank.h): a warp per row, a lane per float32
// candidate (kFilterM = 32), ranks by shuffles.
#include <cuda_runtime.h>

#include "common/cuda_utils.cuh"
#include "common/distance.h"
#include "knn/knn_rerank.h"
#include "knn/knn_tiles.h"

namespace m3ad {
namespace {

constexpr int kThreads = 128;
constexpr unsigned kFull = 0xffffffffu;
static_assert(kFilterM == 32, "a lane per candidate");

__device__ void rerank_row(const KnnRerankParams& p, int64_t r, int lane) {
  const int64_t b = r / p.P, n = clamp_len(p.lengths, b, p.P);
  const bool row = r % p.P < n;
  float a32 = 0.0f;  // the copy's extent; every lane of the warp ends with the same
  const float* supers = p.supers32 + b * p.super_tiles * 6;
  for (int64_t s = lane; row && s < p.super_tiles; s += 32) a32 = box_extent(supers + s * 6, a32);
  for (int off = 16; off > 0; off >>= 1) a32 = fmaxf(a32, __shfl_xor_sync(kFull, a32, off));
  const int64_t j = p.cand_idx[r * kFilterM + lane];
  const float d32 = p.cand_dists[r * kFilterM + lane];
  const bool valid = row && j >= 0 && j < n;
  const int count = __popc(__ballot_sync(kFull, valid));
  const float s32 = __shfl_sync(kFull, d32, static_cast<int>(p.K) - 1), t32 = __shfl_sync(kFull, d32, kFilterM - 1);
  const bool todo = row && !filter_row_decided(count, n, s32, t32, a32);
  if (lane == 0) p.todo[r] = todo;
  if (todo) return;  // the float64 search writes this row (todo is the same in every lane)
  const double d = valid ? point_dist<double, 3>(p.points + (b * p.P + j) * 3, p.queries + r * 3, 3, 2) : 0.0;
  int rank = 0;
  for (int o = 0; o < kFilterM; ++o) {
    const double od = __shfl_sync(kFull, d, o);
    const int64_t oj = __shfl_sync(kFull, j, o);
    rank += __shfl_sync(kFull, valid, o) && nn_before<double>(od, oj, d, j);
  }
  double* dr = p.dists + rerank_out_row(p, r) * p.K;
  int64_t* ir = p.idx + rerank_out_row(p, r) * p.K;
  if (valid && rank < p.K) dr[rank] = d, ir[rank] = j;
  for (int64_t s = count + lane; s < p.K; s += 32) dr[s] = 0.0, ir[s] = -1;  // the valid ranks are [0, count)
}

__global__ void knn_rerank_kernel(KnnRerankParams p) {
  for_each_warp_item(p.B * p.P, [&](int64_t r, int lane) { rerank_row(p, r, lane); });
}

}  // namespace

void knn_rerank_cuda(const KnnRerankParams& p, const Device& dev) {
  if (p.B == 0 || p.P == 0) return;
  DeviceGuard guard(dev.index);
  knn_rerank_kernel<<<blocks_for(p.B * p.P * 32, kThreads), kThreads, 0, as_stream(dev)>>>(p);
  M3AD_CHECK_LAUNCH("knn (float32 filter)");
}

}  // namespace m3ad
