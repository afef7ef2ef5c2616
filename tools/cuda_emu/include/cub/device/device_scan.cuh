// CPU emulation of cub::DeviceScan::InclusiveSum (sequential, synchronous; stream ignored).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "../util_type.cuh"

namespace cub {

struct DeviceScan {
  // out[i] = in[0] + ... + in[i], accumulated in the input's value type (as CUB does for sums).
  template <typename InputIt, typename OutputIt, typename NumItemsT>
  static cudaError_t InclusiveSum(void* d_temp_storage, size_t& temp_storage_bytes, InputIt d_in, OutputIt d_out,
                                  NumItemsT num_items, cudaStream_t /*stream*/ = 0) {
    size_t n = 0;
    bool done = false;
    const cudaError_t err = emu_detail::begin_call(d_temp_storage, temp_storage_bytes, num_items, n, done);
    if (done) return err;
    emu_detail::value_t<InputIt> acc{};
    for (size_t i = 0; i < n; ++i, ++d_in, ++d_out) {
      acc = static_cast<emu_detail::value_t<InputIt>>(acc + *d_in);
      *d_out = acc;
    }
    return cudaSuccess;
  }
};

}  // namespace cub
