// A query's top-K (32 < K <= 256) kept by a whole warp in shared memory: the warp-per-query kNN
// paths (knn_cuda.cu's scan, knn_tiles_cuda.cu's tile walk) offer 32 candidates at a time, one
// per lane. A candidate below the current K-th key is appended (a ballot and a prefix count give
// its slot), with no ordering work at all; only when the buffer is full does the warp sort it
// (bitonic, in shared memory) and keep the first K, whose K-th key is then the bar. A final sort
// orders the row. The list this replaced inserted each candidate into a sorted row in global
// memory (a warp-wide count of the entries before it, then a shift of those behind it): ~K/32 + 10
// warp steps per candidate, a few hundred candidates per query at K = 100, which made the K = 100
// search of FPFH 25 of its 26 ms on an H200.
//
// Keys order as (distance, index), the contract's order, so no tie rule is needed and every key
// is unique: a distance other than NaN has its sign bit clear apart from -0 (an L1 distance of
// equal coordinates with -0 differences), so the other 31 (63) bits order it as its value; they
// go on top, then the point's 32-bit index, then the sign bit alone at the bottom, where it never
// decides an order (indices differ) but gives back -0 as the other paths return it. The loosest
// bar, an unbounded search's, is the key of (+inf, index 0): no NaN key (above +inf's) and no
// infinite distance passes it. Overflowed, infinite distances are added afterwards by the overflow
// fill (knn_overflow.h), as for every list kind.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "common/bitonic_shared.cuh"

namespace m3ad {

// Warp lists up to this K: the buffer holds warp_list_capacity(K) keys per warp, 8 KiB at K = 256
// in float64, so a 128-thread block stays within 32 KiB of shared memory.
constexpr int64_t kWarpListMaxK = 256;

// A power of two (the sort's size) with room for one more chunk of 32 after K kept keys.
__host__ __device__ inline int warp_list_capacity(int64_t K) {
  int cap = 64;
  while (cap < K + 32) cap <<= 1;
  return cap;
}

template <typename T>
struct NnKey;

template <>
struct NnKey<float> {
  using U = unsigned long long;
  static __device__ __forceinline__ U make(float d, unsigned j) {
    const unsigned bits = __float_as_uint(d);
    return static_cast<U>(bits & 0x7fffffffu) << 33 | static_cast<U>(j) << 1 | (bits >> 31);
  }
  static __device__ __forceinline__ float dist(U k) {
    return __uint_as_float(static_cast<unsigned>(k >> 33) | static_cast<unsigned>(k & 1) << 31);
  }
  static __device__ __forceinline__ unsigned index(U k) { return static_cast<unsigned>(k >> 1); }
};

template <>
struct NnKey<double> {
  using U = unsigned __int128;
  static __device__ __forceinline__ U make(double d, unsigned j) {
    const unsigned long long bits = static_cast<unsigned long long>(__double_as_longlong(d));
    return static_cast<U>(bits & 0x7fffffffffffffffull) << 33 | static_cast<U>(j) << 1 | (bits >> 63);
  }
  static __device__ __forceinline__ double dist(U k) {
    const unsigned long long bits = static_cast<unsigned long long>(k >> 33) | static_cast<unsigned long long>(k & 1) << 63;
    return __longlong_as_double(static_cast<long long>(bits));
  }
  static __device__ __forceinline__ unsigned index(U k) { return static_cast<unsigned>(k >> 1); }
};

// Bytes of shared memory a block of `threads` needs for its warps' lists.
template <typename T>
inline size_t warp_list_smem(int64_t K, int threads) {
  return static_cast<size_t>(warp_list_capacity(K)) * sizeof(typename NnKey<T>::U) * (threads / 32);
}

// One warp's list; every member is called by all 32 lanes together, with warp-uniform arguments
// except offer's candidate. Points' indices must fit in 32 bits (the launchers check P2 < 2^32).
template <typename T>
struct WarpList {
  using Key = NnKey<T>;
  using U = typename Key::U;
  U* keys;       // this warp's warp_list_capacity(K) slots
  int cap, K, lane;
  int count = 0;  // keys in the buffer, the same in every lane
  U bar;          // a key is taken iff it is below the bar: the K-th key once K are kept
  T bar_dist;     // the bar's distance, for pruning: nothing farther can be taken

  // Only distances < bound are taken (+inf: any finite distance).
  __device__ WarpList(U* warp_keys, int64_t k, T bound, int lane_id)
      : keys(warp_keys), cap(warp_list_capacity(k)), K(static_cast<int>(k)), lane(lane_id) {
    bar = bound > T(0) ? Key::make(bound, 0) : U(0);  // a NaN or non-positive bound takes nothing
    bar_dist = bound;
  }

  // This lane's candidate, if `valid`: point `j` at distance d.
  __device__ void offer(bool valid, T d, unsigned j) {
    const U key = Key::make(d, j);
    bool take = valid && key < bar;
    unsigned ballot = __ballot_sync(0xffffffffu, take);
    if (!ballot) return;
    if (count + __popc(ballot) > cap) {  // count >= cap - 31 >= K + 1 keys: keep the K smallest
      sort(count);
      count = K;
      bar = keys[K - 1];
      bar_dist = Key::dist(bar);
      take = take && key < bar;
      ballot = __ballot_sync(0xffffffffu, take);
    }
    if (take) keys[count + __popc(ballot & ((1u << lane) - 1))] = key;
    count += __popc(ballot);
    __syncwarp();
  }

  // Writes the row: the min(count, K) smallest keys in order, then (0, -1) padding.
  __device__ void finish(T* dists, int64_t* idx) {
    sort(count);
    const int n = count < K ? count : K;
    for (int s = lane; s < K; s += 32) {
      dists[s] = s < n ? Key::dist(keys[s]) : T(0);
      idx[s] = s < n ? static_cast<int64_t>(Key::index(keys[s])) : -1;
    }
  }

 private:
  __device__ void sort(int n) { sort_keys_shared<true>(keys, n, lane, 32); }
};

}  // namespace m3ad
