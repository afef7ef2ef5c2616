// One warp per query of a neighbour search (kNN, ball query): when it pays, and each warp's
// view of its query. Shared so that both ops switch paths by the same rule.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "common/cuda_utils.cuh"
#include "common/pair_query.h"

namespace m3ad {

// Below this many queries, one thread per query leaves most of a GPU idle (2048 warps' worth of
// threads, well under what a current GPU keeps in flight); clouds of at least kWarpQueryMinPoints
// give each lane >= 8 points, enough to pay for combining the lanes' results. In feature space a
// point costs D coordinates, so fewer points do: the kNN filter ranks each query's ~70-150
// candidates of 16-1152 dimensions (ops/_knn_dense.py), where a thread per query scanned 80k
// coordinates alone (H200, 784 x 20k x 1152-D, K = 1: 4.5 ms against cdist+topk's 1.5 ms).
constexpr int64_t kWarpQueryMaxQueries = int64_t{1} << 16;
constexpr int64_t kWarpQueryMinPoints = 256;

inline bool warp_per_query_pays(const PairQuery& p) {
  const bool enough_work = p.P2 >= kWarpQueryMinPoints || p.P2 * p.D >= kWarpQueryMinPoints * 3;
  return p.B * p.P1 < kWarpQueryMaxQueries && enough_work;
}

inline unsigned warp_query_blocks(const PairQuery& p, int threads) {
  return blocks_for(p.B * p.P1 * 32, threads, (1LL << 31) - 1);
}

struct WarpQuery {
  int64_t row, b, q;  // query row in [0, B * P1), its cloud, its index in the cloud
  int lane;
};

// False for the warps past the last row; whole warps leave together (blockDim is a multiple of
// 32), so the full-mask warp intrinsics that follow see all lanes.
__device__ __forceinline__ bool warp_query(const PairQuery& p, WarpQuery& w) {
  w.row = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  w.lane = threadIdx.x & 31;
  if (w.row >= p.B * p.P1) return false;
  w.b = w.row / p.P1;
  w.q = w.row % p.P1;
  return true;
}

}  // namespace m3ad
