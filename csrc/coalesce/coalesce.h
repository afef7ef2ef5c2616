// Merge the entries of each row of an (idx, weight) table that name the same source, summing
// their weights: turns a cell's 8x8 pixels x k neighbours (192 entries) into the handful of
// distinct centers it touches, so the feature gather that follows does ~10x less work.
//
// Row r of batch b: entries e in [0, E) with idx[b, r, e] in [0, N) (others are skipped) become
// out_idx[b, r, 0..U) in ascending source order, each with the sum of its entries' weights added
// in ascending e (deterministic); slots past the row's distinct count get idx -1, weight 0.
// slot[b, r, e] is the output slot of entry e (-1 if skipped), so the weight gradient is a gather.
// U is the caller's bound on distinct sources per row (rows with more are a caller error: the
// adapter computes U exactly first with count_only).
#pragma once
#include <cstdint>

#include "common/dtype.h"

namespace m3ad {

struct CoalesceParams {
  const int64_t* idx = nullptr;  // (B, R, E)
  const void* w = nullptr;       // (B, R, E)
  int64_t* out_idx = nullptr;    // (B, R, U)
  void* out_w = nullptr;         // (B, R, U)
  int64_t* slot = nullptr;       // (B, R, E)
  int64_t* distinct = nullptr;   // count_only: (B, R) distinct sources per row
  int64_t B = 0, R = 0, E = 0, U = 0, N = 0;
  bool count_only = false;
  DType dtype = DType::kFloat32;
};

void coalesce_rows_cpu(const CoalesceParams& p);

}  // namespace m3ad
