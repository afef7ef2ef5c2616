// CUDA FPS. Same order contract and distance arithmetic as fps_cpu.cpp (see fps.h).
// Small clouds: one block per cloud runs all iterations in one launch (block-level argmax per
// iteration). 3-D clouds that fit in one block's shared memory (up to ~19k float32 points on an
// H100/H200) take the resident variant of it: coordinates in shared memory, each thread's
// min-distances in registers, so an iteration touches no global memory at all. Large clouds: one
// launch per iteration over many blocks per cloud; the last block to finish (threadfence +
// counter) reduces the block partials, so no host synchronisation.
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <limits>

#include "common/argmax.cuh"
#include "common/cuda_utils.cuh"
#include "fps/fps.h"

namespace m3ad {
namespace {

constexpr int kThreads = 512;
constexpr int64_t kSingleBlockMaxPoints = 1 << 15;
constexpr int64_t kPointsPerBlock = kThreads * 8;
constexpr int kMaxBlocksPerCloud = 1024;

struct Cloud {
  int64_t n, k;
};

__device__ __forceinline__ Cloud cloud_of(const FpsParams& p, int64_t b) {
  const int64_t n = clamp_len(p.lengths, b, p.P);
  const int64_t k = clamp_len(p.k, b, p.K_max);
  return {n, k < n ? k : n};
}

__device__ __forceinline__ int64_t start_of(const FpsParams& p, int64_t b, int64_t n) {
  const int64_t s = p.start ? p.start[b] : 0;
  return ((s % n) + n) % n;
}

template <typename T>
__device__ __forceinline__ T sqdist(const T* a, const T* c, int64_t D) {
  T d = 0;
  for (int64_t j = 0; j < D; ++j) {
    const T t = a[j] - c[j];
    d = j == 0 ? t * t : d + t * t;
  }
  return d;
}

template <typename T>
__global__ void fps_single_block(FpsParams p, T* mind_all) {
  __shared__ ArgMax<T> red[32];
  extern __shared__ unsigned char smem_raw[];
  T* center = reinterpret_cast<T*>(smem_raw);
  const int64_t b = blockIdx.x;
  const Cloud c = cloud_of(p, b);
  int64_t* out = p.idx + b * p.K_max;
  for (int64_t i = c.k + threadIdx.x; i < p.K_max; i += blockDim.x) out[i] = -1;
  if (c.k == 0) return;
  const T* pts = static_cast<const T*>(p.points) + b * p.P * p.D;
  T* mind = mind_all + b * p.P;
  for (int64_t i = threadIdx.x; i < c.n; i += blockDim.x) mind[i] = INFINITY;
  int64_t cur = start_of(p, b, c.n);
  for (int64_t s = 0;; ++s) {
    if (threadIdx.x == 0) out[s] = cur;
    // Only the owning thread ever touches mind[i], so this needs no barrier.
    if (cur % blockDim.x == threadIdx.x) mind[cur] = -INFINITY;
    if (s + 1 == c.k) break;
    for (int64_t j = threadIdx.x; j < p.D; j += blockDim.x) center[j] = pts[cur * p.D + j];
    __syncthreads();
    ArgMax<T> best{-INFINITY, INT64_MAX};
    for (int64_t i = threadIdx.x; i < c.n; i += blockDim.x) {
      const T d = sqdist(pts + i * p.D, center, p.D);
      T m = mind[i];
      if (d < m) mind[i] = m = d;
      best.take(m, i);
    }
    best = block_argmax(best, red);
    cur = best.idx;
  }
}

// Why a resident path: the plain kernel streams the cloud and its min-distances through global
// memory on every iteration from a single SM, with generic-D loops and 64-bit indices; at 16k
// points that was 12 us per iteration on an H200 (12.7 ms for K = 1024). Here a thread owns
// points t, t + 1024, ... (PPT of them, ascending, so its strict ">" keeps the lowest index among
// equal values, as ArgMax::take does), reads their coordinates from shared memory (consecutive
// threads, consecutive words: no bank conflicts) and keeps their min-distances in registers.
constexpr int kResidentThreads = 1024;
constexpr int64_t kResidentMinPoints = 2048;  // below this the plain kernel's iteration is as short

template <typename T, int PPT>
__global__ void __launch_bounds__(kResidentThreads) fps_resident(FpsParams p) {
  __shared__ ArgMax<T> red[32];
  extern __shared__ unsigned char smem_raw[];
  T* sx = reinterpret_cast<T*>(smem_raw);
  T* sy = sx + p.P;
  T* sz = sy + p.P;
  const int t = threadIdx.x;
  const int64_t b = blockIdx.x;
  const Cloud c = cloud_of(p, b);
  int64_t* out = p.idx + b * p.K_max;
  for (int64_t i = c.k + t; i < p.K_max; i += kResidentThreads) out[i] = -1;
  if (c.k == 0) return;
  const int n = static_cast<int>(c.n);  // <= PPT * 1024
  const T* pts = static_cast<const T*>(p.points) + b * p.P * 3;
  for (int i = t; i < n; i += kResidentThreads) {
    sx[i] = pts[3 * i];
    sy[i] = pts[3 * i + 1];
    sz[i] = pts[3 * i + 2];
  }
  T mind[PPT];
#pragma unroll
  for (int j = 0; j < PPT; ++j) mind[j] = INFINITY;
  __syncthreads();
  int cur = static_cast<int>(start_of(p, b, c.n));
  for (int64_t s = 0;; ++s) {
    if (t == 0) out[s] = cur;
    if (s + 1 == c.k) break;
    const T cx = sx[cur], cy = sy[cur], cz = sz[cur];
    T bv = -INFINITY;
    int bi = INT_MAX;
#pragma unroll
    for (int j = 0; j < PPT; ++j) {
      const int i = t + j * kResidentThreads;
      if (i < n) {
        // sqdist's operations in its order (the samples' coordinates are the same values)
        const T dx = sx[i] - cx, dy = sy[i] - cy, dz = sz[i] - cz;
        const T d = dx * dx + dy * dy + dz * dz;
        T m = mind[j];
        if (i == cur) m = -INFINITY;  // selected: never again (the plain kernel's mark)
        else if (d < m) m = d;
        mind[j] = m;
        if (m > bv || (m == bv && i < bi)) {
          bv = m;
          bi = i;
        }
      }
    }
    const ArgMax<T> best = block_argmax(ArgMax<T>{bv, bi == INT_MAX ? INT64_MAX : bi}, red);
    cur = static_cast<int>(best.idx);
  }
}

// Launches the resident path when the cloud is 3-D, big enough to gain and fits this device's
// shared memory; returns false to leave it to the other paths.
template <typename T>
bool launch_resident(const FpsParams& p, cudaStream_t stream) {
  if (p.D != 3 || p.P <= kResidentMinPoints) return false;
  const size_t smem = 3 * sizeof(T) * static_cast<size_t>(p.P);
  int dev = 0, optin = 0;
  cuda_check(cudaGetDevice(&dev), "fps cudaGetDevice");
  cuda_check(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), "fps smem limit");
  if (smem + sizeof(ArgMax<T>) * 32 > static_cast<size_t>(optin)) return false;
  auto go = [&](auto kernel) {
    cuda_check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
               "fps resident smem opt-in");
    kernel<<<static_cast<unsigned>(p.B), kResidentThreads, smem, stream>>>(p);
    M3AD_CHECK_LAUNCH("fps_resident");
    return true;
  };
  const int64_t ppt = (p.P + kResidentThreads - 1) / kResidentThreads;
  if (ppt <= 4) return go(fps_resident<T, 4>);
  if (ppt <= 8) return go(fps_resident<T, 8>);
  if constexpr (sizeof(T) == 4) {  // float64: 8192 points already take 192 KiB
    if (ppt <= 16) return go(fps_resident<T, 16>);
    if (ppt <= 20) return go(fps_resident<T, 20>);
  }
  return false;
}

