// The per-row work of the normal kernels, shared by the CPU and CUDA paths.
#pragma once
#include <cstdint>

#include "normals/normals.h"
#include "normals/sym_eigen3.h"

namespace m3ad {

// Number of leading neighbours of a row that count: valid indices (in range of the cloud) and,
// with a radius, squared distance strictly below radius2 (the list is sorted by distance).
template <typename T, typename I>
M3AD_HD int64_t neighbour_count(const I* idx, const T* dists, int64_t K, int64_t P,
                                bool use_radius, T r2) {
  int64_t n = 0;
  while (n < K && idx[n] >= 0 && idx[n] < P && (!use_radius || dists[n] < r2)) ++n;
  return n;
}

// The normal and curvature of the point at `self` from its neighbour list nb[0, K) (sorted by
// distance, -1 padded, indices into `cloud` of P points), written to out_normal[0..2] and
// *out_curvature (when not null).
template <typename T, typename I>
M3AD_HD void normal_from_list(const T* cloud, int64_t P, const I* nb, const T* dists, int64_t K,
                              bool use_radius, T r2, const T* self, bool orient, const double* viewpoint,
                              T* out_normal, T* out_curvature) {
  const int64_t n = neighbour_count<T>(nb, dists, K, P, use_radius && dists, r2);
  SmallestEig e{{0.0, 0.0, 0.0}, 0.0};
  if (n >= 3) {
    double mx = 0, my = 0, mz = 0;
    for (int64_t k = 0; k < n; ++k) {
      const T* q = cloud + nb[k] * 3;
      mx += static_cast<double>(q[0]), my += static_cast<double>(q[1]), mz += static_cast<double>(q[2]);
    }
    const double inv_n = 1.0 / static_cast<double>(n);
    mx *= inv_n, my *= inv_n, mz *= inv_n;
    Sym3 c{0, 0, 0, 0, 0, 0};
    for (int64_t k = 0; k < n; ++k) {
      const T* q = cloud + nb[k] * 3;
      const double dx = static_cast<double>(q[0]) - mx;
      const double dy = static_cast<double>(q[1]) - my;
      const double dz = static_cast<double>(q[2]) - mz;
      c.xx += dx * dx, c.xy += dx * dy, c.xz += dx * dz;
      c.yy += dy * dy, c.yz += dy * dz, c.zz += dz * dz;
    }
    c.xx *= inv_n, c.xy *= inv_n, c.xz *= inv_n, c.yy *= inv_n, c.yz *= inv_n, c.zz *= inv_n;
    e = smallest_eigenvector(c);
    if (orient) {
      const Vec3d to_view{viewpoint[0] - static_cast<double>(self[0]),
                          viewpoint[1] - static_cast<double>(self[1]),
                          viewpoint[2] - static_cast<double>(self[2])};
      if (dot3(e.normal, to_view) < 0) e.normal = scale3(e.normal, -1.0);
    }
  }
  out_normal[0] = static_cast<T>(e.normal.x);
  out_normal[1] = static_cast<T>(e.normal.y);
  out_normal[2] = static_cast<T>(e.normal.z);
  if (out_curvature) *out_curvature = static_cast<T>(e.curvature);
}

// Row r of the lists in p (idx, of index type I: p.idx or p.idx32).
template <typename T, typename I>
M3AD_HD void normal_row(const NormalsParams& p, const I* idx, int64_t r) {
  const int64_t b = r / p.P;
  const int64_t row = r % p.P;
  int64_t i = p.query_index ? p.query_index[r] : row;
  if (i < 0 || i >= p.P) return;  // the adapter guarantees a permutation; never write outside
  const T* cloud = static_cast<const T*>(p.points) + b * p.P * 3;
  const int64_t ld = p.row_stride > 0 ? p.row_stride : p.K;
  const T* dists = p.dists ? static_cast<const T*>(p.dists) + r * ld : nullptr;
  T* curvature = p.curvature ? static_cast<T*>(p.curvature) + b * p.P + i : nullptr;
  normal_from_list<T, I>(cloud, p.P, idx + r * ld, dists, p.K, p.radius2 >= 0, static_cast<T>(p.radius2),
                         cloud + i * 3, p.orient, p.viewpoint, static_cast<T*>(p.normals) + (b * p.P + i) * 3,
                         curvature);
}

}  // namespace m3ad
