// Smallest eigenvector of a symmetric positive semi-definite 3x3 matrix, in closed form, on host
// and device alike (the CPU and CUDA normal kernels share this code, so they agree bit for bit
// up to the last-ulp differences of acos/cos/sqrt between the two math libraries).
//
// Method: the trigonometric solution of the characteristic cubic after shifting by the mean
// eigenvalue and scaling, and eigenvectors from cross products of the rows of A - lambda I, as in
// D. Eberly, "A Robust Eigensolver for 3x3 Symmetric Matrices" (Geometric Tools, 2014). The
// eigenvector of the eigenvalue farthest from the other two is computed first (it is always
// well conditioned); the middle one from the 2x2 problem in the plane orthogonal to it; the
// third by a cross product. This stays accurate for planes (a double eigenvalue at the top)
// and for lines (a double eigenvalue at the bottom) where the textbook method divides by ~0.
#pragma once
#include <cmath>

#include "common/host_device.h"

namespace m3ad {

// Neighbourhoods whose middle eigenvalue is below this fraction of the largest one span no
// plane (collinear points, within rounding of float32 coordinates): they get the zero normal.
constexpr double kCollinearRatio = 1e-7;

struct Sym3 {
  double xx, xy, xz, yy, yz, zz;
};

struct Vec3d {
  double x, y, z;
};

M3AD_HD Vec3d cross3(const Vec3d& a, const Vec3d& b) {
  return {a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x};
}
M3AD_HD double dot3(const Vec3d& a, const Vec3d& b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
M3AD_HD Vec3d scale3(const Vec3d& a, double s) { return {a.x * s, a.y * s, a.z * s}; }

// Unit eigenvector of a simple eigenvalue `ev`: the rows of A - ev I span its orthogonal
// complement, so the longest cross product of two rows is parallel to it. Returns false when
// all cross products vanish (ev was not simple).
M3AD_HD bool eigvec_from_rows(const Sym3& a, double ev, Vec3d* out) {
  const Vec3d r0{a.xx - ev, a.xy, a.xz};
  const Vec3d r1{a.xy, a.yy - ev, a.yz};
  const Vec3d r2{a.xz, a.yz, a.zz - ev};
  const Vec3d c01 = cross3(r0, r1), c02 = cross3(r0, r2), c12 = cross3(r1, r2);
  const double d01 = dot3(c01, c01), d02 = dot3(c02, c02), d12 = dot3(c12, c12);
  Vec3d best = c01;
  double dmax = d01;
  if (d02 > dmax) best = c02, dmax = d02;
  if (d12 > dmax) best = c12, dmax = d12;
  if (!(dmax > 0)) return false;
  *out = scale3(best, 1.0 / std::sqrt(dmax));
  return true;
}

// Unit eigenvector of eigenvalue `ev` orthogonal to the unit eigenvector `e`: restrict
// A - ev I to the plane orthogonal to e (basis u, v) and take the null vector of that
// symmetric 2x2 matrix from its larger row (any unit vector of the plane when it is ~0).
M3AD_HD Vec3d eigvec_in_plane(const Sym3& a, const Vec3d& e, double ev) {
  Vec3d u;
  if (std::fabs(e.x) > std::fabs(e.y)) {
    const double inv = 1.0 / std::sqrt(e.x * e.x + e.z * e.z);
    u = {-e.z * inv, 0.0, e.x * inv};
  } else {
    const double inv = 1.0 / std::sqrt(e.y * e.y + e.z * e.z);
    u = {0.0, e.z * inv, -e.y * inv};
  }
  const Vec3d v = cross3(e, u);
  const Vec3d au{a.xx * u.x + a.xy * u.y + a.xz * u.z, a.xy * u.x + a.yy * u.y + a.yz * u.z,
                 a.xz * u.x + a.yz * u.y + a.zz * u.z};
  const Vec3d av{a.xx * v.x + a.xy * v.y + a.xz * v.z, a.xy * v.x + a.yy * v.y + a.yz * v.z,
                 a.xz * v.x + a.yz * v.y + a.zz * v.z};
  double m00 = dot3(u, au) - ev, m01 = dot3(u, av), m11 = dot3(v, av) - ev;
  const double a00 = std::fabs(m00), a01 = std::fabs(m01), a11 = std::fabs(m11);
  // Null vector of [[m00, m01], [m01, m11]] in (u, v) coordinates: (m01, -m00) from row 0 or
  // (m11, -m01) from row 1, whichever row is larger; normalised without overflow.
  double cu, cv;
  if (a00 >= a11) {
    if (!(a00 > 0 || a01 > 0)) return u;
    if (a00 >= a01) {
      const double t = m01 / m00, s = 1.0 / std::sqrt(1.0 + t * t);
      cu = t * s, cv = -s;
    } else {
      const double t = m00 / m01, s = 1.0 / std::sqrt(1.0 + t * t);
      cu = s, cv = -t * s;
    }
  } else {
    if (!(a11 > 0 || a01 > 0)) return u;
    if (a11 >= a01) {
      const double t = m01 / m11, s = 1.0 / std::sqrt(1.0 + t * t);
      cu = s, cv = -t * s;
    } else {
      const double t = m11 / m01, s = 1.0 / std::sqrt(1.0 + t * t);
      cu = t * s, cv = -s;
    }
  }
  return {cu * u.x + cv * v.x, cu * u.y + cv * v.y, cu * u.z + cv * v.z};
}

// Eigen-decomposition result used by the normal kernels.
struct SmallestEig {
  Vec3d normal;      // unit eigenvector of the smallest eigenvalue, or (0, 0, 0) when degenerate
  double curvature;  // surface variation l0 / (l0 + l1 + l2) in [0, 1/3]; 0 when degenerate
};

// `c` is a covariance matrix (PSD up to rounding). Degenerate inputs - zero or non-finite
// matrix, rank < 2 (coincident or collinear points) - give the zero normal and curvature 0.
M3AD_HD SmallestEig smallest_eigenvector(const Sym3& c) {
  SmallestEig res{{0.0, 0.0, 0.0}, 0.0};
  double s = std::fabs(c.xx);
  s = std::fmax(s, std::fabs(c.xy)), s = std::fmax(s, std::fabs(c.xz));
  s = std::fmax(s, std::fabs(c.yy)), s = std::fmax(s, std::fabs(c.yz));
  s = std::fmax(s, std::fabs(c.zz));
  if (!(s > 0) || !std::isfinite(s)) return res;
  const double inv = 1.0 / s;
  const Sym3 a{c.xx * inv, c.xy * inv, c.xz * inv, c.yy * inv, c.yz * inv, c.zz * inv};
  const double off = a.xy * a.xy + a.xz * a.xz + a.yz * a.yz;
  double l0, l1, l2;
  Vec3d n;
  if (off == 0.0) {
    // Diagonal: the axes are the eigenvectors; ties go to the lower axis.
    const double d[3] = {a.xx, a.yy, a.zz};
    int lo = 0;
    if (d[1] < d[lo]) lo = 1;
    if (d[2] < d[lo]) lo = 2;
    const int i1 = lo == 0 ? 1 : 0, i2 = lo == 2 ? 1 : 2;
    l0 = d[lo];
    l1 = std::fmin(d[i1], d[i2]);
    l2 = std::fmax(d[i1], d[i2]);
    n = {lo == 0 ? 1.0 : 0.0, lo == 1 ? 1.0 : 0.0, lo == 2 ? 1.0 : 0.0};
  } else {
    const double q = (a.xx + a.yy + a.zz) / 3.0;
    const double b00 = a.xx - q, b11 = a.yy - q, b22 = a.zz - q;
    const double p = std::sqrt((b00 * b00 + b11 * b11 + b22 * b22 + 2.0 * off) / 6.0);
    // det(B) / p^3 with B = A - qI; its half is cos(3 angle) of the cubic's solution.
    const double c00 = b11 * b22 - a.yz * a.yz;
    const double c01 = a.xy * b22 - a.yz * a.xz;
    const double c02 = a.xy * a.yz - b11 * a.xz;
    double half_det = (b00 * c00 - a.xy * c01 + a.xz * c02) / (p * p * p) * 0.5;
    half_det = std::fmin(std::fmax(half_det, -1.0), 1.0);
    const double angle = std::acos(half_det) / 3.0;
    const double two_thirds_pi = 2.09439510239319549;
    const double beta2 = 2.0 * std::cos(angle);
    const double beta0 = 2.0 * std::cos(angle + two_thirds_pi);
    const double beta1 = -(beta0 + beta2);
    l0 = q + p * beta0, l1 = q + p * beta1, l2 = q + p * beta2;  // l0 <= l1 <= l2
    if (half_det >= 0) {
      // l2 is the isolated eigenvalue.
      Vec3d e2;
      if (!eigvec_from_rows(a, l2, &e2)) return res;
      const Vec3d e1 = eigvec_in_plane(a, e2, l1);
      n = cross3(e1, e2);
    } else {
      if (!eigvec_from_rows(a, l0, &n)) return res;
    }
  }
  if (!(l2 > 0) || !(l1 > kCollinearRatio * l2)) return res;  // coincident or collinear
  const double len = std::sqrt(dot3(n, n));
  if (!(len > 0) || !std::isfinite(len)) return res;
  res.normal = scale3(n, 1.0 / len);
  const double l0c = std::fmax(l0, 0.0);
  res.curvature = l0c / (l0c + l1 + l2);
  return res;
}

}  // namespace m3ad
