// CUDA build of the interval table (metrics.h); the same integers as metrics_cpu.cpp:
//   1. validation counts (mask bytes other than 0/1, NaN/Inf scores) and the defect count;
//   2. 8-connected components of every mask (ccl_cuda.cu) with component sizes;
//   3. defect pixels compacted (cub::DeviceSelect) to (score key, region size) records, radix
//      sorted by key (cub::DeviceRadixSort), reduced to groups: run lengths
//      (cub::DeviceRunLengthEncode) and sums of fixed-point weights (cub::DeviceReduce::ReduceByKey);
//   4. every normal pixel binary-searches the distinct defect keys and is counted with
//      warp-aggregated 64-bit integer atomics (integers: the totals do not depend on the order).
// The O(#distinct defect scores) table is then copied to the host, where the exact walk of
// metrics_table.cpp (shared with the CPU build) answers the queries, so both devices return the
// same bits. Host synchronisations: after 1 (bad inputs stop early), after 3 (sizes the
// counters) and at the end. All memory comes from BuildParams::alloc (torch's allocator).
// Device memory: 8 bytes per pixel (labels, sizes) plus about 2 * (key + 4) + key + 32 bytes per
// defect pixel (indices, sort double buffers, groups), plus CUB temporary storage.
#include <cuda_runtime.h>

#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_reduce.cuh>
#include <cub/device/device_run_length_encode.cuh>
#include <cub/device/device_select.cuh>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>

#include <climits>
#include <stdexcept>
#include <vector>

#include "common/cuda_utils.cuh"
#include "metrics/ccl.h"
#include "metrics/metrics.h"

namespace m3ad {
namespace metrics {
namespace {

constexpr int kThreads = 256;

struct DevStats {
  unsigned long long n_pos, n_nonbinary, first_nonbinary, n_nonfinite, first_nonfinite, n_regions;
};

__global__ void init_stats(DevStats* st) {
  st->n_pos = st->n_nonbinary = st->n_nonfinite = st->n_regions = 0;
  st->first_nonbinary = st->first_nonfinite = ULLONG_MAX;
}

__device__ __forceinline__ unsigned long long warp_sum(unsigned long long v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  return v;
}

__device__ __forceinline__ unsigned long long warp_min(unsigned long long v) {
  for (int off = 16; off > 0; off >>= 1) {
    const unsigned long long o = __shfl_down_sync(0xffffffffu, v, off);
    v = o < v ? o : v;
  }
  return v;
}

template <typename T>
__global__ void validate(const T* __restrict__ maps, const uint8_t* __restrict__ masks, int64_t n, DevStats* st) {
  unsigned long long pos = 0, bad_mask = 0, bad_score = 0, first_mask = ULLONG_MAX, first_score = ULLONG_MAX;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const uint8_t v = masks[i];
    pos += v != 0;
    if (v > 1) {
      ++bad_mask;
      if (first_mask == ULLONG_MAX) first_mask = static_cast<unsigned long long>(i);
    }
    if (!is_finite_bits(maps[i])) {
      ++bad_score;
      if (first_score == ULLONG_MAX) first_score = static_cast<unsigned long long>(i);
    }
  }
  // Every lane of every warp gets here (blockDim is a multiple of 32).
  pos = warp_sum(pos), bad_mask = warp_sum(bad_mask), bad_score = warp_sum(bad_score);
  first_mask = warp_min(first_mask), first_score = warp_min(first_score);
  if ((threadIdx.x & 31) == 0) {
    if (pos) atomicAdd(&st->n_pos, pos);
    if (bad_mask) {
      atomicAdd(&st->n_nonbinary, bad_mask);
      atomicMin(&st->first_nonbinary, first_mask);
    }
    if (bad_score) {
      atomicAdd(&st->n_nonfinite, bad_score);
      atomicMin(&st->first_nonfinite, first_score);
    }
  }
}

template <typename T, typename Key>
__global__ void gather_records(const T* __restrict__ maps, const int64_t* __restrict__ idx, int64_t n_pos, int64_t HW,
                               const int32_t* __restrict__ labels, const uint32_t* __restrict__ sizes,
                               Key* __restrict__ keys, uint32_t* __restrict__ vals) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < n_pos; j += stride) {
    const int64_t i = idx[j];
    const int64_t base = i - i % HW;
    keys[j] = order_key(maps[i]);
    vals[j] = sizes[base + labels[i]];
  }
}

struct WeightOf {
  __host__ __device__ u128 operator()(uint32_t size) const { return region_weight(size); }
};

struct AddU128 {
  __host__ __device__ u128 operator()(const u128& a, const u128& b) const { return a + b; }
};

