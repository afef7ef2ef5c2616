// Shared CUDA helpers: error checks, device guard, launch geometry.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include <stdexcept>
#include <string>

#include "common/launch.h"

namespace m3ad {

inline void cuda_check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("mentor3ad_ext CUDA error in ") + what + ": " +
                             cudaGetErrorString(err));
}

// Checks the launch itself (bad geometry, missing arch); execution errors surface later at
// the caller's next synchronisation, as with any asynchronous CUDA library.
#define M3AD_CHECK_LAUNCH(what) ::m3ad::cuda_check(cudaGetLastError(), what)

// Makes `index` current for the scope, restoring the previous device afterwards.
class DeviceGuard {
 public:
  explicit DeviceGuard(int index) {
    cuda_check(cudaGetDevice(&prev_), "cudaGetDevice");
    if (prev_ != index) cuda_check(cudaSetDevice(index), "cudaSetDevice");
    else prev_ = -1;
  }
  ~DeviceGuard() {
    if (prev_ >= 0) cudaSetDevice(prev_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = -1;
};

inline cudaStream_t as_stream(const Device& dev) { return static_cast<cudaStream_t>(dev.stream); }

inline unsigned blocks_for(long long n, int threads, long long cap = 65535LL * 32) {
  long long b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  return static_cast<unsigned>(b < cap ? b : cap);
}

// Calls row(r) for every r in [0, n) with a grid-stride loop (any grid size covers any n).
template <typename F>
__device__ __forceinline__ void for_each_row(int64_t n, F&& row) {
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < n;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x)
    row(r);
}

// Calls item(e, lane) in every lane of one warp for every e in [0, n): a grid-stride loop over
// warps, one item per warp and iteration (the whole warp makes the same calls).
template <typename F>
__device__ __forceinline__ void for_each_warp_item(int64_t n, F&& item) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5;
  for (int64_t e = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; e < n; e += warps)
    item(e, lane);
}

// Calls body(i, lane) for every i in [0, n) rounded up to whole warps: a grid-stride walk over
// windows of 32 consecutive indices (32-aligned), one window per warp and iteration. The loop
// bound depends on the warp only, so every lane of a warp makes the same calls and full-mask
// warp votes and shuffles inside `body` see all 32 lanes; body must check i < n itself.
template <typename F>
__device__ __forceinline__ void for_each_warp_window(int64_t n, F&& body) {
  const int lane = threadIdx.x & 31;
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int64_t warps = (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5;
  for (int64_t base = warp * 32; base < n; base += warps * 32) body(base + lane, lane);
}

}  // namespace m3ad
