// A uniform grid over one 3-D cloud, for answering many kNN queries at once.
//
// Why: a KD-tree search pays per query for the descent, the branchy pruning and a result set
// that is refilled from scratch. When every cell of a query's 3 x 3 x 3 block can be scanned
// as nine contiguous runs, the same answer costs a few hundred straight-line distance
// evaluations, and queries of one cell share the block while it is in cache.
//
// Exactness: the grid only proposes candidates. A query's answer is accepted only when its
// K-th distance is strictly below a lower bound on the distance of every point outside its
// block (see outside_bound); otherwise the caller answers it with the KD-tree. The bound comes
// from the actual extreme coordinates of the slabs beyond the block, not from cell arithmetic,
// so float rounding of cell indices cannot make it wrong. Candidate distances use the same
// float operations, in the same order, as sqdist, so both paths give identical bits.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "common/kdtree.h"

namespace m3ad {

template <typename T>
class CellGrid3 {
 public:
  // A run of candidate points: [begin, end) in grid order.
  struct Run {
    int64_t begin, end;
  };

  // ok() is false when the cloud is empty, has more than 2^31 - 1 points, or needs more than
  // max_cells cells at side h.
  CellGrid3(const T* pts, int64_t n, double h, int64_t max_cells) {
    if (n == 0 || n > std::numeric_limits<int32_t>::max() || !(h > 0) || !std::isfinite(h)) return;
    T lo[3], hi[3];
    for (int j = 0; j < 3; ++j) lo[j] = hi[j] = pts[j];
    for (int64_t i = 1; i < n; ++i)
      for (int j = 0; j < 3; ++j) lo[j] = std::min(lo[j], pts[i * 3 + j]), hi[j] = std::max(hi[j], pts[i * 3 + j]);
    int64_t cells = 1;
    for (int j = 0; j < 3; ++j) {
      lo_[j] = lo[j];
      inv_h_[j] = static_cast<T>(1.0 / h);
      // Every point's cell index is at most that of the largest coordinate (cells are monotone).
      const T top = (hi[j] - lo[j]) * inv_h_[j];
      if (!(static_cast<double>(top) < static_cast<double>(max_cells))) return;
      dims_[j] = static_cast<int64_t>(top) + 1;
      cells *= dims_[j];
      if (cells > max_cells) return;
    }
    // Counting sort of the points by cell: each cell, and each x-row of cells, is contiguous.
    std::vector<int64_t> cell_of(static_cast<size_t>(n));
    start_.assign(static_cast<size_t>(cells) + 1, 0);
    for (int64_t i = 0; i < n; ++i) {
      cell_of[i] = cell(pts + i * 3);
      ++start_[cell_of[i] + 1];
    }
    for (int64_t c = 0; c < cells; ++c) start_[c + 1] += start_[c];
    std::vector<int32_t> fill(start_.begin(), start_.end() - 1);
    for (int j = 0; j < 3; ++j) xyz_[j].resize(static_cast<size_t>(n));
    index_.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {  // in index order: a cell lists its points by index
      const int64_t s = fill[cell_of[i]]++;
      for (int j = 0; j < 3; ++j) xyz_[j][s] = pts[i * 3 + j];
      index_[s] = i;
    }
    // Extreme coordinates per slab, then running max below / min above.
    for (int j = 0; j < 3; ++j) {
      below_max_[j].assign(static_cast<size_t>(dims_[j]), -std::numeric_limits<T>::infinity());
      above_min_[j].assign(static_cast<size_t>(dims_[j]), std::numeric_limits<T>::infinity());
      for (int64_t i = 0; i < n; ++i) {
        const int64_t s = axis_cell(pts[i * 3 + j], j);
        below_max_[j][s] = std::max(below_max_[j][s], pts[i * 3 + j]);
        above_min_[j][s] = std::min(above_min_[j][s], pts[i * 3 + j]);
      }
      for (int64_t s = 1; s < dims_[j]; ++s) below_max_[j][s] = std::max(below_max_[j][s], below_max_[j][s - 1]);
      for (int64_t s = dims_[j] - 2; s >= 0; --s) above_min_[j][s] = std::min(above_min_[j][s], above_min_[j][s + 1]);
    }
    ok_ = true;
  }

