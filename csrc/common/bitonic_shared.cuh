// Sorting a few hundred to a few thousand keys in shared memory, ascending: a bitonic network run
// by a warp (the warp lists, knn/warp_list.cuh) or a block (the block select,
// knn/knn_select_cuda.cu). Keys are unsigned integers whose order is the wanted order; the
// all-ones key pads the array to a power of two, so it must lie above every real key.
#pragma once
#include <cuda_runtime.h>

namespace m3ad {

// Sorts keys[0, n) with the `workers` threads of a warp (kWarp) or of the whole block, `id` this
// thread's rank among them; keys[n, pow2ceil(n)) are overwritten with padding. Every worker calls
// it with the same n; it returns synchronised (the sorted keys can be read by any worker).
template <bool kWarp, typename U>
__device__ __forceinline__ void sort_keys_shared(U* keys, int n, int id, int workers) {
  int np = 1;
  while (np < n) np <<= 1;
  for (int i = n + id; i < np; i += workers) keys[i] = ~U(0);
  if (kWarp) __syncwarp();
  else __syncthreads();
  for (int k = 2; k <= np; k <<= 1) {
    for (int j = k >> 1; j > 0; j >>= 1) {
      for (int t = id; t < np / 2; t += workers) {
        const int a = 2 * t - (t & (j - 1));  // the pair (a, a + j), bit j of a clear
        const U x = keys[a], y = keys[a + j];
        if ((x > y) == ((a & k) == 0)) {
          keys[a] = y;
          keys[a + j] = x;
        }
      }
      if (kWarp) __syncwarp();
      else __syncthreads();
    }
  }
}

}  // namespace m3ad
