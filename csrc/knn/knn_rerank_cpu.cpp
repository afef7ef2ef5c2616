// CPU twin of the float32 filter's rerank (knn_rerank.h): a row at a time, for the tests of the
// sorted plan and the CUDA emulator's comparisons.
#include <vector>

#include "common/distance.h"
#include "common/parallel.h"
#include "knn/knn_rerank.h"
#include "knn/knn_tiles.h"

namespace m3ad {

void knn_rerank_cpu(const KnnRerankParams& p) {
  std::vector<float> extent(static_cast<size_t>(p.B), 0.0f);
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t s = 0; s < p.super_tiles; ++s)
      extent[b] = box_extent(p.supers32 + (b * p.super_tiles + s) * 6, extent[b]);
  const int64_t K = p.K, M = kFilterM;
  parallel_for(p.B * p.P, 256, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / p.P, n = clamp_len(p.lengths, b, p.P);
      double* dr = p.dists + rerank_out_row(p, r) * K;
      int64_t* ir = p.idx + rerank_out_row(p, r) * K;
      const int64_t* cand = p.cand_idx + r * M;
      const float* cd = p.cand_dists + r * M;
      int64_t count = 0;
      for (int64_t s = 0; s < M; ++s) count += cand[s] >= 0 && cand[s] < n;
      const bool row = r % p.P < n;
      p.todo[r] = row && !filter_row_decided(count, n, cd[K - 1], cd[M - 1], extent[b]);
      if (p.todo[r]) continue;  // the float64 search writes this row
      const double* cloud = p.points + b * p.P * 3;
      double d[kFilterM];
      for (int64_t s = 0; s < M; ++s)
        if (row && cand[s] >= 0 && cand[s] < n) d[s] = point_dist<double, 3>(cloud + cand[s] * 3, p.queries + r * 3, 3, 2);
      for (int64_t s = 0; s < K; ++s) dr[s] = 0, ir[s] = -1;
      for (int64_t s = 0; row && s < M; ++s) {
        if (!(cand[s] >= 0 && cand[s] < n)) continue;
        int64_t rank = 0;
        for (int64_t o = 0; o < M; ++o)
          rank += cand[o] >= 0 && cand[o] < n && nn_before<double>(d[o], cand[o], d[s], cand[s]);
        if (rank < K) dr[rank] = d[s], ir[rank] = cand[s];
      }
    }
  });
}

}  // namespace m3ad
