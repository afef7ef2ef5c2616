// Checks the host CUDA emulator (tools/cuda_emu: include/cuda_runtime.h, emu_runtime.cpp,
// translate.py) with kernels in ordinary CUDA syntax. Run through tools/cuda_emu/run_tests.sh:
// translated by translate.py, compiled by the host compiler with emu_runtime.cpp.
// main() returns nonzero if any check fails; each failure is printed as FAIL file:line: what.
// The emulator prints its own "cuda emulator: ..." lines to stderr for the launches that are
// meant to fail (section 6); those are expected.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace {

std::atomic<int> g_failures{0};
std::atomic<int> g_checks{0};

#define CHECK(cond)                                                               \
  do {                                                                            \
    ++g_checks;                                                                   \
    if (!(cond)) {                                                                \
      ++g_failures;                                                               \
      std::printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                 \
    }                                                                             \
  } while (0)

// Like CHECK, with a printf-style description of the case (only printed on failure).
#define CHECK_MSG(cond, ...)                                                      \
  do {                                                                            \
    ++g_checks;                                                                   \
    if (!(cond)) {                                                                \
      ++g_failures;                                                               \
      std::printf("FAIL %s:%d: %s [", __FILE__, __LINE__, #cond);                 \
      std::printf(__VA_ARGS__);                                                   \
      std::printf("]\n");                                                         \
    }                                                                             \
  } while (0)

constexpr unsigned kFull = 0xffffffffu;

}  // namespace

// ============================================================================================
// 1. threadIdx / blockIdx / blockDim / gridDim
// ============================================================================================

// Per (block, thread): 8 words: tx, ty, tz, bx, by, bz, times run, index still right after a
// __syncthreads (fibers switch there, so the emulator must restore threadIdx/blockIdx).
__global__ void index_kernel(unsigned* rec, unsigned* bad_dims, dim3 grid, dim3 block) {
  const unsigned nthreads = blockDim.x * blockDim.y * blockDim.z;
  const unsigned b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned long long gid = static_cast<unsigned long long>(b) * nthreads + t;
  if (blockDim.x != block.x || blockDim.y != block.y || blockDim.z != block.z || gridDim.x != grid.x ||
      gridDim.y != grid.y || gridDim.z != grid.z)
    atomicAdd(bad_dims, 1u);
  unsigned* r = rec + gid * 8;
  r[0] = threadIdx.x;
  r[1] = threadIdx.y;
  r[2] = threadIdx.z;
  r[3] = blockIdx.x;
  r[4] = blockIdx.y;
  r[5] = blockIdx.z;
  atomicAdd(r + 6, 1u);
  __syncthreads();
  const unsigned t2 = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned b2 = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  r[7] = (t2 == t && b2 == b) ? 1u : 0u;
}

static void test_indices(dim3 grid, dim3 block) {
  const unsigned long long nthreads = 1ull * block.x * block.y * block.z;
  const unsigned long long nblocks = 1ull * grid.x * grid.y * grid.z;
  std::vector<unsigned> rec(nblocks * nthreads * 8, 0);
  unsigned bad_dims = 0;
  index_kernel<<<grid, block>>>(rec.data(), &bad_dims, grid, block);
  CHECK_MSG(cudaGetLastError() == cudaSuccess, "grid %ux%ux%u block %ux%ux%u", grid.x, grid.y, grid.z, block.x, block.y,
            block.z);
  CHECK_MSG(bad_dims == 0, "blockDim/gridDim wrong in %u threads", bad_dims);
  unsigned long long wrong = 0;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx)
        for (unsigned tz = 0; tz < block.z; ++tz)
          for (unsigned ty = 0; ty < block.y; ++ty)
            for (unsigned tx = 0; tx < block.x; ++tx) {
              const unsigned long long b = bx + 1ull * grid.x * (by + 1ull * grid.y * bz);
              const unsigned long long t = tx + 1ull * block.x * (ty + 1ull * block.y * tz);
              const unsigned* r = &rec[(b * nthreads + t) * 8];
              const unsigned expect[8] = {tx, ty, tz, bx, by, bz, 1u, 1u};
              if (std::memcmp(r, expect, sizeof expect) != 0) {
                if (wrong++ < 3)
                  std::printf("  index mismatch at block (%u,%u,%u) thread (%u,%u,%u): got %u %u %u %u %u %u runs=%u "
                              "after_sync_ok=%u\n",
                              bx, by, bz, tx, ty, tz, r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]);
              }
            }
  CHECK_MSG(wrong == 0, "%llu of %llu threads wrong, grid %ux%ux%u block %ux%ux%u", wrong, nblocks * nthreads, grid.x,
            grid.y, grid.z, block.x, block.y, block.z);
}

__device__ int g_noarg_flag;
__global__ void noarg_kernel() { g_noarg_flag = 42; }

static void test_section1() {
  test_indices(dim3(3, 2, 2), dim3(4, 3, 2));
  test_indices(dim3(40, 3, 2), dim3(2, 2, 1));  // 240 blocks of 4 threads
  test_indices(dim3(7, 5, 3), dim3(1, 1, 1));
  test_indices(dim3(2), dim3(1024));            // 1024-thread blocks
  test_indices(dim3(1, 2, 1), dim3(16, 8, 8));  // 1024 threads, 3-D
  test_indices(dim3(1), dim3(1, 16, 64));       // block.z at its limit of 64
  test_indices(dim3(1, 300, 2), dim3(3, 1, 1));
  test_indices(1, 1);
  g_noarg_flag = 0;
  noarg_kernel<<<1, 1>>>();
  CHECK(cudaGetLastError() == cudaSuccess);
  CHECK(g_noarg_flag == 42);
}

// ============================================================================================
// 2. __syncthreads
// ============================================================================================

