// CUDA tile-pruned kNN (knn_tiles.h). K <= 32 and K > 256: one warp per 32 consecutive sorted
// queries of a cloud, which are neighbours on the Morton curve: the warp walks the tiles together
// from its first query's home tile and scans or skips each (super-)tile by a vote, a tile being
// scanned when any lane's list can still take one of its points. A walk per thread, as on the CPU,
// lets the lanes drift apart and the warp serialise their scans: on an H200 the shared walk took
// the kernel from 0.61 to 0.47 ms (16k x 16k, K = 16) and from 2.85 to 2.35 ms (100k x 100k, K =
// 30), less than the divergence model predicted (latency with few warps in flight is the next
// suspect).
// K <= 32: the list lives in registers (unrolled insertion, the K-th entry kept in two scalars
// for the pruning test); 32 < K <= 256: a warp per query walks alone and keeps its list in shared
// memory (knn_tiles_warp_list, warp_list.cuh), for few queries and many alike, since the lists,
// not the walks, were the cost (H200, 4096 queries over 100k, K = 100: 0.79 ms with the warp's
// former global-memory list against 19 ms for a thread per query); larger K: one thread per
// query keeps its list in its output row (knn_tiles_memory).
// Neighbours at an overflowed, infinite distance are added by a second kernel (knn_overflow.h).
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "common/cuda_utils.cuh"
#include "common/warp_query.cuh"
#include "knn/knn_overflow.h"
#include "knn/knn_tiles.h"
#include "knn/warp_list.cuh"

