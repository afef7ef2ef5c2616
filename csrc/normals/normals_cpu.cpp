// CPU normals: rows split over the thread pool; each row is independent (no shared writes).
#include "common/parallel.h"
#include "normals/normal_from_neighbors.h"

namespace m3ad {

void normals_cpu(const NormalsParams& p) {
  if (p.B == 0 || p.P == 0) return;
  if (!p.idx && !p.idx32) return normals_search_cpu(p);
  dispatch_float(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    parallel_for(p.B * p.P, 256, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        if (p.idx32) normal_row<T>(p, p.idx32, r);
        else normal_row<T>(p, p.idx, r);
      }
    });
    return 0;
  });
}

}  // namespace m3ad
