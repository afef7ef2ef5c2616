// CUDA segment reductions. Same element rules and operation order as scatter_cpu.cpp
// (segment_rules.h), hence bit-identical results.
//  - Plan: a stable radix sort (CUB) of (batch, row) keys carrying the entry ids, so every row
//    lists its entries in ascending entry order; CSR offsets by binary search in the sorted keys.
//    No atomics anywhere, so the plan itself is deterministic.
//  - Reduction: one 32x8 thread block per tile of 32 rows x 32 channels. Each thread reduces
//    whole output elements sequentially over their entries (no atomics); lanes run along the
//    channels when the values are channel-contiguous and along the rows otherwise, and a shared
//    memory tile transposes the results so that the stores are coalesced for channels-last and
//    channels-first outputs alike.
//  - Gathers of small fixed groups between channel-contiguous rows: a warp per output row
//    (gather_rows_kernel), same element rules.
#include <cuda_runtime.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <cub/device/device_radix_sort.cuh>

#include "common/cuda_utils.cuh"
#include "scatter/scatter.h"
#include "scatter/segment_rules.h"

namespace m3ad {
namespace {

using Key = unsigned long long;

constexpr int kTile = 32;
constexpr int kTileY = 8;
constexpr unsigned kMaxTileBlocks = 1u << 20;

size_t align_up(size_t v) { return (v + 255) & ~size_t{255}; }

int key_bits(int64_t BR) {
  int bits = 1;
  while (bits < 63 && (int64_t{1} << bits) <= BR) ++bits;
  return bits;
}

size_t sort_temp_bytes(int64_t n, int bits) {
  size_t bytes = 0;
  if (n == 0) return 0;
  cuda_check(cub::DeviceRadixSort::SortPairs(nullptr, bytes, static_cast<const Key*>(nullptr),
                                             static_cast<Key*>(nullptr), static_cast<const int64_t*>(nullptr),
                                             static_cast<int64_t*>(nullptr), static_cast<int>(n), 0, bits),
             "cub::DeviceRadixSort::SortPairs (size query)");
  return bytes;
}

__global__ void plan_keys(const int64_t* index, int64_t B, int64_t M, int64_t R, Key* keys, int64_t* ids) {
  const int64_t n = B * M, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += stride) {
    const int64_t b = e / M, r = index[e];
    keys[e] = (r >= 0 && r < R) ? static_cast<Key>(b * R + r) : static_cast<Key>(B * R);
    ids[e] = e - b * M;
  }
}

// offsets[k] = number of sorted keys < k, for k in [0, BR] (invalid keys are BR: never counted).
__global__ void plan_offsets(const Key* sorted, int64_t n, int64_t BR, int64_t* offsets) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k <= BR; k += stride) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (sorted[mid] < static_cast<Key>(k)) lo = mid + 1;
      else hi = mid;
    }
    offsets[k] = lo;
  }
}

__global__ void plan_tail(const int64_t* offsets, int64_t BR, int64_t* order, int64_t n) {
  const int64_t valid = offsets[BR], stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t j = valid + static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < n; j += stride)
    order[j] = -1;
}

template <typename T, Reduce R>
__global__ void __launch_bounds__(kTile * kTileY) segment_reduce_kernel(SegmentReduceParams p, int64_t nrt, int64_t nct) {
  __shared__ double val[kTile][kTile + 1];
  __shared__ int64_t arg[kTile][kTile + 1];
  const int lane = threadIdx.x, ty = threadIdx.y;
  const bool read_lanes_on_rows = p.vs_c != 1;
  const bool write_lanes_on_rows = p.os_c != 1;
  const int64_t tiles = p.B * nrt * nct;
  for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {  // uniform per block: barriers are safe
    const int64_t ct = t % nct, rt = (t / nct) % nrt, b = t / (nct * nrt);
    const int64_t r0 = rt * kTile, c0 = ct * kTile;
    for (int i = 0; i < kTile; i += kTileY) {
      const int lr = read_lanes_on_rows ? lane : ty + i;
      const int lc = read_lanes_on_rows ? ty + i : lane;
      const int64_t r = r0 + lr, c = c0 + lc;
      if (r < p.R && c < p.C) {
        const seg::Acc a = seg::reduce_element<T, R>(p, b, r, c);
        val[lr][lc] = seg::finish<R>(a);
        if (R == Reduce::kMax) arg[lr][lc] = a.n ? a.arg : -1;
      }
    }
    __syncthreads();
    T* out = static_cast<T*>(p.out) + b * p.os_b;
    for (int i = 0; i < kTile; i += kTileY) {
      const int lr = write_lanes_on_rows ? lane : ty + i;
      const int lc = write_lanes_on_rows ? ty + i : lane;
      const int64_t r = r0 + lr, c = c0 + lc;
      if (r < p.R && c < p.C) {
        out[r * p.os_r + c * p.os_c] = static_cast<T>(val[lr][lc]);
        if (R == Reduce::kMax && p.argmax) p.argmax[b * p.as_b + r * p.as_r + c * p.as_c] = arg[lr][lc];
      }
    }
    __syncthreads();
  }
}