template <typename T>
struct MultiWs {
  T* mind;
  T* part_val;
  int64_t* part_idx;
  int64_t* cur;
  unsigned int* counter;
};

template <typename T>
__global__ void fps_multi_init(FpsParams p, MultiWs<T> ws) {
  const int64_t b = blockIdx.y;
  const Cloud c = cloud_of(p, b);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t t0 = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t* out = p.idx + b * p.K_max;
  for (int64_t i = t0; i < p.K_max; i += stride) out[i] = -1;
  for (int64_t i = t0; i < c.n; i += stride) ws.mind[b * p.P + i] = INFINITY;
  if (t0 == 0) ws.counter[b] = 0;
}

template <typename T>
__global__ void fps_multi_start(FpsParams p, MultiWs<T> ws) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= p.B) return;
  const Cloud c = cloud_of(p, b);
  if (c.k == 0) return;
  const int64_t s = start_of(p, b, c.n);
  p.idx[b * p.K_max] = s;
  ws.cur[b] = s;
  ws.mind[b * p.P + s] = -INFINITY;
}

template <typename T>
__global__ void fps_multi_step(FpsParams p, MultiWs<T> ws, int64_t step) {
  __shared__ ArgMax<T> red[32];
  __shared__ bool is_last;
  extern __shared__ unsigned char smem_raw[];
  T* center = reinterpret_cast<T*>(smem_raw);
  const int64_t b = blockIdx.y;
  const Cloud c = cloud_of(p, b);
  if (step + 1 >= c.k) return;  // uniform over the cloud's blocks
  const T* pts = static_cast<const T*>(p.points) + b * p.P * p.D;
  T* mind = ws.mind + b * p.P;
  const int64_t cur = ws.cur[b];
  for (int64_t j = threadIdx.x; j < p.D; j += blockDim.x) center[j] = pts[cur * p.D + j];
  __syncthreads();
  const int64_t chunk = (c.n + gridDim.x - 1) / gridDim.x;
  const int64_t lo = blockIdx.x * chunk;
  const int64_t hi = lo + chunk < c.n ? lo + chunk : c.n;
  ArgMax<T> best{-INFINITY, INT64_MAX};
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
    const T d = sqdist(pts + i * p.D, center, p.D);
    T m = mind[i];
    if (d < m) mind[i] = m = d;
    best.take(m, i);
  }
  best = block_argmax(best, red);
  const int64_t slot = b * gridDim.x + blockIdx.x;
  if (threadIdx.x == 0) {
    ws.part_val[slot] = best.val;
    ws.part_idx[slot] = best.idx;
    __threadfence();
    is_last = atomicAdd(ws.counter + b, 1u) == gridDim.x - 1;
  }
  __syncthreads();
  if (!is_last) return;
  __threadfence();
  ArgMax<T> all{-INFINITY, INT64_MAX};
  for (int64_t j = threadIdx.x; j < gridDim.x; j += blockDim.x) {
    const int64_t q = b * gridDim.x + j;
    all.take(static_cast<volatile T*>(ws.part_val)[q], static_cast<volatile int64_t*>(ws.part_idx)[q]);
  }
  all = block_argmax(all, red);
  if (threadIdx.x == 0) {
    ws.cur[b] = all.idx;
    p.idx[b * p.K_max + step + 1] = all.idx;
    mind[all.idx] = -INFINITY;
    ws.counter[b] = 0;
  }
}