  bool ok() const { return ok_; }
  int64_t num_cells() const { return static_cast<int64_t>(start_.size()) - 1; }

  // The cell a point (or a query, clamped into the grid) falls in; monotone in each coordinate.
  int64_t axis_cell(T x, int j) const {
    const T t = (x - lo_[j]) * inv_h_[j];
    const int64_t c = t > 0 ? static_cast<int64_t>(std::min<T>(t, static_cast<T>(dims_[j] - 1))) : 0;
    return std::min<int64_t>(c, dims_[j] - 1);
  }
  int64_t cell(const T* p) const { return (axis_cell(p[2], 2) * dims_[1] + axis_cell(p[1], 1)) * dims_[0] + axis_cell(p[0], 0); }
  void coords(int64_t c, int64_t* cx) const {
    cx[0] = c % dims_[0];
    cx[1] = (c / dims_[0]) % dims_[1];
    cx[2] = c / (dims_[0] * dims_[1]);
  }

  // The runs of the 3 x 3 x 3 block around cell c (at most 11): the cell itself first, then its
  // two x-neighbours, then the other eight x-rows. Likely neighbours come first, so the K-th
  // distance drops early and fewer later candidates enter the top-K.
  int block_runs(int64_t c, Run* runs, int64_t* total) const {
    int64_t cx[3];
    coords(c, cx);
    const int64_t x0 = std::max<int64_t>(cx[0] - 1, 0), x1 = std::min<int64_t>(cx[0] + 1, dims_[0] - 1);
    int nr = 0;
    *total = 0;
    auto add = [&](int64_t first, int64_t last) {  // cells [first, last] of one x-row
      const Run r{start_[first], start_[last + 1]};
      if (r.end > r.begin) runs[nr++] = r, *total += r.end - r.begin;
    };
    add(c, c);
    if (x0 < cx[0]) add(c - 1, c - 1);
    if (x1 > cx[0]) add(c + 1, c + 1);
    for (int64_t dz = -1; dz <= 1; ++dz)
      for (int64_t dy = -1; dy <= 1; ++dy) {
        const int64_t y = cx[1] + dy, z = cx[2] + dz;
        if ((!dy && !dz) || y < 0 || y >= dims_[1] || z < 0 || z >= dims_[2]) continue;
        const int64_t row = (z * dims_[1] + y) * dims_[0];
        add(row + x0, row + x1);
      }
    return nr;
  }

  // A lower bound of the (computed) distance from q to every point outside the block of cell c.
  template <int kNorm>
  T outside_bound(int64_t c, const T* q) const {
    int64_t cx[3];
    coords(c, cx);
    T bound = std::numeric_limits<T>::infinity();
    for (int j = 0; j < 3; ++j) {
      if (cx[j] - 2 >= 0) {  // points two or more slabs below
        const T g = q[j] - below_max_[j][cx[j] - 2];
        bound = std::min(bound, g > 0 ? axis_term<T, kNorm>(g) : T(0));
      }
      if (cx[j] + 2 < dims_[j]) {  // two or more slabs above
        const T g = above_min_[j][cx[j] + 2] - q[j];
        bound = std::min(bound, g > 0 ? axis_term<T, kNorm>(g) : T(0));
      }
    }
    return bound;
  }

  const T* x() const { return xyz_[0].data(); }
  const T* y() const { return xyz_[1].data(); }
  const T* z() const { return xyz_[2].data(); }
  const int64_t* index() const { return index_.data(); }

 private:
  bool ok_ = false;
  T lo_[3] = {0, 0, 0}, inv_h_[3] = {1, 1, 1};
  int64_t dims_[3] = {1, 1, 1};
  std::vector<int32_t> start_;  // the caller's KD-tree already limits a cloud to < 2^31 points
  std::vector<T> xyz_[3];
  std::vector<int64_t> index_;
  std::vector<T> below_max_[3], above_min_[3];
};

}  // namespace m3ad
