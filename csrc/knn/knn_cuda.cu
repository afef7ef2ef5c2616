// CUDA kNN. Thread path: one thread per query scanning its cloud's p2 points in index order. All
// threads of a warp read the same p2 point at the same time (a broadcast load), so no
// shared-memory tiling is needed. K <= 32: the sorted top-K lives in registers (unrolled
// insertion); larger K: it lives in the output arrays themselves, so memory stays O(Q*K) and no
// Q x P2 matrix exists. Warp path, for few queries over large clouds (where one thread per
// query would leave most of the GPU idle): one warp per query, each lane scans every 32nd point
// into its own register top-K, then K rounds of a warp-wide (distance, index) minimum pop the
// lanes' heads in order. 32 < K <= 256: the warp tests 32 consecutive points at a time and offers
// them to its list in shared memory (warp_list.cuh), which orders by (distance, index).
// Scanning in index order and inserting only strictly smaller distances yields ascending
// (distance, index) order, identical to the CPU tree search; a lane's strided scan keeps that
// order within the lane, and the lexicographic merge keeps it across lanes. Few queries with
// K > 32 go to one block per query instead (knn_select_cuda.cu; the rule in knn_select.h).
// Neighbours at an overflowed, infinite distance are added by a second kernel (knn_overflow.h).
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "common/cuda_utils.cuh"
#include "common/distance.h"
#include "common/warp_query.cuh"
#include "knn/knn.h"
#include "knn/knn_overflow.h"
#include "knn/knn_select.h"
#include "knn/knn_select_cuda.cuh"
#include "knn/warp_list.cuh"

namespace m3ad {
namespace {

constexpr int kThreads = 128;

template <typename T, int KB>
__device__ __forceinline__ void init_top(T (&dk)[KB], int64_t (&ik)[KB]) {
#pragma unroll
  for (int s = 0; s < KB; ++s) {
    dk[s] = INFINITY;
    ik[s] = -1;
  }
}

// Scans points j0, j0 + step, ... < n2 of `cloud` into the sorted register top-KB.
template <typename T, int kDim, int KB>
__device__ __forceinline__ void scan_top(const KnnParams& p, const T* query, const T* cloud, int64_t j0, int64_t n2,
                                         int64_t step, T (&dk)[KB], int64_t (&ik)[KB]) {
  T qv[kDim > 0 ? kDim : 1];
  if (kDim > 0) {
#pragma unroll
    for (int j = 0; j < (kDim > 0 ? kDim : 1); ++j) qv[j] = query[j];
  }
  const T* qp = kDim > 0 ? qv : query;
  for (int64_t j = j0; j < n2; j += step) {
    const T d = point_dist<T, kDim>(cloud + j * p.D, qp, p.D, p.norm);
    if (!(d < dk[KB - 1])) continue;
#pragma unroll
    for (int s = KB - 1; s >= 0; --s) {
      if (s > 0 && dk[s - 1] > d) {
        dk[s] = dk[s - 1];
        ik[s] = ik[s - 1];
      } else if (dk[s] > d) {
        dk[s] = d;
        ik[s] = j;
      }
    }
  }
}

template <typename T, int kDim, int KB>
__global__ void knn_registers(KnnParams p) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= p.B * p.P1) return;
  const int64_t b = r / p.P1, q = r % p.P1;
  T dk[KB];
  int64_t ik[KB];
  init_top(dk, ik);
  if (q < clamp_len(p.lengths1, b, p.P1)) {
    const T* cloud = static_cast<const T*>(p.p2) + b * p.P2 * p.D;
    scan_top<T, kDim, KB>(p, static_cast<const T*>(p.p1) + r * p.D, cloud, 0, clamp_len(p.lengths2, b, p.P2), 1, dk, ik);
  }
  T* dists = static_cast<T*>(p.dists) + r * p.K;
  int64_t* idx = p.idx + r * p.K;
#pragma unroll
  for (int s = 0; s < KB; ++s) {
    if (s < p.K) {
      dists[s] = ik[s] < 0 ? T(0) : dk[s];
      idx[s] = ik[s];
    }
  }
}

constexpr long long kNone = INT64_MAX;  // an exhausted lane: sorts after every real candidate

