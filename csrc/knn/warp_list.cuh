// A sorted (distance, index) list of up to K entries in global memory (a query's output row),
// maintained by all 32 lanes of a warp together: one candidate at a time, its position by a
// warp-wide count of the entries before it, then a shift of the entries behind it from the top
// down. Serves the warp-per-query kNN paths with 32 < K <= 256 (knn_cuda.cu, knn_tiles_cuda.cu).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "knn/knn_tiles.h"

namespace m3ad {

// Warp lists up to this K: each insertion shifts up to K/32 entries per lane, so beyond a few
// hundred the list maintenance dominates (a full sort would be the better tool there).
constexpr int64_t kWarpListMaxK = 256;

// Inserts (dj, ij), which must come before the list's K-th entry when the list is full. `count`
// is the same in every lane, before and after. Ends with __syncwarp, so the list can be read.
template <typename T>
__device__ __forceinline__ void warp_list_insert(T* dk, int64_t* ik, int64_t& count, int64_t K, T dj, int64_t ij,
                                                 int lane) {
  long long ahead = 0;
  for (int64_t s = lane; s < count; s += 32) ahead += nn_before(dk[s], ik[s], dj, ij);
  for (int m = 16; m > 0; m >>= 1) ahead += __shfl_xor_sync(0xffffffffu, ahead, m);
  const int64_t pos = ahead, last = count < K ? count : K - 1;
  // Entries [pos, last) move up by one, 32 at a time from the top: each round reads before anyone
  // writes, and writes only slots the later rounds do not read.
  for (int64_t top = last - 1; top >= pos; top -= 32) {
    const int64_t s = top - lane;
    T v = 0;
    int64_t iv = -1;
    if (s >= pos) v = dk[s], iv = ik[s];
    __syncwarp();
    if (s >= pos) dk[s + 1] = v, ik[s + 1] = iv;
    __syncwarp();
  }
  if (lane == 0) dk[pos] = dj, ik[pos] = ij;
  count = count < K ? count + 1 : K;
  __syncwarp();
}

}  // namespace m3ad
