// CUDA kNN for few queries with large K (when: knn_select.h): one block per query row. It finds
// the K-th smallest key by an MSB-first radix select over a shared-memory histogram, collects the
// K keys at or below it and sorts them in shared memory. The cost per query is a few streaming
// passes over the cloud with nothing that grows per candidate, where the list paths pay up to K
// moves for every point that enters the top K.
//
// Keys: a distance other than NaN is >= +0 once -0 is made +0, so its bit pattern orders like its
// value; with the point's index in the low 32 bits every key is unique and keys order as
// (distance, index), the contract's order, so neither the selection nor the sort needs a tie rule.
// NaN distances (NaN inputs with value checks off) are no candidates, as in the CPU kernels; a
// distance that overflows to inf (finite but huge coordinates) is one, after the finite ones, as
// in the CPU kernels and the reference. Distances are recomputed in every pass by the shared
// point_dist (built with --fmad=false), so every pass, and every other path, sees the same rounded
// value, and the block keeps only the K keys.
#include <cuda_runtime.h>

#include "common/bitonic_shared.cuh"
#include "common/cuda_utils.cuh"
#include "common/distance.h"
#include "knn/knn_select.h"
#include "knn/knn_select_cuda.cuh"
#include "knn/warp_list.cuh"

namespace m3ad {
namespace {

static_assert(kBlockSelectListMaxK == kWarpListMaxK, "knn_select.h mirrors the warp lists' K limit");

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
// 11-bit digits: a float distance's 31 value bits in three passes; on spread-out clouds the first
// two (exponent and 3 mantissa bits, then 11 more) should already leave the K-th key alone in its
// bin (a prediction: no GPU has counted the passes yet). Ties go on into the index bits.
constexpr int kDigitBits = 11;
constexpr int kBins = 1 << kDigitBits;
constexpr int kBinsPerThread = kBins / kThreads;
static_assert(kBins % kThreads == 0, "each thread scans whole bins");

template <typename T>
struct SelectKey;

template <>
struct SelectKey<float> {
  using U = unsigned long long;
  static constexpr int kBits = 63;  // bit 63, the distance's sign, is 0 for every candidate
  static __device__ __forceinline__ U make(float d, unsigned j) {
    return static_cast<U>(__float_as_uint(d == 0.0f ? 0.0f : d)) << 32 | j;
  }
  static __device__ __forceinline__ float dist(U k) { return __uint_as_float(static_cast<unsigned>(k >> 32)); }
};

template <>
struct SelectKey<double> {
  using U = unsigned __int128;
  static constexpr int kBits = 95;
  static __device__ __forceinline__ U make(double d, unsigned j) {
    return static_cast<U>(static_cast<unsigned long long>(__double_as_longlong(d == 0.0 ? 0.0 : d))) << 32 | j;
  }
  static __device__ __forceinline__ double dist(U k) {
    return __longlong_as_double(static_cast<long long>(static_cast<unsigned long long>(k >> 32)));
  }
};

// The bin of the histogram that holds the need-th smallest key (1-based), with the count of keys
// in the bins below it and its own count, in pick[0..2]; false (in every thread) when the
// histogram holds fewer than `need` keys. Call after the histogram's __syncthreads; when it
// returns true it has synchronised the block after writing pick.
__device__ __forceinline__ bool pick_bin(const unsigned* hist, unsigned need, unsigned* warp_total,
                                         unsigned* pick) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  unsigned c[kBinsPerThread], own = 0;
#pragma unroll
  for (int i = 0; i < kBinsPerThread; ++i) {
    c[i] = hist[tid * kBinsPerThread + i];
    own += c[i];
  }
  unsigned inc = own;
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const unsigned v = __shfl_up_sync(0xffffffffu, inc, off);
    if (lane >= off) inc += v;
  }
  if (lane == 31) warp_total[warp] = inc;
  __syncthreads();
  unsigned below = inc - own, total = 0;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    const unsigned t = warp_total[w];
    total += t;
    if (w < warp) below += t;
  }
  if (total < need) return false;
  if (below < need && need <= below + own) {
#pragma unroll
    for (int i = 0; i < kBinsPerThread; ++i) {
      if (need <= below + c[i]) {
        pick[0] = tid * kBinsPerThread + i;
        pick[1] = below;
        pick[2] = c[i];
        break;
      }
      below += c[i];
    }
  }
  __syncthreads();
  return true;
}

