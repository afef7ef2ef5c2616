// CUDA build of the interval table (metrics.h); the same integers as metrics_cpu.cpp:
//   1. validation counts (mask bytes other than 0/1, NaN/Inf scores) and the defect count;
//   2. 8-connected components of every mask (ccl_cuda.cu) with component sizes (skipped when
//      the regions are not needed);
//   3. one (score key, region size) record per defect pixel, appended with one atomic per warp
//      (the order of records with equal keys is free: only integer sums of them are kept), radix
//      sorted by key (cub::DeviceRadixSort; keys only without regions), reduced to groups with
//      their defect counts and sums of fixed-point weights (one cub::DeviceReduce::ReduceByKey);
//   4. every normal pixel locates its key among the distinct defect keys (a binary search over a
//      sample of them in shared memory, then over the few keys between two samples) and is
//      counted with warp-aggregated 64-bit integer atomics; the slots below the lowest and above
//      the highest defect key, where most normal pixels of a test set fall, are counted in
//      registers first (integers: the totals do not depend on the order);
//   5. vertical runs joined (metrics.h): a head flag per group from the counts, an inclusive
//      scan of them numbers the runs, one ReduceByKey adds up each run;
//   6. the joined table packed (counts as uint32 when the pixel count allows, the weight sums
//      only with regions) and copied in one piece to host memory from BuildParams::alloc_host
//      (pinned torch memory), where the exact walk of metrics_table.cpp (shared with the CPU
//      build) answers the queries, so both devices return the same bits.
// Host synchronisations: after 1 (bad inputs stop early; sizes the records), after 3 (sizes the
// counters), after 5 (sizes the copy) and at the end. All memory comes from BuildParams::alloc
// (torch's allocator), in three allocations (one per size known on the host).
// Device memory: 8 bytes per pixel (labels, sizes; only with regions) plus about
// 2 * (key + 4) + key + 32 bytes per defect pixel (records, sort buffers, groups), about 100
// bytes per distinct defect score (counters 16, run numbers 8, joined entries 48, packed copy
// <= 28), plus CUB storage.
//
// BuildParams::profile records a CUDA event after every phase (Table::profile lists the device
// time between consecutive events: "count normals" includes zeroing the counters, "join vertical
// runs" the scan and the reduction; and the host time of each wait and host step, "total" the
// whole build on the host clock).
#include <cuda_runtime.h>

#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_reduce.cuh>
#include <cub/device/device_scan.cuh>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>

#include <chrono>
#include <climits>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/cuda_utils.cuh"
#include "common/parallel.h"
#include "metrics/ccl.h"
#include "metrics/metrics.h"

