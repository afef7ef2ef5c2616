// CPU twin of the tile-pruned kNN (knn_tiles.h): the same search per sorted query, rows in
// parallel. The CPU adapter normally uses the KD-tree (knn_cpu.cpp); this one serves the tests of
// the sorted plan and any CPU caller that already has it. Infinite distances: knn_overflow.h.
#include "common/parallel.h"
#include "knn/knn_overflow.h"
#include "knn/knn_tiles.h"

namespace m3ad {

void knn_tiles_cpu(const KnnTilesParams& p) {
  dispatch_float(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    parallel_for(p.B * p.P1, 64, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t b = r / p.P1, qs = r % p.P1;
        if (!p.wanted(b, qs)) continue;
        const int64_t out = tiles_out_row(p, b, qs);
        NnMemList<T> list(static_cast<T*>(p.dists) + out * p.K, p.idx + out * p.K, p.K, static_cast<T>(p.max_dist));
        if (qs < clamp_len(p.lengths1, b, p.P1)) {
          tiles_search<T>(p, b, qs, list);
          const TilesCloud<T> c(p, b);
          if (!p.bounded() && may_miss_overflowed(list.count, p.K, c.n2))  // +inf is out of any bound
            list.count = append_overflowed<T, 3>(c.pts, c.order2, c.n2, 3, static_cast<const T*>(p.p1) + r * 3,
                                                 p.norm, list.d, list.i, list.count, p.K);
        }
        list.finish();
      }
    });
    return 0;
  });
}

}  // namespace m3ad
