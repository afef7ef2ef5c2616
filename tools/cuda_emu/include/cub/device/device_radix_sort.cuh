// CPU emulation of cub::DeviceRadixSort::SortPairs and SortKeys (synchronous; the stream is
// ignored).
// Only unsigned integer keys are supported: CUB's bit twiddling for signed/float keys is not
// needed by our sources, and the static_assert says so instead of sorting them wrongly.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <numeric>
#include <type_traits>
#include <utility>
#include <vector>

#include "../util_type.cuh"

namespace cub {
namespace emu_detail {

template <typename K>
bool valid_bit_range(int begin_bit, int end_bit) {
  return 0 <= begin_bit && begin_bit <= end_bit && end_bit <= static_cast<int>(sizeof(K) * 8);
}

// Stable LSD radix sort on bits [begin_bit, end_bit) only, as CUB does: keys equal in those
// bits keep their input order, and the outputs receive the full original keys. Results are
// staged in vectors so the outputs may alias the inputs.
template <typename K, typename V>
void sort_pairs(const K* keys_in, const V* vals_in, K* keys_out, V* vals_out, size_t n, int begin_bit,
                int end_bit) {
  static_assert(std::is_unsigned<K>::value && sizeof(K) <= 8, "shim sorts unsigned integer keys only");
  const int width = end_bit - begin_bit;
  const uint64_t mask = width >= 64 ? ~uint64_t{0} : (uint64_t{1} << width) - 1;
  std::vector<uint64_t> digits(n);
  for (size_t i = 0; i < n; ++i) {
    digits[i] = width == 0 ? 0 : (static_cast<uint64_t>(keys_in[i]) >> begin_bit) & mask;
  }
  std::vector<size_t> order(n), next(n);
  std::iota(order.begin(), order.end(), size_t{0});
  for (int shift = 0; shift < width; shift += 8) {  // one stable counting-sort pass per byte
    size_t start[257] = {};
    for (size_t i = 0; i < n; ++i) ++start[((digits[i] >> shift) & 0xFF) + 1];
    for (int d = 0; d < 256; ++d) start[d + 1] += start[d];
    for (size_t i = 0; i < n; ++i) next[start[(digits[order[i]] >> shift) & 0xFF]++] = order[i];
    order.swap(next);
  }
  std::vector<K> k(n);
  std::vector<V> v(n);
  for (size_t i = 0; i < n; ++i) {
    k[i] = keys_in[order[i]];
    v[i] = vals_in[order[i]];
  }
  for (size_t i = 0; i < n; ++i) {
    keys_out[i] = k[i];
    vals_out[i] = v[i];
  }
}

}  // namespace emu_detail

struct DeviceRadixSort {
  template <typename K, typename V, typename NumItemsT>
  static cudaError_t SortPairs(void* d_temp_storage, size_t& temp_storage_bytes, const K* d_keys_in, K* d_keys_out,
                               const V* d_values_in, V* d_values_out, NumItemsT num_items, int begin_bit = 0,
                               int end_bit = sizeof(K) * 8, cudaStream_t /*stream*/ = 0) {
    if (!emu_detail::valid_bit_range<K>(begin_bit, end_bit)) return cudaErrorInvalidValue;
    size_t n = 0;
    bool done = false;
    const cudaError_t err = emu_detail::begin_call(d_temp_storage, temp_storage_bytes, num_items, n, done);
    if (done) return err;
    emu_detail::sort_pairs(d_keys_in, d_values_in, d_keys_out, d_values_out, n, begin_bit, end_bit);
    return cudaSuccess;
  }

  // Like CUB, the sorted data may end up in either buffer and the selectors say which. This
  // shim always writes the Alternate() buffers and flips, so a caller that reads d_buffers[0]
  // instead of Current() gets wrong data at once rather than only for some key widths.
  template <typename K, typename V, typename NumItemsT>
  static cudaError_t SortPairs(void* d_temp_storage, size_t& temp_storage_bytes, DoubleBuffer<K>& d_keys,
                               DoubleBuffer<V>& d_values, NumItemsT num_items, int begin_bit = 0,
                               int end_bit = sizeof(K) * 8, cudaStream_t stream = 0) {
    const cudaError_t err = SortPairs(d_temp_storage, temp_storage_bytes, d_keys.Current(), d_keys.Alternate(),
                                      d_values.Current(), d_values.Alternate(), num_items, begin_bit, end_bit, stream);
    if (err != cudaSuccess || d_temp_storage == nullptr) return err;  // an error or a size query: no sort
    d_keys.selector ^= 1;
    d_values.selector ^= 1;
    return cudaSuccess;
  }

  // Keys only: the same sort with a payload nobody reads (the shim's sort stages its output, so
  // a scratch payload is simpler than a second sort routine).
  template <typename K, typename NumItemsT>
  static cudaError_t SortKeys(void* d_temp_storage, size_t& temp_storage_bytes, const K* d_keys_in, K* d_keys_out,
                              NumItemsT num_items, int begin_bit = 0, int end_bit = sizeof(K) * 8,
                              cudaStream_t /*stream*/ = 0) {
    if (!emu_detail::valid_bit_range<K>(begin_bit, end_bit)) return cudaErrorInvalidValue;
    size_t n = 0;
    bool done = false;
    const cudaError_t err = emu_detail::begin_call(d_temp_storage, temp_storage_bytes, num_items, n, done);
    if (done) return err;
    std::vector<unsigned char> in(n), out(n);
    emu_detail::sort_pairs(d_keys_in, in.data(), d_keys_out, out.data(), n, begin_bit, end_bit);
    return cudaSuccess;
  }

  template <typename K, typename NumItemsT>
  static cudaError_t SortKeys(void* d_temp_storage, size_t& temp_storage_bytes, DoubleBuffer<K>& d_keys,
                              NumItemsT num_items, int begin_bit = 0, int end_bit = sizeof(K) * 8,
                              cudaStream_t stream = 0) {
    const cudaError_t err = SortKeys(d_temp_storage, temp_storage_bytes, d_keys.Current(), d_keys.Alternate(), num_items,
                                     begin_bit, end_bit, stream);
    if (err != cudaSuccess || d_temp_storage == nullptr) return err;
    d_keys.selector ^= 1;
    return cudaSuccess;
  }
};

}  // namespace cub
