// CPU kNN: a KD-tree per cloud for D <= kTreeMaxDim = 8 (exact pruning, see common/kdtree.h),
// an index-order scan for higher D (squared L2 from D = 9 goes through ops/_knn_dense.py's filter
// first). On uniform points the tree beat that filter up to D = 8 (1.1-2.3x) and lost from
// D = 10 (2.5-5x slower at D = 12-16), 2-core EPYC. Queries of all clouds run in parallel, each
// with a bounded top-K. In 3-D, clouds with at least 512 queries go through a cell grid first
// (knn_grid.h), any K.
#include <algorithm>
#include <limits>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "common/huge_pages.h"
#include "common/kdtree.h"
#include "common/parallel.h"
#include "knn/knn.h"
#include "knn/knn_grid.h"
#include "knn/topk_heap.h"
#include "knn/topk_sorted.h"
#include "knn/tree_query.h"

namespace m3ad {
namespace {

template <typename T, int kNorm>
T dist_dyn(const T* a, const T* b, int64_t D) {
  T d = axis_term<T, kNorm>(a[0] - b[0]);
  for (int64_t j = 1; j < D; ++j) d = d + axis_term<T, kNorm>(a[j] - b[j]);
  return d;
}

// Spreads the low 21 bits of v so that two zero bits follow each (for a 3-D Morton code).
inline uint64_t spread3(uint64_t v) {
  v &= 0x1fffff;
  v = (v | v << 32) & 0x1f00000000ffffULL;
  v = (v | v << 16) & 0x1f0000ff0000ffULL;
  v = (v | v << 8) & 0x100f00f00f00f00fULL;
  v = (v | v << 4) & 0x10c30c30c30c30c3ULL;
  v = (v | v << 2) & 0x1249249249249249ULL;
  return v;
}

// Query visiting order: along a Morton (Z) curve, so that consecutive queries walk the same
// tree paths and leaves while they are still in cache. Results still go to each query's own row.
template <typename T, int D>
std::vector<int64_t> morton_order(const T* q, int64_t n) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  if (n < 2048) return order;
  T lo[D], hi[D];
  for (int j = 0; j < D; ++j) lo[j] = hi[j] = q[j];
  for (int64_t i = 1; i < n; ++i)
    for (int j = 0; j < D; ++j) lo[j] = std::min(lo[j], q[i * D + j]), hi[j] = std::max(hi[j], q[i * D + j]);
  std::vector<uint64_t> code(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    uint64_t c = 0;
    for (int j = 0; j < std::min(D, 3); ++j) {  // the first three coordinates order the queries
      const double span = static_cast<double>(hi[j]) - static_cast<double>(lo[j]);
      const double t = span > 0 ? (static_cast<double>(q[i * D + j]) - lo[j]) / span : 0.0;
      c |= spread3(static_cast<uint64_t>(t * 2097151.0)) << j;
    }
    code[i] = c;
  }
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return code[a] < code[b]; });
  return order;
}

