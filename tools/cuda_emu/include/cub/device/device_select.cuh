// CPU emulation of cub::DeviceSelect::Flagged (sequential, synchronous; the stream is ignored).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "../util_type.cuh"

namespace cub {

struct DeviceSelect {
  // Copies in[i] to out, in order, for every i with flags[i] != 0; *num_selected_out = count.
  template <typename InputIt, typename FlagIt, typename OutputIt, typename NumSelectedIt, typename NumItemsT>
  static cudaError_t Flagged(void* d_temp_storage, size_t& temp_storage_bytes, InputIt d_in, FlagIt d_flags,
                             OutputIt d_out, NumSelectedIt d_num_selected_out, NumItemsT num_items,
                             cudaStream_t /*stream*/ = 0) {
    size_t n = 0;
    bool done = false;
    const cudaError_t err = emu_detail::begin_call(d_temp_storage, temp_storage_bytes, num_items, n, done);
    if (done) return err;
    size_t selected = 0;
    for (size_t i = 0; i < n; ++i, ++d_in, ++d_flags) {
      if (*d_flags) {
        *d_out = *d_in;
        ++d_out;
        ++selected;
      }
    }
    emu_detail::store_count(d_num_selected_out, selected);
    return cudaSuccess;
  }
};

}  // namespace cub
