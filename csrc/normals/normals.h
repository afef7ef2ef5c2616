// Per-point normals by PCA of precomputed neighbourhoods (the kNN op supplies them).
//
// For each query row r (point i = query_index[r], or r itself when query_index is null): the
// neighbours are idx[r, 0..], sorted by distance, -1 padded; with radius2 >= 0 only the prefix
// with dists[r, k] < radius2 counts (open3d's hybrid search). The covariance of the neighbour
// coordinates is accumulated in float64 around their mean (two passes, robust far from the
// origin); its smallest eigenvector (sym_eigen3.h) is the normal, flipped towards the viewpoint
// when `orient` is set (flipped when dot(n, viewpoint - p) < 0). Fewer than 3 neighbours,
// coincident or collinear neighbourhoods give the zero normal and curvature 0.
//
// Every point must be covered by exactly one row (rows are a permutation of the points); rows
// of padding points (beyond lengths) have no neighbours and get zeros.
//
// CPU only: with idx == nullptr the kernel finds the K nearest neighbours itself (the kNN's
// grid/tree search, same neighbours in the same order, so the same bits), using `lengths`,
// and never writes the (B, P, K) lists out (normals_search_cpu.cpp).
#pragma once
#include <cstdint>

#include "common/dtype.h"
#include "common/launch.h"

namespace m3ad {

struct NormalsParams {
  const void* points = nullptr;          // (B, P, 3)
  const int64_t* idx = nullptr;          // (B, P, K) neighbour indices into the same cloud, or
                                         // nullptr (and idx32 nullptr): search them (CPU only)
  const int32_t* idx32 = nullptr;        // the same as int32 instead (CPU only; idx unused then)
  const int64_t* lengths = nullptr;      // (B,) valid points per cloud, for the search
  const void* dists = nullptr;           // (B, P, K) squared distances (read when radius2 >= 0)
  const int64_t* query_index = nullptr;  // (B, P) point of each row, or nullptr (identity)
  void* normals = nullptr;               // (B, P, 3) output, input dtype
  void* curvature = nullptr;             // (B, P) output, input dtype
  int64_t B = 0, P = 0, K = 0;
  int64_t row_stride = 0;                // elements from one row of idx (and dists) to the next;
                                         // 0: K. Larger: read the first K of longer rows (FPFH's
                                         // lists, whose prefix is the normals' neighbourhood)
  double radius2 = -1.0;                 // < 0: every listed neighbour counts
  double viewpoint[3] = {0.0, 0.0, 0.0};
  bool orient = true;
  DType dtype = DType::kFloat32;
};

void normals_cpu(const NormalsParams& p);
void normals_search_cpu(const NormalsParams& p);
void normals_cuda(const NormalsParams& p, const Device& dev);

}  // namespace m3ad
