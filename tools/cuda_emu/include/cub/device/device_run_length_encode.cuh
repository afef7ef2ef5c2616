// CPU emulation of cub::DeviceRunLengthEncode::Encode (sequential, synchronous; stream ignored).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "../util_type.cuh"

namespace cub {

struct DeviceRunLengthEncode {
  // For each run of consecutive equal keys: the key to unique_out, its length to lengths_out.
  template <typename InputIt, typename UniqueOutIt, typename LengthsOutIt, typename NumRunsOutIt,
            typename NumItemsT>
  static cudaError_t Encode(void* d_temp_storage, size_t& temp_storage_bytes, InputIt d_in, UniqueOutIt d_unique_out,
                            LengthsOutIt d_lengths_out, NumRunsOutIt d_num_runs_out, NumItemsT num_items,
                            cudaStream_t /*stream*/ = 0) {
    size_t n = 0;
    bool done = false;
    const cudaError_t err = emu_detail::begin_call(d_temp_storage, temp_storage_bytes, num_items, n, done);
    if (done) return err;
    size_t runs = 0;
    if (n > 0) {
      emu_detail::value_t<InputIt> key = *d_in;  // a copy: safe when unique_out aliases d_in
      size_t len = 1;
      for (size_t i = 1; i < n; ++i) {
        ++d_in;
        emu_detail::value_t<InputIt> next = *d_in;
        if (next == key) {
          ++len;
          continue;
        }
        *d_unique_out = key;
        ++d_unique_out;
        emu_detail::store_count(d_lengths_out, len);
        ++d_lengths_out;
        ++runs;
        key = next;
        len = 1;
      }
      *d_unique_out = key;
      emu_detail::store_count(d_lengths_out, len);
      ++runs;
    }
    emu_detail::store_count(d_num_runs_out, runs);
    return cudaSuccess;
  }
};

}  // namespace cub
