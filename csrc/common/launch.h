// What every op entry point receives besides its data: where to run and on which stream.
#pragma once
#include <cstdint>
#include <stdexcept>

#include "common/host_device.h"

namespace m3ad {

struct Device {
  int index = -1;          // -1: CPU, otherwise the CUDA device ordinal
  void* stream = nullptr;  // cudaStream_t as an opaque pointer (CPU headers stay CUDA-free)
  bool is_cuda() const { return index >= 0; }
};

// lengths[b] clamped to [0, hi]; a null lengths array means every cloud is full. Kernels clamp
// so that lengths the adapter did not check (value checks off) can never index out of bounds.
M3AD_HD int64_t clamp_len(const int64_t* lengths, int64_t b, int64_t hi) {
  if (!lengths) return hi;
  const int64_t v = lengths[b];
  return v < 0 ? 0 : (v > hi ? hi : v);
}

[[noreturn]] inline void no_cuda_build(const char* op) {
  throw std::runtime_error(std::string("mentor3ad_ext: ") + op +
                           " was called on a CUDA tensor but this build has no CUDA kernels "
                           "(rebuild with nvcc on PATH, MENTOR3AD_CUDA=1)");
}

}  // namespace m3ad