template <typename T>
__global__ void rows_dot_kernel(RowsDotParams p) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  const int64_t n = p.B * p.M;
  for (int64_t e = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; e < n; e += warps) {
    const int64_t b = e / p.M, m = e - b * p.M;
    const int64_t ra = seg::dot_row(p.a_index, p.a_group, p.a_rows, b, p.M, m);
    const int64_t rv = seg::dot_row(p.v_index, p.v_group, p.v_rows, b, p.M, m);
    T* out = static_cast<T*>(p.out);
    if (ra < 0 || rv < 0) {  // uniform over the warp
      if (lane == 0) out[e] = T(0);
      continue;
    }
    const T* a = static_cast<const T*>(p.a) + b * p.a_sb + ra * p.a_sr;
    const T* v = static_cast<const T*>(p.v) + b * p.v_sb + rv * p.v_sr;
    double part = seg::dot_lane(a, p.a_sc, v, p.v_sc, p.C, lane);
    // lane l adds lane l+off: the CPU's part[l] + part[l + off] tree.
    for (int off = 16; off > 0; off >>= 1) part = part + __shfl_down_sync(0xffffffffu, part, off);
    if (lane == 0) out[e] = static_cast<T>(part);
  }
}

template <typename T>
__global__ void max_backward_kernel(MaxBackwardParams p) {
  const int64_t n = p.B * p.S * p.C, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const T* g = static_cast<const T*>(p.grad);
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += stride) {
    const int64_t c = e % p.C, bs = e / p.C, s = bs % p.S, b = bs / p.S;
    double acc = 0.0;
    for (int64_t k = 0; k < p.group; ++k) {
      const int64_t m = s * p.group + k;
      if (m >= p.M) break;
      const int64_t r = p.index[b * p.M + m];
      if (r < 0 || r >= p.R) continue;
      if (p.argmax[b * p.am_sb + r * p.am_sr + c * p.am_sc] != m) continue;
      acc = acc + static_cast<double>(g[b * p.g_sb + r * p.g_sr + c * p.g_sc]);
    }
    static_cast<T*>(p.out)[e] = static_cast<T>(acc);
  }
}

// Weighted sums over fixed groups of at most kGatherMaxGroup entries (no plan) between
// channel-contiguous rows: the forward of grid_to_points, knn_gather and the interpolations. One
// warp per output row reads its entries' source rows and weights once, then its lanes walk the
// channels. The tile kernel re-derives every entry (64-bit index arithmetic, range checks, index
// and weight loads) for every channel and transposes through shared memory, which these layouts
// do not need. Each element still sums its entries in ascending order in double, as
// seg::reduce_element does: the same bits.
constexpr int64_t kGatherMaxGroup = 8;
constexpr int64_t kGatherMinChannels = 32;  // fewer would leave lanes of the warp idle

template <typename T, int G>
__global__ void gather_rows_kernel(SegmentReduceParams p) {
  for_each_warp_item(p.B * p.R, [&](int64_t e, int lane) {
    const int64_t b = e / p.R, r = e - b * p.R;
    const seg::Span sp = seg::row_span(p, b, r);
    const T* vals = static_cast<const T*>(p.values) + b * p.vs_b;
    const T* src[G];
    double w[G];
#pragma unroll
    for (int k = 0; k < G; ++k) {
      src[k] = nullptr;
      w[k] = 0.0;
      const int64_t m = sp.begin + k < sp.end ? seg::entry_at(p, sp.begin + k) : -1;
      const int64_t s = m < 0 ? -1 : seg::source_of(p, b, m);
      if (s >= 0) {
        src[k] = vals + s * p.vs_s;
        w[k] = seg::weight_of<T>(p, b, m);
      }
    }
    T* out = static_cast<T*>(p.out) + b * p.os_b + r * p.os_r;
    for (int64_t c = lane; c < p.C; c += 32) {
      seg::Acc a;
#pragma unroll
      for (int k = 0; k < G; ++k)
        if (src[k]) seg::take<Reduce::kSum>(a, w[k] * static_cast<double>(src[k][c]), 0);
      out[c] = static_cast<T>(seg::finish<Reduce::kSum>(a));
    }
  });
}

// The warp-per-row gather serves these; M3AD_GATHER_ROWS=tiles keeps them on the tile kernel (to
// compare the two on a GPU: scripts/profile_gather.py).
bool gather_rows_pays(const SegmentReduceParams& p) {
  const char* force = std::getenv("M3AD_GATHER_ROWS");
  if (force && std::strcmp(force, "tiles") == 0) return false;
  return !p.offsets && p.reduce == Reduce::kSum && p.group <= kGatherMaxGroup && p.vs_c == 1 && p.os_c == 1 &&
         p.C >= kGatherMinChannels;
}