__global__ void block_sum_kernel(const int* in, long long* out) {
  __shared__ long long sh[1024];
  const unsigned t = threadIdx.x, n = blockDim.x;
  sh[t] = in[blockIdx.x * n + t];
  __syncthreads();
  unsigned p = 1;
  while (p < n) p <<= 1;
  for (unsigned s = p / 2; s > 0; s >>= 1) {
    if (t < s && t + s < n) sh[t] += sh[t + s];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = sh[0];
}

// Returns true if block_sum_kernel over `blocks` blocks of n threads gives the right sums.
static bool run_block_sum(unsigned n, unsigned blocks, int salt) {
  std::vector<int> in(n * blocks);
  std::vector<long long> expect(blocks, 0), out(blocks, -1);
  for (unsigned i = 0; i < n * blocks; ++i) {
    in[i] = static_cast<int>((i * 2654435761u + salt) % 200001u) - 100000;
    expect[i / n] += in[i];
  }
  block_sum_kernel<<<blocks, n>>>(in.data(), out.data());
  if (cudaGetLastError() != cudaSuccess) return false;
  return out == expect;
}

// Phase 1 writes, phase 2 reads other threads' values; repeated `rounds` times, each round
// rotating the shared array by one. A missing or misplaced barrier shows in the result.
__global__ void rotate_kernel(int* out, int rounds) {
  __shared__ int buf[1024];
  const unsigned t = threadIdx.x, n = blockDim.x;
  buf[t] = static_cast<int>(t * t + 7 * blockIdx.x);
  __syncthreads();
  for (int r = 0; r < rounds; ++r) {
    const int v = buf[(t + 1) % n];
    __syncthreads();
    buf[t] = v;
    __syncthreads();
  }
  out[blockIdx.x * n + t] = buf[t];
}

static bool run_rotate(unsigned n, unsigned blocks, int rounds) {
  std::vector<int> out(n * blocks, -1);
  rotate_kernel<<<blocks, n>>>(out.data(), rounds);
  if (cudaGetLastError() != cudaSuccess) return false;
  for (unsigned b = 0; b < blocks; ++b)
    for (unsigned t = 0; t < n; ++t) {
      const unsigned src = (t + rounds) % n;
      if (out[b * n + t] != static_cast<int>(src * src + 7 * b)) return false;
    }
  return true;
}

// Neighbour sums over a 2-D block: thread (x, y) reads what (x+1, y) and (x, y+1) wrote.
__global__ void stencil2d_kernel(int* out) {
  __shared__ int tile[32][33];
  const unsigned x = threadIdx.x, y = threadIdx.y;
  tile[y][x] = static_cast<int>(100 * y + x + 1000 * blockIdx.x);
  __syncthreads();
  const unsigned xr = (x + 1) % blockDim.x, yd = (y + 1) % blockDim.y;
  out[(blockIdx.x * blockDim.y + y) * blockDim.x + x] = tile[y][xr] + tile[yd][x];
}

static void test_section2() {
  int bad = 0;
  for (unsigned n = 1; n <= 1024; ++n)
    if (!run_block_sum(n, 2, static_cast<int>(n))) {
      if (bad++ < 5) std::printf("  block_sum wrong for %u threads\n", n);
    }
  CHECK_MSG(bad == 0, "block_sum_kernel wrong for %d of 1024 block sizes", bad);
  CHECK(run_block_sum(256, 37, 11));
  const unsigned sizes[] = {1, 2, 31, 32, 33, 64, 100, 255, 256, 512, 777, 1024};
  for (unsigned n : sizes) {
    CHECK_MSG(run_rotate(n, 3, 5), "rotate n=%u", n);
    CHECK_MSG(run_rotate(n, 1, static_cast<int>(n) + 3), "rotate n=%u", n);
  }
  const dim3 block(32, 16);
  const unsigned blocks = 3;
  std::vector<int> out(block.x * block.y * blocks, -1);
  stencil2d_kernel<<<blocks, block>>>(out.data());
  CHECK(cudaGetLastError() == cudaSuccess);
  int wrong = 0;
  for (unsigned b = 0; b < blocks; ++b)
    for (unsigned y = 0; y < block.y; ++y)
      for (unsigned x = 0; x < block.x; ++x) {
        const int e = static_cast<int>(100 * y + (x + 1) % block.x + 1000 * b) +
                      static_cast<int>(100 * ((y + 1) % block.y) + x + 1000 * b);
        if (out[(b * block.y + y) * block.x + x] != e) ++wrong;
      }
  CHECK_MSG(wrong == 0, "stencil2d: %d wrong", wrong);
}

// ============================================================================================
// 3. dynamic shared memory
// ============================================================================================

// Every thread writes a strided part of the whole `count`-int buffer, then (after a barrier)
// sums a different strided part, which other threads wrote. Also records the buffer's address.
__global__ void dyn_smem_kernel(int count, long long* sums, unsigned long long* addr) {
  extern __shared__ int dyn[];
  const unsigned t = threadIdx.x, n = blockDim.x;
  for (int i = t; i < count; i += n) dyn[i] = i * 3 + static_cast<int>(blockIdx.x);
  __syncthreads();
  long long s = 0;
  for (int i = count - 1 - static_cast<int>(t); i >= 0; i -= n) s += dyn[i];
  sums[blockIdx.x * n + t] = s;
  addr[blockIdx.x * n + t] = reinterpret_cast<unsigned long long>(dyn);
}

// The other spelling used in csrc/ (__align__, a byte buffer reinterpreted; nvcc rejects alignas
// in this position), full 48 KiB.
__global__ void dyn_bytes_kernel(unsigned bytes, unsigned* checksum, unsigned long long* addr) {
  extern __shared__ __align__(16) unsigned char raw[];
  const unsigned t = threadIdx.x, n = blockDim.x;
  for (unsigned i = t; i < bytes; i += n) raw[i] = static_cast<unsigned char>((i * 31u + blockIdx.x) & 0xff);
  __syncthreads();
  unsigned s = 0;
  for (unsigned i = (t * 7) % n; i < bytes; i += n) s += raw[i] * (i + 1);
  atomicAdd(checksum + blockIdx.x, s);
  if (t == 0) addr[blockIdx.x] = reinterpret_cast<unsigned long long>(raw);
}

// Runs dyn_bytes_kernel over `bytes` of dynamic shared memory and checks its checksums.
static void check_dyn_bytes(unsigned bytes) {
  const unsigned blocks = 2, n = 192;
  std::vector<unsigned> sums(blocks, 0);
  std::vector<unsigned long long> addr(blocks, 1);
  cudaStream_t stream = nullptr;
  dyn_bytes_kernel<<<blocks, n, bytes, stream>>>(bytes, sums.data(), addr.data());
  CHECK_MSG(cudaGetLastError() == cudaSuccess, "bytes=%u", bytes);
  for (unsigned b = 0; b < blocks; ++b) {
    unsigned e = 0;
    for (unsigned i = 0; i < bytes; ++i) e += ((i * 31u + b) & 0xff) * (i + 1);
    CHECK_MSG(sums[b] == e, "dyn bytes=%u block %u: %u != %u", bytes, b, sums[b], e);
    CHECK_MSG(addr[b] % 16 == 0, "__align__(16) dyn smem misaligned: %llx", addr[b]);
  }
}

static void test_section3() {
  const int counts[] = {1, 100, 3000, 12288};  // 12288 ints = 48 KiB
  const unsigned threads[] = {1, 64, 256, 1024};
  for (int count : counts)
    for (unsigned n : threads) {
      const unsigned blocks = 3;
      std::vector<long long> sums(blocks * n, -1);
      std::vector<unsigned long long> addr(blocks * n, 0);
      dyn_smem_kernel<<<blocks, n, count * sizeof(int)>>>(count, sums.data(), addr.data());
      CHECK_MSG(cudaGetLastError() == cudaSuccess, "count=%d n=%u", count, n);
      int wrong = 0;
      for (unsigned b = 0; b < blocks; ++b)
        for (unsigned t = 0; t < n; ++t) {
          long long e = 0;
          for (int i = count - 1 - static_cast<int>(t); i >= 0; i -= n) e += i * 3 + static_cast<int>(b);
          if (sums[b * n + t] != e) ++wrong;
          if (addr[b * n + t] != addr[b * n]) ++wrong;  // one buffer for the whole block
        }
      CHECK_MSG(wrong == 0, "dyn smem count=%d threads=%u: %d wrong", count, n, wrong);
      CHECK_MSG(addr[0] % 16 == 0, "dyn smem misaligned: %llx", addr[0]);
    }
  const unsigned byte_sizes[] = {1, 1001, 48 * 1024};
  for (unsigned bytes : byte_sizes) check_dyn_bytes(bytes);
}

// ============================================================================================
// 4. warp intrinsics
// ============================================================================================

template <typename T>
__global__ void warp_reduce_kernel(const T* in, T* out) {
  const unsigned t = blockIdx.x * blockDim.x + threadIdx.x;
  T v = in[t];
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(kFull, v, off);
  if ((threadIdx.x & 31) == 0) out[t / 32] = v;
}

template <typename T>
__global__ void warp_reduce16_kernel(const T* in, T* out) {
  const unsigned t = blockIdx.x * blockDim.x + threadIdx.x;
  T v = in[t];
  for (int off = 8; off > 0; off >>= 1) v += __shfl_down_sync(kFull, v, off, 16);
  if ((threadIdx.x & 15) == 0) out[t / 16] = v;
}

template <typename T>
static T warp_value(unsigned i);
template <>
int warp_value<int>(unsigned i) {
  return static_cast<int>(i * 7919u % 2001u) - 1000;
}
template <>
float warp_value<float>(unsigned i) {
  return static_cast<float>(i % 97) * 0.5f - 20.0f;  // exact sums in any order
}
template <>
double warp_value<double>(unsigned i) {
  return static_cast<double>(i) * 1e9 + 0.25 * (i % 3);  // exact, but needs > 32 bits
}
template <>
long long warp_value<long long>(unsigned i) {
  return (static_cast<long long>(i) - 100) * (1ll << 36) + i;  // needs the high word
}

template <typename T>
static void test_warp_reduce(const char* type) {
  const unsigned blocks = 3, n = 256, total = blocks * n;
  std::vector<T> in(total), out32(total / 32, T(-1)), out16(total / 16, T(-1));
  for (unsigned i = 0; i < total; ++i) in[i] = warp_value<T>(i);
  warp_reduce_kernel<T><<<blocks, n>>>(in.data(), out32.data());
  CHECK_MSG(cudaGetLastError() == cudaSuccess, "%s", type);
  warp_reduce16_kernel<T><<<blocks, n>>>(in.data(), out16.data());
  CHECK_MSG(cudaGetLastError() == cudaSuccess, "%s width 16", type);
  int wrong32 = 0, wrong16 = 0;
  for (unsigned w = 0; w < total / 32; ++w) {
    T e = 0;
    for (unsigned l = 0; l < 32; ++l) e += in[w * 32 + l];
    if (out32[w] != e) ++wrong32;
  }
  for (unsigned w = 0; w < total / 16; ++w) {
    T e = 0;
    for (unsigned l = 0; l < 16; ++l) e += in[w * 16 + l];
    if (out16[w] != e) ++wrong16;
  }
  CHECK_MSG(wrong32 == 0, "warp reduce %s: %d warps wrong", type, wrong32);
  CHECK_MSG(wrong16 == 0, "16-lane warp reduce %s: %d segments wrong", type, wrong16);
}

// Runs a shuffle kernel (out[t] = the shuffled in[t]) for each (delta, width) through `launch`
// and checks every thread t against in[src(t, lane, case)], the element it must have read (lane:
// its position in its width-lane segment).
struct ShflCase {
  unsigned delta;
  int width;
};

template <typename Launch, typename Src>
static void check_shuffle(const char* name, const std::vector<long long>& in, const std::vector<ShflCase>& cases,
                          Launch launch, Src src) {
  std::vector<long long> out(in.size());
  for (const ShflCase& c : cases) {
    std::fill(out.begin(), out.end(), -1);
    launch(in.data(), out.data(), c.delta, c.width);
    CHECK_MSG(cudaGetLastError() == cudaSuccess, "delta %u width %d", c.delta, c.width);
    int wrong = 0;
    for (unsigned t = 0; t < in.size(); ++t)
      if (out[t] != in[src(t, (t % 32) % c.width, c)]) ++wrong;
    CHECK_MSG(wrong == 0, "%s delta %u width %d: %d lanes wrong", name, c.delta, c.width, wrong);
  }
}

// One __shfl_down_sync, every lane's result: a thread's lane is its linear index in a 3-D block.
__global__ void shfl_down_kernel(const long long* in, long long* out, unsigned delta, int width) {
  const unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  out[t] = __shfl_down_sync(kFull, in[t], delta, width);
}

template <typename K>
__global__ void match_kernel(const K* keys, unsigned* out) {
  const unsigned t = blockIdx.x * blockDim.x + threadIdx.x;
  out[t] = __match_any_sync(kFull, keys[t]);
}

template <typename K>
static void test_match(const std::vector<K>& keys, const char* what) {
  const unsigned total = static_cast<unsigned>(keys.size());
  std::vector<unsigned> out(total, 0);
  match_kernel<K><<<total / 64, 64>>>(keys.data(), out.data());
  CHECK_MSG(cudaGetLastError() == cudaSuccess, "%s", what);
  int wrong = 0;
  for (unsigned t = 0; t < total; ++t) {
    const unsigned w = t / 32 * 32;
    unsigned e = 0;
    for (unsigned l = 0; l < 32; ++l)
      if (std::memcmp(&keys[w + l], &keys[t], sizeof(K)) == 0) e |= 1u << l;
    if (out[t] != e) ++wrong;
  }
  CHECK_MSG(wrong == 0, "__match_any_sync %s: %d lanes wrong", what, wrong);
}

__global__ void bits_kernel(const unsigned* in, int* popc, int* ffs, int n) {
  const int t = threadIdx.x;
  if (t < n) {
    popc[t] = __popc(in[t]);
    ffs[t] = __ffs(static_cast<int>(in[t]));
  }
}

// Lane-0 voting with __match_any_sync/__popc/__ffs, as in csrc/metrics (one atomic per group).
__global__ void vote_count_kernel(const int* keys, unsigned long long* counts) {
  const unsigned t = blockIdx.x * blockDim.x + threadIdx.x, lane = threadIdx.x & 31;
  const int k = keys[t];
  const unsigned peers = __match_any_sync(kFull, k);
  if (lane == static_cast<unsigned>(__ffs(static_cast<int>(peers)) - 1))
    atomicAdd(counts + k, static_cast<unsigned long long>(__popc(peers)));
}

static void test_section4() {
  test_warp_reduce<int>("int");
  test_warp_reduce<float>("float");
  test_warp_reduce<double>("double");
  test_warp_reduce<long long>("long long");

  const dim3 block(8, 4, 2);  // 64 threads: warps are linear ids 0-31 and 32-63
  std::vector<long long> in(64);
  for (unsigned i = 0; i < in.size(); ++i) in[i] = (static_cast<long long>(i) << 40) - 3 * static_cast<long long>(i);
  check_shuffle(
      "__shfl_down_sync", in,
      {{0, 32}, {1, 32}, {5, 32}, {16, 32}, {31, 32}, {32, 32}, {1, 16}, {3, 16}, {15, 16}, {16, 16}, {1, 8},
       {7, 8}, {1, 4}, {1, 2}, {1, 1}},
      [&](const long long* i, long long* o, unsigned delta, int width) { shfl_down_kernel<<<1, block>>>(i, o, delta, width); },
      [](unsigned t, unsigned lane, const ShflCase& c) {
        return lane + c.delta < static_cast<unsigned>(c.width) ? t + c.delta : t;
      });

  std::vector<int> ikeys(256);
  for (unsigned i = 0; i < ikeys.size(); ++i) ikeys[i] = static_cast<int>((i * 7) % 5 + (i / 64) * 10);
  test_match(ikeys, "int");
  std::vector<int> same(128, 3);
  test_match(same, "all equal");
  std::vector<int> distinct(128);
  for (unsigned i = 0; i < distinct.size(); ++i) distinct[i] = static_cast<int>(i);
  test_match(distinct, "all distinct");
  std::vector<long long> lkeys(128);
  for (unsigned i = 0; i < lkeys.size(); ++i) lkeys[i] = static_cast<long long>(i % 3) << 33;  // differ in high word only
  test_match(lkeys, "long long");
  std::vector<float> fkeys(64);
  for (unsigned i = 0; i < fkeys.size(); ++i) fkeys[i] = (i % 4 == 0) ? 0.0f : (i % 4 == 1) ? -0.0f : 1.5f;
  test_match(fkeys, "float (bitwise: -0.0 != 0.0)");

  const unsigned vals[] = {0u, 1u, 2u, 3u, 0x80000000u, 0xffffffffu, 0x00f000f0u, 0x12345678u, 0x40u};
  const int nv = sizeof vals / sizeof vals[0];
  const int popc_e[] = {0, 1, 1, 2, 1, 32, 8, 13, 1};
  const int ffs_e[] = {0, 1, 2, 1, 32, 1, 5, 4, 7};
  std::vector<int> popc(32, -1), ffs(32, -1);
  bits_kernel<<<1, 32>>>(vals, popc.data(), ffs.data(), nv);
  CHECK(cudaGetLastError() == cudaSuccess);
  for (int i = 0; i < nv; ++i) {
    CHECK_MSG(popc[i] == popc_e[i], "__popc(%#x) = %d", vals[i], popc[i]);
    CHECK_MSG(ffs[i] == ffs_e[i], "__ffs(%#x) = %d", vals[i], ffs[i]);
  }

  std::vector<int> vkeys(512);
  std::vector<unsigned long long> counts(8, 0), ecounts(8, 0);
  for (unsigned i = 0; i < vkeys.size(); ++i) {
    vkeys[i] = static_cast<int>((i * i + 3 * i) % 7);
    ++ecounts[vkeys[i]];
  }
  vote_count_kernel<<<4, 128>>>(vkeys.data(), counts.data());
  CHECK(cudaGetLastError() == cudaSuccess);
  CHECK(counts == ecounts);
}

// ============================================================================================
// 5. atomics
// ============================================================================================

struct AtomicState {
  int i_ticket, i_sum, i_min, i_max, i_cas_sum;
  unsigned u_sum, u_min, u_max, u_cas_flag, u_cas_winners;
  unsigned long long ull_ticket, ull_min, ull_max, ull_cas_sum;
  float f_sum;
  double d_sum;
};

__device__ int atomic_ivalue(unsigned t) { return static_cast<int>(t * 7919u % 2001u) - 1000; }
__device__ unsigned atomic_uvalue(unsigned t) { return t * 2654435761u; }
__device__ unsigned long long atomic_ullvalue(unsigned t) {
  return (static_cast<unsigned long long>(t * 2246822519u) << 29) ^ t;
}

__global__ void atomic_kernel(AtomicState* st, int* i_tickets, unsigned long long* ull_tickets) {
  const unsigned t = blockIdx.x * blockDim.x + threadIdx.x;
  __syncthreads();  // a fresh shuffled order for the atomics below
  i_tickets[t] = atomicAdd(&st->i_ticket, 1);
  atomicAdd(&st->i_sum, atomic_ivalue(t));
  atomicMin(&st->i_min, atomic_ivalue(t));
  atomicMax(&st->i_max, atomic_ivalue(t));
  atomicAdd(&st->u_sum, 3u * t);
  atomicMin(&st->u_min, atomic_uvalue(t));
  atomicMax(&st->u_max, atomic_uvalue(t));
  ull_tickets[t] = atomicAdd(&st->ull_ticket, 1ull << 32);
  atomicMin(&st->ull_min, atomic_ullvalue(t));
  atomicMax(&st->ull_max, atomic_ullvalue(t));
  atomicAdd(&st->f_sum, 0.5f);
  atomicAdd(&st->d_sum, 0.25 + t);
  __syncthreads();
  // Compare-and-swap loops (the usual way to build other atomics).
  int old = st->i_cas_sum, assumed;
  do {
    assumed = old;
    old = atomicCAS(&st->i_cas_sum, assumed, assumed + static_cast<int>(t));
  } while (old != assumed);
  unsigned long long uold = st->ull_cas_sum, uassumed;
  do {
    uassumed = uold;
    uold = atomicCAS(&st->ull_cas_sum, uassumed, uassumed + (static_cast<unsigned long long>(t) << 33));
  } while (uold != uassumed);
  // Exactly one thread wins a set-once flag.
  if (atomicCAS(&st->u_cas_flag, 0u, t + 1) == 0u) atomicAdd(&st->u_cas_winners, 1u);
}

__global__ void cas_return_kernel(int* i, unsigned* u, unsigned long long* ull, int* olds) {
  olds[0] = atomicCAS(i, 5, 6);   // mismatch: unchanged
  olds[1] = atomicCAS(i, 7, -8);  // match
  olds[2] = static_cast<int>(atomicCAS(u, 1u, 2u));
  olds[3] = static_cast<int>(atomicCAS(ull, 0x100000000ull, 3ull) >> 32);  // match on high word
  olds[4] = static_cast<int>(atomicCAS(ull, 0x100000000ull, 9ull));        // now mismatch
}

static void test_section5() {
  const unsigned blocks = 16, n = 256, total = blocks * n;
  AtomicState st{};
  st.i_min = INT_MAX;
  st.i_max = INT_MIN;
  st.u_min = UINT_MAX;
  st.u_max = 0;
  st.ull_min = ~0ull;
  st.ull_max = 0;
  std::vector<int> i_tickets(total, -1);
  std::vector<unsigned long long> ull_tickets(total, ~0ull);
  atomic_kernel<<<blocks, n>>>(&st, i_tickets.data(), ull_tickets.data());
  CHECK(cudaGetLastError() == cudaSuccess);
  long long i_sum = 0;
  int i_min = INT_MAX, i_max = INT_MIN;
  unsigned u_sum = 0, u_min = UINT_MAX, u_max = 0;
  unsigned long long ull_min = ~0ull, ull_max = 0, ull_cas = 0;
  double d_sum = 0;
  int i_cas = 0;
  for (unsigned t = 0; t < total; ++t) {
    const int iv = static_cast<int>(t * 7919u % 2001u) - 1000;
    const unsigned uv = t * 2654435761u;
    const unsigned long long lv = (static_cast<unsigned long long>(t * 2246822519u) << 29) ^ t;
    i_sum += iv;
    i_min = std::min(i_min, iv);
    i_max = std::max(i_max, iv);
    u_sum += 3u * t;
    u_min = std::min(u_min, uv);
    u_max = std::max(u_max, uv);
    ull_min = std::min(ull_min, lv);
    ull_max = std::max(ull_max, lv);
    d_sum += 0.25 + t;
    i_cas += static_cast<int>(t);
    ull_cas += static_cast<unsigned long long>(t) << 33;
  }
  CHECK(st.i_ticket == static_cast<int>(total));
  CHECK(st.i_sum == i_sum);
  CHECK(st.i_min == i_min);
  CHECK(st.i_max == i_max);
  CHECK(st.u_sum == u_sum);
  CHECK(st.u_min == u_min);
  CHECK(st.u_max == u_max);
  CHECK(st.ull_ticket == static_cast<unsigned long long>(total) << 32);
  CHECK(st.ull_min == ull_min);
  CHECK(st.ull_max == ull_max);
  CHECK(st.f_sum == 0.5f * total);
  CHECK(st.d_sum == d_sum);
  CHECK(st.i_cas_sum == i_cas);
  CHECK(st.ull_cas_sum == ull_cas);
  CHECK(st.u_cas_flag >= 1 && st.u_cas_flag <= total);
  CHECK(st.u_cas_winners == 1u);
  // The values atomicAdd returned are each old value exactly once.
  std::set<int> it(i_tickets.begin(), i_tickets.end());
  std::set<unsigned long long> ut(ull_tickets.begin(), ull_tickets.end());
  CHECK(it.size() == total && *it.begin() == 0 && *it.rbegin() == static_cast<int>(total - 1));
  CHECK(ut.size() == total && *ut.begin() == 0 && *ut.rbegin() == static_cast<unsigned long long>(total - 1) << 32);

  int ci = 7;
  unsigned cu = 1;
  unsigned long long cull = 0x100000000ull;
  int olds[5] = {0, 0, 0, 0, 0};
  cas_return_kernel<<<1, 1>>>(&ci, &cu, &cull, olds);
  CHECK(cudaGetLastError() == cudaSuccess);
  CHECK(olds[0] == 7 && olds[1] == 7 && ci == -8);
  CHECK(olds[2] == 1 && cu == 2u);
  CHECK(olds[3] == 1 && olds[4] == 3 && cull == 3ull);
}

// ============================================================================================
// 6. error reporting
// ============================================================================================

__global__ void mark_kernel(int* ran) { atomicAdd(ran, 1); }

__global__ void early_return_kernel(int* out) {
  if (threadIdx.x % 3 == 0) return;  // these threads never reach the barrier
  __syncthreads();
  out[threadIdx.x] = 1;
}

__global__ void early_return_late_block_kernel(int* out) {
  // Only one block of the grid goes wrong.
  if (blockIdx.x == gridDim.x - 1 && threadIdx.x == 5) return;
  __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = 1;
}

__global__ void full_mask_shfl_kernel(int* out) {
  int v = static_cast<int>(threadIdx.x);
  v += __shfl_down_sync(kFull, v, 1);
  out[threadIdx.x] = v;
}

__global__ void lane_exits_before_shfl_kernel(int* out) {
  if (threadIdx.x == 3) return;  // a full-mask shuffle that lane 3 never joins
  int v = static_cast<int>(threadIdx.x);
  v += __shfl_down_sync(kFull, v, 1);
  out[threadIdx.x] = v;
}

// 8 KiB of static shared memory beside the dynamic buffer: both count towards one limit.
__global__ void static_and_dynamic_kernel(int* out) {
  __shared__ int fixed[2048];
  extern __shared__ int dyn[];
  fixed[threadIdx.x] = static_cast<int>(threadIdx.x);
  dyn[threadIdx.x] = 1;
  __syncthreads();
  out[threadIdx.x] = fixed[threadIdx.x] + dyn[threadIdx.x];
}

static void expect_config_error(dim3 grid, dim3 block, size_t smem, const char* what) {
  int ran = 0;
  mark_kernel<<<grid, block, smem>>>(&ran);
  CHECK_MSG(ran == 0, "%s: kernel ran %d threads", what, ran);
  const cudaError_t e1 = cudaGetLastError();
  CHECK_MSG(e1 == cudaErrorInvalidConfiguration, "%s: cudaGetLastError() = %d", what, static_cast<int>(e1));
  const cudaError_t e2 = cudaGetLastError();
  CHECK_MSG(e2 == cudaSuccess, "%s: second cudaGetLastError() = %d", what, static_cast<int>(e2));
}

static void expect_good_launch_after(const char* what) {
  CHECK_MSG(cudaGetLastError() == cudaSuccess, "after %s: error not cleared", what);
  CHECK_MSG(run_block_sum(1000, 3, 7), "block_sum after %s", what);
  CHECK_MSG(run_rotate(96, 2, 3), "rotate after %s", what);
  test_warp_reduce<int>("int (after an error)");
  int ran = 0;
  mark_kernel<<<dim3(2, 3), dim3(4, 5)>>>(&ran);
  CHECK_MSG(cudaGetLastError() == cudaSuccess && ran == 120, "mark_kernel after %s: ran %d", what, ran);
}

static void expect_launch_failure(const char* what) {
  const cudaError_t peek = cudaPeekAtLastError();
  CHECK_MSG(peek == cudaErrorLaunchFailure, "%s: cudaPeekAtLastError() = %d", what, static_cast<int>(peek));
  const cudaError_t e1 = cudaGetLastError();
  CHECK_MSG(e1 == cudaErrorLaunchFailure, "%s: cudaGetLastError() = %d", what, static_cast<int>(e1));
  CHECK_MSG(cudaGetLastError() == cudaSuccess, "%s: error not cleared", what);
  expect_good_launch_after(what);
}

static void test_section6() {
  std::printf("(section 6: the emulator's error lines on stderr below are expected)\n");
  std::fflush(stdout);
  CHECK(cudaGetLastError() == cudaSuccess);
  expect_config_error(1, 1025, 0, "block of 1025 threads");
  expect_config_error(1, dim3(32, 33), 0, "block of 32x33 threads");
  expect_config_error(1, dim3(1, 1, 65), 0, "block.z 65");
  expect_config_error(1, dim3(0), 0, "block of 0 threads");
  expect_config_error(dim3(1, 65536), 32, 0, "grid.y 65536");
  expect_config_error(dim3(1, 1, 65536), 32, 0, "grid.z 65536");
  expect_config_error(dim3(0), 32, 0, "grid.x 0");
  expect_config_error(1, 32, 48 * 1024 + 1, "48 KiB + 1 of dynamic shared memory");
  // Above 48 KiB a kernel needs its opt-in (cudaFuncAttributeMaxDynamicSharedMemorySize), at most
  // the device's limit; the opt-in is per kernel.
  int optin = 0;
  CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0) == cudaSuccess);
  CHECK_MSG(optin == 227 * 1024, "opt-in limit %d", optin);
  CHECK(cudaFuncSetAttribute(dyn_bytes_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, optin + 1) ==
        cudaErrorInvalidValue);
  {
    const unsigned big = 100 * 1024;
    std::vector<unsigned> sums(2, 0);
    std::vector<unsigned long long> addr(2, 0);
    dyn_bytes_kernel<<<2, 192, big>>>(big, sums.data(), addr.data());
    CHECK_MSG(addr[0] == 0 && cudaGetLastError() == cudaErrorInvalidConfiguration, "100 KiB without the opt-in ran");
    CHECK(cudaFuncSetAttribute(dyn_bytes_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, big) == cudaSuccess);
    check_dyn_bytes(big);
    dyn_bytes_kernel<<<2, 192, big + 1>>>(big + 1, sums.data(), addr.data());
    CHECK_MSG(cudaGetLastError() == cudaErrorInvalidConfiguration, "one byte over the opt-in ran");
    CHECK(cudaFuncSetAttribute(dyn_bytes_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, optin) == cudaSuccess);
    check_dyn_bytes(static_cast<unsigned>(optin));
  }
  expect_config_error(1, 32, 48 * 1024 + 1, "48 KiB + 1 for a kernel without an opt-in");
  {
    std::vector<int> out(32, 0);
    static_and_dynamic_kernel<<<1, 32, 40 * 1024>>>(out.data());  // 8 + 40 KiB: exactly the limit
    CHECK(cudaGetLastError() == cudaSuccess && out[31] == 32);
    static_and_dynamic_kernel<<<1, 32, 40 * 1024 + 4>>>(out.data());
    expect_launch_failure("8 KiB static + 40 KiB + 4 dynamic shared memory");
    // With an opt-in the attribute bounds the dynamic part; the sum may pass 48 KiB.
    CHECK(cudaFuncSetAttribute(static_and_dynamic_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024) ==
          cudaSuccess);
    static_and_dynamic_kernel<<<1, 32, 200 * 1024>>>(out.data());
    CHECK(cudaGetLastError() == cudaSuccess && out[31] == 32);
  }
  expect_good_launch_after("configuration errors");

  // A bad launch, then a good one, then cudaGetLastError: the error is still reported.
  mark_kernel<<<1, 2048>>>(nullptr);
  int ran = 0;
  mark_kernel<<<1, 32>>>(&ran);
  CHECK(ran == 32);
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  CHECK(cudaGetLastError() == cudaSuccess);

  std::vector<int> out(64 * 4, 0);
  early_return_kernel<<<1, 64>>>(out.data());
  expect_launch_failure("threads return before a __syncthreads");
  early_return_late_block_kernel<<<4, 64>>>(out.data());
  expect_launch_failure("one thread of the last block returns before a __syncthreads");
  full_mask_shfl_kernel<<<1, 48>>>(out.data());
  expect_launch_failure("full-mask __shfl_down_sync in a block of 48 threads");
  full_mask_shfl_kernel<<<2, dim3(8, 5)>>>(out.data());
  expect_launch_failure("full-mask __shfl_down_sync in a block of 8x5 threads");
  lane_exits_before_shfl_kernel<<<1, 64>>>(out.data());
  expect_launch_failure("a lane exits before a full-mask __shfl_down_sync");
  // A full-mask shuffle in whole warps of a 64-thread block is fine.
  full_mask_shfl_kernel<<<1, 64>>>(out.data());
  CHECK(cudaGetLastError() == cudaSuccess);
  CHECK(out[0] == 1 && out[30] == 61 && out[31] == 62 && out[63] == 126);
}

