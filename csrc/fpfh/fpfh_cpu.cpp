// CPU FPFH: the SPFH pass over all rows, then the aggregation pass (it reads neighbours' SPFH,
// so it must wait for the whole first pass). Rows are independent within a pass.
#include "common/parallel.h"
#include "fpfh/pair_features.h"

namespace m3ad {

void fpfh_cpu(const FpfhParams& p) {
  if (p.B == 0 || p.P == 0) return;
  dispatch_float(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    const int64_t rows = p.B * p.P;
    parallel_for(rows, 128, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) spfh_row<T>(p, r);
    });
    parallel_for(rows, 128, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) fpfh_row<T>(p, r);
    });
    return 0;
  });
}

}  // namespace m3ad