// Butterfly minimum of (distance, index) over the warp; indices are unique, so every lane ends
// with the same winner.
template <typename T>
struct WarpMin {
  static __device__ __forceinline__ void reduce(T& d, long long& i) {
    for (int m = 16; m > 0; m >>= 1) {
      const T od = __shfl_xor_sync(0xffffffffu, d, m);
      const long long oi = __shfl_xor_sync(0xffffffffu, i, m);
      if (od < d || (od == d && oi < i)) {
        d = od;
        i = oi;
      }
    }
  }
};

// float: the distance bits (non-negative floats order as their bit patterns; -0 made +0) and a
// 32-bit index (the warp path needs P2 < 2^32) in one 64-bit key, one shuffle per step.
template <>
struct WarpMin<float> {
  static __device__ __forceinline__ void reduce(float& d, long long& i) {
    unsigned long long key =
        i == kNone ? ~0ull : (static_cast<unsigned long long>(__float_as_uint(d == 0.0f ? 0.0f : d)) << 32) |
                                 static_cast<unsigned long long>(i);
    for (int m = 16; m > 0; m >>= 1) {
      const unsigned long long o = __shfl_xor_sync(0xffffffffu, key, m);
      key = o < key ? o : key;
    }
    i = key == ~0ull ? kNone : static_cast<long long>(key & 0xffffffffull);
    d = __uint_as_float(static_cast<unsigned>(key >> 32));
  }
};

template <typename T, int kDim, int KB>
__global__ void knn_warp(KnnParams p) {
  WarpQuery w;
  if (!warp_query(p, w)) return;
  T dk[KB];
  int64_t ik[KB];
  init_top(dk, ik);
  if (w.q < clamp_len(p.lengths1, w.b, p.P1)) {
    const T* cloud = static_cast<const T*>(p.p2) + w.b * p.P2 * p.D;
    scan_top<T, kDim, KB>(p, static_cast<const T*>(p.p1) + w.row * p.D, cloud, w.lane,
                          clamp_len(p.lengths2, w.b, p.P2), 32, dk, ik);
  }
  T* dists = static_cast<T*>(p.dists) + w.row * p.K;
  int64_t* idx = p.idx + w.row * p.K;
  for (int64_t s = 0; s < p.K; ++s) {
    T bd = dk[0];
    long long bi = ik[0] < 0 ? kNone : ik[0];
    WarpMin<T>::reduce(bd, bi);
    if (w.lane == 0) {
      dists[s] = bi == kNone ? T(0) : bd;
      idx[s] = bi == kNone ? -1 : bi;
    }
    if (ik[0] == bi) {  // the winning lane pops its head
#pragma unroll
      for (int t = 0; t + 1 < KB; ++t) {
        dk[t] = dk[t + 1];
        ik[t] = ik[t + 1];
      }
      dk[KB - 1] = INFINITY;
      ik[KB - 1] = -1;
    }
  }
}

template <typename T, int kDim>
__global__ void knn_global(KnnParams p) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= p.B * p.P1) return;
  const int64_t b = r / p.P1, q = r % p.P1;
  T* dk = static_cast<T*>(p.dists) + r * p.K;
  int64_t* ik = p.idx + r * p.K;
  for (int64_t s = 0; s < p.K; ++s) {
    dk[s] = INFINITY;
    ik[s] = -1;
  }
  int64_t count = 0;
  if (q < clamp_len(p.lengths1, b, p.P1)) {
    const T* query = static_cast<const T*>(p.p1) + r * p.D;
    const T* cloud = static_cast<const T*>(p.p2) + b * p.P2 * p.D;
    const int64_t n2 = clamp_len(p.lengths2, b, p.P2);
    T worst = INFINITY;
    for (int64_t j = 0; j < n2; ++j) {
      const T d = point_dist<T, kDim>(cloud + j * p.D, query, p.D, p.norm);
      if (!(d < worst)) continue;
      int64_t s = count < p.K ? count++ : p.K - 1;
      for (; s > 0 && dk[s - 1] > d; --s) {
        dk[s] = dk[s - 1];
        ik[s] = ik[s - 1];
      }
      dk[s] = d;
      ik[s] = j;
      if (count == p.K) worst = dk[p.K - 1];
    }
  }
  for (int64_t s = count; s < p.K; ++s) dk[s] = 0;
}

