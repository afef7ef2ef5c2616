// Pixel sampling geometry for grid_to_points: from continuous pixel coordinates to the pixel
// rows (y * W + x) and interpolation weights that the segment reductions (scatter/) consume.
//
// Coordinates: uv[..., 0] = x (column direction, 0..W), uv[..., 1] = y (row direction, 0..H).
// align_corners=false: pixel (i, j) covers [j, j+1) x [i, i+1), its centre is (j+0.5, i+0.5);
//   the index-space coordinate is u - 0.5 (grid_sample's normalised -1 / +1 is u = 0 / W).
// align_corners=true: the centre of pixel (i, j) is (j, i); index space is u itself
//   (grid_sample's -1 / +1 is u = 0 / W-1).
// Bilinear: corners nw (x0, y0), ne (x0+1, y0), sw (x0, y0+1), se (x0+1, y0+1) with
//   x0 = floor(ix), fx = ix - x0 (likewise y) and weights (1-fx)(1-fy), fx(1-fy), (1-fx)fy, fx*fy,
//   computed in double; a corner outside the image has index -1 and weight 0 (zero padding).
// Nearest: the pixel at rint(ix), rint(iy) (round half to even, as grid_sample), -1 outside.
// Non-finite coordinates (possible only with value checks off) select no pixel.
#pragma once
#include <cstdint>

#include "common/dtype.h"
#include "common/launch.h"

namespace m3ad {

struct PixelCornersParams {
  const void* uv = nullptr;          // (B, N, 2) contiguous
  int64_t* index = nullptr;          // forward out: (B, N, K), K = 4 bilinear / 1 nearest
  void* weights = nullptr;           // forward out: (B, N, K) (nearest: 1, or 0 outside)
  const void* grad_weights = nullptr;  // backward in: (B, N, 4), bilinear only
  void* grad_uv = nullptr;           // backward out: (B, N, 2)
  int64_t B = 0, N = 0, H = 0, W = 0;
  bool bilinear = true, align_corners = false;
  DType dtype = DType::kFloat32;
};

void pixel_corners_cpu(const PixelCornersParams& p);
void pixel_corners_backward_cpu(const PixelCornersParams& p);
void pixel_corners_cuda(const PixelCornersParams& p, const Device& dev);
void pixel_corners_backward_cuda(const PixelCornersParams& p, const Device& dev);

}  // namespace m3ad