namespace m3ad {
namespace metrics {
namespace {

constexpr int kThreads = 256;
constexpr int kCountThreads = 512;
constexpr int kSampleBytes = 48 * 1024;           // shared-memory sample of the defect keys
constexpr unsigned kFull = 0xffffffffu;

struct DevStats {
  unsigned long long n_pos, n_nonbinary, first_nonbinary, n_nonfinite, first_nonfinite, n_regions, emitted;
};

__global__ void init_stats(DevStats* st) {
  st->n_pos = st->n_nonbinary = st->n_nonfinite = st->n_regions = st->emitted = 0;
  st->first_nonbinary = st->first_nonfinite = ULLONG_MAX;
}

__device__ __forceinline__ unsigned long long warp_sum(unsigned long long v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(kFull, v, off);
  return v;
}

__device__ __forceinline__ unsigned long long warp_min(unsigned long long v) {
  for (int off = 16; off > 0; off >>= 1) {
    const unsigned long long o = __shfl_down_sync(kFull, v, off);
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

// One record per defect pixel: its score key and (with regions) its component's size. Warps walk
// windows of 32 pixels in lock step; each window's defect pixels get consecutive slots from one
// atomic on the cursor. The order of the windows is arbitrary, which only permutes records of
// equal keys: their counts and weight sums do not depend on it.
template <typename T, typename Key, bool kRegions>
__global__ void emit_records(const T* __restrict__ maps, const uint8_t* __restrict__ masks, int64_t n, int64_t HW,
                             const int32_t* __restrict__ labels, const uint32_t* __restrict__ sizes,
                             Key* __restrict__ keys, uint32_t* __restrict__ vals, unsigned long long* cursor) {
  for_each_warp_window(n, [&](int64_t i, int lane) {
    const bool d = i < n && masks[i];
    const unsigned ballot = __ballot_sync(kFull, d);
    if (ballot == 0) return;  // the same for every lane
    unsigned long long at = 0;
    if (lane == 0) at = atomicAdd(cursor, static_cast<unsigned long long>(__popc(ballot)));
    at = __shfl_sync(kFull, at, 0);
    if (d) {
      const int64_t j = static_cast<int64_t>(at) + __popc(ballot & ((1u << lane) - 1u));
      keys[j] = order_key(maps[i]);
      if (kRegions) {
        const int64_t mbase = i - i % HW;
        vals[j] = sizes[mbase + labels[i]];  // labels[i] is the root after ccl_finish
      }
    }
  });
}

// Per group: number of defect pixels and sum of their fixed-point weights.
struct Acc {
  u128 w;
  unsigned long long c;
};

struct AccOfSize {
  __host__ __device__ Acc operator()(uint32_t size) const { return Acc{region_weight(size), 1ull}; }
};

struct AccOne {
  __host__ __device__ Acc operator()(int64_t) const { return Acc{0, 1ull}; }
};

struct AddAcc {
  __host__ __device__ Acc operator()(const Acc& a, const Acc& b) const { return Acc{a.w + b.w, a.c + b.c}; }
};

// Counter slot 2 * (number of distinct defect keys below k) (+1 when k equals the next one).
// search 0: the block first copies every 2^shift-th key (nsample of them, at most kSampleBytes)
// into shared memory; a binary search there leaves at most 2^shift - 1 keys to search in global
// memory (instead of all m). search 1: plain binary search over all m keys in global memory.
// Warps walk the pixels in lock step, so the warp-wide match below always sees all 32 lanes.
template <typename T, typename Key>
__global__ void __launch_bounds__(kCountThreads)
    count_normals(const T* __restrict__ maps, const uint8_t* __restrict__ masks, int64_t n, const Key* __restrict__ d,
                  int64_t m, int shift, int nsample, int search, unsigned long long* __restrict__ counts) {
  extern __shared__ unsigned char smem_raw[];  // aligned for any Key (at least 16 bytes)
  Key* sample = reinterpret_cast<Key*>(smem_raw);
  if (search == 0) {
    for (int j = threadIdx.x; j < nsample; j += blockDim.x) sample[j] = d[static_cast<int64_t>(j) << shift];
  }
  __syncthreads();
  const int lane = threadIdx.x & 31;
  const Key lowest = m ? d[0] : Key{0}, highest = m ? d[m - 1] : Key{0};
  unsigned long long below = 0, above = 0;  // slots 0 and 2m, counted in registers
  for_each_warp_window(n, [&](int64_t i, int) {
    long long slot = -1;
    if (i < n && !masks[i]) {
      const Key k = order_key(maps[i]);
      if (m == 0 || k < lowest) {
        ++below;
      } else if (k > highest) {
        ++above;
      } else {
        int64_t lo = 0, hi = m;
        if (search == 0) {
          int a = 0, b = nsample;  // a = number of samples below k (>= 1 unless k == d[0])
          while (a < b) {
            const int mid = (a + b) >> 1;
            if (sample[mid] < k) a = mid + 1;
            else b = mid;
          }
          if (a == 0) {
            hi = 0;
          } else {  // d[(a-1) << shift] < k <= d[a << shift] (or a == nsample)
            lo = (static_cast<int64_t>(a - 1) << shift) + 1;
            const int64_t top = static_cast<int64_t>(a) << shift;
            hi = top < m ? top : m;
          }
        }
        while (lo < hi) {
          const int64_t mid = (lo + hi) >> 1;
          if (d[mid] < k) lo = mid + 1;
          else hi = mid;
        }
        slot = 2 * lo + ((lo < m && d[lo] == k) ? 1 : 0);
      }
    }
    const unsigned peers = __match_any_sync(kFull, slot);
    if (slot >= 0 && lane == __ffs(static_cast<int>(peers)) - 1)
      atomicAdd(counts + slot, static_cast<unsigned long long>(__popc(peers)));
  });
  below = warp_sum(below), above = warp_sum(above);
  if (lane == 0) {
    if (below) atomicAdd(counts, below);
    if (above) atomicAdd(counts + 2 * m, above);
  }
}

// Joining vertical runs: head flag of group i (1 unless it joins group i - 1; metrics.h).
struct HeadFlag {
  const unsigned long long* c;  // [2 i] interval i, [2 i + 1] group i
  bool join;                    // BuildParams::join_runs (false: every group is a head)
  __host__ __device__ uint32_t operator()(int64_t i) const {
    return (i == 0 || !join || !joins_previous(c[2 * i - 1], c[2 * i], c[2 * i + 1])) ? 1u : 0u;
  }
};

// A group with its counts; summed over a run. Within a joined run every eq is 0 and every btw but
// the first is 0, so the sums are the run's eq and the interval below it.
struct Entry {
  u128 w;
  unsigned long long pos, eq, btw;
};

struct EntryOf {
  const Acc* acc;
  const unsigned long long* c;
  __host__ __device__ Entry operator()(int64_t i) const { return Entry{acc[i].w, acc[i].c, c[2 * i + 1], c[2 * i]}; }
};

struct AddEntry {
  __host__ __device__ Entry operator()(const Entry& a, const Entry& b) const {
    return Entry{a.w + b.w, a.pos + b.pos, a.eq + b.eq, a.btw + b.btw};
  }
};

// Packed copy of the joined table: [u128 wsum[r] (with regions)] [C btw[r + 1]] [C eq[r]] [C pos[r]].
template <typename C>
__global__ void pack_table(const Entry* __restrict__ e, int64_t r, const unsigned long long* __restrict__ last_btw,
                           bool regions, unsigned char* __restrict__ out) {
  u128* w = reinterpret_cast<u128*>(out);
  C* btw = reinterpret_cast<C*>(out + (regions ? sizeof(u128) * r : 0));
  C* eq = btw + r + 1;
  C* pos = eq + r;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k <= r; k += stride) {
    if (k == r) {
      btw[r] = static_cast<C>(*last_btw);
      continue;
    }
    const Entry x = e[k];
    if (regions) w[k] = x.w;
    btw[k] = static_cast<C>(x.btw);
    eq[k] = static_cast<C>(x.eq);
    pos[k] = static_cast<C>(x.pos);
  }
}

size_t packed_bytes(int64_t r, bool regions, size_t count_bytes) {
  return (regions ? sizeof(u128) * r : 0) + count_bytes * (3 * r + 1);
}

// Scratch memory: each allocation from BuildParams::alloc is carved into 256-byte aligned parts;
// also sums the host time spent in the allocator (a Python call per allocation).
class Scratch {
 public:
  explicit Scratch(const BuildParams& p) : p_(p) {}
  template <typename U>
  void add(U*& ptr, size_t count) {
    const size_t off = bytes_;
    bytes_ = (off + sizeof(U) * (count ? count : 1) + 255) / 256 * 256;
    setters_.push_back([&ptr, off](unsigned char* base) { ptr = reinterpret_cast<U*>(base + off); });
  }
  void add_bytes(void*& ptr, size_t count) {
    const size_t off = bytes_;
    bytes_ = (off + (count ? count : 1) + 255) / 256 * 256;
    setters_.push_back([&ptr, off](unsigned char* base) { ptr = base + off; });
  }
  void allocate() {
    const auto t0 = std::chrono::steady_clock::now();
    void* base = p_.alloc(bytes_);
    if (!base) throw std::runtime_error("metrics: scratch allocation failed");
    alloc_ms_ += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    ++calls_;
    for (auto& set : setters_) set(static_cast<unsigned char*>(base));
    setters_.clear();
    bytes_ = 0;
  }
  double alloc_ms() const { return alloc_ms_; }
  int calls() const { return calls_; }

 private:
  const BuildParams& p_;
  size_t bytes_ = 0;
  std::vector<std::function<void(unsigned char*)>> setters_;
  double alloc_ms_ = 0;
  int calls_ = 0;
};

// Table::profile: device rows from events recorded on the stream (the time since the previous
// event; `anchor` starts a new sequence after a host wait, so that host gaps are not counted),
// host rows from a steady clock.
class Profile {
 public:
  Profile(bool on, cudaStream_t s, std::vector<Phase>& out) : on_(on), s_(s), out_(out), t0_(now()) {
    if (on_) out_.clear();
  }
  ~Profile() {
    for (auto& r : rows_)
      if (r.ev) cudaEventDestroy(r.ev);
  }
  void anchor() { record(""); }
  void device(const char* name) { record(name); }
  void host_start() { h_ = now(); }
  void host(const std::string& name) {
    if (on_) rows_.push_back(Row{name, nullptr, ms(h_, now())});
  }
  // After the final synchronisation: resolves the events into Table::profile.
  void finish(const std::string& extra_name = "", double extra_ms = -1) {
    if (!on_) return;
    cudaEvent_t prev = nullptr;
    for (auto& r : rows_) {
      if (!r.ev) {
        out_.push_back(Phase{r.name, r.ms, false});
        continue;
      }
      if (!r.name.empty() && prev) {
        float t = 0;
        cuda_check(cudaEventElapsedTime(&t, prev, r.ev), "metrics profile");
        out_.push_back(Phase{r.name, static_cast<double>(t), true});
      }
      prev = r.ev;
    }
    if (extra_ms >= 0) out_.push_back(Phase{extra_name, extra_ms, false});
    out_.push_back(Phase{"total", ms(t0_, now()), false});
  }

 private:
  using Clock = std::chrono::steady_clock;
  static Clock::time_point now() { return Clock::now(); }
  static double ms(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  }
  void record(const char* name) {
    if (!on_) return;
    cudaEvent_t ev = nullptr;
    cuda_check(cudaEventCreate(&ev), "metrics profile");
    rows_.push_back(Row{name, ev, 0});
    cuda_check(cudaEventRecord(ev, s_), "metrics profile");
  }
  struct Row {
    std::string name;
    cudaEvent_t ev;
    double ms;
  };
  bool on_;
  cudaStream_t s_;
  std::vector<Phase>& out_;
  std::vector<Row> rows_;
  Clock::time_point t0_, h_;
};

template <typename T>
void run(const BuildParams& p, const Device& dev, Table& t) {
  using Key = decltype(order_key(T{}));
  cudaStream_t stream = as_stream(dev);
  const T* maps = static_cast<const T*>(p.maps);
  const int64_t HW = p.H * p.W, n = p.N * HW;
  const bool regions = p.need_regions;
  Scratch mem(p);
  Stats& st = t.stats;
  st = Stats{};
  st.n_pixels = n;
  Profile prof(p.profile, stream, t.profile);
  const unsigned blocks = blocks_for(n, kThreads);

  // 1. Validation and counts.
  DevStats* dst = nullptr;
  int64_t* runs = nullptr;  // [0] groups, [1] joined groups
  mem.add(dst, 1);
  mem.add(runs, 2);
  mem.allocate();
  prof.anchor();
  init_stats<<<1, 1, 0, stream>>>(dst);
  validate<T><<<blocks, kThreads, 0, stream>>>(maps, p.masks, n, dst);
  M3AD_CHECK_LAUNCH("metrics validate");
  prof.device("validate");
  DevStats hs;
  prof.host_start();
  cuda_check(cudaMemcpyAsync(&hs, dst, sizeof(hs), cudaMemcpyDeviceToHost, stream), "metrics stats copy");
  cuda_check(cudaStreamSynchronize(stream), "metrics stats sync");
  prof.host("wait: validate");
  st.n_pos = static_cast<int64_t>(hs.n_pos);
  st.n_neg = n - st.n_pos;
  st.n_nonbinary = static_cast<int64_t>(hs.n_nonbinary);
  st.first_nonbinary = hs.n_nonbinary ? static_cast<int64_t>(hs.first_nonbinary) : -1;
  st.n_nonfinite = static_cast<int64_t>(hs.n_nonfinite);
  st.first_nonfinite = hs.n_nonfinite ? static_cast<int64_t>(hs.first_nonfinite) : -1;
  if (!st.valid()) return;
  const int64_t n_pos = st.n_pos;

  // 2. Components; 3. records, sort, groups (all sized by n_pos: one allocation).
  int32_t* labels = nullptr;
  uint32_t* sizes = nullptr;
  Key *k0 = nullptr, *k1 = nullptr, *uniq = nullptr;
  uint32_t *v0 = nullptr, *v1 = nullptr;
  Acc* acc = nullptr;
  void *sort_tmp = nullptr, *reduce_tmp = nullptr;
  size_t sort_bytes = 0, reduce_bytes = 0;
  const int key_bits = static_cast<int>(8 * sizeof(Key));
  // The records' sort and their reduction to groups, for both the size query (null storage) and
  // the call: with regions the region sizes travel with the keys and become weights; without,
  // only the keys are sorted and every record counts one.
  auto sort_records = [&](void* tmp, size_t& bytes, cub::DoubleBuffer<Key>& kb, cub::DoubleBuffer<uint32_t>& vb) {
    return regions ? cub::DeviceRadixSort::SortPairs(tmp, bytes, kb, vb, n_pos, 0, key_bits, stream)
                   : cub::DeviceRadixSort::SortKeys(tmp, bytes, kb, n_pos, 0, key_bits, stream);
  };
  auto reduce_groups = [&](void* tmp, size_t& bytes, const Key* keys, const uint32_t* vals) {
    if (regions) {
      auto in = thrust::make_transform_iterator(vals, AccOfSize{});
      return cub::DeviceReduce::ReduceByKey(tmp, bytes, keys, uniq, in, acc, runs, AddAcc{}, n_pos, stream);
    }
    auto in = thrust::make_transform_iterator(thrust::counting_iterator<int64_t>(0), AccOne{});
    return cub::DeviceReduce::ReduceByKey(tmp, bytes, keys, uniq, in, acc, runs, AddAcc{}, n_pos, stream);
  };
  if (n_pos > 0) {
    if (regions) {
      mem.add(labels, n);
      mem.add(sizes, n);
      mem.add(v0, n_pos);
      mem.add(v1, n_pos);
    }
    mem.add(k0, n_pos);
    mem.add(k1, n_pos);
    mem.add(uniq, n_pos);
    mem.add(acc, n_pos);
    {  // CUB size queries (no data is touched)
      cub::DoubleBuffer<Key> kb(nullptr, nullptr);
      cub::DoubleBuffer<uint32_t> vb(nullptr, nullptr);
      cuda_check(sort_records(nullptr, sort_bytes, kb, vb), "sort size");
      cuda_check(reduce_groups(nullptr, reduce_bytes, nullptr, nullptr), "reduce size");
    }
    mem.add_bytes(sort_tmp, sort_bytes);
    mem.add_bytes(reduce_tmp, reduce_bytes);
    mem.allocate();
  }
  prof.anchor();
  int64_t m = 0;
  if (n_pos > 0) {
    if (regions) {
      label_maps_cuda(p.masks, p.N, p.H, p.W, labels, sizes, &dst->n_regions, stream,
                      [&](const char* name) { prof.device(name); });
      emit_records<T, Key, true><<<blocks, kThreads, 0, stream>>>(maps, p.masks, n, HW, labels, sizes, k0, v0,
                                                                   &dst->emitted);
    } else {
      emit_records<T, Key, false><<<blocks, kThreads, 0, stream>>>(maps, p.masks, n, HW, nullptr, nullptr, k0, nullptr,
                                                                    &dst->emitted);
    }
    M3AD_CHECK_LAUNCH("metrics emit_records");
    prof.device("emit records");
    cub::DoubleBuffer<Key> kb(k0, k1);
    cub::DoubleBuffer<uint32_t> vb(v0, v1);
    cuda_check(sort_records(sort_tmp, sort_bytes, kb, vb), "DeviceRadixSort (records)");
    prof.device("sort");
    cuda_check(reduce_groups(reduce_tmp, reduce_bytes, kb.Current(), vb.Current()), "DeviceReduce::ReduceByKey");
    prof.device("reduce groups");
    prof.host_start();
    cuda_check(cudaMemcpyAsync(&m, runs, sizeof(m), cudaMemcpyDeviceToHost, stream), "groups copy");
    cuda_check(cudaStreamSynchronize(stream), "groups sync");
    prof.host("wait: groups");
  }
  st.n_groups = m;
  if (m >= (int64_t{1} << 32) - 1) throw std::invalid_argument("metrics: more than 2^32 distinct defect scores");

  // 4. Normal pixels; 5. vertical runs; 6. the packed copy (sized by m: one allocation).
  const bool narrow = n < (int64_t{1} << 32);  // every count fits 32 bits
  const size_t count_bytes = narrow ? sizeof(uint32_t) : sizeof(uint64_t);
  unsigned long long* counts = nullptr;
  uint32_t *rid = nullptr, *rid_out = nullptr;
  Entry* entries = nullptr;
  unsigned char* packed = nullptr;
  void *scan_tmp = nullptr, *join_tmp = nullptr;
  size_t scan_bytes = 0, join_bytes = 0;
  auto heads_of = [&](const unsigned long long* c) {
    return thrust::make_transform_iterator(thrust::counting_iterator<int64_t>(0), HeadFlag{c, p.join_runs});
  };
  auto items_of = [](const Acc* a, const unsigned long long* c) {
    return thrust::make_transform_iterator(thrust::counting_iterator<int64_t>(0), EntryOf{a, c});
  };
  mem.add(counts, 2 * m + 1);
  if (m > 0) {
    mem.add(rid, m);
    mem.add(rid_out, m);
    mem.add(entries, m);
    cuda_check(cub::DeviceScan::InclusiveSum(nullptr, scan_bytes, heads_of(nullptr), rid, m, stream), "scan size");
    cuda_check(cub::DeviceReduce::ReduceByKey(nullptr, join_bytes, static_cast<const uint32_t*>(nullptr), rid_out,
                                              items_of(nullptr, nullptr), entries, runs + 1, AddEntry{}, m, stream),
               "join size");
    mem.add_bytes(scan_tmp, scan_bytes);
    mem.add_bytes(join_tmp, join_bytes);
  }
  mem.add(packed, packed_bytes(m, regions, count_bytes));
  mem.allocate();
  prof.anchor();
  cuda_check(cudaMemsetAsync(counts, 0, sizeof(unsigned long long) * (2 * m + 1), stream), "metrics memset");
  {
    int shift = 0;
    const int64_t cap = kSampleBytes / static_cast<int64_t>(sizeof(Key));
    while (((m + (int64_t{1} << shift) - 1) >> shift) > cap) ++shift;
    const int nsample = p.search == 0 ? static_cast<int>((m + (int64_t{1} << shift) - 1) >> shift) : 0;
    // One resident wave of blocks (each loads the sample once; the grid-stride loop gives every
    // block the same share, so a second, partial wave would only add a tail).
    const size_t smem = sizeof(Key) * nsample;
    int sms = 0, per_sm = 0;
    cuda_check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev.index), "SM count");
    cuda_check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, count_normals<T, Key>, kCountThreads, smem),
               "count_normals occupancy");
    const long long cap_blocks = static_cast<long long>(sms > 0 ? sms : 1) * (per_sm > 0 ? per_sm : 1);
    const unsigned cblocks = blocks_for(n, kCountThreads, cap_blocks);
    count_normals<T, Key><<<cblocks, kCountThreads, smem, stream>>>(maps, p.masks, n, uniq, m, shift, nsample,
                                                                    p.search, counts);
    M3AD_CHECK_LAUNCH("metrics count_normals");
  }
  prof.device("count normals");
  int64_t r = 0;
  if (m > 0) {
    cuda_check(cub::DeviceScan::InclusiveSum(scan_tmp, scan_bytes, heads_of(counts), rid, m, stream),
               "DeviceScan::InclusiveSum");
    cuda_check(cub::DeviceReduce::ReduceByKey(join_tmp, join_bytes, static_cast<const uint32_t*>(rid), rid_out,
                                              items_of(acc, counts), entries, runs + 1, AddEntry{}, m, stream),
               "DeviceReduce::ReduceByKey (join)");
    prof.device("join vertical runs");
  }
  prof.host_start();
  cuda_check(cudaMemcpyAsync(&hs, dst, sizeof(hs), cudaMemcpyDeviceToHost, stream), "metrics stats copy");
  if (m > 0) cuda_check(cudaMemcpyAsync(&r, runs + 1, sizeof(r), cudaMemcpyDeviceToHost, stream), "runs copy");
  cuda_check(cudaStreamSynchronize(stream), "runs sync");
  prof.host("wait: joined groups");
  if (regions && hs.n_regions >= (1ull << 32)) throw std::invalid_argument("metrics: more than 2^32 defect regions");
  if (hs.emitted != hs.n_pos) throw std::logic_error("metrics: record count mismatch");
  st.n_regions = regions ? static_cast<int64_t>(hs.n_regions) : -1;
  st.n_table = r;