// ============================================================================================
// 7. kernel parameters are per-thread copies
// ============================================================================================

struct ParamPack {
  int base;
  int arr[4];
  double scale;
};

__global__ void param_kernel(int v, ParamPack p, int* out, unsigned long long big) {
  const int t = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  v += t;
  p.base += 10 * t;
  p.arr[t % 4] += t;
  p.scale *= 2;
  big ^= static_cast<unsigned long long>(t) << 40;
  out += 5 * t;  // pointer parameters are per-thread too
  __syncthreads();  // every other thread of the block modifies its copies meanwhile
  v += 1;
  __syncthreads();
  out[0] = v;
  out[1] = p.base;
  out[2] = p.arr[t % 4];
  out[3] = static_cast<int>(p.scale);
  out[4] = static_cast<int>(big >> 40);
}

static void test_section7() {
  const unsigned blocks = 3, n = 96, total = blocks * n;
  int v = 1000;
  ParamPack p{50000, {1, 2, 3, 4}, 3.0};
  unsigned long long big = 7ull << 40;
  std::vector<int> out(total * 5, -1);
  param_kernel<<<blocks, n>>>(v, p, out.data(), big);
  CHECK(cudaGetLastError() == cudaSuccess);
  int wrong = 0;
  for (unsigned t = 0; t < total; ++t) {
    const int* o = &out[t * 5];
    const int ti = static_cast<int>(t);
    if (o[0] != 1000 + ti + 1 || o[1] != 50000 + 10 * ti || o[2] != 1 + static_cast<int>(t % 4) + ti || o[3] != 6 ||
        o[4] != static_cast<int>(7u ^ t)) {
      if (wrong++ < 3) std::printf("  thread %u: %d %d %d %d %d\n", t, o[0], o[1], o[2], o[3], o[4]);
    }
  }
  CHECK_MSG(wrong == 0, "per-thread parameter copies: %d threads wrong", wrong);
  CHECK(v == 1000 && p.base == 50000 && p.arr[0] == 1 && p.arr[3] == 4 && p.scale == 3.0 && big == 7ull << 40);
}

