// What every op entry point receives besides its data: where to run and on which stream.
#pragma once
#include <cstdint>
#include <stdexcept>

namespace m3ad {

struct Device {
  int index = -1;          // -1: CPU, otherwise the CUDA device ordinal
  void* stream = nullptr;  // cudaStream_t as an opaque pointer (CPU headers stay CUDA-free)
  bool is_cuda() const { return index >= 0; }
};

[[noreturn]] inline void no_cuda_build(const char* op) {
  throw std::runtime_error(std::string("mentor3ad_ext: ") + op +
                           " was called on a CUDA tensor but this build has no CUDA kernels "
                           "(rebuild with nvcc on PATH, MENTOR3AD_CUDA=1)");
}

}  // namespace m3ad