  // The packed table to the host, in one copy.
  const size_t bytes = packed_bytes(r, regions, count_bytes);
  std::vector<unsigned char> pageable;
  unsigned char* host = nullptr;
  double host_alloc_ms = 0;
  {
    const auto t0 = std::chrono::steady_clock::now();
    if (p.alloc_host) {
      host = static_cast<unsigned char*>(p.alloc_host(bytes));
      if (!host) throw std::runtime_error("metrics: host allocation failed");
    } else {
      pageable.resize(bytes);
      host = pageable.data();
    }
    host_alloc_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }
  prof.anchor();
  if (narrow) {
    pack_table<uint32_t><<<blocks_for(r + 1, kThreads), kThreads, 0, stream>>>(entries, r, counts + 2 * m, regions, packed);
  } else {
    pack_table<uint64_t><<<blocks_for(r + 1, kThreads), kThreads, 0, stream>>>(entries, r, counts + 2 * m, regions, packed);
  }
  M3AD_CHECK_LAUNCH("metrics pack_table");
  prof.device("pack");
  cuda_check(cudaMemcpyAsync(host, packed, bytes, cudaMemcpyDeviceToHost, stream), "table copy");
  prof.device("copy to host");
  prof.host_start();
  cuda_check(cudaStreamSynchronize(stream), "metrics final sync");
  prof.host("wait: copy");

  // Widen into the table (metrics_table.cpp walks 64-bit counts and 128-bit sums).
  prof.host_start();
  t.btw.resize(static_cast<size_t>(r + 1));
  t.eq.resize(static_cast<size_t>(r));
  t.pos.resize(static_cast<size_t>(r));
  t.wsum.assign(static_cast<size_t>(r), 0);
  const unsigned char* cb = host + (regions ? sizeof(u128) * r : 0);
  if (regions && r) std::memcpy(t.wsum.data(), host, sizeof(u128) * r);
  auto widen = [&](auto tag) {
    using C = decltype(tag);
    const C* btw = reinterpret_cast<const C*>(cb);
    const C* eq = btw + r + 1;
    const C* pos = eq + r;
    parallel_for(r + 1, 1 << 16, [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k) {
        t.btw[k] = btw[k];
        if (k < r) t.eq[k] = eq[k], t.pos[k] = pos[k];
      }
    });
  };
  if (narrow) widen(uint32_t{});
  else widen(uint64_t{});
  prof.host("host: widen");
  prof.host_start();
  t.finalize();
  prof.host("host: finalize");
  prof.finish("host: allocations (" + std::to_string(mem.calls()) + " device + 1 host)", mem.alloc_ms() + host_alloc_ms);
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
