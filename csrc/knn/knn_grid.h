// The many-queries path of the CPU kNN (3-D): a cell grid proposes each query's candidates,
// the KD-tree answers the queries the grid cannot prove (see cell_grid.h). Same results, bit
// for bit, as the tree alone.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/launch.h"
#include "common/parallel.h"
#include "knn/cell_grid.h"
#include "knn/knn.h"
#include "knn/topk_sorted.h"
#include "knn/tree_query.h"

namespace m3ad {

// The pre-filter of a query's candidates keeps distances up to this multiple of the K-th
// distance of the previous query of its cell (a wider net costs selection work, a narrower one
// more retries).
constexpr double kGuessScale = 1.5;

// Below these sizes the tree alone is as fast as building a grid.
constexpr int64_t kGridMinQueries = 512;
constexpr int64_t kGridMinPoints = 2048;

// Cell side: the K-th neighbour distance of most queries (the 90th percentile, exact, from the
// tree, on a sample), so that the 3 x 3 x 3 block around a query usually holds its K nearest
// with room to prove it. (The 75th left one query in nine of a surface to the tree: once the
// selection became cheap, 5-25 % slower than the larger blocks of the 90th.)
template <typename T, int kNorm>
double grid_cell_side(const KdTree<T, 3>& tree, const T* q, int64_t n1, int64_t K) {
  constexpr int64_t kSamples = 64;
  const int64_t step = std::max<int64_t>(1, n1 / kSamples);
  std::vector<double> radius;
  SortedTopK<T> heap(K);
  for (int64_t i = 0; i < n1; i += step) {
    heap.clear();
    tree_query<T, 3, kNorm>(tree, q + i * 3, heap);
    if (!heap.full()) continue;
    const double w = static_cast<double>(heap.worst());
    radius.push_back(kNorm == 2 ? std::sqrt(w) : w);
  }
  if (radius.empty()) return 0;
  const size_t at = radius.size() * 9 / 10;
  std::nth_element(radius.begin(), radius.begin() + at, radius.end());
  return radius[at];
}

// A candidate as one integer whose order is the (distance, index) order: a non-negative
// float's bits order like the float, so (bits, index) packs into 64 bits for float and 128 for
// double, and the selection below compares integers.
template <typename T, typename Bits, typename Packed>
struct PackedCandidate {
  static_assert(sizeof(Bits) == sizeof(T) && sizeof(Packed) == 2 * sizeof(T), "distance bits, then index");
  using type = Packed;
  static constexpr int kShift = 8 * sizeof(Bits);
  static type make(T d, int64_t index) {
    Bits bits;
    std::memcpy(&bits, &d, sizeof bits);
    bits &= ~Bits(0) >> 1;  // -0 -> +0: the sign bit would break the order
    return (static_cast<type>(bits) << kShift) | static_cast<Bits>(index);
  }
  static T distance(type k) {
    const Bits bits = static_cast<Bits>(k >> kShift);
    T d;
    std::memcpy(&d, &bits, sizeof d);
    return d;
  }
  static int64_t index(type k) { return static_cast<int64_t>(static_cast<Bits>(k)); }
};

template <typename T>
struct CandidateKey;
template <>
struct CandidateKey<float> : PackedCandidate<float, uint32_t, uint64_t> {};
__extension__ typedef unsigned __int128 uint128_for_keys;  // GCC/Clang; both compile the CPU code
template <>
struct CandidateKey<double> : PackedCandidate<double, uint64_t, uint128_for_keys> {};

// Scratch of one worker for select_block: room for every candidate of a usable block.
template <typename T>
struct SelectScratch {
  using Key = typename CandidateKey<T>::type;
  explicit SelectScratch(int64_t max_candidates)
      : keys(static_cast<size_t>(max_candidates)), sorted(static_cast<size_t>(max_candidates)),
        dist(static_cast<size_t>(max_candidates)), bucket(static_cast<size_t>(max_candidates)),
        start(static_cast<size_t>(max_candidates) * 2 + 2) {}
  std::vector<Key> keys, sorted;
  std::vector<T> dist;
  std::vector<int32_t> bucket;
  std::vector<int32_t> start;
};

// Sorts the K smallest of keys[0, n) into s.sorted[0, K). Every key goes to a bucket by its
// distance, linearly over [0, range] (beyond it, and NaN: the last bucket); the map is
// monotone, so buckets come out in key order and only keys sharing a bucket are compared,
// usually none: a few passes without data-dependent branches instead of a selection and a
// sort, whose mispredicted comparisons were most of a query's cost.
template <typename T>
void bucket_sort_smallest(SelectScratch<T>& s, int64_t n, int64_t K, T range) {
  using Key = CandidateKey<T>;
  int64_t nb = 16;
  while (nb < n) nb <<= 1;
  const T scale = range > 0 ? static_cast<T>(nb) / range : T(0);
  int32_t* start = s.start.data();
  std::fill(start, start + nb + 1, 0);
  for (int64_t i = 0; i < n; ++i) {
    const T x = Key::distance(s.keys[i]) * scale;
    const int32_t b = x < static_cast<T>(nb) ? static_cast<int32_t>(x) : static_cast<int32_t>(nb - 1);
    s.bucket[i] = b;
    ++start[b + 1];
  }
  for (int64_t b = 0; b < nb; ++b) start[b + 1] += start[b];
  for (int64_t i = 0; i < n; ++i) s.sorted[start[s.bucket[i]]++] = s.keys[i];
  // start[b] is now the end of bucket b.
  for (int64_t b = 0, begin = 0; begin < K; begin = start[b++]) {
    typename Key::type* first = s.sorted.data() + begin;
    const int64_t m = start[b] - begin;
    if (m > 16) {
      std::sort(first, first + m);
    } else {
      for (int64_t i = 1; i < m; ++i)
        for (int64_t j = i; j > 0 && first[j] < first[j - 1]; --j) std::swap(first[j], first[j - 1]);
    }
  }
}

// The K nearest candidates of the block, sorted, into s.sorted[0, m); returns m: K, or with a
// finite `bound` (only candidates at distance < bound) possibly fewer. All distances are
// computed straight through (no insertion-sorted top-K that shifts for every accepted
// candidate), then bucket_sort_smallest.
// `guess` (a neighbouring query's K-th distance, scaled up; +inf for none) pre-filters the
// candidates without branches, so that usually ~1.5 K keys are sorted instead of all; when
// fewer than K pass, all candidates are taken. Either way the result is exact.
template <typename T, int kNorm>
int64_t select_block(const CellGrid3<T>& grid, const typename CellGrid3<T>::Run* runs, int nr, const T* qq,
                     int64_t K, T guess, T bound, SelectScratch<T>& s) {
  using Key = CandidateKey<T>;
  const T *gx = grid.x(), *gy = grid.y(), *gz = grid.z();
  const int64_t* gi = grid.index();
  typename Key::type* keys = s.keys.data();
  const bool bounded = bound < std::numeric_limits<T>::infinity();
  // The distances first, in a loop the compiler runs in SIMD lanes (sqdist's operations, in its
  // order, x then y then z: identical values to the tree's), then the keys of those that pass.
  T* dist = s.dist.data();
  for (int64_t k = 0, t = 0; k < nr; t += runs[k].end - runs[k].begin, ++k) {
    const T *x = gx + runs[k].begin, *y = gy + runs[k].begin, *z = gz + runs[k].begin;
    T* out = dist + t;
    const int64_t len = runs[k].end - runs[k].begin;
    for (int64_t j = 0; j < len; ++j)
      out[j] = axis_term<T, kNorm>(x[j] - qq[0]) + axis_term<T, kNorm>(y[j] - qq[1]) +
               axis_term<T, kNorm>(z[j] - qq[2]);
  }
  // a guess at or past the bound filters nothing the bound does not: one pass over all
  for (bool all = !(guess < std::numeric_limits<T>::infinity()) || (bounded && !(guess < bound));; all = true) {
    int64_t n = 0;
    T hi = 0;
    // One comparison per candidate, as unbounded (two cost a 100k-point search 35 %: the loop no
    // longer vectorised). `take_all`, not a +inf limit: NaN (value checks off) must count there.
    const bool take_all = all && !bounded;
    const T below = strictly_below(bound);
    const T limit = bounded ? (all ? below : std::min(guess, below)) : guess;
    for (int64_t k = 0, t = 0; k < nr; ++k)
      for (int64_t j = runs[k].begin; j < runs[k].end; ++j, ++t) {
        const T d = dist[t];
        keys[n] = Key::make(d, gi[j]);
        hi = d > hi ? d : hi;
        n += take_all || d <= limit;
      }
    if (n >= K || all) {  // all: n is every candidate below the bound (>= K unbounded: the caller checked)
      const int64_t m = n < K ? n : K;
      bucket_sort_smallest<T>(s, n, m, all ? (bounded && bound < hi ? bound : hi) : guess);
      return m;
    }
  }
}

// The K nearest of each of the n1 queries q among the n2 points pts, handed to
// sink(i, dists, idx, cursor) (K pairs in ascending (distance, index) order, in buffers that
// live until the call returns) from the worker threads, each query exactly once. `cursor`
// belongs to the calling task, for sinks that pack rows: it starts at K times the position of
// the task's first query in the grid's visiting order, and the task visits its queries at the
// positions that follow (KnnParams::row_start). Returns false, having
// called nothing, when the grid does not apply (too few queries or points, K > n2, a cloud
// the grid cannot cover); the caller then searches the tree itself.
// A finite `bound` (squared L2) keeps only the neighbours at distance < bound, (0, -1) padded:
// cells of at most its side then hold every such neighbour of a query in its 3 x 3 x 3 block.
template <typename T, int kNorm, typename Sink>
bool knn_grid_each(const T* q, int64_t n1, const T* pts, int64_t n2, int64_t K, const KdTree<T, 3>& tree,
                   const Sink& sink, T bound = std::numeric_limits<T>::infinity()) {
  const bool bounded = bound < std::numeric_limits<T>::infinity();
  if (n1 < kGridMinQueries || n2 < kGridMinPoints || tree.empty()) return false;
  double h = grid_cell_side<T, kNorm>(tree, q, n1, K);
  if (bounded) h = std::min(h, kNorm == 2 ? std::sqrt(static_cast<double>(bound)) : static_cast<double>(bound));
  if (!(h > 0) || !std::isfinite(h)) return false;
  const double sampled_side = h;
  // Memory stays O(N) (at most ~100 bytes per point): a grid too fine for the cloud's extent
  // (a thin structure in a big box) gets coarser cells instead.
  const int64_t max_cells = 8 * n2 + 65536;
  double span[3] = {0, 0, 0};
  for (int j = 0; j < 3; ++j) {
    T lo = pts[j], hi = pts[j];
    for (int64_t i = 1; i < n2; ++i) lo = std::min(lo, pts[i * 3 + j]), hi = std::max(hi, pts[i * 3 + j]);
    span[j] = static_cast<double>(hi) - static_cast<double>(lo);
  }
  if (!(std::isfinite(span[0]) && std::isfinite(span[1]) && std::isfinite(span[2]))) return false;
  const auto cells_at = [&](double side) {
    return (std::floor(span[0] / side) + 1) * (std::floor(span[1] / side) + 1) * (std::floor(span[2] / side) + 1);
  };
  while (cells_at(h) > 0.9 * static_cast<double>(max_cells)) h *= 1.1;  // 0.9: room for rounding
  CellGrid3<T> grid(pts, n2, h, max_cells);
  if (!grid.ok()) return false;

  // Queries bucketed by cell (counting sort, index order within a cell).
  const int64_t cells = grid.num_cells();
  std::vector<int64_t> qcell(static_cast<size_t>(n1)), qstart(static_cast<size_t>(cells) + 1, 0);
  for (int64_t i = 0; i < n1; ++i) ++qstart[(qcell[i] = grid.cell(q + i * 3)) + 1];
  for (int64_t c = 0; c < cells; ++c) qstart[c + 1] += qstart[c];
  std::vector<int64_t> qorder(static_cast<size_t>(n1)), busy;
  {
    std::vector<int64_t> fill(qstart.begin(), qstart.end() - 1);
    for (int64_t i = 0; i < n1; ++i) qorder[fill[qcell[i]]++] = i;
    for (int64_t c = 0; c < cells; ++c)
      if (qstart[c + 1] > qstart[c]) busy.push_back(c);
  }
  // A block far denser than the sample suggested is cheaper on the tree.
  const int64_t max_candidates = 64 * K + 2048;
  using Key = CandidateKey<T>;
  // Before a cell has a K-th distance of its own, the sampled typical one (the cell side).
  const T first_guess = axis_term<T, kNorm>(static_cast<T>(sampled_side)) * static_cast<T>(kGuessScale);
  parallel_for(static_cast<int64_t>(busy.size()), 16, [&](int64_t c0, int64_t c1) {
    int64_t cursor = qstart[busy[c0]] * K;
    SortedTopK<T> heap(K);
    typename CellGrid3<T>::Run runs[11];
    SelectScratch<T> scratch(max_candidates);
    std::vector<T> d(static_cast<size_t>(K));
    std::vector<int64_t> idx(static_cast<size_t>(K));
    for (int64_t ci = c0; ci < c1; ++ci) {
      const int64_t c = busy[ci];
      int64_t total = 0;
      const int nr = grid.block_runs(c, runs, &total);
      const bool usable = (bounded || total >= K) && total <= max_candidates;
      T guess = first_guess;
      for (int64_t s = qstart[c]; s < qstart[c + 1]; ++s) {
        const int64_t i = qorder[s];
        const T* qq = q + i * 3;
        bool proven = false;
        // The block's K-th distance bounds the true one (they are K real points): it prunes
        // the tree search of a query the grid could not prove.
        // Bounded, every point outside the block at or beyond the bound proves the block too.
        T kth = std::numeric_limits<T>::infinity();
        int64_t m = 0;
        if (usable) {
          m = select_block<T, kNorm>(grid, runs, nr, qq, K, guess, bound, scratch);
          const T outside = grid.template outside_bound<kNorm>(c, qq);
          kth = m == K ? Key::distance(scratch.sorted[K - 1]) : kth;
          guess = (m == K ? kth : bound) * static_cast<T>(kGuessScale);
          proven = kth < outside || (bounded && !(bound > outside));
        }
        if (proven) {
          for (int64_t k = 0; k < m; ++k)
            d[k] = Key::distance(scratch.sorted[k]), idx[k] = Key::index(scratch.sorted[k]);
          std::fill(d.begin() + m, d.end(), T(0));
          std::fill(idx.begin() + m, idx.end(), int64_t{-1});
        } else {
          heap.clear();
          tree_query<T, 3, kNorm>(tree, qq, heap, std::min(kth, strictly_below(bound)));
          heap.write_sorted(d.data(), idx.data());
        }
        sink(i, static_cast<const T*>(d.data()), static_cast<const int64_t*>(idx.data()), cursor);
      }
    }
  });
  return true;
}

// knn_grid_each for cloud b of a kNN call, writing its rows of dists/idx (or packing them, within
// the cloud's own rows' slots).
template <typename T, int kNorm>
bool knn_grid_cloud(const KnnParams& p, int64_t b, const KdTree<T, 3>& tree, T bound) {
  T* dists = static_cast<T*>(p.dists);
  const int64_t K = p.K;
  return knn_grid_each<T, kNorm>(
      static_cast<const T*>(p.p1) + b * p.P1 * 3, clamp_len(p.lengths1, b, p.P1),
      static_cast<const T*>(p.p2) + b * p.P2 * 3, clamp_len(p.lengths2, b, p.P2), K, tree,
      [&](int64_t i, const T* d, const int64_t* idx, int64_t& cursor) {
        const int64_t r = b * p.P1 + i;
        if (dists) std::copy(d, d + K, dists + r * K);
        if (p.row_start) cursor += pack_row(p, r, idx, b * p.P1 * K + cursor);
        else if (p.idx32) std::copy(idx, idx + K, p.idx32 + r * K);
        else std::copy(idx, idx + K, p.idx + r * K);
      },
      bound);
}

}  // namespace m3ad
