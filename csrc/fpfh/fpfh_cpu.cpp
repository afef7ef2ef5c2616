// CPU FPFH: the SPFH pass over all rows, then the aggregation pass (it reads neighbours' SPFH,
// so it must wait for the whole first pass). Rows are independent within a pass.
//
// The SPFH pass gathers a row's neighbours into arrays and computes the pair features of all of
// them in one loop without branches (pair_features, diamond_angle), which the compiler runs in
// SIMD lanes; the bins and histogram increments follow in a second, scalar loop. The arithmetic
// is the CUDA kernel's, operation for operation, so the bits are too.
#include <vector>

#include "common/parallel.h"
#include "fpfh/pair_features.h"

namespace m3ad {
namespace {

// One worker's arrays for a row's neighbours (structure of arrays, one entry per neighbour).
struct SpfhScratch {
  std::vector<double> buf;
  double *px, *py, *pz, *nx, *ny, *nz, *y, *x, *s, *f1, *f2;
  void reserve(int64_t m) {
    if (static_cast<int64_t>(buf.size()) >= 11 * m) return;
    buf.assign(static_cast<size_t>(11 * m), 0.0);
    double* at = buf.data();
    for (double** a : {&px, &py, &pz, &nx, &ny, &nz, &y, &x, &s, &f1, &f2}) *a = at, at += m;
  }
};

// The SIMD loop: the pair features of (pi, ni) against m neighbours, and alpha's pseudo-angle.
// (restrict on parameters: GCC gave up its alias checks for the same pointers as locals.)
void pair_features_soa(const Vec3d pi, const Vec3d ni, int64_t m, const double* __restrict px,
                       const double* __restrict py, const double* __restrict pz, const double* __restrict nx,
                       const double* __restrict ny, const double* __restrict nz, double* __restrict y,
                       double* __restrict x, double* __restrict s, double* __restrict f1, double* __restrict f2) {
  for (int64_t k = 0; k < m; ++k) {
    const PairFeatures f = pair_features(pi, ni, Vec3d{px[k], py[k], pz[k]}, Vec3d{nx[k], ny[k], nz[k]});
    y[k] = f.f0_y, x[k] = f.f0_x, f1[k] = f.f1, f2[k] = f.f2;
    s[k] = diamond_angle(f.f0_y, f.f0_x);
  }
}

template <typename T>
void spfh_row_cpu(const FpfhParams& p, int64_t r, SpfhScratch& sc) {
  const SpfhRow<T> row(p, r);
  if (!row.pairs) return;
  const int64_t m = row.n - 1;
  sc.reserve(p.K);
  for (int64_t k = 0; k < m; ++k) {
    const T* q = row.pts + row.nb[k + 1] * 3;
    const T* nq = row.nrm + row.nb[k + 1] * 3;
    sc.px[k] = static_cast<double>(q[0]), sc.py[k] = static_cast<double>(q[1]), sc.pz[k] = static_cast<double>(q[2]);
    sc.nx[k] = static_cast<double>(nq[0]), sc.ny[k] = static_cast<double>(nq[1]), sc.nz[k] = static_cast<double>(nq[2]);
  }
  pair_features_soa(row.pi, row.ni, m, sc.px, sc.py, sc.pz, sc.nx, sc.ny, sc.nz, sc.y, sc.x, sc.s, sc.f1, sc.f2);
  for (int64_t k = 0; k < m; ++k) row.add(alpha_bin_of(sc.s[k], sc.y[k], sc.x[k]), sc.f1[k], sc.f2[k]);
}

}  // namespace

void fpfh_cpu(const FpfhParams& p) {
  if (p.B == 0 || p.P == 0) return;
  dispatch_float(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    const int64_t rows = p.B * p.P;
    parallel_for(rows, 128, [&](int64_t r0, int64_t r1) {
      SpfhScratch sc;
      for (int64_t r = r0; r < r1; ++r) spfh_row_cpu<T>(p, r, sc);
    });
    parallel_for(rows, 128, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) fpfh_row<T>(p, r);
    });
    return 0;
  });
}

}  // namespace m3ad