// ============================================================================================
// 8. two host threads launching concurrently
// ============================================================================================

static std::atomic<int> g_handshake{0};

static void host_worker(int id, int iters, int* ok) {
  int good = 1;
  for (int it = 0; it < iters; ++it) {
    const unsigned n = static_cast<unsigned>((id * 389 + it * 97) % 1024 + 1);
    if (!run_block_sum(n, 3, id * 1000 + it)) {
      good = 0;
      std::printf("  host thread %d: block_sum n=%u wrong\n", id, n);
    }
    if (!run_rotate(n, 2, it % 7 + 1)) {
      good = 0;
      std::printf("  host thread %d: rotate n=%u wrong\n", id, n);
    }
    const unsigned count = 1 + (it * 613 + id * 31) % 4000;
    std::vector<long long> sums(128, -1);
    std::vector<unsigned long long> addr(128, 0);
    dyn_smem_kernel<<<1, 128, count * sizeof(int)>>>(static_cast<int>(count), sums.data(), addr.data());
    for (unsigned t = 0; t < 128; ++t) {
      long long e = 0;
      for (int i = static_cast<int>(count) - 1 - static_cast<int>(t); i >= 0; i -= 128) e += i * 3;
      if (sums[t] != e) {
        good = 0;
        std::printf("  host thread %d: dyn smem count=%u wrong\n", id, count);
        break;
      }
    }
    if (it == 0) {
      // Host thread 1's bad launch must not show in thread 0's cudaGetLastError (the last
      // error is per host thread): 1 launches badly, 0 looks, then 1 reads its own error.
      if (id == 1) {
        mark_kernel<<<1, 1025>>>(nullptr);
        g_handshake = 1;
        while (g_handshake != 2) std::this_thread::yield();
        if (cudaGetLastError() != cudaErrorInvalidConfiguration) {
          good = 0;
          std::printf("  host thread %d: own configuration error not reported\n", id);
        }
      } else {
        while (g_handshake != 1) std::this_thread::yield();
        if (cudaPeekAtLastError() != cudaSuccess) {
          good = 0;
          std::printf("  host thread %d: sees the other host thread's launch error\n", id);
        }
        g_handshake = 2;
      }
    }
  }
  if (cudaGetLastError() != cudaSuccess) {
    good = 0;
    std::printf("  host thread %d: unexpected error\n", id);
  }
  *ok = good;
}

