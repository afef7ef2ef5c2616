// The two data-parallel steps of the sorted-tiles kNN plan (knn_tiles.h) that would otherwise
// take a dozen tensor ops each: Morton codes of a cloud in a given frame, and the boxes of its
// sorted points' tiles and super-tiles. The sorts and the search of each query's home position
// stay with the adapter (torch's radix sort). Codes only steer the speed of the search, never its
// result, so they need not match any other Morton implementation bit for bit.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>

#include "common/dtype.h"
#include "common/host_device.h"
#include "common/launch.h"
#include "knn/knn_tiles.h"

namespace m3ad {

constexpr int kMortonBits = 10;                  // cells per axis: 1024
constexpr int64_t kPaddingCode = int64_t{1} << 40;  // padding sorts last, in index order

struct MortonParams {
  const void* points = nullptr;  // (B, P, 3)
  const int64_t* lengths = nullptr;
  const void* lo = nullptr;      // (B, 3) the frame's corner
  const void* scale = nullptr;   // (B,) cells per unit
  int64_t* codes = nullptr;      // (B, P) output
  int64_t B = 0, P = 0;
  DType dtype = DType::kFloat32;
};

// The frame of each cloud's codes: the lower corner of its valid points and 1023 cells over their
// longest side (NaN coordinates left out).
struct FrameParams {
  const void* points = nullptr;  // (B, P, 3)
  const int64_t* lengths = nullptr;
  void* lo = nullptr;            // (B, 3) output; +max where a cloud is empty
  void* scale = nullptr;         // (B,) output
  int64_t B = 0, P = 0;
  DType dtype = DType::kFloat32;
};

struct TileBoxParams {
  const void* points = nullptr;  // (B, P, 3) sorted points
  const int64_t* lengths = nullptr;
  void* boxes = nullptr;         // (B, tiles, 6) output
  void* supers = nullptr;        // (B, super_tiles, 6) output
  int64_t B = 0, P = 0, tiles = 0, super_tiles = 0;
  DType dtype = DType::kFloat32;
};

void morton_frame_cpu(const FrameParams& p);
void morton_frame_cuda(const FrameParams& p, const Device& dev);
void morton_codes_cpu(const MortonParams& p);
void morton_codes_cuda(const MortonParams& p, const Device& dev);
void tile_boxes_cpu(const TileBoxParams& p);
void tile_boxes_cuda(const TileBoxParams& p, const Device& dev);

// An empty box for frame_grow: lo = +max, hi = -max.
template <typename T>
M3AD_HD void frame_empty(T* lo, T* hi) {
  for (int j = 0; j < 3; ++j) lo[j] = std::numeric_limits<T>::max(), hi[j] = -std::numeric_limits<T>::max();
}

// Grows the box (lo, hi) by the point or box corner x (lo) / y (hi); a NaN coordinate never wins.
template <typename T>
M3AD_HD void frame_grow(T* lo, T* hi, const T* x, const T* y) {
  for (int j = 0; j < 3; ++j) {
    lo[j] = x[j] < lo[j] ? x[j] : lo[j];
    hi[j] = y[j] > hi[j] ? y[j] : hi[j];
  }
}

// Cells per unit of the frame of the box (lo, hi): 1023 over its longest side (at least the
// smallest normal T, so that a point-sized or empty cloud gets a finite or infinite scale, no NaN).
template <typename T>
M3AD_HD T frame_scale(const T* lo, const T* hi) {
  T extent = hi[0] - lo[0];
  for (int j = 1; j < 3; ++j) extent = hi[j] - lo[j] > extent ? hi[j] - lo[j] : extent;
  const T tiny = std::numeric_limits<T>::min();
  return T((1 << kMortonBits) - 1) / (extent > tiny ? extent : tiny);
}

// The frame of a cloud's n valid points x: writes its lower corner to lo, returns its scale.
template <typename T>
T cloud_frame(const T* x, int64_t n, T* lo) {
  T hi[3];
  frame_empty(lo, hi);
  for (int64_t i = 0; i < n; ++i) frame_grow(lo, hi, x + i * 3, x + i * 3);
  return frame_scale(lo, hi);
}

M3AD_HD int64_t spread_bits3(int64_t v) {  // two zero bits after each of the low 10 bits
  int64_t out = 0;
  for (int bit = 0; bit < kMortonBits; ++bit) out |= ((v >> bit) & 1) << (3 * bit);
  return out;
}

template <typename T>
M3AD_HD int64_t morton_code(const MortonParams& p, int64_t b, int64_t i) {
  if (i >= clamp_len(p.lengths, b, p.P)) return kPaddingCode + i;
  const T* x = static_cast<const T*>(p.points) + (b * p.P + i) * 3;
  const T* lo = static_cast<const T*>(p.lo) + b * 3;
  const T scale = static_cast<const T*>(p.scale)[b];
  int64_t code = 0;
  for (int j = 0; j < 3; ++j) {
    const T c = (x[j] - lo[j]) * scale;
    const T top = T((1 << kMortonBits) - 1);
    const int64_t cell = c >= T(0) ? static_cast<int64_t>(c < top ? c : top) : 0;  // NaN: cell 0
    code |= spread_bits3(cell) << j;
  }
  return code;
}

// Tile t of cloud b: min and max of its valid sorted points (lo > hi when it has none).
template <typename T>
M3AD_HD void tile_box(const TileBoxParams& p, int64_t b, int64_t t) {
  const int64_t n = clamp_len(p.lengths, b, p.P);
  const T* x = static_cast<const T*>(p.points) + b * p.P * 3;
  T box[6] = {T(INFINITY), T(INFINITY), T(INFINITY), T(-INFINITY), T(-INFINITY), T(-INFINITY)};
  const int64_t j1 = (t + 1) * kKnnTile < n ? (t + 1) * kKnnTile : n;
  for (int64_t j = t * kKnnTile; j < j1; ++j)
    for (int d = 0; d < 3; ++d) {
      const T v = x[j * 3 + d];
      box[d] = v < box[d] ? v : box[d];
      box[3 + d] = v > box[3 + d] ? v : box[3 + d];
    }
  T* out = static_cast<T*>(p.boxes) + (b * p.tiles + t) * 6;
  for (int d = 0; d < 6; ++d) out[d] = box[d];
}

// Super-tile s of cloud b: the union of its tiles' boxes (call after every tile_box of the cloud).
template <typename T>
M3AD_HD void super_box(const TileBoxParams& p, int64_t b, int64_t s) {
  const T* boxes = static_cast<const T*>(p.boxes) + b * p.tiles * 6;
  T box[6] = {T(INFINITY), T(INFINITY), T(INFINITY), T(-INFINITY), T(-INFINITY), T(-INFINITY)};
  const int64_t t1 = (s + 1) * kKnnSuper < p.tiles ? (s + 1) * kKnnSuper : p.tiles;
  for (int64_t t = s * kKnnSuper; t < t1; ++t)
    for (int d = 0; d < 3; ++d) {
      const T lo = boxes[t * 6 + d], hi = boxes[t * 6 + 3 + d];
      box[d] = lo < box[d] ? lo : box[d];
      box[3 + d] = hi > box[3 + d] ? hi : box[3 + d];
    }
  T* out = static_cast<T*>(p.supers) + (b * p.super_tiles + s) * 6;
  for (int d = 0; d < 6; ++d) out[d] = box[d];
}

}  // namespace m3ad
