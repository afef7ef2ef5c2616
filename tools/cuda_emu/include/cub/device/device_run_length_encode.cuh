// CPU emulation of cub::DeviceRunLengthEncode::Encode (sequential, synchronous; stream ignored).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <iterator>

#include "../util_type.cuh"
#include "device_reduce.cuh"

namespace cub {
namespace emu_detail {

// 1 at every position: a run's length is ReduceByKey's sum of ones over the run.
struct Ones {
  using iterator_category = std::input_iterator_tag;
  using value_type = size_t;
  using difference_type = std::ptrdiff_t;
  using pointer = const size_t*;
  using reference = size_t;
  size_t operator*() const { return 1; }
  Ones& operator++() { return *this; }
};

struct SizeSum {
  size_t operator()(size_t a, size_t b) const { return a + b; }
};

}  // namespace emu_detail

struct DeviceRunLengthEncode {
  // For each run of consecutive equal keys: the key to unique_out, its length to lengths_out.
  template <typename InputIt, typename UniqueOutIt, typename LengthsOutIt, typename NumRunsOutIt,
            typename NumItemsT>
  static cudaError_t Encode(void* d_temp_storage, size_t& temp_storage_bytes, InputIt d_in, UniqueOutIt d_unique_out,
                            LengthsOutIt d_lengths_out, NumRunsOutIt d_num_runs_out, NumItemsT num_items,
                            cudaStream_t stream = 0) {
    return DeviceReduce::ReduceByKey(d_temp_storage, temp_storage_bytes, d_in, d_unique_out, emu_detail::Ones{},
                                     d_lengths_out, d_num_runs_out, emu_detail::SizeSum{}, num_items, stream);
  }
};

}  // namespace cub