// Counter slot 2 * (number of distinct defect keys below k) (+1 when k equals the next one).
// Warps walk the pixels in lock step, so the warp-wide match below always sees all 32 lanes.
template <typename T, typename Key>
__global__ void count_normals(const T* __restrict__ maps, const uint8_t* __restrict__ masks, int64_t n,
                              const Key* __restrict__ d, int64_t m, unsigned long long* __restrict__ counts) {
  const int lane = threadIdx.x & 31;
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int64_t warps = (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5;
  for (int64_t base = warp * 32; base < n; base += warps * 32) {
    const int64_t i = base + lane;
    long long slot = -1;
    if (i < n && !masks[i]) {
      const Key k = order_key(maps[i]);
      int64_t lo = 0, hi = m;
      while (lo < hi) {
        const int64_t mid = (lo + hi) >> 1;
        if (d[mid] < k) lo = mid + 1;
        else hi = mid;
      }
      slot = 2 * lo + ((lo < m && d[lo] == k) ? 1 : 0);
    }
    const unsigned peers = __match_any_sync(0xffffffffu, slot);
    if (slot >= 0 && lane == __ffs(peers) - 1) atomicAdd(counts + slot, static_cast<unsigned long long>(__popc(peers)));
  }
}

class Scratch {
 public:
  explicit Scratch(const BuildParams& p) : p_(p) {}
  template <typename U>
  U* get(size_t count) {
    void* ptr = p_.alloc(sizeof(U) * (count ? count : 1));
    if (!ptr) throw std::runtime_error("metrics: scratch allocation failed");
    return static_cast<U*>(ptr);
  }

 private:
  const BuildParams& p_;
};

template <typename T>
void run(const BuildParams& p, const Device& dev, Table& t) {
  using Key = decltype(order_key(T{}));
  cudaStream_t stream = as_stream(dev);
  const T* maps = static_cast<const T*>(p.maps);
  const int64_t HW = p.H * p.W, n = p.N * HW;
  Scratch mem(p);
  Stats& st = t.stats;
  st = Stats{};
  st.n_pixels = n;
  const unsigned blocks = blocks_for(n, kThreads);

  // 1. Validation and counts.
  DevStats* dst = mem.get<DevStats>(1);
  init_stats<<<1, 1, 0, stream>>>(dst);
  validate<T><<<blocks, kThreads, 0, stream>>>(maps, p.masks, n, dst);
  M3AD_CHECK_LAUNCH("metrics validate");
  DevStats hs;
  cuda_check(cudaMemcpyAsync(&hs, dst, sizeof(hs), cudaMemcpyDeviceToHost, stream), "metrics stats copy");
  cuda_check(cudaStreamSynchronize(stream), "metrics stats sync");
  st.n_pos = static_cast<int64_t>(hs.n_pos);
  st.n_neg = n - st.n_pos;
  st.n_nonbinary = static_cast<int64_t>(hs.n_nonbinary);
  st.first_nonbinary = hs.n_nonbinary ? static_cast<int64_t>(hs.first_nonbinary) : -1;
  st.n_nonfinite = static_cast<int64_t>(hs.n_nonfinite);
  st.first_nonfinite = hs.n_nonfinite ? static_cast<int64_t>(hs.first_nonfinite) : -1;
  if (!st.valid()) return;
  const int64_t n_pos = st.n_pos;

  // 2. Components.
  int32_t* labels = mem.get<int32_t>(n);
  uint32_t* sizes = mem.get<uint32_t>(n);
  cuda_check(cudaMemsetAsync(sizes, 0, sizeof(uint32_t) * n, stream), "metrics memset");
  label_maps_cuda(p.masks, p.N, p.H, p.W, labels, sizes, &dst->n_regions, stream);

  // 3. Records, sort, groups.
  int64_t m = 0;
  Key* uniq = nullptr;
  u128* wsum = nullptr;
  int64_t* lens = nullptr;
  if (n_pos > 0) {
    int64_t* idx = mem.get<int64_t>(n_pos);
    int64_t* nsel = mem.get<int64_t>(1);
    size_t bytes = 0;
    thrust::counting_iterator<int64_t> iota(0);
    cuda_check(cub::DeviceSelect::Flagged(nullptr, bytes, iota, p.masks, idx, nsel, n, stream), "select size");
    cuda_check(cub::DeviceSelect::Flagged(mem.get<unsigned char>(bytes), bytes, iota, p.masks, idx, nsel, n, stream),
               "DeviceSelect::Flagged");
    Key* k0 = mem.get<Key>(n_pos);
    Key* k1 = mem.get<Key>(n_pos);
    uint32_t* v0 = mem.get<uint32_t>(n_pos);
    uint32_t* v1 = mem.get<uint32_t>(n_pos);
    gather_records<T, Key><<<blocks_for(n_pos, kThreads), kThreads, 0, stream>>>(maps, idx, n_pos, HW, labels, sizes, k0, v0);
    M3AD_CHECK_LAUNCH("metrics gather_records");
    cub::DoubleBuffer<Key> kb(k0, k1);
    cub::DoubleBuffer<uint32_t> vb(v0, v1);
    bytes = 0;
    cuda_check(cub::DeviceRadixSort::SortPairs(nullptr, bytes, kb, vb, n_pos, 0, int(8 * sizeof(Key)), stream), "sort size");
    cuda_check(cub::DeviceRadixSort::SortPairs(mem.get<unsigned char>(bytes), bytes, kb, vb, n_pos, 0,
                                               int(8 * sizeof(Key)), stream), "DeviceRadixSort::SortPairs");
    const Key* keys = kb.Current();
    const uint32_t* vals = vb.Current();
    uniq = mem.get<Key>(n_pos);
    wsum = mem.get<u128>(n_pos);
    lens = mem.get<int64_t>(n_pos);
    int64_t* runs = mem.get<int64_t>(2);
    auto weights = thrust::make_transform_iterator(vals, WeightOf{});
    bytes = 0;
    cuda_check(cub::DeviceReduce::ReduceByKey(nullptr, bytes, keys, uniq, weights, wsum, runs, AddU128{}, n_pos, stream),
               "reduce size");
    cuda_check(cub::DeviceReduce::ReduceByKey(mem.get<unsigned char>(bytes), bytes, keys, uniq, weights, wsum, runs,
                                              AddU128{}, n_pos, stream), "DeviceReduce::ReduceByKey");
    bytes = 0;
    cuda_check(cub::DeviceRunLengthEncode::Encode(nullptr, bytes, keys, uniq, lens, runs + 1, n_pos, stream), "rle size");
    cuda_check(cub::DeviceRunLengthEncode::Encode(mem.get<unsigned char>(bytes), bytes, keys, uniq, lens, runs + 1, n_pos,
                                                  stream), "DeviceRunLengthEncode::Encode");
    int64_t hr[2] = {0, 0};
    cuda_check(cudaMemcpyAsync(hr, runs, sizeof(hr), cudaMemcpyDeviceToHost, stream), "runs copy");
    cuda_check(cudaStreamSynchronize(stream), "runs sync");
    if (hr[0] != hr[1]) throw std::logic_error("metrics: group count mismatch between reduce and run-length encode");
    m = hr[0];
  }
  st.n_groups = m;

  // 4. Normal pixels.
  unsigned long long* counts = mem.get<unsigned long long>(2 * m + 1);
  cuda_check(cudaMemsetAsync(counts, 0, sizeof(unsigned long long) * (2 * m + 1), stream), "metrics memset");
  count_normals<T, Key><<<blocks, kThreads, 0, stream>>>(maps, p.masks, n, uniq, m, counts);
  M3AD_CHECK_LAUNCH("metrics count_normals");

  std::vector<unsigned long long> hc(static_cast<size_t>(2 * m + 1));
  std::vector<int64_t> hl(static_cast<size_t>(m));
  t.wsum.resize(static_cast<size_t>(m));
  cuda_check(cudaMemcpyAsync(hc.data(), counts, sizeof(unsigned long long) * hc.size(), cudaMemcpyDeviceToHost, stream), "copy");
  if (m) {
    cuda_check(cudaMemcpyAsync(hl.data(), lens, sizeof(int64_t) * m, cudaMemcpyDeviceToHost, stream), "copy");
    cuda_check(cudaMemcpyAsync(t.wsum.data(), wsum, sizeof(u128) * m, cudaMemcpyDeviceToHost, stream), "copy");
  }
  cuda_check(cudaMemcpyAsync(&hs, dst, sizeof(hs), cudaMemcpyDeviceToHost, stream), "copy");
  cuda_check(cudaStreamSynchronize(stream), "metrics final sync");
  st.n_regions = static_cast<int64_t>(hs.n_regions);
  t.btw.resize(static_cast<size_t>(m + 1));
  t.eq.resize(static_cast<size_t>(m));
  t.pos.resize(static_cast<size_t>(m));
  for (int64_t i = 0; i <= m; ++i) t.btw[i] = hc[2 * i];
  for (int64_t i = 0; i < m; ++i) t.eq[i] = hc[2 * i + 1], t.pos[i] = static_cast<uint64_t>(hl[i]);
  t.finalize();
}

}  // namespace

void build_table_cuda(const BuildParams& p, const Device& dev, Table& t) {
  if (p.H * p.W >= (int64_t{1} << 31)) throw std::invalid_argument("metrics: H * W must be < 2^31");
  DeviceGuard guard(dev.index);
  dispatch_float(p.dtype, [&](auto tag) {
    run<decltype(tag)>(p, dev, t);
    return 0;
  });
}

}  // namespace metrics
}  // namespace m3ad