template <typename T, int kDim>
__global__ void knn_warp_large_k(KnnParams p) {
  extern __shared__ __align__(16) unsigned char scan_list_smem[];
  WarpQuery w;
  if (!warp_query(p, w)) return;
  using U = typename NnKey<T>::U;
  U* keys = reinterpret_cast<U*>(scan_list_smem) + (threadIdx.x >> 5) * warp_list_capacity(p.K);
  WarpList<T> list(keys, p.K, T(INFINITY), w.lane);
  if (w.q < clamp_len(p.lengths1, w.b, p.P1)) {
    const T* query = static_cast<const T*>(p.p1) + w.row * p.D;
    const T* cloud = static_cast<const T*>(p.p2) + w.b * p.P2 * p.D;
    const int64_t n2 = clamp_len(p.lengths2, w.b, p.P2);
    for (int64_t base = 0; base < n2; base += 32) {
      const int64_t j = base + w.lane;
      const bool valid = j < n2;
      const T d = valid ? point_dist<T, kDim>(cloud + j * p.D, query, p.D, p.norm) : T(0);
      list.offer(valid, d, static_cast<unsigned>(j));
    }
  }
  list.finish(static_cast<T*>(p.dists) + w.row * p.K, p.idx + w.row * p.K);
}

// Returns whether a list kernel ran (every path but the block select), whose rows may miss
// neighbours at an infinite distance (knn_overflow.h).
template <typename T, int kDim>
bool launch(const KnnParams& p, cudaStream_t stream) {
  if (p.select_mode == kSelectAlways ||
      (p.select_mode == kSelectAuto && knn_block_select_pays(p.B, p.P1, p.P2, p.K))) {
    if (!knn_block_select_fits(p.P2, p.K))  // only a forced call gets here
      throw std::invalid_argument("mentor3ad_ext: the kNN block-select path takes K <= " +
                                  std::to_string(kBlockSelectMaxK) + " and P2 < 2^31, got K = " +
                                  std::to_string(p.K) + ", P2 = " + std::to_string(p.P2));
    knn_block_select<T, kDim>(p, stream);
    return false;
  }
  const bool warp_path = warp_per_query_pays(p);
  if (p.K <= 32 && warp_path && p.P2 < (int64_t{1} << 32)) {
    const unsigned grid = warp_query_blocks(p, kThreads);
    if (p.K <= 1) knn_warp<T, kDim, 1><<<grid, kThreads, 0, stream>>>(p);
    else if (p.K <= 4) knn_warp<T, kDim, 4><<<grid, kThreads, 0, stream>>>(p);
    else if (p.K <= 16) knn_warp<T, kDim, 16><<<grid, kThreads, 0, stream>>>(p);
    else knn_warp<T, kDim, 32><<<grid, kThreads, 0, stream>>>(p);
    M3AD_CHECK_LAUNCH("knn (warp per query)");
    return true;
  }
  if (p.K <= kWarpListMaxK && warp_path && p.P2 < (int64_t{1} << 32)) {
    knn_warp_large_k<T, kDim><<<warp_query_blocks(p, kThreads), kThreads, warp_list_smem<T>(p.K, kThreads), stream>>>(p);
    M3AD_CHECK_LAUNCH("knn (warp per query, large K)");
    return true;
  }
  const unsigned grid = blocks_for(p.B * p.P1, kThreads, (1LL << 31) - 1);
  if (p.K <= 1) knn_registers<T, kDim, 1><<<grid, kThreads, 0, stream>>>(p);
  else if (p.K <= 4) knn_registers<T, kDim, 4><<<grid, kThreads, 0, stream>>>(p);
  else if (p.K <= 16) knn_registers<T, kDim, 16><<<grid, kThreads, 0, stream>>>(p);
  else if (p.K <= 32) knn_registers<T, kDim, 32><<<grid, kThreads, 0, stream>>>(p);
  else knn_global<T, kDim><<<grid, kThreads, 0, stream>>>(p);
  M3AD_CHECK_LAUNCH("knn");
  return true;
}

}  // namespace

void knn_cuda(const KnnParams& p, const Device& dev) {
  if (p.B == 0 || p.P1 == 0 || p.K == 0) return;
  DeviceGuard guard(dev.index);
  const bool lists = dispatch_float(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    return p.D == 3 ? launch<T, 3>(p, as_stream(dev)) : launch<T, 0>(p, as_stream(dev));
  });
  if (lists) knn_fill_overflowed_cuda(p, nullptr, nullptr, dev);
}

}  // namespace m3ad