// A finite `bound`: only the neighbours at distance < bound (knn_within_cpu).
template <typename T, int D, int kNorm, typename Best>
void run_tree(const KnnParams& p, T bound) {
  const auto trees = build_trees<T, D>(static_cast<const T*>(p.p2), p.lengths2, p.B, p.P2, kKnnLeaf);
  const T* p1 = static_cast<const T*>(p.p1);
  T* dists = static_cast<T*>(p.dists);
  // Clouds with many queries go through the cell grid; their valid rows are then written.
  std::vector<char> gridded(static_cast<size_t>(p.B), 0);
  if constexpr (D == 3)
    for_clouds(p.B, p.P2, p.lengths2, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) gridded[b] = knn_grid_cloud<T, kNorm>(p, b, *trees[b], bound);
    });
  std::vector<std::vector<int64_t>> orders(p.B);
  parallel_for(p.B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      if (!gridded[b]) orders[b] = morton_order<T, D>(p1 + b * p.P1 * D, clamp_len(p.lengths1, b, p.P1));
  });
  parallel_for(p.B * p.P1, 64, [&](int64_t r0, int64_t r1) {
    Best heap(p.K);
    std::vector<int64_t> row(p.idx32 ? static_cast<size_t>(p.K) : 0);  // before narrowing to idx32
    // Packed rows go from the slots of the task's first row on, and never below the slots of
    // their cloud's first row (a gridded cloud's slots hold the grid's packed rows).
    int64_t cursor = r0 * p.K;
    for (int64_t s = r0; s < r1; ++s) {
      const int64_t b = s / p.P1, i = s % p.P1;
      cursor = std::max(cursor, b * p.P1 * p.K);
      const int64_t q = i < static_cast<int64_t>(orders[b].size()) ? orders[b][i] : i;
      const int64_t r = b * p.P1 + q;
      const bool valid = q < clamp_len(p.lengths1, b, p.P1);
      if (valid && gridded[b]) continue;
      heap.clear();
      if (valid && !trees[b]->empty())
        tree_query<T, D, kNorm, Best>(*trees[b], p1 + r * D, heap, strictly_below(bound));
      heap.write_sorted(dists ? dists + r * p.K : nullptr, p.idx32 ? row.data() : p.idx + r * p.K);
      if (p.row_start) cursor += pack_row(p, r, row.data(), cursor);
      else if (p.idx32) std::copy(row.begin(), row.end(), p.idx32 + r * p.K);
    }
  });
}

template <typename T, int kNorm>
void run_scan(const KnnParams& p) {
  const T* p1 = static_cast<const T*>(p.p1);
  const T* p2 = static_cast<const T*>(p.p2);
  T* dists = static_cast<T*>(p.dists);
  parallel_for(p.B * p.P1, 16, [&](int64_t r0, int64_t r1) {
    TopK<T> heap(p.K);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / p.P1, q = r % p.P1;
      heap.clear();
      if (q < clamp_len(p.lengths1, b, p.P1)) {
        const int64_t n2 = clamp_len(p.lengths2, b, p.P2);
        const T* cloud = p2 + b * p.P2 * p.D;
        for (int64_t j = 0; j < n2; ++j)
          heap.push(dist_dyn<T, kNorm>(cloud + j * p.D, p1 + r * p.D, p.D), j);
      }
      heap.write_sorted(dists + r * p.K, p.idx + r * p.K);
    }
  });
}

template <typename T, int D, int kNorm>
void run_tree(const KnnParams& p, T bound = std::numeric_limits<T>::infinity()) {
  if (p.K <= kSortedMaxK) run_tree<T, D, kNorm, SortedTopK<T>>(p, bound);
  else run_tree<T, D, kNorm, TopK<T>>(p, bound);
}

template <typename T, int kNorm>
void run(const KnnParams& p) {
  if (!with_tree_dim(p.D, [&](auto dim) { run_tree<T, decltype(dim)::value, kNorm>(p); })) run_scan<T, kNorm>(p);
}

// The (B, P1, K) outputs, before the search's first touch (huge_pages.h).
void advise_outputs(const KnnParams& p) {
  const size_t rows = static_cast<size_t>(p.B) * static_cast<size_t>(p.P1) * static_cast<size_t>(p.K);
  advise_huge_pages(p.idx, rows * sizeof(int64_t));
  if (p.row_start) advise_small_pages(p.idx32, rows * sizeof(int32_t));
  else advise_huge_pages(p.idx32, rows * sizeof(int32_t));
  advise_huge_pages(p.dists, rows * (p.dtype == DType::kFloat64 ? sizeof(double) : sizeof(float)));
}

}  // namespace

void knn_within_cpu(const KnnParams& p, double max_dist) {
  if (p.D != 3 || p.norm != 2) throw std::invalid_argument("knn_within_cpu: 3-D points, squared L2 only");
  if (p.B == 0 || p.P1 == 0 || p.K == 0) return;
  advise_outputs(p);
  dispatch_float(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    run_tree<T, 3, 2>(p, static_cast<T>(max_dist));
    return 0;
  });
}

void knn_cpu(const KnnParams& p) {
  if (p.B == 0 || p.P1 == 0 || p.K == 0) return;
  advise_outputs(p);
  dispatch_float(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    if (p.norm == 1) run<T, 1>(p);
    else run<T, 2>(p);
    return 0;
  });
}

}  // namespace m3ad