template <typename T>
void launch_gather(const SegmentReduceParams& p, cudaStream_t stream) {
  const unsigned grid = blocks_for(p.B * p.R * 32, 256);
  if (p.group <= 1) gather_rows_kernel<T, 1><<<grid, 256, 0, stream>>>(p);
  else if (p.group <= 2) gather_rows_kernel<T, 2><<<grid, 256, 0, stream>>>(p);
  else if (p.group <= 4) gather_rows_kernel<T, 4><<<grid, 256, 0, stream>>>(p);
  else gather_rows_kernel<T, 8><<<grid, 256, 0, stream>>>(p);
  M3AD_CHECK_LAUNCH("gather_rows_kernel");
}

template <typename T, Reduce R>
void launch_reduce(const SegmentReduceParams& p, cudaStream_t stream) {
  const int64_t nrt = (p.R + kTile - 1) / kTile, nct = (p.C + kTile - 1) / kTile;
  const int64_t tiles = p.B * nrt * nct;
  const unsigned blocks = static_cast<unsigned>(tiles < kMaxTileBlocks ? tiles : kMaxTileBlocks);
  segment_reduce_kernel<T, R><<<blocks, dim3(kTile, kTileY), 0, stream>>>(p, nrt, nct);
  M3AD_CHECK_LAUNCH("segment_reduce_kernel");
}

}  // namespace

size_t rows_plan_cuda_workspace_bytes(int64_t B, int64_t M, int64_t R) {
  const int64_t n = B * M;
  if (n > INT_MAX) throw std::invalid_argument("rows_plan: more than 2^31-1 entries are not supported on CUDA");
  return 3 * align_up(sizeof(Key) * static_cast<size_t>(n)) + sort_temp_bytes(n, key_bits(B * R));
}

void rows_plan_cuda(const RowsPlanParams& p, const Device& dev) {
  DeviceGuard guard(dev.index);
  cudaStream_t stream = as_stream(dev);
  const int64_t n = p.B * p.M, BR = p.B * p.R;
  const int bits = key_bits(BR);
  char* ws = static_cast<char*>(p.workspace);
  Key* keys_in = reinterpret_cast<Key*>(ws);
  Key* keys_out = reinterpret_cast<Key*>(ws + align_up(sizeof(Key) * n));
  int64_t* ids = reinterpret_cast<int64_t*>(ws + 2 * align_up(sizeof(Key) * n));
  void* temp = ws + 3 * align_up(sizeof(Key) * n);
  if (n > 0) {
    if (n > INT_MAX) throw std::invalid_argument("rows_plan: more than 2^31-1 entries are not supported on CUDA");
    plan_keys<<<blocks_for(n, 256), 256, 0, stream>>>(p.index, p.B, p.M, p.R, keys_in, ids);
    M3AD_CHECK_LAUNCH("plan_keys");
    size_t temp_bytes = sort_temp_bytes(n, bits);
    cuda_check(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys_in, keys_out, ids, p.order,
                                               static_cast<int>(n), 0, bits, stream),
               "cub::DeviceRadixSort::SortPairs");
  }
  plan_offsets<<<blocks_for(BR + 1, 256), 256, 0, stream>>>(keys_out, n, BR, p.offsets);
  M3AD_CHECK_LAUNCH("plan_offsets");
  if (n > 0) {
    plan_tail<<<blocks_for(n, 256), 256, 0, stream>>>(p.offsets, BR, p.order, n);
    M3AD_CHECK_LAUNCH("plan_tail");
  }
}

void segment_reduce_cuda(const SegmentReduceParams& p, const Device& dev) {
  if (p.B == 0 || p.R == 0 || p.C == 0) return;
  DeviceGuard guard(dev.index);
  cudaStream_t stream = as_stream(dev);
  dispatch_float(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    if (gather_rows_pays(p)) {
      launch_gather<T>(p, stream);
      return 0;
    }
    switch (p.reduce) {
      case Reduce::kSum: launch_reduce<T, Reduce::kSum>(p, stream); break;
      case Reduce::kMean: launch_reduce<T, Reduce::kMean>(p, stream); break;
      case Reduce::kMax: launch_reduce<T, Reduce::kMax>(p, stream); break;
    }
    return 0;
  });
}

void rows_dot_cuda(const RowsDotParams& p, const Device& dev) {
  if (p.B == 0 || p.M == 0) return;
  DeviceGuard guard(dev.index);
  dispatch_float(p.dtype, [&](auto tag) {
    rows_dot_kernel<decltype(tag)><<<blocks_for(p.B * p.M * 32, 256), 256, 0, as_stream(dev)>>>(p);
    M3AD_CHECK_LAUNCH("rows_dot_kernel");
    return 0;
  });
}

void scatter_max_backward_cuda(const MaxBackwardParams& p, const Device& dev) {
  if (p.B == 0 || p.S == 0 || p.C == 0) return;
  DeviceGuard guard(dev.index);
  dispatch_float(p.dtype, [&](auto tag) {
    max_backward_kernel<decltype(tag)><<<blocks_for(p.B * p.S * p.C, 256), 256, 0, as_stream(dev)>>>(p);
    M3AD_CHECK_LAUNCH("max_backward_kernel");
    return 0;
  });
}

}  // namespace m3ad
