#include "common/finite.h"

#include <algorithm>
#include <atomic>
#include <cmath>

#include "common/parallel.h"

namespace m3ad {

int64_t first_non_finite(const void* data, int64_t n, DType dtype) {
  std::atomic<int64_t> first{n};
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* v = static_cast<const T*>(data);
    parallel_for(n, 1 << 16, [&](int64_t b, int64_t e) {
      // x - x is 0 for finite x and NaN otherwise: one branch-free pass the compiler vectorises.
      T acc = 0;
      for (int64_t i = b; i < e; ++i) acc += v[i] - v[i];
      if (acc == 0) return;
      for (int64_t i = b; i < e; ++i)
        if (!std::isfinite(v[i])) {
          int64_t cur = first.load();
          while (i < cur && !first.compare_exchange_weak(cur, i)) {
          }
          return;
        }
    });
    return 0;
  });
  const int64_t f = first.load();
  return f == n ? -1 : f;
}

}  // namespace m3ad