static void test_section8() {
  int ok0 = 0, ok1 = 0;
  std::thread a(host_worker, 0, 40, &ok0);
  std::thread b(host_worker, 1, 40, &ok1);
  a.join();
  b.join();
  CHECK(ok0 == 1);
  CHECK(ok1 == 1);
  // And the main thread's scheduler still works afterwards.
  CHECK(run_block_sum(513, 2, 99));
}

// ---- 9. corner cases found in review: CUDA's wrap-around source lanes, mixed-type atomics,
// a space before the launch chevrons ----
__global__ void wrap_shfl_kernel(int* out) {
  const int lane = threadIdx.x & 31;
  out[threadIdx.x] = __shfl_sync(0xffffffffu, 100 + lane, lane - 1);   // lane 0 reads lane 31
  out[32 + threadIdx.x] = __shfl_down_sync(0xffffffffu, lane, 0x80000000u);  // huge delta: own value
}

__global__ void xor_reduce_kernel(int* out) {
  int v = threadIdx.x;
  for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
  out[threadIdx.x] = v;  // butterfly: every lane holds its warp's sum
}

__global__ void syncwarp_kernel(int* buf, int* out) {
  buf[threadIdx.x] = 10 * threadIdx.x;
  __syncwarp();
  out[threadIdx.x] = buf[(threadIdx.x & ~31u) | ((threadIdx.x + 1) & 31u)];  // the next lane's write
}