int multi_blocks(int64_t P) {
  return static_cast<int>(std::min<int64_t>(kMaxBlocksPerCloud, (P + kPointsPerBlock - 1) / kPointsPerBlock));
}

size_t align_up(size_t v) { return (v + 255) & ~size_t{255}; }

template <typename T>
MultiWs<T> carve(void* base, int64_t B, int64_t P, int nblk) {
  char* c = static_cast<char*>(base);
  MultiWs<T> ws;
  ws.mind = reinterpret_cast<T*>(c);
  c += align_up(sizeof(T) * B * P);
  ws.part_val = reinterpret_cast<T*>(c);
  c += align_up(sizeof(T) * B * nblk);
  ws.part_idx = reinterpret_cast<int64_t*>(c);
  c += align_up(sizeof(int64_t) * B * nblk);
  ws.cur = reinterpret_cast<int64_t*>(c);
  c += align_up(sizeof(int64_t) * B);
  ws.counter = reinterpret_cast<unsigned int*>(c);
  return ws;
}

template <typename T>
void run(const FpsParams& p, const Device& dev) {
  cudaStream_t stream = as_stream(dev);
  // Rounded up to 4 coordinates: ptxas merges the unrolled remainder loads of sqdist (D % 4 of
  // them, each guarded) into one wider shared load, which compute-sanitizer saw read 12 bytes of a
  // 4-byte center at D = 1 on sm_90. The extra slots are never used, only read.
  const size_t center_bytes = sizeof(T) * static_cast<size_t>((std::max<int64_t>(p.D, 1) + 3) / 4 * 4);
  if (launch_resident<T>(p, stream)) return;
  if (p.P <= kSingleBlockMaxPoints) {
    fps_single_block<T><<<static_cast<unsigned>(p.B), kThreads, center_bytes, stream>>>(
        p, static_cast<T*>(p.workspace));
    M3AD_CHECK_LAUNCH("fps_single_block");
    return;
  }
  const int nblk = multi_blocks(p.P);
  MultiWs<T> ws = carve<T>(p.workspace, p.B, p.P, nblk);
  const dim3 grid(nblk, static_cast<unsigned>(p.B));
  fps_multi_init<T><<<grid, kThreads, 0, stream>>>(p, ws);
  fps_multi_start<T><<<blocks_for(p.B, 128), 128, 0, stream>>>(p, ws);
  for (int64_t s = 0; s + 1 < p.K_max; ++s)
    fps_multi_step<T><<<grid, kThreads, center_bytes, stream>>>(p, ws, s);
  M3AD_CHECK_LAUNCH("fps_multi_step");
}

}  // namespace

size_t fps_cuda_workspace_bytes(int64_t B, int64_t P, DType dtype) {
  const size_t t = dtype == DType::kFloat64 ? 8 : 4;
  const size_t nblk = static_cast<size_t>(multi_blocks(P));
  return align_up(t * B * P) + align_up(t * B * nblk) + align_up(8 * B * nblk) + align_up(8 * B) +
         align_up(4 * B);
}

void fps_cuda(const FpsParams& p, const Device& dev) {
  if (p.B == 0 || p.K_max == 0) return;
  DeviceGuard guard(dev.index);
  if (p.D > 6000) throw std::invalid_argument("fps: D > 6000 is not supported on CUDA");
  dispatch_float(p.dtype, [&](auto tag) {
    run<decltype(tag)>(p, dev);
    return 0;
  });
}

}  // namespace m3ad
