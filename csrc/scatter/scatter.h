// Deterministic segment reductions: "scatter-add without float atomics".
//
// A scatter out[index[m]] += values[m] is split in two steps:
//  1. a *plan* (rows_plan): the entries m of every batch grouped by target row with a stable
//     counting sort, i.e. CSR offsets per row and the entry ids of each row in ascending order;
//  2. a *segment reduction* (segment_reduce): every output row reduces its own entries
//     sequentially, in ascending entry order, accumulating in double.
// No two threads ever write the same output element, so the result does not depend on thread
// scheduling, and because the CPU and CUDA kernels perform the same double operations in the
// same order, their results are bit-identical.
//
// The same reduction kernel also runs without a plan on fixed-size groups (row r owns entries
// r*group .. r*group+group-1): that is a weighted *gather* (out[s] = sum_k w * src[idx[s, k]]),
// the adjoint of the scatter. Together with rows_dot (per-entry dot products, for gradients of
// the weights) and scatter_max_backward, these cover the forward and backward passes of
// points_to_grid, grid_to_points, knn_gather and IDW interpolation.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>

#include "common/dtype.h"
#include "common/launch.h"

namespace m3ad {

// Must match mentor3ad_ext/ops/_scatter.py (REDUCE_TAGS).
enum class Reduce : int { kSum = 0, kMean = 1, kMax = 2 };

inline Reduce to_reduce(int tag) {
  if (tag < 0 || tag > 2) throw std::invalid_argument("mentor3ad_ext: unsupported reduce tag");
  return static_cast<Reduce>(tag);
}

// Plan: stable grouping of the B x M entries by target row.
// Row r of batch b owns order[offsets[b*R + r] .. offsets[b*R + r + 1]) (a flat CSR over all
// batches: offsets[b*R + R] == offsets[(b+1)*R]); within a row the entry ids m (0 <= m < M,
// relative to the batch) ascend. Entries whose index lies outside [0, R) (-1: "no row") are in no
// row; order[offsets[B*R]:] is filled with -1. CPU and CUDA produce identical plans.
struct RowsPlanParams {
  const int64_t* index = nullptr;  // (B, M) target row of each entry
  int64_t* offsets = nullptr;      // (B*R + 1) out
  int64_t* order = nullptr;        // (B*M) out
  void* workspace = nullptr;       // CUDA only: rows_plan_cuda_workspace_bytes()
  int64_t B = 0, M = 0, R = 0;
};

// out[b, r, c] = reduce over the entries m of row (b, r), in ascending m, of
//                w[b, m] * values[b, src(m), c]
// Entries of row r: plan given (offsets/order): as above; no plan: m in [r*group, (r+1)*group).
// Source row: src(m) = src_index[b*M + m] when given (outside [0, S): the entry is skipped),
//             otherwise m / src_group.
// Sum and mean accumulate w*v in double ((double)w * (double)v) starting from 0.0, mean divides
// by the number of non-skipped entries; empty rows give 0. Max keeps the first largest w*v (ties
// to the lowest m; NaN wins over numbers, the first NaN is kept) and stores that m in argmax,
// -1 for empty rows. Values and out may have any element strides (channels-first views).
struct SegmentReduceParams {
  const int64_t* offsets = nullptr;
  const int64_t* order = nullptr;
  int64_t group = 1;
  const int64_t* src_index = nullptr;
  int64_t src_group = 1;
  const void* weights = nullptr;  // (B, M) contiguous, or null for 1
  const void* values = nullptr;   // (B, S, C) element strides vs_b, vs_s, vs_c
  int64_t vs_b = 0, vs_s = 0, vs_c = 0;
  void* out = nullptr;  // (B, R, C) element strides os_b, os_r, os_c
  int64_t os_b = 0, os_r = 0, os_c = 0;
  int64_t* argmax = nullptr;  // kMax only: (B, R, C), strides as_b, as_r, as_c
  int64_t as_b = 0, as_r = 0, as_c = 0;
  int64_t B = 0, M = 0, S = 0, R = 0, C = 0;
  Reduce reduce = Reduce::kSum;
  DType dtype = DType::kFloat32;
};

// out[b, m] = sum_c A[b, rowA(m), c] * V[b, rowV(m), c] (0 if either row is outside its range),
// rowA(m) = a_index[b*M + m] or m / a_group, likewise rowV. Summation order (both devices): lane
// l in 0..31 sums the channels c = l, l+32, ... sequentially in double, then the 32 partials are
// combined pairwise, partial[l] + partial[l + off] for off = 16, 8, 4, 2, 1.
struct RowsDotParams {
  const void* a = nullptr;
  int64_t a_sb = 0, a_sr = 0, a_sc = 0, a_rows = 0;
  const int64_t* a_index = nullptr;
  int64_t a_group = 1;
  const void* v = nullptr;
  int64_t v_sb = 0, v_sr = 0, v_sc = 0, v_rows = 0;
  const int64_t* v_index = nullptr;
  int64_t v_group = 1;
  void* out = nullptr;  // (B, M) contiguous
  int64_t B = 0, M = 0, C = 0;
  DType dtype = DType::kFloat32;
};

// Gradient of a kMax segment reduction with respect to its values, for plans built from `index`
// with fan-out `group` (entry m reads source row m / group):
// out[b, s, c] = sum over k < group (ascending, in double) of grad[b, r, c] where m = s*group+k,
// r = index[b, m] in [0, R) and argmax[b, r, c] == m.
struct MaxBackwardParams {
  const int64_t* index = nullptr;  // (B, M)
  const int64_t* argmax = nullptr;
  int64_t am_sb = 0, am_sr = 0, am_sc = 0;
  const void* grad = nullptr;
  int64_t g_sb = 0, g_sr = 0, g_sc = 0;
  void* out = nullptr;  // (B, S, C) contiguous
  int64_t group = 1;
  int64_t B = 0, M = 0, S = 0, R = 0, C = 0;
  DType dtype = DType::kFloat32;
};

void rows_plan_cpu(const RowsPlanParams& p);
void segment_reduce_cpu(const SegmentReduceParams& p);
void rows_dot_cpu(const RowsDotParams& p);
void scatter_max_backward_cpu(const MaxBackwardParams& p);

void rows_plan_cuda(const RowsPlanParams& p, const Device& dev);
void segment_reduce_cuda(const SegmentReduceParams& p, const Device& dev);
void rows_dot_cuda(const RowsDotParams& p, const Device& dev);
void scatter_max_backward_cuda(const MaxBackwardParams& p, const Device& dev);
size_t rows_plan_cuda_workspace_bytes(int64_t B, int64_t M, int64_t R);

}  // namespace m3ad