__global__ void ballot_kernel(unsigned* out) {
  out[threadIdx.x] = __ballot_sync(0xffffffffu, (threadIdx.x % 3) == 0);
}

// Warp 0: lane 5 alone votes yes; warp 1: every lane does.
__global__ void any_all_kernel(int* out) {
  const int pred = threadIdx.x < 32 ? threadIdx.x == 5 : 1;
  out[2 * threadIdx.x] = __any_sync(0xffffffffu, pred);
  out[2 * threadIdx.x + 1] = __all_sync(0xffffffffu, pred);
}

__global__ void mixed_atomics_kernel(unsigned* u, unsigned long long* ull, float* f) {
  atomicAdd(u, 1);
  atomicAdd(ull, 1);
  atomicAdd(f, 1.0);
}

static void test_section9() {
  std::vector<int> out(64, -1);
  wrap_shfl_kernel <<<1, 32>>>(out.data());
  CHECK(cudaGetLastError() == cudaSuccess);
  for (int l = 0; l < 32; ++l) {
    CHECK(out[l] == 100 + (l + 31) % 32);
    CHECK(out[32 + l] == l);
  }
  std::vector<int> sums(64, -1);
  xor_reduce_kernel<<<1, 64>>>(sums.data());
  CHECK(cudaGetLastError() == cudaSuccess);
  for (int t = 0; t < 64; ++t) CHECK(sums[t] == (t < 32 ? 496 : 496 + 32 * 32));
  std::vector<int> sbuf(64, -1), sout(64, -1);
  syncwarp_kernel<<<1, 64>>>(sbuf.data(), sout.data());
  CHECK(cudaGetLastError() == cudaSuccess);
  for (int t = 0; t < 64; ++t) CHECK(sout[t] == 10 * ((t & ~31) | ((t + 1) & 31)));
  std::vector<unsigned> ballots(64, 0);
  ballot_kernel<<<1, 64>>>(ballots.data());
  CHECK(cudaGetLastError() == cudaSuccess);
  for (int t = 0; t < 64; ++t) {
    unsigned want = 0;
    for (int l = 0; l < 32; ++l)
      if (((t / 32) * 32 + l) % 3 == 0) want |= 1u << l;
    CHECK(ballots[t] == want);
  }
  std::vector<int> votes(128, -1);
  any_all_kernel<<<1, 64>>>(votes.data());
  CHECK(cudaGetLastError() == cudaSuccess);
  for (int t = 0; t < 64; ++t) {
    CHECK(votes[2 * t] == 1);
    CHECK(votes[2 * t + 1] == (t < 32 ? 0 : 1));
  }
  unsigned u = 0;
  unsigned long long ull = 0;
  float f = 0;
  mixed_atomics_kernel<<<3, 64>>>(&u, &ull, &f);
  CHECK(cudaGetLastError() == cudaSuccess);
  CHECK(u == 192u && ull == 192ull && f == 192.0f);
}

