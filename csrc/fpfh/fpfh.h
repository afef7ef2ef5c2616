// Fast Point Feature Histograms (Rusu et al. 2009) with open3d's definition
// (compute_fpfh_feature), from precomputed neighbourhoods (the kNN op supplies them).
//
// Neighbours of row r (point i = query_index[r], or r when query_index is null): the prefix of
// idx[r] with valid indices and, when radius2 >= 0, squared distance < radius2 (the list is
// sorted by distance, so this is open3d's hybrid search). As in open3d the first entry (the
// point itself) is skipped; n is the count including it.
//
// Phase 1, SPFH (float64 workspace, (B, P, 33)): for n > 1, each pair (i, j) adds 100 / (n - 1)
// to one of 11 bins of each of its three features (pair_features.h), so every block sums to 100.
// Phase 2, FPFH: out_i = SPFH_i + per-block renormalised (to 100) sum over neighbours j of
// SPFH_j / |p_i - p_j|^2 (open3d weights by the squared distance; coincident neighbours are
// skipped). Points with n <= 1 (and padding points) get the zero histogram.
//
// All histogram arithmetic is float64 in neighbour order, one thread per row: deterministic.
#pragma once
#include <cstddef>
#include <cstdint>

#include "common/dtype.h"
#include "common/launch.h"

namespace m3ad {

constexpr int kFpfhBins = 11;
constexpr int kFpfhDim = 33;

struct FpfhParams {
  const void* points = nullptr;          // (B, P, 3)
  const void* normals = nullptr;         // (B, P, 3), same dtype as points
  const int64_t* idx = nullptr;          // (B, P, K) neighbour indices, sorted by distance
  const int32_t* idx32 = nullptr;        // the same as int32 instead (CPU only; idx unused then)
  // With idx32 only (CPU), when set: packed rows (KnnParams::row_start): row r's list is
  // idx32[row_start[r], + row_count[r]) of the (B * P * K) buffer, row_count[r] <= K.
  const int64_t* row_start = nullptr;    // (B, P)
  const int32_t* row_count = nullptr;    // (B, P)
  const void* dists = nullptr;           // (B, P, K) squared distances (read when radius2 >= 0)
  const int64_t* query_index = nullptr;  // (B, P) point of each row, or nullptr (identity)
  double* spfh = nullptr;                // workspace: fpfh_workspace_bytes(B, P)
  void* out = nullptr;                   // (B, P, 33) output, input dtype
  int64_t B = 0, P = 0, K = 0;
  double radius2 = -1.0;
  DType dtype = DType::kFloat32;
};

inline size_t fpfh_workspace_bytes(int64_t B, int64_t P) {
  return static_cast<size_t>(B) * static_cast<size_t>(P) * kFpfhDim * sizeof(double);
}

void fpfh_cpu(const FpfhParams& p);
void fpfh_cuda(const FpfhParams& p, const Device& dev);

}  // namespace m3ad
