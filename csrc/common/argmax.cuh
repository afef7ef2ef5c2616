// Deterministic block-wide argmax: larger value wins, equal values go to the lower index.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace m3ad {

template <typename T>
struct ArgMax {
  T val;
  int64_t idx;
  __device__ __forceinline__ void take(T v, int64_t i) {
    if (v > val || (v == val && i < idx)) {
      val = v;
      idx = i;
    }
  }
};

template <typename T>
__device__ __forceinline__ ArgMax<T> warp_argmax(ArgMax<T> a) {
  for (int off = 16; off > 0; off >>= 1) {
    const T v = __shfl_down_sync(0xffffffffu, a.val, off);
    const long long i = __shfl_down_sync(0xffffffffu, static_cast<long long>(a.idx), off);
    a.take(v, i);
  }
  return a;
}

// All threads of the block must call it; the result is valid in every thread.
// `scratch` holds at least 32 entries; the call ends with a barrier, so it can be reused.
template <typename T>
__device__ ArgMax<T> block_argmax(ArgMax<T> a, ArgMax<T>* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int warps = (blockDim.x + 31) >> 5;
  a = warp_argmax(a);
  if (lane == 0) scratch[warp] = a;
  __syncthreads();
  if (warp == 0) {
    ArgMax<T> b = lane < warps ? scratch[lane] : ArgMax<T>{a.val, INT64_MAX};
    if (lane >= warps) b.val = scratch[0].val;  // neutral: equal value, larger index
    b = warp_argmax(b);
    __syncwarp();  // lanes >= warps read scratch[0] above; racecheck flags the write without it
    if (lane == 0) scratch[0] = b;
  }
  __syncthreads();
  ArgMax<T> r = scratch[0];
  __syncthreads();
  return r;
}

}  // namespace m3ad
