// CPU emulation of cub::DeviceReduce::ReduceByKey (sequential, synchronous; stream ignored).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "../util_type.cuh"

namespace cub {

struct DeviceReduce {
  // For each run of consecutive equal keys (operator==, like cub::Equality): the run's key goes
  // to unique_out and reduction_op folded over its values to aggregates_out. The fold is left to
  // right; CUB's order is unspecified, so callers must pass an associative op anyway.
  template <typename KeysIt, typename UniqueOutIt, typename ValuesIt, typename AggregatesOutIt,
            typename NumRunsOutIt, typename ReductionOpT, typename NumItemsT>
  static cudaError_t ReduceByKey(void* d_temp_storage, size_t& temp_storage_bytes, KeysIt d_keys_in,
                                 UniqueOutIt d_unique_out, ValuesIt d_values_in, AggregatesOutIt d_aggregates_out,
                                 NumRunsOutIt d_num_runs_out, ReductionOpT reduction_op, NumItemsT num_items,
                                 cudaStream_t /*stream*/ = 0) {
    size_t n = 0;
    bool done = false;
    const cudaError_t err = emu_detail::begin_call(d_temp_storage, temp_storage_bytes, num_items, n, done);
    if (done) return err;
    size_t runs = 0;
    if (n > 0) {
      // Copies of the current key/aggregate keep in-place use (unique_out == keys_in) correct.
      emu_detail::value_t<KeysIt> key = *d_keys_in;
      emu_detail::value_t<ValuesIt> acc = *d_values_in;
      for (size_t i = 1; i < n; ++i) {
        ++d_keys_in;
        ++d_values_in;
        emu_detail::value_t<KeysIt> next = *d_keys_in;
        if (next == key) {
          acc = reduction_op(acc, *d_values_in);
          continue;
        }
        *d_unique_out = key;
        ++d_unique_out;
        *d_aggregates_out = acc;
        ++d_aggregates_out;
        ++runs;
        key = next;
        acc = *d_values_in;
      }
      *d_unique_out = key;
      *d_aggregates_out = acc;
      ++runs;
    }
    emu_detail::store_count(d_num_runs_out, runs);
    return cudaSuccess;
  }
};

}  // namespace cub
