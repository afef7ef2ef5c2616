// The SPFH/FPFH per-row work, shared by the CPU and CUDA kernels (float64 throughout).
#pragma once
#include <cmath>
#include <cstdint>

#include "fpfh/fpfh.h"
#include "normals/normal_from_neighbors.h"
#include "normals/sym_eigen3.h"

namespace m3ad {

// Darboux-frame features of the pair (p1, n1) -> (p2, n2), open3d's convention:
// d = p2 - p1; the source is the point whose normal makes the smaller angle with the line
// (larger |cos|; on a tie p1), swapping the pair (and negating d) when that is p2. With the
// source normal u, v = d x u / |d x u|, w = u x v:
//   f0 = atan2(w . n_t, u . n_t)  in [-pi, pi], kept as its two arguments (alpha_bin)
//   f1 = v . n_t                  in [-1, 1]
//   f2 = u . d / |d|              in [-1, 1]
// Coincident points or d parallel to u give f = (0, 0, 0) (which lands in the middle bins).
struct PairFeatures {
  double f0_y, f0_x, f1, f2;
};

// Straight-line code, selects instead of branches, so that the CPU pass can compute a row's
// pairs in SIMD lanes (fpfh_cpu.cpp); the degenerate cases compute NaN and are replaced at the end.
M3AD_HD PairFeatures pair_features(const Vec3d& p1, const Vec3d& n1, const Vec3d& p2,
                                   const Vec3d& n2) {
  Vec3d d{p2.x - p1.x, p2.y - p1.y, p2.z - p1.z};
  const double len = std::sqrt(d.x * d.x + d.y * d.y + d.z * d.z);
  const double c1 = dot3(n1, d) / len;
  const double c2 = dot3(n2, d) / len;
  const bool swap = std::fabs(c1) < std::fabs(c2);
  const Vec3d u{swap ? n2.x : n1.x, swap ? n2.y : n1.y, swap ? n2.z : n1.z};
  const Vec3d t{swap ? n1.x : n2.x, swap ? n1.y : n2.y, swap ? n1.z : n2.z};
  d = {swap ? -d.x : d.x, swap ? -d.y : d.y, swap ? -d.z : d.z};
  const double f2 = swap ? -c2 : c1;
  Vec3d v = cross3(d, u);
  const double vn = std::sqrt(v.x * v.x + v.y * v.y + v.z * v.z);
  v = {v.x / vn, v.y / vn, v.z / vn};  // divide (not multiply by 1/vn), as open3d
  const Vec3d w = cross3(u, v);
  const bool flat = len == 0.0 || vn == 0.0;  // coincident points, or d parallel to u
  return {flat ? 0.0 : dot3(w, t), flat ? 0.0 : dot3(u, t), flat ? 0.0 : dot3(v, t), flat ? 0.0 : f2};
}

// floor(x) clamped to a bin, [0, 10]. Clamped before the conversion, which is undefined out of
// int's range (x86 gave INT_MIN, so bin 0, where CUDA saturates, so bin 10, for the values of
// non-unit normals): NaN gives 0 and anything past the last bin 10 on both. In range,
// truncation is the floor.
M3AD_HD int clamp_bin(double x) {
  const double last = kFpfhBins - 1;
  return static_cast<int>(x >= last ? last : (x > 0.0 ? x : 0.0));
}

// The bin of f0 = atan2(y, x), clamp_bin(11 (f0 + pi) / (2 pi)) as open3d computes it, mostly
// without the atan2, which was a third of the SPFH pass (CPU, 100k points, ~50 neighbours: 47 of
// 127 ms). The angle's sector among the 11 follows from a pseudo-angle that grows with it, the
// "diamond angle" s = y / (|x| + |y|), continued over the left half-plane to (-2, 2]: one
// division and five comparisons of |s| with the pseudo-angles of the sector edges
// +-(pi - 2 pi k / 11), k = 1..5 (mpmath, 200 bits; the edges are symmetric). Where s lies
// within 1e-11 of an edge the exact formula decides, as for zero arguments (and NaN, which fails
// every comparison). Exact: ds/dangle is between 1/2 and 1, so s at least 1e-11 from an edge puts
// the true angle at least 1e-11 from it, while glibc's or CUDA's atan2 (an ulp or two), the
// formula's roundings (~2e-15 in angle) and s's own (~1e-15) move it by far less: both ways give
// the same bin. alpha_bin(y, x) is diamond_angle then alpha_bin_of, two halves so that the CPU
// pass can compute s in SIMD lanes and the bins after.
M3AD_HD double diamond_angle(double y, double x) {
  const double r = y / (std::fabs(x) + std::fabs(y));
  return x > 0.0 ? r : (y > 0.0 ? 2.0 - r : -2.0 - r);
}

M3AD_HD int alpha_bin_of(double s, double y, double x) {
  if (x != 0.0 && y != 0.0) {
    const double a = std::fabs(s);
    const double e0 = 0.22697934414702514, e1 = 0.5357607057793985, e2 = 0.8742953116440194,
                 e3 = 1.3135096418331371, e4 = 1.6087683422807246;
    const int k = (a > e0) + (a > e1) + (a > e2) + (a > e3) + (a > e4);  // edges below |s|
    const double m = 1e-11;
    if (std::fabs(a - e0) > m && std::fabs(a - e1) > m && std::fabs(a - e2) > m && std::fabs(a - e3) > m &&
        std::fabs(a - e4) > m)
      return s > 0.0 ? 5 + k : 5 - k;
  }
  const double pi_ = 3.14159265358979323846;
  return clamp_bin(11.0 * (std::atan2(y, x) + pi_) / (2.0 * pi_));
}

M3AD_HD int alpha_bin(double y, double x) { return alpha_bin_of(diamond_angle(y, x), y, x); }

// The bin of f1 or f2, in [-1, 1].
M3AD_HD int cosine_bin(double f) { return clamp_bin(11.0 * (f + 1.0) * 0.5); }

template <typename T>
M3AD_HD Vec3d load3(const T* a) {
  return {static_cast<double>(a[0]), static_cast<double>(a[1]), static_cast<double>(a[2])};
}

// Row r's neighbour count in the lists idx (p.idx, or the CPU's p.idx32).
template <typename T, typename I>
M3AD_HD int64_t row_neighbour_count(const FpfhParams& p, const I* idx, int64_t r) {
  return neighbour_count<T>(idx + r * p.K, p.dists ? static_cast<const T*>(p.dists) + r * p.K : nullptr, p.K,
                            p.P, p.radius2 >= 0 && p.dists, static_cast<T>(p.radius2));
}

template <typename T>
M3AD_HD int64_t fpfh_row_neighbours(const FpfhParams& p, int64_t r) {
  return row_neighbour_count<T>(p, p.idx, r);
}

// Row r's point index, or -1 when out of range (never written then).
M3AD_HD int64_t fpfh_row_point(const FpfhParams& p, int64_t r) {
  const int64_t i = p.query_index ? p.query_index[r] : r % p.P;
  return (i < 0 || i >= p.P) ? -1 : i;
}

// Row r of the SPFH pass, shared by the CUDA kernel (a pair at a time, spfh_row) and the CPU
// pass (a row's pairs in SIMD lanes, fpfh_cpu.cpp): zeroes the point's histogram; `pairs` is
// false when it stays zero (no point, fewer than 2 neighbours). Neighbours are nb[1, n).
template <typename T>
struct SpfhRow {
  double* hist = nullptr;
  const T* pts = nullptr;
  const T* nrm = nullptr;
  const int64_t* nb = nullptr;
  int64_t n = 0;
  Vec3d pi{}, ni{};
  double incr = 0.0;
  bool pairs = false;
  M3AD_HD SpfhRow(const FpfhParams& p, int64_t r) {
    const int64_t b = r / p.P;
    const int64_t i = fpfh_row_point(p, r);
    if (i < 0) return;
    hist = p.spfh + (b * p.P + i) * kFpfhDim;
    for (int j = 0; j < kFpfhDim; ++j) hist[j] = 0.0;
    n = fpfh_row_neighbours<T>(p, r);
    if (n <= 1) return;
    pts = static_cast<const T*>(p.points) + b * p.P * 3;
    nrm = static_cast<const T*>(p.normals) + b * p.P * 3;
    nb = p.idx + r * p.K;
    pi = load3(pts + i * 3), ni = load3(nrm + i * 3);
    incr = 100.0 / static_cast<double>(n - 1);
    pairs = true;
  }
  // One pair's share: alpha's bin (alpha_bin), then f1's and f2's.
  M3AD_HD void add(int alpha, double f1, double f2) const {
    hist[alpha] += incr;
    hist[kFpfhBins + cosine_bin(f1)] += incr;
    hist[2 * kFpfhBins + cosine_bin(f2)] += incr;
  }
};

template <typename T>
M3AD_HD void spfh_row(const FpfhParams& p, int64_t r) {
  const SpfhRow<T> row(p, r);
  if (!row.pairs) return;
  for (int64_t k = 1; k < row.n; ++k) {
    const int64_t j = row.nb[k];
    const PairFeatures f = pair_features(row.pi, row.ni, load3(row.pts + j * 3), load3(row.nrm + j * 3));
    row.add(alpha_bin(f.f0_y, f.f0_x), f.f1, f.f2);
  }
}

// A neighbour's SPFH h at squared distance d2 > 0 into the aggregation's sums. One division per
// neighbour instead of 33 (open3d divides each bin: results differ from it in the last bit only).
M3AD_HD void add_weighted(double* acc, const double* h, double d2) {
  const double w = 1.0 / d2;
  for (int m = 0; m < kFpfhDim; ++m) acc[m] += h[m] * w;
}

// The aggregation's sums over the neighbours nb[1, n) of the point at pi (coincident ones
// skipped) into acc: neighbour j's coordinates at xyz + 3 at(j) and SPFH at spfh + 33 at(j), at(j)
// = j, or row_of[j] where the caller keeps them in row order (the CPU pass).
template <typename T, typename I>
M3AD_HD void aggregate_neighbours(const Vec3d& pi, const I* nb, int64_t n, const int32_t* row_of,
                                  const T* xyz, const double* spfh, double* acc) {
  for (int j = 0; j < kFpfhDim; ++j) acc[j] = 0.0;
  for (int64_t k = 1; k < n; ++k) {
    const int64_t j = row_of ? row_of[nb[k]] : nb[k];
    const Vec3d q = load3(xyz + j * 3);
    const double dx = q.x - pi.x, dy = q.y - pi.y, dz = q.z - pi.z;
    const double d2 = dx * dx + dy * dy + dz * dz;
    if (d2 == 0.0) continue;
    add_weighted(acc, spfh + j * kFpfhDim, d2);
  }
}

// out = own SPFH + the sums with each block renormalised to 100. Each block's total comes from
// its 11 bins at the end, not summed along with them as open3d does: that running sum was one
// chain of 11 dependent additions per neighbour, which bound the CPU pass by latency (~48 ->
// ~32 ms, 100k points, ~50 neighbours, 2 cores); the bins now add independently. The totals
// differ from open3d's in the last bits.
template <typename T>
M3AD_HD void fpfh_finish(const double* acc, const double* own, T* out) {
  for (int c = 0; c < 3; ++c) {
    double total = 0.0;
    for (int m = 0; m < kFpfhBins; ++m) total += acc[c * kFpfhBins + m];
    const double s = total != 0.0 ? 100.0 / total : 0.0;
    for (int m = 0; m < kFpfhBins; ++m) {
      const int j = c * kFpfhBins + m;
      out[j] = static_cast<T>(acc[j] * s + own[j]);
    }
  }
}

template <typename T>
M3AD_HD void fpfh_row(const FpfhParams& p, int64_t r) {
  const int64_t b = r / p.P;
  const int64_t i = fpfh_row_point(p, r);
  if (i < 0) return;
  T* out = static_cast<T*>(p.out) + (b * p.P + i) * kFpfhDim;
  const int64_t n = fpfh_row_neighbours<T>(p, r);
  if (n <= 1) {
    for (int j = 0; j < kFpfhDim; ++j) out[j] = T(0);
    return;
  }
  const T* pts = static_cast<const T*>(p.points) + b * p.P * 3;
  const double* spfh = p.spfh + b * p.P * kFpfhDim;
  double acc[kFpfhDim];
  aggregate_neighbours<T>(load3(pts + i * 3), p.idx + r * p.K, n, nullptr, pts, spfh, acc);
  fpfh_finish(acc, spfh + i * kFpfhDim, out);
}

}  // namespace m3ad
