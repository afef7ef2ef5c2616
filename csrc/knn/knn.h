// K nearest neighbours of every p1 point among the p2 points of the same cloud.
//
// Result contract (CPU and CUDA alike): for each valid query, the K nearest valid p2 points in
// ascending (distance, index) order, so equal distances go to the lower index. Distance is the
// squared Euclidean distance (norm 2) or the L1 distance (norm 1), summed over dims in index
// order without FMA. Slots past lengths2 and queries past lengths1 get index -1, distance 0.
#pragma once
#include <cstddef>
#include <cstdint>

#include "common/dtype.h"
#include "common/launch.h"
#include "common/pair_query.h"

namespace m3ad {

struct KnnParams : PairQuery {
  int norm = 2;         // 2: squared Euclidean, 1: L1
  int select_mode = 0;  // CUDA block-select path: KnnSelectMode (knn/knn_select.h), auto by size
  // knn_within_cpu only: when set, the indices go here as int32 (idx unused): FPFH's padded
  // (P, max_nn) list at half the memory.
  int32_t* idx32 = nullptr;
  // knn_within_cpu with idx32 only, when set: packed rows. Row r's m <= K neighbours go to
  // idx32[row_start[r], + m) with row_count[r] = m, no padding. Each task of the search packs
  // its rows one after another from the start of its own rows' K-wide slots, so the rest of the
  // (B * P1 * K) buffer is never touched: about the neighbours' worth of it becomes resident
  // (FPFH at 100k points with ~50 of max_nn = 100 in the radius: ~20 instead of 40 MB).
  int64_t* row_start = nullptr;
  int32_t* row_count = nullptr;
};

// Row r as a packed row at idx32[at, at + m), from its -1 padded K indices; returns m.
inline int64_t pack_row(const KnnParams& p, int64_t r, const int64_t* idx, int64_t at) {
  int64_t m = 0;
  for (; m < p.K && idx[m] >= 0; ++m) p.idx32[at + m] = static_cast<int32_t>(idx[m]);
  p.row_start[r] = at;
  p.row_count[r] = static_cast<int32_t>(m);
  return m;
}

void knn_cpu(const KnnParams& p);
void knn_cuda(const KnnParams& p, const Device& dev);
// Of the K nearest (3-D, squared L2), only those at distance < max_dist (as T), (0, -1) padded:
// the hybrid neighbourhoods of normals and FPFH with a radius. The grid and tree searches stop at
// the bound instead of collecting K neighbours the caller drops (CUDA: KnnTilesParams::max_dist).
// p.dists may be null: only the indices are written (FPFH needs no distances, and not writing a
// (P, K) list of them spares first touches of fresh pages).
void knn_within_cpu(const KnnParams& p, double max_dist);

}  // namespace m3ad
