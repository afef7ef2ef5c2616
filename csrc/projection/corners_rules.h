// Per-point arithmetic of pixel_corners (see projection.h), shared verbatim by the CPU and CUDA
// kernels so that indices, weights and gradients are bit-identical on both.
#pragma once
#include <cmath>
#include <cstdint>

#include "projection/projection.h"

#include "common/host_device.h"

namespace m3ad {
namespace corners {

struct Cell {
  bool ok;         // finite and close enough to the image for int64 corner arithmetic
  int64_t x0, y0;  // floor of the index-space coordinate
  double fx, fy;   // fractional parts
};

M3AD_HD Cell cell_of(double u, double v, const PixelCornersParams& p) {
  const double ix = p.align_corners ? u : u - 0.5;
  const double iy = p.align_corners ? v : v - 0.5;
  Cell c{false, 0, 0, 0.0, 0.0};
  // Beyond these bounds every corner is outside anyway; also false for NaN.
  if (!(ix > -2.0 && ix < static_cast<double>(p.W) + 1.0 && iy > -2.0 && iy < static_cast<double>(p.H) + 1.0))
    return c;
  const double fx0 = floor(ix), fy0 = floor(iy);
  c.ok = true;
  c.x0 = static_cast<int64_t>(fx0);
  c.y0 = static_cast<int64_t>(fy0);
  c.fx = ix - fx0;
  c.fy = iy - fy0;
  return c;
}

M3AD_HD int64_t pixel(int64_t x, int64_t y, const PixelCornersParams& p) {
  return (x >= 0 && x < p.W && y >= 0 && y < p.H) ? y * p.W + x : -1;
}

template <typename T>
M3AD_HD void forward(const PixelCornersParams& p, int64_t e) {
  const T* uv = static_cast<const T*>(p.uv) + 2 * e;
  const double u = static_cast<double>(uv[0]), v = static_cast<double>(uv[1]);
  if (!p.bilinear) {
    const double ix = p.align_corners ? u : u - 0.5;
    const double iy = p.align_corners ? v : v - 0.5;
    const double rx = rint(ix), ry = rint(iy);  // NaN fails both comparisons below
    const bool in = rx >= 0.0 && rx < static_cast<double>(p.W) && ry >= 0.0 && ry < static_cast<double>(p.H);
    p.index[e] = in ? static_cast<int64_t>(ry) * p.W + static_cast<int64_t>(rx) : -1;
    // A weight of exactly 1 keeps uv in the autograd graph (its gradient is 0, as grid_sample's).
    static_cast<T*>(p.weights)[e] = in ? T(1) : T(0);
    return;
  }
  int64_t* idx = p.index + 4 * e;
  T* w = static_cast<T*>(p.weights) + 4 * e;
  const Cell c = cell_of(u, v, p);
  if (!c.ok) {
    for (int k = 0; k < 4; ++k) idx[k] = -1, w[k] = T(0);
    return;
  }
  const double gx = 1.0 - c.fx, gy = 1.0 - c.fy;
  const double wk[4] = {gx * gy, c.fx * gy, gx * c.fy, c.fx * c.fy};
  for (int k = 0; k < 4; ++k) {
    idx[k] = pixel(c.x0 + (k & 1), c.y0 + (k >> 1), p);
    w[k] = idx[k] >= 0 ? static_cast<T>(wk[k]) : T(0);
  }
}

// d(weights)/d(uv) chained with grad_weights; index space has the same scale as uv.
template <typename T>
M3AD_HD void backward(const PixelCornersParams& p, int64_t e) {
  const T* uv = static_cast<const T*>(p.uv) + 2 * e;
  T* g = static_cast<T*>(p.grad_uv) + 2 * e;
  const Cell c = cell_of(static_cast<double>(uv[0]), static_cast<double>(uv[1]), p);
  if (!p.bilinear || !c.ok) {
    g[0] = g[1] = T(0);
    return;
  }
  const T* gw = static_cast<const T*>(p.grad_weights) + 4 * e;
  const double g0 = gw[0], g1 = gw[1], g2 = gw[2], g3 = gw[3];
  const double gx = 1.0 - c.fx, gy = 1.0 - c.fy;
  double du = 0.0, dv = 0.0;
  du = du - g0 * gy;
  du = du + g1 * gy;
  du = du - g2 * c.fy;
  du = du + g3 * c.fy;
  dv = dv - g0 * gx;
  dv = dv - g1 * c.fx;
  dv = dv + g2 * gx;
  dv = dv + g3 * c.fx;
  g[0] = static_cast<T>(du);
  g[1] = static_cast<T>(dv);
}

}  // namespace corners
}  // namespace m3ad
