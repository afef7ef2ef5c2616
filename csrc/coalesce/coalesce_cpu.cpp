#include <algorithm>
#include <numeric>
#include <vector>

#include "coalesce/coalesce.h"
#include "common/parallel.h"

namespace m3ad {
namespace {

template <typename T>
void run(const CoalesceParams& p) {
  const T* w = static_cast<const T*>(p.w);
  T* out_w = static_cast<T*>(p.out_w);
  parallel_for(p.B * p.R, 16, [&](int64_t r0, int64_t r1) {
    std::vector<int64_t> ent(static_cast<size_t>(p.E));
    for (int64_t row = r0; row < r1; ++row) {
      const int64_t* idx = p.idx + row * p.E;
      int64_t n = 0;
      for (int64_t e = 0; e < p.E; ++e)
        if (idx[e] >= 0 && idx[e] < p.N) ent[n++] = e;
      // Ascending source, ties in entry order: every merged weight is summed in ascending e.
      std::stable_sort(ent.begin(), ent.begin() + n, [&](int64_t a, int64_t b) { return idx[a] < idx[b]; });
      int64_t u = -1;
      for (int64_t j = 0; j < n; ++j)
        if (j == 0 || idx[ent[j]] != idx[ent[j - 1]]) ++u;
      if (p.count_only) {
        p.distinct[row] = u + 1;
        continue;
      }
      int64_t* oi = p.out_idx + row * p.U;
      T* ow = out_w + row * p.U;
      int64_t* sl = p.slot + row * p.E;
      std::fill(oi, oi + p.U, int64_t{-1});
      std::fill(ow, ow + p.U, T(0));
      std::fill(sl, sl + p.E, int64_t{-1});
      u = -1;
      for (int64_t j = 0; j < n; ++j) {
        const int64_t e = ent[j];
        if (j == 0 || idx[e] != idx[ent[j - 1]]) {
          if (++u >= p.U) break;  // caller under-sized U: drop rather than overflow
          oi[u] = idx[e];
        }
        ow[u] = ow[u] + w[row * p.E + e];
        sl[e] = u;
      }
    }
  });
}

}  // namespace

void coalesce_rows_cpu(const CoalesceParams& p) {
  if (p.B * p.R == 0 || p.E == 0) return;
  dispatch_float(p.dtype, [&](auto t) {
    run<decltype(t)>(p);
    return 0;
  });
}

}  // namespace m3ad