// ---- 10. __shfl_up_sync (block-wide prefix sums) and the double <-> bits casts ----
__global__ void shfl_up_kernel(const long long* in, long long* out, unsigned delta, int width) {
  out[threadIdx.x] = __shfl_up_sync(kFull, in[threadIdx.x], delta, width);
}

__global__ void warp_scan_kernel(int* out) {
  const int lane = threadIdx.x & 31;
  int v = threadIdx.x;
  for (int off = 1; off < 32; off <<= 1) {
    const int o = __shfl_up_sync(kFull, v, off);
    if (lane >= off) v += o;
  }
  out[threadIdx.x] = v;  // inclusive prefix sum within the warp
}

__global__ void double_bits_kernel(const double* in, long long* bits, double* back, int n) {
  const int t = threadIdx.x;
  if (t < n) {
    bits[t] = __double_as_longlong(in[t]);
    back[t] = __longlong_as_double(bits[t]);
  }
}

static void test_section10() {
  std::vector<long long> in(64);
  for (unsigned i = 0; i < in.size(); ++i) in[i] = (static_cast<long long>(i) << 36) + 7 * static_cast<long long>(i);
  check_shuffle(
      "__shfl_up_sync", in,
      {{0, 32}, {1, 32}, {5, 32}, {16, 32}, {31, 32}, {32, 32}, {1, 16}, {3, 16}, {16, 16}, {1, 8}, {1, 1}},
      [](const long long* i, long long* o, unsigned delta, int width) { shfl_up_kernel<<<1, 64>>>(i, o, delta, width); },
      [](unsigned t, unsigned lane, const ShflCase& c) { return lane >= c.delta ? t - c.delta : t; });
  std::vector<int> scan(96, -1);
  warp_scan_kernel<<<1, 96>>>(scan.data());
  CHECK(cudaGetLastError() == cudaSuccess);
  for (int t = 0; t < 96; ++t) {
    int want = 0;
    for (int u = t & ~31; u <= t; ++u) want += u;
    CHECK_MSG(scan[t] == want, "warp scan thread %d: %d, want %d", t, scan[t], want);
  }
  const std::vector<double> vals = {0.0, -0.0, 1.0, -2.5, 1e-310, 1e308, INFINITY, NAN};
  const int m = static_cast<int>(vals.size());
  std::vector<long long> bits(m, 0);
  std::vector<double> back(m, 0.0);
  double_bits_kernel<<<1, 32>>>(vals.data(), bits.data(), back.data(), m);
  CHECK(cudaGetLastError() == cudaSuccess);
  for (int i = 0; i < m; ++i) {
    long long want;
    std::memcpy(&want, &vals[i], sizeof want);
    CHECK_MSG(bits[i] == want, "__double_as_longlong case %d", i);
    CHECK_MSG(std::memcmp(&back[i], &vals[i], sizeof(double)) == 0, "__longlong_as_double case %d", i);
  }
  CHECK(bits[0] == 0 && bits[1] == static_cast<long long>(0x8000000000000000ull) && bits[2] == 0x3ff0000000000000ll);
}