namespace m3ad {
namespace {

constexpr int kThreads = 128;

// Empty slots hold (bound, -1): an entry is taken only strictly below the bound (+inf unbounded).
// Indices are held in 32 bits (clouds of < 2^31 points): with 64-bit ones the float list of 32
// took 254 registers and the double one spilled 1.3 KB a thread (ptxas, sm_90); now 166 registers
// and 196 bytes: 12 warps of the float kernel fit on an SM instead of 8 (normals' k = 30 search).
template <typename T, int KB>
struct NnRegList {
  T dk[KB];
  int ik[KB];
  int K;
  T wd;  // the K-th entry (bound, -1 while the list is short)
  int wi = -1;
  __device__ NnRegList(int k, T bound) : K(k), wd(bound) {
#pragma unroll
    for (int s = 0; s < KB; ++s) {
      dk[s] = bound;
      ik[s] = -1;
    }
  }
  __device__ T worst() const { return wd; }
  __device__ void insert(T d, int64_t i64) {
    const int i = static_cast<int>(i64);
    if (!nn_before<T>(d, i, wd, wi)) return;  // also drops NaN and infinite distances
#pragma unroll
    for (int s = KB - 1; s >= 0; --s) {
      if (s > 0 && nn_before<T>(d, i, dk[s - 1], ik[s - 1])) {
        dk[s] = dk[s - 1];
        ik[s] = ik[s - 1];
      } else if (nn_before<T>(d, i, dk[s], ik[s])) {
        dk[s] = d;
        ik[s] = i;
      }
    }
#pragma unroll
    for (int s = 0; s < KB; ++s)
      if (s == K - 1) wd = dk[s], wi = ik[s];
  }
};

constexpr unsigned kFull = 0xffffffffu;

struct WarpRows {
  int64_t b, qs;  // cloud and this lane's sorted query
  bool active;    // a valid query (active lanes are a prefix of the warp)
};

// Which 32 sorted queries this warp serves; false for warps past the last cloud (whole warps).
__device__ __forceinline__ bool warp_rows(const KnnTilesParams& p, WarpRows& w) {
  const int64_t warps_per_cloud = (p.P1 + 31) / 32;
  const int64_t gw = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  w.b = gw / warps_per_cloud;
  if (w.b >= p.B) return false;
  w.qs = (gw % warps_per_cloud) * 32 + (threadIdx.x & 31);
  w.active = w.qs < clamp_len(p.lengths1, w.b, p.P1) && p.wanted(w.b, w.qs);
  return true;
}

template <typename T, typename List>
__device__ void warp_search(const KnnTilesParams& p, const WarpRows& w, List& list) {
  const TilesCloud<T> c(p, w.b);
  if (c.n2 == 0 || !__any_sync(kFull, w.active)) return;
  T q[3] = {T(0), T(0), T(0)};
  if (w.active) {
    const T* qp = static_cast<const T*>(p.p1) + (w.b * p.P1 + w.qs) * 3;
    q[0] = qp[0], q[1] = qp[1], q[2] = qp[2];
  }
  const int64_t first = w.qs - (threadIdx.x & 31);  // lane 0's query, valid when any lane is
  for (TileWalk walk(tiles_home(p, w.b, first), c.n2); !walk.done();) {  // the same in every lane
    if (walk.next() && !__any_sync(kFull, w.active && !(c.super_bound(walk.t, q, p.norm) > list.worst()))) {
      walk.skip_super();
      continue;
    }
    walk.take();
    const bool need = w.active && !(c.tile_bound(walk.t, q, p.norm) > list.worst());
    if (__any_sync(kFull, need) && need) c.offer_tile(walk.t, q, p.norm, list);
  }
}

template <typename T, int KB>
__global__ void knn_tiles_registers(KnnTilesParams p) {
  WarpRows w;
  if (!warp_rows(p, w)) return;
  NnRegList<T, KB> list(static_cast<int>(p.K), static_cast<T>(p.max_dist));
  warp_search<T>(p, w, list);
  if (w.qs >= p.P1 || !p.wanted(w.b, w.qs)) return;
  const int64_t out = tiles_out_row(p, w.b, w.qs);
  T* dists = static_cast<T*>(p.dists) + out * p.K;
  int64_t* idx = p.idx + out * p.K;
#pragma unroll
  for (int s = 0; s < KB; ++s) {
    if (s < p.K) {
      dists[s] = list.ik[s] < 0 ? T(0) : list.dk[s];
      idx[s] = list.ik[s];
    }
  }
}

// The list is the output row. Lanes past the cloud's rows never insert (they are inactive), so
// their list never touches memory.
template <typename T>
__global__ void knn_tiles_memory(KnnTilesParams p) {
  WarpRows w;
  if (!warp_rows(p, w)) return;
  const bool has_row = w.qs < p.P1 && p.wanted(w.b, w.qs);
  const int64_t out = has_row ? tiles_out_row(p, w.b, w.qs) : 0;
  NnMemList<T> list(static_cast<T*>(p.dists) + out * p.K, p.idx + out * p.K, p.K, static_cast<T>(p.max_dist));
  warp_search<T>(p, w, list);
  if (has_row) list.finish();
}

// 32 < K <= 256: one warp per sorted query. The walk needs no vote (one query); each tile's 32
// points are tested one per lane and offered to the warp's shared-memory list (warp_list.cuh),
// whose bar also prunes the walk.
template <typename T>
__global__ void knn_tiles_warp_list(KnnTilesParams p) {
  extern __shared__ __align__(16) unsigned char tiles_list_smem[];
  WarpQuery w;
  if (!warp_query(p, w) || !p.wanted(w.b, w.q)) return;  // the whole warp: one row
  using U = typename NnKey<T>::U;
  U* keys = reinterpret_cast<U*>(tiles_list_smem) + (threadIdx.x >> 5) * warp_list_capacity(p.K);
  WarpList<T> list(keys, p.K, static_cast<T>(p.max_dist), w.lane);
  const int64_t b = w.b, out = tiles_out_row(p, b, w.q);
  const TilesCloud<T> c(p, b);
  const int64_t n2 = c.n2;
  if (w.q < clamp_len(p.lengths1, b, p.P1) && n2 > 0) {
    const T* qp = static_cast<const T*>(p.p1) + w.row * 3;
    const T q[3] = {qp[0], qp[1], qp[2]};
    for (TileWalk walk(tiles_home(p, b, w.q), n2); !walk.done();) {
      if (walk.next() && c.super_bound(walk.t, q, p.norm) > list.bar_dist) {
        walk.skip_super();
        continue;
      }
      walk.take();
      if (c.tile_bound(walk.t, q, p.norm) > list.bar_dist) continue;
      const int64_t j = walk.t * kKnnTile + w.lane;
      const bool valid = j < n2;
      const T d = valid ? point_dist<T, 3>(c.pts + j * 3, q, 3, p.norm) : T(0);
      list.offer(valid, d, valid ? static_cast<unsigned>(c.order2[j]) : 0u);
    }
  }
  list.finish(static_cast<T*>(p.dists) + out * p.K, p.idx + out * p.K);
}

}  // namespace

void knn_tiles_cuda(const KnnTilesParams& p, const Device& dev) {
  if (p.B == 0 || p.P1 == 0 || p.K == 0) return;
  if (p.list_mode == 2 && (p.K > kWarpListMaxK || p.P2 >= (int64_t{1} << 32)))  // only a forced call
    throw std::invalid_argument("mentor3ad_ext: the sorted tiles' warp lists take K <= " +
                                std::to_string(kWarpListMaxK) + " and P2 < 2^32, got K = " + std::to_string(p.K) +
                                ", P2 = " + std::to_string(p.P2));
  DeviceGuard guard(dev.index);
  cudaStream_t stream = as_stream(dev);
  const unsigned grid = blocks_for(p.B * ((p.P1 + 31) / 32) * 32, kThreads, (1LL << 31) - 1);
  dispatch_float(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    const bool idx32 = p.P2 < (int64_t{1} << 31);  // NnRegList's indices
    if (p.list_mode == 1) knn_tiles_memory<T><<<grid, kThreads, 0, stream>>>(p);  // forced, any K
    else if (p.list_mode == 2)
      knn_tiles_warp_list<T><<<warp_query_blocks(p, kThreads), kThreads, warp_list_smem<T>(p.K, kThreads), stream>>>(p);
    else if (p.K <= 1 && idx32) knn_tiles_registers<T, 1><<<grid, kThreads, 0, stream>>>(p);
    else if (p.K <= 4 && idx32) knn_tiles_registers<T, 4><<<grid, kThreads, 0, stream>>>(p);
    else if (p.K <= 16 && idx32) knn_tiles_registers<T, 16><<<grid, kThreads, 0, stream>>>(p);
    else if (p.K <= 32 && idx32) knn_tiles_registers<T, 32><<<grid, kThreads, 0, stream>>>(p);
    else if (p.K <= kWarpListMaxK && p.P2 < (int64_t{1} << 32))
      knn_tiles_warp_list<T><<<warp_query_blocks(p, kThreads), kThreads, warp_list_smem<T>(p.K, kThreads), stream>>>(p);
    else knn_tiles_memory<T><<<grid, kThreads, 0, stream>>>(p);
    return 0;
  });
  M3AD_CHECK_LAUNCH("knn (sorted tiles)");
  if (!p.bounded()) knn_fill_overflowed_cuda(p, p.order1, p.order2, dev);  // +inf is out of any bound
}

}  // namespace m3ad
