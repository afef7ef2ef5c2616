// CPU emulation of cub/util_type.cuh: cub::DoubleBuffer, plus the temporary-storage protocol
// shared by the cub::Device* shims (kept here because every shim includes this header).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstring>
#include <iterator>
#include <type_traits>

namespace cub {

// Same layout and members as CUB's, so code that peeks at d_buffers/selector still compiles.
template <typename T>
struct DoubleBuffer {
  T* d_buffers[2];
  int selector;

  DoubleBuffer() : d_buffers{nullptr, nullptr}, selector(0) {}
  DoubleBuffer(T* d_current, T* d_alternate) : d_buffers{d_current, d_alternate}, selector(0) {}

  T* Current() const { return d_buffers[selector]; }
  T* Alternate() const { return d_buffers[selector ^ 1]; }
};

namespace emu_detail {

// Deterministic and dependent on n, so a caller that sizes its workspace from a different n
// (or skips the size query) gets cudaErrorInvalidValue here instead of a silent overrun on GPU.
inline size_t required_temp_bytes(size_t n) { return 256 + 16 * n; }

// Byte pattern written over the caller's temporary storage: real CUB scribbles there too, so
// a workspace that aliases live data is corrupted here just as it would be on the device.
constexpr unsigned char kTempPoison = 0xA5;

// CUB's two-phase contract. Sets `done` when the call must return now (size query or error);
// otherwise `n` holds the item count and the caller does the work.
template <typename NumItemsT>
cudaError_t begin_call(void* d_temp_storage, size_t& temp_storage_bytes, NumItemsT num_items, size_t& n,
                       bool& done) {
  static_assert(std::is_integral<NumItemsT>::value, "num_items must be an integer");
  done = true;
  if constexpr (std::is_signed<NumItemsT>::value) {
    if (num_items < 0) return cudaErrorInvalidValue;
  }
  n = static_cast<size_t>(num_items);
  const size_t need = required_temp_bytes(n);
  if (d_temp_storage == nullptr) {
    temp_storage_bytes = need;
    return cudaSuccess;
  }
  if (temp_storage_bytes < need) return cudaErrorInvalidValue;
  std::memset(d_temp_storage, kTempPoison, need);
  done = false;
  return cudaSuccess;
}

// *it = v for a count output (e.g. int64_t* num_selected_out), converting explicitly.
template <typename OutIt>
void store_count(OutIt it, size_t v) {
  using T = std::remove_cv_t<std::remove_reference_t<decltype(*it)>>;
  *it = static_cast<T>(v);
}

// Value type of an input iterator (pointer or one of the thrust shims).
template <typename It>
using value_t = typename std::iterator_traits<It>::value_type;

}  // namespace emu_detail
}  // namespace cub