// ============================================================================================
// 11. events and device attributes
// ============================================================================================

__global__ void spin_kernel(unsigned long long* out, int iters) {
  unsigned long long x = threadIdx.x;
  for (int i = 0; i < iters; ++i) x = x * 6364136223846793005ull + 1442695040888963407ull;
  atomicAdd(out, x & 1ull);
}

static void test_section11() {
  cudaEvent_t a = nullptr, b = nullptr;
  CHECK(cudaEventCreate(&a) == cudaSuccess && cudaEventCreate(&b) == cudaSuccess && a && b);
  float ms = -1;
  CHECK(cudaEventElapsedTime(&ms, a, b) == cudaErrorInvalidValue);  // never recorded
  CHECK(cudaGetLastError() == cudaErrorInvalidValue);
  unsigned long long sink = 0;
  CHECK(cudaEventRecord(a) == cudaSuccess);
  spin_kernel<<<4, 64>>>(&sink, 20000);
  CHECK(cudaEventRecord(b, nullptr) == cudaSuccess);
  CHECK(cudaEventSynchronize(b) == cudaSuccess);
  CHECK(cudaEventElapsedTime(&ms, a, b) == cudaSuccess);
  CHECK(ms > 0.0f && ms < 60000.0f);  // the launch ran between the two records
  float back = 1;
  CHECK(cudaEventElapsedTime(&back, b, a) == cudaSuccess && back == -ms);
  CHECK(cudaEventDestroy(a) == cudaSuccess && cudaEventDestroy(b) == cudaSuccess);
  CHECK(cudaGetLastError() == cudaSuccess);
  int v = 0;
  CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, 0) == cudaSuccess && v >= 1);
  CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrWarpSize, 0) == cudaSuccess && v == 32);
  CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxThreadsPerBlock, 0) == cudaSuccess && v == 1024);
  CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlock, 0) == cudaSuccess && v == 48 * 1024);
  CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrWarpSize, 1) == cudaErrorInvalidDevice);
  CHECK(cudaGetLastError() == cudaErrorInvalidDevice);
  int nb = -1;
  CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, spin_kernel, 512, 0) == cudaSuccess && nb == 4);
  CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, spin_kernel, 256, 40 * 1024) == cudaSuccess && nb == 2);
  CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, spin_kernel, 2048, 0) == cudaSuccess && nb == 0);
  CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, spin_kernel, 64, 49 * 1024) == cudaSuccess && nb == 0);
  CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, spin_kernel, 0, 0) == cudaErrorInvalidValue);
}

int main() {
  struct {
    const char* name;
    void (*fn)();
  } sections[] = {
      {"1 thread/block indices", test_section1},  {"2 __syncthreads", test_section2},
      {"3 dynamic shared memory", test_section3}, {"4 warp intrinsics", test_section4},
      {"5 atomics", test_section5},               {"6 error reporting", test_section6},
      {"7 per-thread parameters", test_section7}, {"8 concurrent host threads", test_section8},
      {"9 wrap-around lanes, xor butterfly, __syncwarp, ballot, any/all, mixed atomics", test_section9},
      {"10 __shfl_up_sync, double bit casts", test_section10},
      {"11 events, device attributes, occupancy", test_section11},
  };
  for (const auto& s : sections) {
    const int before = g_failures;
    s.fn();
    std::printf("%s %s\n", g_failures == before ? "ok  " : "FAIL", s.name);
    std::fflush(stdout);
  }
  std::printf("test_emulator: %d of %d checks failed\n", g_failures.load(), g_checks.load());
  return g_failures == 0 ? 0 : 1;
}
