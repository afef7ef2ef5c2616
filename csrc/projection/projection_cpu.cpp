// CPU pixel_corners: an elementwise map over the B*N points (arithmetic in corners_rules.h).
#include "common/parallel.h"
#include "projection/corners_rules.h"
#include "projection/projection.h"

namespace m3ad {

using std::floor;
using std::rint;

void pixel_corners_cpu(const PixelCornersParams& p) {
  dispatch_float(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    parallel_for(p.B * p.N, 4096, [&](int64_t e0, int64_t e1) {
      for (int64_t e = e0; e < e1; ++e) corners::forward<T>(p, e);
    });
    return 0;
  });
}

void pixel_corners_backward_cpu(const PixelCornersParams& p) {
  dispatch_float(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    parallel_for(p.B * p.N, 4096, [&](int64_t e0, int64_t e1) {
      for (int64_t e = e0; e < e1; ++e) corners::backward<T>(p, e);
    });
    return 0;
  });
}

}  // namespace m3ad
