// CUDA twins of spmm_cpu.cpp. A block of (32 x 4) threads: threadIdx.y picks a row, threadIdx.x
// strides over channels, so every output element is one thread summing its terms in the same
// order as the CPU (bit-identical for ell_spmm and csr_spmm). ell_dot reduces over channels with
// a fixed warp tree: deterministic, but rounded differently from the CPU's sequential sum.
#include <cuda_runtime.h>

#include "common/cuda_utils.cuh"
#include "spmm/spmm.h"

namespace m3ad {
namespace {

constexpr int kRowsPerBlock = 4;
const dim3 kBlock(32, kRowsPerBlock);

unsigned row_blocks(int64_t rows) { return blocks_for(rows, kRowsPerBlock, 1LL << 31); }

template <typename T>
__global__ void ell_spmm_kernel(EllParams p) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.y;
  if (row >= p.B * p.R) return;
  const int64_t b = row / p.R;
  const T* x = static_cast<const T*>(p.x);
  const T* w = static_cast<const T*>(p.w);
  T* out = static_cast<T*>(p.out) + row * p.C;
  for (int64_t c = threadIdx.x; c < p.C; c += 32) {
    T acc = 0;
    for (int64_t j = 0; j < p.K; ++j) {
      const int64_t src = p.idx[row * p.K + j];
      if (src < 0 || src >= p.N) continue;
      acc = acc + w[row * p.K + j] * x[(b * p.N + src) * p.C + c];
    }
    out[c] = acc;
  }
}

template <typename T>
__global__ void ell_dot_kernel(EllParams p) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.y;
  if (row >= p.B * p.R) return;
  const int64_t b = row / p.R;
  const T* x = static_cast<const T*>(p.x);
  const T* g = static_cast<const T*>(p.g) + row * p.C;
  T* out = static_cast<T*>(p.out);
  for (int64_t j = 0; j < p.K; ++j) {
    const int64_t src = p.idx[row * p.K + j];
    T acc = 0;
    if (src >= 0 && src < p.N)
      for (int64_t c = threadIdx.x; c < p.C; c += 32) acc = acc + g[c] * x[(b * p.N + src) * p.C + c];
    for (int off = 16; off > 0; off >>= 1) acc = acc + __shfl_down_sync(0xffffffffu, acc, off);
    if (threadIdx.x == 0) out[row * p.K + j] = acc;
  }
}

template <typename T>
__global__ void csr_spmm_kernel(CsrParams p) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.y;
  if (row >= p.B * p.G) return;
  const int64_t b = row / p.G, g = row % p.G;
  const int64_t E = p.R * p.K;
  const T* y = static_cast<const T*>(p.y);
  const T* w = static_cast<const T*>(p.w);
  T* out = static_cast<T*>(p.out) + row * p.C;
  const int64_t* off = p.offsets + b * (p.G + 1);
  int64_t lo = off[g], hi = off[g + 1];
  lo = lo < 0 ? 0 : lo;
  hi = hi > E ? E : hi;
  for (int64_t c = threadIdx.x; c < p.C; c += 32) {
    T acc = 0;
    for (int64_t e = lo; e < hi; ++e) {
      const int64_t ent = p.entries[b * E + e];
      if (ent < 0 || ent >= E) continue;
      acc = acc + w[b * E + ent] * y[(b * p.R + ent / p.K) * p.C + c];
    }
    out[c] = acc;
  }
}

}  // namespace

void ell_spmm_cuda(const EllParams& p, const Device& dev) {
  if (p.B * p.R == 0 || p.C == 0) return;
  DeviceGuard guard(dev.index);
  dispatch_float(p.dtype, [&](auto t) {
    ell_spmm_kernel<decltype(t)><<<row_blocks(p.B * p.R), kBlock, 0, as_stream(dev)>>>(p);
    return 0;
  });
  M3AD_CHECK_LAUNCH("ell_spmm");
}

void ell_dot_cuda(const EllParams& p, const Device& dev) {
  if (p.B * p.R == 0 || p.K == 0) return;
  DeviceGuard guard(dev.index);
  dispatch_float(p.dtype, [&](auto t) {
    ell_dot_kernel<decltype(t)><<<row_blocks(p.B * p.R), kBlock, 0, as_stream(dev)>>>(p);
    return 0;
  });
  M3AD_CHECK_LAUNCH("ell_dot");
}

void csr_spmm_cuda(const CsrParams& p, const Device& dev) {
  if (p.B * p.G == 0 || p.C == 0) return;
  DeviceGuard guard(dev.index);
  dispatch_float(p.dtype, [&](auto t) {
    csr_spmm_kernel<decltype(t)><<<row_blocks(p.B * p.G), kBlock, 0, as_stream(dev)>>>(p);
    return 0;
  });
  M3AD_CHECK_LAUNCH("csr_spmm");
}

}  // namespace m3ad