template <typename T, int kDim>
__global__ void __launch_bounds__(kThreads) knn_block_select_kernel(KnnParams p) {
  using Key = SelectKey<T>;
  using U = typename Key::U;
  extern __shared__ __align__(16) unsigned char select_smem[];
  U* keys = reinterpret_cast<U*>(select_smem);  // pow2ceil(K) keys
  __shared__ unsigned hist[kBins];
  __shared__ unsigned warp_total[kWarps];
  __shared__ unsigned pick[3];
  __shared__ unsigned taken;
  const int tid = threadIdx.x;
  const int K = static_cast<int>(p.K);
  for (int64_t row = blockIdx.x; row < p.B * p.P1; row += gridDim.x) {  // uniform in the block
    const int64_t b = row / p.P1, q = row % p.P1;
    const unsigned n2 = q < clamp_len(p.lengths1, b, p.P1) ? static_cast<unsigned>(clamp_len(p.lengths2, b, p.P2)) : 0;
    const T* cloud = static_cast<const T*>(p.p2) + b * p.P2 * p.D;
    const T* query = static_cast<const T*>(p.p1) + row * p.D;
    T qv[kDim > 0 ? kDim : 1];
    if (kDim > 0) {
#pragma unroll
      for (int j = 0; j < (kDim > 0 ? kDim : 1); ++j) qv[j] = query[j];
    }
    const T* qp = kDim > 0 ? qv : query;
    auto dist = [&](unsigned j) { return point_dist<T, kDim>(cloud + static_cast<int64_t>(j) * p.D, qp, p.D, p.norm); };

    // Keys whose bits from `hi` up equal `prefix` are still in play; `need` of them are wanted.
    int hi = Key::kBits;
    U prefix = 0;
    unsigned need = static_cast<unsigned>(K);
    bool all = n2 <= need;  // every candidate is a neighbour: nothing to select
    if (tid == 0) taken = 0;
    while (!all && hi > 0) {
      const int lo = hi > kDigitBits ? hi - kDigitBits : 0;
      const unsigned mask = (1u << (hi - lo)) - 1;
      for (int i = tid; i < kBins; i += kThreads) hist[i] = 0;
      __syncthreads();
      for (unsigned j = tid; j < n2; j += kThreads) {
        const T d = dist(j);
        if (d != d) continue;  // NaN
        const U key = Key::make(d, j);
        if ((key >> hi) == prefix) atomicAdd(&hist[static_cast<unsigned>(key >> lo) & mask], 1u);
      }
      __syncthreads();
      if (!pick_bin(hist, need, warp_total, pick)) {  // fewer non-NaN distances than K (first pass only)
        all = true;
        break;
      }
      need -= pick[1];
      prefix = prefix << (hi - lo) | pick[0];
      hi = lo;
      // The whole bin is wanted: every key at or below it is taken, nothing is left to split.
      if (pick[2] == need) break;
    }
    __syncthreads();  // taken = 0; pick read by all before the next row may rewrite it

    for (unsigned j = tid; j < n2; j += kThreads) {
      const T d = dist(j);
      if (d != d) continue;  // NaN
      const U key = Key::make(d, j);
      if (all || (key >> hi) <= prefix) {
        const unsigned at = atomicAdd(&taken, 1u);
        if (at < static_cast<unsigned>(K)) keys[at] = key;  // exactly min(K, candidates) arrive
      }
    }
    __syncthreads();
    const int n = static_cast<int>(taken < static_cast<unsigned>(K) ? taken : K);

    sort_keys_shared<false>(keys, n, tid, kThreads);

    T* dists = static_cast<T*>(p.dists) + row * p.K;
    int64_t* idx = p.idx + row * p.K;
    for (int s = tid; s < K; s += kThreads) {
      if (s < n) {
        const unsigned j = static_cast<unsigned>(keys[s] & 0xffffffffu);
        const T d = Key::dist(keys[s]);
        dists[s] = d == T(0) ? dist(j) : d;  // the key made -0 into +0; the other paths keep it
        idx[s] = j;
      } else {
        dists[s] = T(0);
        idx[s] = -1;
      }
    }
    __syncthreads();  // keys and taken are the next row's
  }
}

}  // namespace

template <typename T, int kDim>
void knn_block_select(const KnnParams& p, cudaStream_t stream) {
  int64_t cap = 1;
  while (cap < p.K) cap <<= 1;
  const size_t smem = static_cast<size_t>(cap) * sizeof(typename SelectKey<T>::U);
  const unsigned grid = blocks_for(p.B * p.P1, 1, (1LL << 31) - 1);
  knn_block_select_kernel<T, kDim><<<grid, kThreads, smem, stream>>>(p);
  M3AD_CHECK_LAUNCH("knn (block select)");
}

template void knn_block_select<float, 3>(const KnnParams&, cudaStream_t);
template void knn_block_select<float, 0>(const KnnParams&, cudaStream_t);
template void knn_block_select<double, 3>(const KnnParams&, cudaStream_t);
template void knn_block_select<double, 0>(const KnnParams&, cudaStream_t);

}  // namespace m3ad
